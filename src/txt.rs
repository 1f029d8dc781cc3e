//! Splitting record text into DNS character-strings of at most 255 octets.
//!
//! Receivers join the strings of a TXT record with no separator (RFC 7208 3.3,
//! RFC 6376 3.6.2.2). SPF records are split only between terms, with the space kept at
//! the end of the earlier string, so that a receiver that wrongly joins with a space
//! still reads the same terms. Other records are split at 255 octets.

/// The largest character-string in DNS (RFC 1035 3.3).
pub const MAX_STRING: usize = 255;

/// Splits any text into strings of at most [`MAX_STRING`] octets, never inside a
/// UTF-8 character (record text is ASCII in practice).
pub fn split_plain(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > MAX_STRING {
        let mut cut = MAX_STRING;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Splits a space-separated record (SPF) between words. A word longer than a whole
/// string (impossible for valid SPF terms but possible in principle) is split plainly.
pub fn split_words<'a>(words: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut words = words.into_iter().peekable();
    while let Some(word) = words.next() {
        let last = words.peek().is_none();
        let sep = usize::from(!current.is_empty());
        // A string that goes on in the next one must keep room for its trailing space.
        let room = if last { MAX_STRING } else { MAX_STRING - 1 };
        if current.len() + sep + word.len() > room && !current.is_empty() {
            current.push(' ');
            out.push(std::mem::take(&mut current));
        } else if sep == 1 {
            current.push(' ');
        }
        current.push_str(word);
        if current.len() > room {
            // Only a single word longer than a string gets here.
            let mut pieces = split_plain(&current);
            current = pieces.pop().unwrap_or_default();
            out.extend(pieces);
        }
    }
    out.push(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_string() {
        assert_eq!(split_plain("v=DMARC1; p=none"), vec!["v=DMARC1; p=none"]);
        assert_eq!(split_plain(""), vec![""]);
        assert_eq!(split_words(["v=spf1", "-all"]), vec!["v=spf1 -all"]);
    }

    #[test]
    fn plain_split_keeps_every_octet() {
        let text = "a".repeat(700);
        let parts = split_plain(&text);
        assert_eq!(
            parts.iter().map(String::len).collect::<Vec<_>>(),
            vec![255, 255, 190]
        );
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn word_split_ends_strings_with_a_space_and_never_cuts_a_term() {
        let terms: Vec<String> = (0..40).map(|i| format!("ip4:198.51.100.{i}/32")).collect();
        let mut words = vec!["v=spf1"];
        words.extend(terms.iter().map(String::as_str));
        words.push("-all");
        let parts = split_words(words.iter().copied());
        assert!(parts.len() > 1);
        for pair in parts.windows(2) {
            let next_word = pair[1].split(' ').next().unwrap();
            assert!(
                pair[0].len() + next_word.len() > 254,
                "strings are filled: {pair:?}"
            );
        }
        for p in &parts {
            assert!(p.len() <= MAX_STRING, "{p}");
        }
        for p in &parts[..parts.len() - 1] {
            assert!(p.ends_with(' '), "{p:?}");
        }
        // Joined without separator (RFC 7208 3.3) it is the record.
        assert_eq!(parts.concat(), words.join(" "));
        // Joined wrongly, with a space, every term is still whole.
        let wrong = parts.join(" ");
        let wrong_words: Vec<&str> = wrong.split_whitespace().collect();
        assert_eq!(wrong_words, words);
    }

    #[test]
    fn a_word_longer_than_a_string_is_still_kept_whole_in_the_joined_text() {
        let long = "x".repeat(300);
        let parts = split_words(["v=spf1", long.as_str(), "-all"]);
        assert_eq!(parts[0], "v=spf1 ");
        assert_eq!(parts.concat(), format!("v=spf1 {long} -all"));
        assert!(parts.iter().all(|p| p.len() <= MAX_STRING));
    }
}
