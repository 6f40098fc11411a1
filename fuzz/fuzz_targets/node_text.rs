#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden_host::fuzz_targets::node_text(data));
