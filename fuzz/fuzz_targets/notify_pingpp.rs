#![no_main]
//! See `payroute::fuzzing::Notifiers::pingpp`: a notification never panics its verifier.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = payroute::fuzzing::notifiers().pingpp(data);
});
