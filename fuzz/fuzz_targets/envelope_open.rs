#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| scoped_cache::fuzzing::envelope_open(data));
