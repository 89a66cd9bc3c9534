#![no_main]
//! See `payroute::fuzzing::receiver`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| payroute::fuzzing::receiver(data));
