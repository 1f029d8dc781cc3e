//! SPF (RFC 7208): the record grammar, lookup cost, macro expansion and an evaluator.
//!
//! (Being written: see the module files. The public API the rest of spfd uses is
//! `Record::parse`, `Record::terms`, `Term::text`, `Record::lookup_terms`, `Record::warnings`.)
