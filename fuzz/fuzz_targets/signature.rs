#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cascade_fuzzing::signature(data));
