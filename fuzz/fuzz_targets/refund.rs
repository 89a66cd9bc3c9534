#![no_main]
//! See `payroute::fuzzing::refund`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| payroute::fuzzing::refund(data));
