//! One aggregate report as read from XML (RFC 7489 appendix C and RFC 9990): the
//! metadata, the policy the receiver saw and every record row with its results.

use std::net::IpAddr;

use serde::Serialize;

/// Which schema the report declared (by namespace), for the record only: both are
/// read by the same lenient parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schema {
    /// RFC 7489 appendix C (no namespace, or any other).
    Rfc7489,
    /// RFC 9990, `urn:ietf:params:xml:ns:dmarc-2.0`.
    Dmarc2,
}

impl Schema {
    pub fn as_str(self) -> &'static str {
        match self {
            Schema::Rfc7489 => "rfc7489",
            Schema::Dmarc2 => "dmarc-2.0",
        }
    }
}

/// The `policy_published` element: what the receiver found at `_dmarc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyPublished {
    pub domain: String,
    pub adkim: Option<String>,
    pub aspf: Option<String>,
    pub p: Option<String>,
    pub sp: Option<String>,
    /// RFC 9990.
    pub np: Option<String>,
    pub pct: Option<String>,
    /// RFC 9990 `testing` (y|n).
    pub testing: Option<String>,
    /// RFC 9990 `discovery_method` (psl|treewalk).
    pub discovery_method: Option<String>,
}

/// One DKIM or SPF result of `auth_results`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthResult {
    pub domain: String,
    /// The DKIM selector, or the SPF scope (mfrom, helo).
    pub detail: Option<String>,
    /// Lower case: pass, fail, none, neutral, softfail, temperror, permerror, policy.
    pub result: String,
}

/// One `record`: messages from one source address with one set of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub source_ip: IpAddr,
    pub count: u64,
    pub disposition: String,
    /// `policy_evaluated` dkim and spf: the DMARC (aligned) results.
    pub dkim_eval: Option<String>,
    pub spf_eval: Option<String>,
    pub reasons: Vec<String>,
    pub header_from: String,
    pub envelope_from: Option<String>,
    pub envelope_to: Option<String>,
    pub dkim: Vec<AuthResult>,
    pub spf: Vec<AuthResult>,
}

impl Row {
    /// DKIM passed aligned with the From domain: the receiver's `policy_evaluated`
    /// verdict when it gave one, else a passing signature whose d= is aligned (relaxed).
    pub fn dkim_aligned(&self) -> bool {
        match &self.dkim_eval {
            Some(v) => v == "pass",
            None => self
                .dkim
                .iter()
                .any(|r| r.result == "pass" && relaxed_aligned(&r.domain, &self.header_from)),
        }
    }

    /// SPF passed aligned with the From domain (same rule as [`Row::dkim_aligned`]).
    pub fn spf_aligned(&self) -> bool {
        match &self.spf_eval {
            Some(v) => v == "pass",
            None => self
                .spf
                .iter()
                .any(|r| r.result == "pass" && relaxed_aligned(&r.domain, &self.header_from)),
        }
    }
}

/// Relaxed alignment approximated without a public suffix list: one name is the other
/// or a subdomain of it.
pub fn relaxed_aligned(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim_end_matches('.').to_ascii_lowercase();
    !a.is_empty() && (a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}")))
}

/// A whole aggregate report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub schema: Schema,
    pub org_name: String,
    pub email: Option<String>,
    pub report_id: String,
    /// Unix times of `date_range`; a range longer than [`MAX_RANGE`] is cut to it.
    pub begin: i64,
    pub end: i64,
    /// RFC 9990 `generator`.
    pub generator: Option<String>,
    pub policy: PolicyPublished,
    pub rows: Vec<Row>,
    /// Lenient repairs made while reading (a cut date range, rows without an address).
    pub notes: Vec<String>,
}

/// The longest date range kept as written: some receivers send begin=0 or ranges of
/// months, which would spread one report over many days.
pub const MAX_RANGE: i64 = 7 * 86400;

/// The largest message count one record may claim (a billion: more than any receiver
/// sees from one address in a day). Larger is an error for the report, so that sums
/// over many reports cannot overflow.
pub const MAX_COUNT: u64 = 1_000_000_000;

impl Report {
    /// Messages in all rows.
    pub fn messages(&self) -> u64 {
        self.rows.iter().map(|r| r.count).sum()
    }
}
