//! The fuzz targets' properties (tests/fuzz/src/lib.rs, included here) checked on
//! inputs generated from fixed seeds, so that every `cargo test` (and CI) runs them
//! without cargo-fuzz: queries well-formed and malformed (the parity test's generator)
//! for the UDP answer function, names spelled well and badly for the macro-mode
//! parser, mutated policy files, SPF records built from terms and then mutated, and
//! small worlds of records for the flattener, report mails built of MIME pieces (some
//! nested thousands deep, some encoded) and zips built honest, shared and mutated.
//! cargo-fuzz explores further: see tests/fuzz/Cargo.toml.

#[path = "fuzz/src/lib.rs"]
mod fuzz;
#[path = "parity/generate.rs"]
mod generate;
#[path = "common/hostile.rs"]
mod hostile;

use generate::Rng;

const CASES: usize = 4000;

#[test]
fn the_udp_answer_function_agrees_with_the_general_path() {
    let mut rng = Rng::new(10);
    for _ in 0..CASES {
        let message = if rng.below(3) == 0 {
            generate::query(&mut rng)
        } else {
            generate::malformed(&mut rng).1
        };
        fuzz::udp_answer(&message);
    }
}

#[test]
fn macro_names_parse_exactly_the_addresses_they_spell() {
    let mut rng = Rng::new(11);
    for _ in 0..CASES {
        let v6 = rng.below(2) == 1;
        let mut input = vec![u8::from(v6)];
        let labels: Vec<String> = if v6 {
            let count = [31, 32, 32, 32, 33][rng.below(5)];
            let digits = "0123456789abcdefABCDEFgx";
            (0..count)
                .map(|_| {
                    let range = if rng.below(10) == 0 { 24 } else { 22 };
                    let c = digits.as_bytes()[rng.below(range)] as char;
                    if rng.below(50) == 0 {
                        format!("{c}{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        } else {
            let count = [3, 4, 4, 4, 5][rng.below(5)];
            (0..count)
                .map(|_| match rng.below(12) {
                    0 => format!("0{}", rng.below(100)),
                    1 => String::new(),
                    2 => format!("{}", 250 + rng.below(10)),
                    3 => "x1".to_string(),
                    _ => rng.below(256).to_string(),
                })
                .collect()
        };
        input.extend_from_slice(labels.join(".").as_bytes());
        fuzz::macro_name(&input);
    }
}

/// Replaces, deletes or inserts a few pieces of `text`.
fn mutate(rng: &mut Rng, text: &str, pieces: &[&str]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(3) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 if at < bytes.len() => bytes[at] = rng.next() as u8 & 0x7f,
            _ => {
                let piece = pieces[rng.below(pieces.len())].as_bytes();
                bytes.splice(at..at, piece.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

const TERMS: [&str; 20] = [
    "ip4:192.0.2.0/24",
    "ip6:2001:db8::/32",
    "a",
    "a:mail.%{d}/24",
    "mx//64",
    "mx:example.test",
    "include:_spf.example.test",
    "exists:%{i}._spf.%{d}",
    "exists:%{ir}.%{l1r+-}.x.test",
    "ptr",
    "ptr:%{d2}",
    "redirect=_spf.%{o}",
    "exp=explain.%{d}",
    "-all",
    "~all",
    "?all",
    "+all",
    "foo=bar",
    "ip4:300.0.0.1",
    "%{z}",
];

#[test]
fn spf_records_parse_or_are_refused_and_print_back_the_same() {
    let mut rng = Rng::new(12);
    for _ in 0..CASES {
        let terms: Vec<&str> = (0..rng.below(8)).map(|_| TERMS[rng.below(TERMS.len())]).collect();
        let record = format!("v=spf1 {}", terms.join(" "));
        let text = if rng.below(2) == 0 {
            record
        } else {
            mutate(&mut rng, &record, &TERMS)
        };
        fuzz::spf_record(text.as_bytes());
    }
}

#[test]
fn policy_files_load_or_are_refused_without_panics() {
    let policy = "domain = \"example.test\"\nzone = \"_spf.example.test\"\nttl = 300\n[spf]\n\
                  record = \"v=spf1 ip4:192.0.2.0/24 include:_spf.other.test -all\"\nmode = \"macro\"\n\
                  [dmarc]\np = \"reject\"\nrua = [\"mailto:d@example.test\"]\npct = 50\nfo = \"1:d\"\n\
                  [dkim.s1]\nk = \"ed25519\"\np = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n";
    let pieces = [
        "[",
        "]",
        "=",
        "\"",
        "\n",
        "[dkim.x]",
        "p = ",
        "mode = \"flatten\"",
        "t = true",
        "%{",
        "ttl = -1",
    ];
    let mut rng = Rng::new(13);
    fuzz::policy_load(policy.as_bytes());
    for _ in 0..CASES / 4 {
        fuzz::policy_load(mutate(&mut rng, policy, &pieces).as_bytes());
    }
}

#[test]
fn the_flattener_publishes_what_the_source_says() {
    let mut rng = Rng::new(14);
    let mut compared = 0;
    for _ in 0..CASES / 2 {
        let input: Vec<u8> = (0..64).map(|_| rng.next() as u8).collect();
        compared += usize::from(fuzz::flatten(&input));
    }
    // Most worlds flatten (the others loop, break the budget or are invalid).
    assert!(compared > CASES / 4, "{compared}");
}

const MIME_PIECES: [&str; 12] = [
    "Content-Type: message/rfc822\r\n\r\n",
    "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
    "Content-Type: multipart/digest; boundary=d\r\n\r\n",
    "--b\r\n",
    "--b--\r\n",
    "--d\r\n",
    "Content-Transfer-Encoding: base64\r\n",
    "Content-Transfer-Encoding: quoted-printable\r\n",
    "Content-Disposition: attachment; filename=\"r\nx.xml\"\r\n",
    "\r\n",
    "<feedback><report_metadata><org_name>O</org_name><report_id>1</report_id>",
    "H4sI",
];

#[test]
fn report_mails_decode_within_their_bounds() {
    use base64::Engine as _;
    let mut rng = Rng::new(15);
    for _ in 0..CASES / 4 {
        let mut text: String = (0..rng.below(40))
            .map(|_| MIME_PIECES[rng.below(MIME_PIECES.len())])
            .collect();
        if rng.below(8) == 0 {
            text = MIME_PIECES[rng.below(3)].repeat(rng.below(3000)) + &text;
        }
        if rng.below(8) == 0 {
            let inner = base64::engine::general_purpose::STANDARD.encode(&text);
            text = format!(
                "{}Content-Transfer-Encoding: base64\r\n\r\n{inner}\r\n",
                MIME_PIECES[0]
            );
        }
        fuzz::report_mail(text.as_bytes());
    }
}

#[test]
fn report_zips_decode_within_their_bounds() {
    let mut rng = Rng::new(16);
    for _ in 0..CASES / 8 {
        let xml = hostile::rows_xml("example.test", "z", rng.below(700));
        let mut zip = match rng.below(3) {
            0 => hostile::zip_of_copies(&xml, 1 + rng.below(24), rng.below(2) == 0),
            1 => {
                let name: Vec<u8> = (0..1 + rng.below(12)).map(|_| rng.next() as u8).collect();
                hostile::zip_named(&name, &xml)
            }
            _ => hostile::zip_of_copies(&hostile::nested_mail(rng.below(200)), 2, false),
        };
        for _ in 0..rng.below(4) {
            let at = rng.below(zip.len());
            zip[at] = rng.next() as u8;
        }
        fuzz::report_zip(&zip);
    }
}
