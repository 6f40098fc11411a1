#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden_package::fuzz_targets::manifest(data));
