#![no_main]
//! See `payroute::fuzzing::split_return`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| payroute::fuzzing::split_return(data));
