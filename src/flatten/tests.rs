//! The flattener's tests as a whole: provider trees flattened and compared with their
//! source by check_host() (`equivalence`), upstream failures with controlled time
//! (`outage`), and the in-memory world both use (`support`).

mod equivalence;
mod outage;
mod support;
