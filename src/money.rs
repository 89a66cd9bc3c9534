//! Amounts. Integers in fen everywhere; conversion to a channel's decimal text is exact.

/// The largest single amount payroute accepts: 100,000,000.00 yuan (Alipay's upper bound).
pub const MAX_AMOUNT_FEN: u64 = 10_000_000_000;

/// An amount in fen (1 yuan = 100 fen), from the API down to the channel adapters. Stored and
/// served as the plain integer.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Fen(pub u64);

impl Fen {
    /// Zero fen.
    pub const ZERO: Fen = Fen(0);

    /// The number of fen.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The yuan text channels want (`"88.88"`), exactly.
    pub fn to_yuan(self) -> String {
        fen_to_yuan(self.0)
    }

    /// Parses a channel's yuan text exactly (see [`yuan_to_fen`]).
    pub fn from_yuan(text: &str) -> Option<Fen> {
        yuan_to_fen(text).map(Fen)
    }

    /// `self - other`, or zero.
    pub fn saturating_sub(self, other: Fen) -> Fen {
        Fen(self.0.saturating_sub(other.0))
    }

    /// `self + other`, unless it overflows.
    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }
}

impl Fen {
    /// Whether this is zero fen (records leave zero totals out).
    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

impl std::ops::Add for Fen {
    type Output = Fen;
    /// Sums of amounts payroute accepts (each at most [`MAX_AMOUNT_FEN`]) stay far below
    /// `u64::MAX`.
    fn add(self, other: Fen) -> Fen {
        Fen(self.0 + other.0)
    }
}

impl std::ops::AddAssign for Fen {
    fn add_assign(&mut self, other: Fen) {
        self.0 += other.0;
    }
}

impl std::fmt::Display for Fen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Fen {
    fn from(fen: u64) -> Self {
        Fen(fen)
    }
}

/// `8888` → `"88.88"`, `100` → `"1.00"`, `5` → `"0.05"`.
pub fn fen_to_yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// `"88.88"`, `"88.8"`, `"88"` → fen. Rejects signs, exponents, more than two decimals,
/// and anything that is not plain ASCII digits.
pub fn yuan_to_fen(text: &str) -> Option<u64> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() || whole.len() > 12 || frac.len() > 2 {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.contains('.') && frac.is_empty() {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    whole.checked_mul(100)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fen_to_yuan_is_exact() {
        for (fen, yuan) in [
            (0, "0.00"),
            (1, "0.01"),
            (10, "0.10"),
            (100, "1.00"),
            (1999, "19.99"),
            (8888, "88.88"),
            (MAX_AMOUNT_FEN, "100000000.00"),
        ] {
            assert_eq!(fen_to_yuan(fen), yuan);
            assert_eq!(yuan_to_fen(yuan), Some(fen));
        }
    }

    #[test]
    fn yuan_parsing_rejects_what_is_not_an_amount() {
        for bad in [
            "", ".5", "1.", "1.234", "-1.00", "+1", "1e3", "1,00", " 1.00", "abc",
        ] {
            assert_eq!(yuan_to_fen(bad), None, "{bad:?}");
        }
        assert_eq!(yuan_to_fen("88.8"), Some(8880));
        assert_eq!(yuan_to_fen("12"), Some(1200));
    }
}
