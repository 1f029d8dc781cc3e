//! The size every published record must keep: a TXT record has to fit one DNS message
//! (65,535 octets over TCP, with the header, the question and the record's own
//! owner, type, class, TTL and length around it), or it cannot be served at all.

use std::ops::Range;

use crate::diag::Diagnostics;

/// The most octets of TXT rdata (the character-strings with their length octets)
/// spfd publishes: what is left of a 65,535-octet message after a 12-octet header, the
/// longest question (259) and the record's fixed fields (12), rounded down.
pub const MAX_RDATA: usize = 65_000;

/// The rdata length of a TXT record made of `strings`.
pub fn rdata_len(strings: &[String]) -> usize {
    strings.iter().map(|s| s.len() + 1).sum()
}

/// Reports an error at `span` when the record `what` cannot be served; returns whether
/// it fits.
pub fn check(what: &str, strings: &[String], span: Range<usize>, diags: &mut Diagnostics) -> bool {
    let len = rdata_len(strings);
    if len <= MAX_RDATA {
        return true;
    }
    diags.error(
        span,
        format!(
            "the {what} record would be {len} octets, more than fits one DNS message ({MAX_RDATA} \
             octets of record data at most, RFC 1035 4.2.2): shorten it"
        ),
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_length_octet_per_string() {
        assert_eq!(rdata_len(&[]), 0);
        assert_eq!(rdata_len(&["v=spf1 -all".to_string()]), 12);
        assert_eq!(rdata_len(&["a".repeat(255), "b".to_string()]), 258);
    }
}
