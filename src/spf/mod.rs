//! SPF (RFC 7208): the record grammar, lookup cost and lints, macro expansion, and a
//! check_host() evaluator that says which term decided and through which domains.
//!
//! - [`record`]: [`Record::parse`] of TXT text into terms (exact text kept) with
//!   [`Record::lookup_terms`]; the per-term grammar lives in `term`, the lints
//!   ([`Record::warnings`]) in `lint`, the strict check of target names
//!   ([`Record::name_errors`]) in `targets`. The parsed terms ([`Term`], [`Mechanism`],
//!   [`Modifier`]) are in `directive`, [`ParseError`] in `error` and [`SpfResult`] in
//!   `result`: leaves that the grammar and the evaluator both import.
//! - [`macro_string`]: the macro-string grammar ([`MacroString`]) behind domain-specs
//!   and explanations; [`macros`] expands them ([`MacroContext`]).
//! - [`eval`]: [`check_host`] and [`check_record`] against any [`DnsLookup`] (see
//!   [`dns`]); [`MemoryDns`] answers from memory. What they are asked and answer
//!   ([`Query`], [`EvalOptions`], [`Verdict`]) is in `query`; the per-record state
//!   and the RFC 7208 4.6.4 limits in `outcome`; the mechanisms in `mechanisms`.

mod directive;
pub mod dns;
mod error;
pub mod eval;
mod lint;
pub mod macro_string;
pub mod macros;
mod mechanisms;
pub mod memory;
mod outcome;
mod query;
pub mod record;
mod result;
mod targets;
mod term;

pub use directive::{Directive, DomainSpec, Mechanism, Modifier, Qualifier, Term, TermKind};
pub use dns::{DnsLookup, LookupError, reverse_name};
pub use error::ParseError;
pub use eval::{check_host, check_record};
pub use lint::{MAX_LOOKUP_TERMS, Warning};
pub use macro_string::{Macro, MacroItem, MacroLetter, MacroString};
pub use macros::{MacroContext, canonical_ip};
pub use memory::MemoryDns;
pub use query::{EvalOptions, Query, Verdict};
pub use record::{Record, VERSION, is_spf_record};
pub use result::SpfResult;
