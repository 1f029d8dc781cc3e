//! The SPF record parser: see [`spfd_fuzz::spf_record`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spfd_fuzz::spf_record(data));
