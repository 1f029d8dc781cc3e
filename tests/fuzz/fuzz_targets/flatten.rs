//! The flattener over a fake DNS: see [`spfd_fuzz::flatten`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spfd_fuzz::flatten(data);
});
