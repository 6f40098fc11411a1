#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden_registry::fuzz_targets::index(data));
