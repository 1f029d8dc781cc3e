//! What expansion produces and packing consumes: an ordered list of rules (address
//! sets or terms left for the receiver) ending in a terminal, with the reports the
//! caller logs and the options and errors of [`expand`](super::expand).

use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde::{Deserialize, Serialize};

use super::ipset::{Ip4Set, Ip6Set};
use crate::spf::Qualifier;

/// One rule of a flattened record; receivers try them in order, first match wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rule {
    /// Matches the client addresses in the sets (an IPv4 client only `v4`, an IPv6
    /// client only `v6`; an IPv4-mapped IPv6 client is evaluated as IPv4 by receivers).
    Static {
        #[serde(with = "qualifier_char")]
        qualifier: Qualifier,
        v4: Ip4Set,
        v6: Ip6Set,
    },
    /// A term the receiver must evaluate itself (it depends on the message), already
    /// rewritten to mean the same wherever it is published.
    Dynamic {
        #[serde(with = "qualifier_char")]
        qualifier: Qualifier,
        /// The term as it is published, qualifier included (`-exists:%{i}.example.com`).
        text: String,
        /// DNS lookups a receiver spends on it, those inside an include's target
        /// included (RFC 7208 4.6.4).
        lookups: usize,
    },
}

impl Rule {
    pub fn qualifier(&self) -> Qualifier {
        match self {
            Rule::Static { qualifier, .. } | Rule::Dynamic { qualifier, .. } => *qualifier,
        }
    }

    pub fn lookups(&self) -> usize {
        match self {
            Rule::Static { .. } => 0,
            Rule::Dynamic { lookups, .. } => *lookups,
        }
    }
}

/// What decides when no rule matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Terminal {
    /// The effective `all` (the source's own, or the one a redirect carried).
    All(#[serde(with = "qualifier_char")] Qualifier),
    /// No `all` and no redirect: neutral (RFC 7208 4.7).
    Absent,
    /// A redirect whose target depends on the message (a macro other than `%{d}`):
    /// left to the receiver as `redirect=<text>`.
    Redirect { text: String, lookups: usize },
}

impl Terminal {
    /// The qualifier whose result the terminal gives, when it is fixed: rules just
    /// before it with the same qualifier change nothing.
    pub fn qualifier(&self) -> Option<Qualifier> {
        match self {
            Terminal::All(q) => Some(*q),
            Terminal::Absent => Some(Qualifier::Neutral),
            Terminal::Redirect { .. } => None,
        }
    }

    pub fn lookups(&self) -> usize {
        match self {
            Terminal::Redirect { lookups, .. } => *lookups,
            Terminal::All(_) | Terminal::Absent => 0,
        }
    }
}

/// A record flattened for one mail domain, ready for [`pack`](super::pack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub rules: Vec<Rule>,
    pub terminal: Terminal,
    /// The source's top-level `exp=` with `%{d}` replaced by the mail domain,
    /// published on every part so a fail decided in any part has it.
    pub exp: Option<String>,
    /// Each include, redirect, `a` and `mx` expanded, at any depth, in order.
    pub details: Vec<TermDetail>,
    pub warnings: Vec<Warning>,
    /// Every name and type asked (answered or not), for the caller to schedule
    /// refreshes by the TTLs it knows.
    pub queried: Vec<(String, RecordType)>,
}

/// How one include, redirect, `a` or `mx` term was expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermDetail {
    /// `include:_spf.example.com`, `redirect:example.net`, `a:mail.example.com`,
    /// `mx:example.com` (target lower case; CIDR lengths are not part of the key).
    pub key: String,
    /// The addresses the term authorises (for a redirect: where its target passes).
    /// Empty for an include left to the receiver.
    pub v4: Ip4Set,
    pub v6: Ip6Set,
    /// The include's target has terms that depend on the message, so it is
    /// published as `include:<target>` for the receiver to evaluate.
    pub kept_live: bool,
    /// Addresses a provider dropped that stay authorised until their hold-down ends
    /// (already part of `v4`/`v6`).
    pub held_v4: Ip4Set,
    pub held_v6: Ip6Set,
    /// When each held range leaves (Unix time), for the status board.
    pub held_until: Vec<(u64, String)>,
    /// The upstream lookup failed temporarily and the last good result was used.
    pub from_last_good: bool,
    /// Seconds since the result was fetched (0 when fresh).
    pub age: u64,
}

/// How bad a problem is; the caller decides how to log it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Warning,
    Error,
}

/// A problem that did not stop the expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub level: Level,
    /// The term key (see [`TermDetail::key`]).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The clock and the safety windows of one expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandOptions {
    /// Seconds since the Unix epoch: the engine reads no clock, so tests control time.
    pub now: u64,
    /// How long a range a provider dropped stays authorised.
    pub hold_down: Duration,
    /// A last good result older than this is still used, but reported as an error.
    pub max_stale: Duration,
}

/// The default hold-down of dropped ranges: 48 hours.
pub const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(48 * 3600);
/// The default age after which a last good result is an error: 7 days.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(7 * 24 * 3600);

impl ExpandOptions {
    /// The defaults, at `now` (seconds since the Unix epoch).
    pub fn at(now: u64) -> Self {
        Self {
            now,
            hold_down: DEFAULT_HOLD_DOWN,
            max_stale: DEFAULT_MAX_STALE,
        }
    }

    /// The defaults, at a `SystemTime` (times before the epoch are the epoch).
    pub fn at_time(now: std::time::SystemTime) -> Self {
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::at(secs)
    }
}

/// Why a record could not be expanded. `path` names the terms from the top-level
/// record down to the one at fault, e.g. `include:a.example -> include:b.example`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// The target has no SPF record: the include or redirect is permerror (RFC 7208
    /// 5.2, 6.1) for every client, which flattening must not hide.
    #[error("{path}: {target} has no SPF record, so receivers answer permerror (RFC 7208 5.2)")]
    NoRecord { path: String, target: String },
    #[error("{path}: {target} includes or redirects back to itself (a loop)")]
    Loop { path: String, target: String },
    /// A syntax error, two `v=spf1` records, an invalid domain, nesting too deep.
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    /// A temporary DNS failure with no last good result to fall back on.
    #[error("{path}: {error}; no earlier result to fall back on")]
    Temporary { path: String, error: String },
}

/// Serialises a qualifier as its character (`+ - ~ ?`).
mod qualifier_char {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::spf::Qualifier;

    pub fn serialize<S: Serializer>(q: &Qualifier, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_char(q.as_char())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Qualifier, D::Error> {
        let c = char::deserialize(d)?;
        Qualifier::from_char(c).ok_or_else(|| serde::de::Error::custom(format!("`{c}` is not a qualifier")))
    }
}

/// The prefix a term is written with: nothing for pass, the character otherwise.
pub fn prefix(q: Qualifier) -> &'static str {
    match q {
        Qualifier::Pass => "",
        Qualifier::Fail => "-",
        Qualifier::SoftFail => "~",
        Qualifier::Neutral => "?",
    }
}

/// A target's record flattened: what a redirect hands over, and what an include's
/// pass sets are computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Body {
    pub rules: Vec<Rule>,
    pub terminal: Terminal,
    /// The lookups a receiver spends evaluating the record live (its include and
    /// redirect targets included), for when it must be left as `include:<target>`.
    pub live: usize,
}

impl Body {
    /// Where the record evaluates to pass, or `None` when that depends on the
    /// message. Earlier `-`, `~` and `?` rules shadow later pass rules (first match
    /// wins); `+all` passes every address no rule claimed.
    pub fn pass_sets(&self) -> Option<(Ip4Set, Ip6Set)> {
        let mut claimed = (Ip4Set::new(), Ip6Set::new());
        let mut pass = (Ip4Set::new(), Ip6Set::new());
        for rule in &self.rules {
            let Rule::Static { qualifier, v4, v6 } = rule else {
                return None;
            };
            if *qualifier == Qualifier::Pass {
                pass.0 = pass.0.union(&v4.difference(&claimed.0));
                pass.1 = pass.1.union(&v6.difference(&claimed.1));
            }
            claimed = (claimed.0.union(v4), claimed.1.union(v6));
        }
        match self.terminal {
            Terminal::Redirect { .. } => return None,
            Terminal::All(Qualifier::Pass) => {
                pass.0 = pass.0.union(&Ip4Set::full().difference(&claimed.0));
                pass.1 = pass.1.union(&Ip6Set::full().difference(&claimed.1));
            }
            Terminal::All(_) | Terminal::Absent => {}
        }
        Some(pass)
    }
}
