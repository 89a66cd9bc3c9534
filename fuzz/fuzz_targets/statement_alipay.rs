#![no_main]
//! See `payroute::fuzzing::alipay_statement`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| payroute::fuzzing::alipay_statement(data));
