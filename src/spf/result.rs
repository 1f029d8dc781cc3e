//! The results of check_host() (RFC 7208 2.6) and their names.

use std::fmt;

/// The results of check_host() (RFC 7208 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    None,
    Neutral,
    Pass,
    Fail,
    SoftFail,
    TempError,
    PermError,
}

impl SpfResult {
    /// The name RFC 7208 and Received-SPF use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Neutral => "neutral",
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::SoftFail => "softfail",
            Self::TempError => "temperror",
            Self::PermError => "permerror",
        }
    }

    /// The result with this name (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::None,
            Self::Neutral,
            Self::Pass,
            Self::Fail,
            Self::SoftFail,
            Self::TempError,
            Self::PermError,
        ]
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for SpfResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_names() {
        for r in [
            SpfResult::None,
            SpfResult::Neutral,
            SpfResult::Pass,
            SpfResult::Fail,
            SpfResult::SoftFail,
            SpfResult::TempError,
            SpfResult::PermError,
        ] {
            assert_eq!(SpfResult::from_name(&r.to_string().to_uppercase()), Some(r));
        }
        assert_eq!(SpfResult::from_name("unknown"), None);
    }
}
