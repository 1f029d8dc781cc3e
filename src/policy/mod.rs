//! Policy files: one per mail domain.
pub mod dkim;
pub mod dmarc;
