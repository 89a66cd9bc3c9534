#![no_main]
//! See `payroute::fuzzing::create_payment`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| payroute::fuzzing::create_payment(data));
