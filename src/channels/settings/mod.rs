//! What every channel kind's settings are made of: the common keys (fee, limits, circuit,
//! rate limit, timeouts, windows), key references and their loading, the sandbox's TEST key
//! fingerprints, and `Problem`s located at a line and column of routes.yaml.

pub mod common;
pub mod keys;
pub mod problem;
pub mod test_keys;
