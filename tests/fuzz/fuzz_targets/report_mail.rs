//! Report mail decoding: see [`spfd_fuzz::report_mail`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spfd_fuzz::report_mail(data));
