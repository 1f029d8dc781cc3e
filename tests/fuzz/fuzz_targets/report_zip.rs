//! Report zip decoding: see [`spfd_fuzz::report_zip`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spfd_fuzz::report_zip(data));
