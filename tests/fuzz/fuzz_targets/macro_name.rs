//! The macro-mode per-address name parser: see [`spfd_fuzz::macro_name`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spfd_fuzz::macro_name(data));
