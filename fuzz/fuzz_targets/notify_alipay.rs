#![no_main]
//! See `payroute::fuzzing::Notifiers::alipay`: a notification never panics its verifier.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = payroute::fuzzing::notifiers().alipay(data);
});
