//! The shared protocol test vectors (`../shared/protocols/testvectors`), read as JSON.

use std::path::PathBuf;

use serde_json::Value;

/// Where the vectors and their keys are.
pub fn dir() -> PathBuf {
    super::repo().join("../shared/protocols/testvectors")
}

/// One channel's vectors file, `<channel>.json`.
pub fn load(channel: &str) -> Value {
    let path = dir().join(format!("{channel}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} (shared/ must sit beside the project): {e}",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// A key file of the vectors, as text.
pub fn key_text(name: &str) -> String {
    std::fs::read_to_string(dir().join("keys").join(name)).unwrap()
}

/// A vector field that is a string.
pub fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}
