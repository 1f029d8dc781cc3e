//! How far the evaluation of one record got ([`Outcome`]), why it stopped
//! ([`Abort`]), whether a mechanism matched ([`Match`]), and the limits of RFC 7208
//! 4.6.4 that stop it.

use super::dns::LookupError;
use super::macro_string::MacroString;
use super::result::SpfResult;

/// RFC 7208 4.6.4.
pub(super) const MAX_LOOKUPS: usize = 10;
pub(super) const MAX_VOID_LOOKUPS: usize = 2;
pub(super) const MAX_MX_NAMES: usize = 10;
pub(super) const MAX_PTR_NAMES: usize = 10;
/// With the limits lifted, evaluation still stops here (permerror): a record that
/// needs more is broken, not large.
pub(super) const SAFETY_LOOKUPS: usize = 1000;
pub(super) const SAFETY_DEPTH: usize = 50;

/// How far one record's evaluation got, before it is turned into a [`Verdict`].
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) result: SpfResult,
    pub(super) decided_by: Option<String>,
    pub(super) path: Vec<String>,
    pub(super) via: Vec<String>,
    pub(super) reason: Option<String>,
    /// The `exp=` of the record that decided and that record's domain. An include's
    /// is dropped; a redirect's target replaces the redirecting record's (6.2).
    pub(super) exp: Option<(MacroString, String)>,
}

impl Outcome {
    pub(super) fn new(
        result: SpfResult,
        domain: &str,
        decided_by: Option<&str>,
        reason: Option<String>,
    ) -> Self {
        Self {
            result,
            decided_by: decided_by.map(str::to_string),
            path: vec![domain.to_string()],
            via: Vec::new(),
            reason,
            exp: None,
        }
    }

    /// This outcome as reached from `domain` through the term `via`.
    pub(super) fn under(mut self, domain: &str, via: &str) -> Self {
        self.path.insert(0, domain.to_string());
        self.via.insert(0, via.to_string());
        self
    }
}

/// Stops the evaluation of a record with an error result.
#[derive(Debug)]
pub(super) struct Abort {
    pub(super) result: SpfResult,
    pub(super) reason: String,
    /// The error came from an include target: its own outcome, to keep the path.
    pub(super) inner: Option<Box<Outcome>>,
}

impl Abort {
    pub(super) fn perm(reason: String) -> Self {
        Self {
            result: SpfResult::PermError,
            reason,
            inner: None,
        }
    }

    pub(super) fn temp(what: &str, error: &LookupError) -> Self {
        Self {
            result: SpfResult::TempError,
            reason: format!("{what}: {error}"),
            inner: None,
        }
    }

    pub(super) fn into_outcome(self, domain: &str, term: &str) -> Outcome {
        match self.inner {
            Some(inner) => inner.under(domain, term),
            None => Outcome::new(self.result, domain, Some(term), Some(self.reason)),
        }
    }
}

/// Whether a mechanism matched.
pub(super) enum Match {
    No,
    Yes,
    /// An include whose target passed: its outcome, for the path.
    Through(Outcome),
}

impl From<bool> for Match {
    fn from(matched: bool) -> Self {
        if matched { Match::Yes } else { Match::No }
    }
}
