//! The parsed form of one SPF term (RFC 7208 4.6.1, 5, 6): qualifier, mechanism,
//! directive and modifier, with the term's exact source text. The grammar that
//! builds them is in `term`.

use ipnet::{Ipv4Net, Ipv6Net};

use super::macro_string::MacroString;
use super::result::SpfResult;

/// A domain-spec (RFC 7208 7.1): a macro-string already checked to end in a macro
/// or a top-level label and to use no explanation-only macro letters.
pub type DomainSpec = MacroString;

/// `qualifier = "+" / "-" / "?" / "~"`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Qualifier {
    #[default]
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    pub fn from_char(c: char) -> Option<Self> {
        match c {
            '+' => Some(Self::Pass),
            '-' => Some(Self::Fail),
            '~' => Some(Self::SoftFail),
            '?' => Some(Self::Neutral),
            _ => None,
        }
    }

    pub fn as_char(self) -> char {
        match self {
            Self::Pass => '+',
            Self::Fail => '-',
            Self::SoftFail => '~',
            Self::Neutral => '?',
        }
    }

    /// The result of check_host() when a mechanism with this qualifier matches.
    pub fn result(self) -> SpfResult {
        match self {
            Self::Pass => SpfResult::Pass,
            Self::Fail => SpfResult::Fail,
            Self::SoftFail => SpfResult::SoftFail,
            Self::Neutral => SpfResult::Neutral,
        }
    }
}

/// A mechanism (RFC 7208 5). CIDR lengths are `None` when not written; the
/// defaults (32 and 128) apply then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(DomainSpec),
    A {
        domain: Option<DomainSpec>,
        cidr4: Option<u8>,
        cidr6: Option<u8>,
    },
    Mx {
        domain: Option<DomainSpec>,
        cidr4: Option<u8>,
        cidr6: Option<u8>,
    },
    Ptr(Option<DomainSpec>),
    /// The network as written: host bits after the prefix are kept (`contains`
    /// masks them, as RFC 7208 5.6 says the length applies).
    Ip4(Ipv4Net),
    Ip6(Ipv6Net),
    Exists(DomainSpec),
}

impl Mechanism {
    /// The name in lower case, as the grammar spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Include(_) => "include",
            Self::A { .. } => "a",
            Self::Mx { .. } => "mx",
            Self::Ptr(_) => "ptr",
            Self::Ip4(_) => "ip4",
            Self::Ip6(_) => "ip6",
            Self::Exists(_) => "exists",
        }
    }

    /// True for the mechanisms that count against the limit of 10 (RFC 7208 4.6.4).
    pub fn does_lookup(&self) -> bool {
        matches!(
            self,
            Self::Include(_) | Self::A { .. } | Self::Mx { .. } | Self::Ptr(_) | Self::Exists(_)
        )
    }

    /// The domain-spec, when one is written.
    pub fn domain_spec(&self) -> Option<&DomainSpec> {
        match self {
            Self::Include(d) | Self::Exists(d) => Some(d),
            Self::A { domain, .. } | Self::Mx { domain, .. } | Self::Ptr(domain) => domain.as_ref(),
            Self::All | Self::Ip4(_) | Self::Ip6(_) => None,
        }
    }
}

/// `directive = [ qualifier ] mechanism`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
}

/// A modifier (RFC 7208 6). Names are case-insensitive; `Unknown` keeps the name as
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    Redirect(DomainSpec),
    Exp(DomainSpec),
    Unknown { name: String, value: MacroString },
}

/// `term = directive / modifier`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermKind {
    Directive(Directive),
    Modifier(Modifier),
}

/// One term: its exact source text, where it starts, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub(crate) text: String,
    /// Byte offset of the term in the record text, for warnings.
    pub(crate) offset: usize,
    pub(crate) kind: TermKind,
}

impl Term {
    /// The term exactly as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Byte offset of the term in the record text it was parsed from.
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn kind(&self) -> &TermKind {
        &self.kind
    }

    pub fn directive(&self) -> Option<&Directive> {
        match &self.kind {
            TermKind::Directive(d) => Some(d),
            TermKind::Modifier(_) => None,
        }
    }

    pub fn modifier(&self) -> Option<&Modifier> {
        match &self.kind {
            TermKind::Modifier(m) => Some(m),
            TermKind::Directive(_) => None,
        }
    }
}
