//! SPF (RFC 7208): the record grammar, lookup cost and lints, macro expansion, and a
//! check_host() evaluator that says which term decided and through which domains.
//!
//! - [`record`]: [`Record::parse`] of TXT text into terms (exact text kept) with
//!   [`Record::lookup_terms`]; the per-term grammar lives in `term`, the lints
//!   ([`Record::warnings`]) in `lint`.
//! - [`macro_string`]: the macro-string grammar ([`MacroString`]) behind domain-specs
//!   and explanations; [`macros`] expands them ([`MacroContext`]).
//! - [`eval`]: [`check_host`] and [`check_record`] against any [`DnsLookup`] (see
//!   [`dns`]); [`MemoryDns`] answers from memory.

pub mod dns;
pub mod eval;
mod lint;
pub mod macro_string;
pub mod macros;
mod mechanisms;
pub mod memory;
pub mod name;
pub mod record;
mod term;

pub use dns::{DnsLookup, LookupError, reverse_name};
pub use eval::{EvalOptions, Query, SpfResult, Verdict, check_host, check_record};
pub use lint::{MAX_LOOKUP_TERMS, Warning};
pub use macro_string::{Macro, MacroItem, MacroLetter, MacroString};
pub use macros::{MacroContext, canonical_ip};
pub use memory::MemoryDns;
pub use record::{
    Directive, DomainSpec, Mechanism, Modifier, ParseError, Qualifier, Record, Term, TermKind, VERSION,
    is_spf_record,
};
