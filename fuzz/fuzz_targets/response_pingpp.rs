#![no_main]
//! See `payroute::fuzzing::Notifiers::pingpp_response`: an answer never panics its parser.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = payroute::fuzzing::notifiers().pingpp_response(data);
});
