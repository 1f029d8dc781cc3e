//! Policy files with mistakes: each error names file, line and column and says what is
//! wrong; unknown keys are rejected.

use spfd::diag::{Severity, SourceFile};
use spfd::policy;

const HEAD: &str = "domain = \"example.test\"\n[dmarc]\n";

/// Parses a policy whose `[dmarc]` section is `body` (starting on line 3).
fn dmarc_errors(body: &str) -> Vec<String> {
    let src = SourceFile::new("/p/example.test.toml", format!("{HEAD}{body}\n"));
    match policy::parse(&src) {
        Ok(loaded) => panic!("{body:?} was accepted: {:?}", loaded.policy.dmarc),
        Err(diags) => diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect(),
    }
}

#[test]
fn dmarc_tag_errors_are_named_with_their_position() {
    // (section body, line:column of the value, a part of the message)
    let table: &[(&str, &str, &str)] = &[
        (
            "p = \"maybe\"",
            "3:5",
            "p must be one of none, quarantine, reject",
        ),
        (
            "p = \"none\"\nsp = \"always\"",
            "4:6",
            "sp must be one of none, quarantine, reject",
        ),
        (
            "p = \"none\"\nnp = \"yes\"",
            "4:6",
            "np must be one of none, quarantine, reject",
        ),
        (
            "p = \"reject\"\npct = 101",
            "4:7",
            "pct must be between 0 and 100; got 101",
        ),
        (
            "p = \"reject\"\npct = -1",
            "4:7",
            "pct must be between 0 and 100; got -1",
        ),
        ("p = \"none\"\nadkim = \"x\"", "4:9", "adkim"),
        ("p = \"none\"\naspf = \"relaxed\"", "4:8", "aspf"),
        (
            "p = \"none\"\nrua = [\"dmarc-reports@example.test\"]",
            "4:8",
            "is not a URI: write mailto:dmarc-reports@example.test",
        ),
        ("p = \"none\"\nrua = [\"mailto:nobody\"]", "4:8", "mailto:nobody"),
        (
            "p = \"none\"\nruf = [\"mailto:a@example.test!10x\"]",
            "4:8",
            "size",
        ),
        ("p = \"none\"\nfo = \"2\"", "4:6", "fo"),
        ("p = \"none\"\nfo = \"1:1\"", "4:6", "fo"),
        ("p = \"none\"\nri = 0", "4:6", "ri"),
        (
            "p = \"none\"\npsd = \"maybe\"",
            "4:7",
            "psd must be one of y, n, u",
        ),
        ("p = \"none\"\nrf = \"iodef\"", "4:6", "rf must be \"afrf\""),
        ("p = \"none\"\nt = \"maybe\"", "4:5", "t"),
    ];
    let mut failures = Vec::new();
    for (body, at, message) in table {
        let errors = dmarc_errors(body);
        let want_at = format!("/p/example.test.toml:{at}: error:");
        let ok = errors
            .iter()
            .any(|e| e.starts_with(&want_at) && e.contains(message));
        if !ok {
            failures.push(format!(
                "{body:?}: want {want_at} ... {message:?}, got {errors:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// RFC 9989's psd is a tag; rf and ri are historic: valid, with a warning each.
#[test]
fn dmarc_psd_is_accepted_and_rf_ri_are_historic() {
    let body = "p = \"reject\"\nrua = [\"mailto:d@example.test\"]\npsd = \"n\"\nrf = \"afrf\"\nri = 86400";
    let src = SourceFile::new("/p/example.test.toml", format!("{HEAD}{body}\n"));
    let loaded = policy::parse(&src).unwrap_or_else(|e| panic!("{e:?}"));
    let txt = loaded.policy.dmarc.as_ref().unwrap().txt();
    assert!(
        txt.contains("; psd=n; ") && txt.contains("; rf=afrf; ri=86400"),
        "{txt}"
    );
    let warnings: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
    for at in ["6:6", "7:6"] {
        let want = format!("/p/example.test.toml:{at}: warning: dmarc");
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with(&want) && w.contains("historic under RFC 9989")),
            "{at}: {warnings:?}"
        );
    }
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    for (text, at) in [
        ("domain = \"a.test\"\ncolour = \"red\"\n", "2:1"),
        (
            "domain = \"a.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nflatten = true\n",
            "4:1",
        ),
        (
            "domain = \"a.test\"\n[dmarc]\np = \"none\"\npolicy = \"reject\"\n",
            "4:1",
        ),
        (
            "domain = \"a.test\"\n[dkim.s1]\nrevoked = true\nkey = \"x\"\n",
            "4:1",
        ),
    ] {
        let src = SourceFile::new("/p/a.toml", text);
        let errors = policy::parse(&src).unwrap_err();
        let shown = errors[0].to_string();
        assert!(
            shown.starts_with(&format!("/p/a.toml:{at}: error: unknown field")),
            "{shown}"
        );
    }
}

#[test]
fn policy_level_errors() {
    // A 200-octet domain and a 60-octet selector: the key's name is over 253 octets.
    let long_selector = format!(
        "domain = \"{}.test\"\n[dkim.{}]\nrevoked = true\n",
        vec!["a".repeat(49); 4].join("."),
        "s".repeat(60)
    );
    for (text, at, message) in [
        ("domain = \"not a domain\"\n", "1:10", "domain \"not a domain\""),
        (
            "domain = \"a.test\"\nzone = \"x..a.test\"\n",
            "2:8",
            "empty label",
        ),
        (
            "domain = \"a.test\"\nttl = 0\n",
            "2:7",
            "ttl must be between 1 and",
        ),
        (
            "domain = \"a.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"fast\"\n",
            "4:8",
            "spf mode must be one of",
        ),
        (
            "domain = \"a.test\"\n[spf]\nrecord = \"v=spf1 foo:bar -all\"\n",
            "3:18",
            "unknown mechanism",
        ),
        (
            "domain = \"a.test\"\n[spf]\nrecord = \"spf1 -all\"\n",
            "3:11",
            "v=spf1",
        ),
        (&long_selector, "1:10", "._domainkey."),
        (
            "domain = \"-a-.test\"\n",
            "1:10",
            "starting or ending with a hyphen",
        ),
        (
            "domain = \"a.test\"\nzone = \"_spf.-a.test\"\n",
            "2:8",
            "\"-a\" starting or ending",
        ),
    ] {
        let src = SourceFile::new("/p/a.toml", text);
        let errors = policy::parse(&src).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with(&format!("/p/a.toml:{at}: error:")) && e.contains(message)),
            "{text:?}: {shown:?}"
        );
    }
}

/// Names receivers and resolvers refuse are errors when the policy is checked, at
/// the offending label, not failed lookups later.
#[test]
fn spf_targets_that_are_not_dns_names_are_errors_at_their_label() {
    // (record, line:column of the bad label, part of the message)
    let table: &[(&str, &str, &str)] = &[
        (
            "v=spf1 a:-bad-.test -all",
            "3:20",
            "\"-bad-\" starting or ending with a hyphen",
        ),
        ("v=spf1 a:bad..test -all", "3:24", "empty label"),
        (
            "v=spf1 include:-x.test -all",
            "3:26",
            "starting or ending with a hyphen",
        ),
        ("v=spf1 mx:mail.test redirect=x..test", "3:42", "empty label"),
    ];
    for (record, at, message) in table {
        let text = format!("domain = \"a.test\"\n[spf]\nrecord = \"{record}\"\n");
        let src = SourceFile::new("/p/a.toml", text);
        let errors: Vec<String> = match policy::parse(&src) {
            Ok(_) => panic!("{record:?} was accepted"),
            Err(diags) => diags.iter().map(|d| d.to_string()).collect(),
        };
        let want = format!("/p/a.toml:{at}: error: spf record:");
        assert!(
            errors.iter().any(|e| e.starts_with(&want) && e.contains(message)),
            "{record:?}: want {want} ... {message:?}, got {errors:?}"
        );
    }
}

#[test]
fn spf_networks_of_the_whole_internet_are_warnings() {
    for (record, at, family) in [
        ("v=spf1 ip4:0.0.0.0/0 -all", "3:18", "IPv4"),
        ("v=spf1 mx ip6:::/0 -all", "3:21", "IPv6"),
    ] {
        let text = format!("domain = \"a.test\"\n[spf]\nrecord = \"{record}\"\n");
        let loaded = policy::parse(&SourceFile::new("/p/a.toml", text))
            .unwrap_or_else(|e| panic!("{record:?} must stay valid: {e:?}"));
        let warnings: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
        let want = format!("/p/a.toml:{at}: warning: spf record:");
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with(&want) && w.contains(&format!("every {family} address"))),
            "{record:?}: {warnings:?}"
        );
    }
}

#[test]
fn a_valid_policy_reports_its_warnings_and_lookup_cost() {
    let src = SourceFile::new(
        "/p/a.toml",
        "domain = \"a.test\"\n[spf]\nrecord = \"v=spf1 mx include:_spf.provider.test ptr ~all\"\nmode = \"passthrough\"\n[dmarc]\np = \"none\"\n",
    );
    let loaded = policy::parse(&src).unwrap();
    // mx, include, ptr, plus the owner's redirect to _spf.a.test.
    assert_eq!(loaded.policy.spf_direct_lookups(), Some(4));
    let warnings: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("/p/a.toml:3:") && w.contains("ptr")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("rua")),
        "no rua is worth a warning: {warnings:?}"
    );
}

#[test]
fn backend_tsig_names_a_key_of_the_server_config() {
    let name = hickory_proto::rr::Name::from_ascii("backend-key.").unwrap();
    let algorithm = hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256;
    let key = spfd::tsig::TsigKey::new(name, algorithm, b"secret".to_vec()).unwrap();
    let keys: spfd::tsig::Keyring = [("backend-key".to_string(), key)].into();
    let policy = |tsig: &str, backend: &str| {
        SourceFile::new(
            "/p/example.test.toml",
            format!(
                "domain = \"example.test\"\nzone = \"example.test\"\n{backend}backend_tsig = \"{tsig}\"\n"
            ),
        )
    };
    let errors = |src: &SourceFile| -> String {
        match policy::parse_with_files(src, &keys).0 {
            Ok(_) => panic!("{} was accepted", src.text),
            Err(diags) => diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    };
    let backend = "backend = \"192.0.2.10:53\"\n";
    let loaded = policy::parse_with_files(&policy("backend-key", backend), &keys)
        .0
        .unwrap();
    assert_eq!(
        loaded.policy.backend_tsig.map(|k| k.name.to_string()),
        Some("backend-key.".to_string())
    );
    let unknown = errors(&policy("nokey", backend));
    assert!(
        unknown.contains(
            "example.test.toml:4:16: error: backend_tsig \"nokey\" names no key: add a [tsig.nokey] table"
        ) && unknown.contains("(keys defined: backend-key)"),
        "{unknown}"
    );
    let alone = errors(&policy("backend-key", ""));
    assert!(
        alone.contains("example.test.toml:3:16: error: backend_tsig signs the transfers from a backend"),
        "{alone}"
    );
}
