#![no_main]
//! See `payroute::fuzzing::wechatpay_statement`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| payroute::fuzzing::wechatpay_statement(data));
