//! Helpers shared by the channels' typed wire structs.

use serde::Deserialize;

/// A status field as the channel wrote it: one of the values we know, or something else.
///
/// An unfamiliar value is kept as text rather than failing the whole answer or being guessed
/// into a known state: the adapters treat it as an unknown outcome, never as a failure.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Known<T> {
    Known(T),
    Other(String),
}

impl<T: Copy> Known<T> {
    /// The known value, if it is one.
    pub fn known(&self) -> Option<T> {
        match self {
            Known::Known(t) => Some(*t),
            Known::Other(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "UPPERCASE")]
    enum State {
        Paid,
    }

    #[test]
    fn unfamiliar_values_stay_text() {
        let k: Known<State> = serde_json::from_str("\"PAID\"").unwrap();
        assert_eq!(k.known(), Some(State::Paid));
        let k: Known<State> = serde_json::from_str("\"PAID_LATER\"").unwrap();
        assert_eq!(k, Known::Other("PAID_LATER".into()));
        assert_eq!(k.known(), None);
    }
}
