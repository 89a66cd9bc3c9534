#![no_main]
//! See `payroute::fuzzing::split`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| payroute::fuzzing::split(data));
