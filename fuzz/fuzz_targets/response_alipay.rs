#![no_main]
//! See `payroute::fuzzing::Notifiers::alipay_response`: an answer never panics its parser.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = payroute::fuzzing::notifiers().alipay_response(data);
});
