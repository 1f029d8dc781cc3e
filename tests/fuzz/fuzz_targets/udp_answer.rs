//! The whole UDP answer function, fast path against general path: see [`spfd_fuzz::udp_answer`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spfd_fuzz::udp_answer(data));
