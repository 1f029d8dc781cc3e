//! The policy loader: see [`spfd_fuzz::policy_load`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spfd_fuzz::policy_load(data));
