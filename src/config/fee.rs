//! Fee schedules: an exact decimal rate plus fixed part, minimum and maximum, all in fen.

use serde_saphyr::Location;

use crate::channels::settings::common::RawFee;

/// A rate in parts per million (`"0.38%"` → 3800). Exact: no floating point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rate {
    pub ppm: u64,
}

impl Rate {
    /// Parses `"0.6%"`, `"0.38%"`, `"0.375%"` (at most four decimals of a percent).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let t = text.trim();
        let num = t
            .strip_suffix('%')
            .ok_or_else(|| format!("rate `{text}` must be a percentage such as \"0.38%\""))?;
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits_ok(whole)
            || !digits_ok(frac)
            || (num.contains('.') && frac.is_empty())
        {
            return Err(format!("rate `{text}` is not a decimal percentage"));
        }
        if frac.len() > 4 {
            return Err(format!("rate `{text}` has more than four decimals"));
        }
        let whole: u64 = whole
            .parse()
            .map_err(|_| format!("rate `{text}` is too large"))?;
        let frac_ppm: u64 = format!("{frac:0<4}").parse().unwrap_or(0);
        let ppm = whole * 10_000 + frac_ppm;
        if ppm > 1_000_000 {
            return Err(format!("rate `{text}` is above 100%"));
        }
        Ok(Rate { ppm })
    }
}

impl std::fmt::Display for Rate {
    /// As routes.yaml writes it: 6000 → `0.6%`, 3750 → `0.375%`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, frac) = (self.ppm / 10_000, self.ppm % 10_000);
        if frac == 0 {
            return write!(f, "{whole}%");
        }
        let digits = format!("{frac:04}");
        write!(f, "{whole}.{}%", digits.trim_end_matches('0'))
    }
}

/// What a channel charges per transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeeSchedule {
    pub rate: Rate,
    pub fixed: u64,
    pub min: u64,
    pub max: Option<u64>,
}

impl FeeSchedule {
    /// Validates the raw fee section; an error says which value (`rate` or `max`) is wrong.
    pub fn from_raw(raw: &RawFee) -> Result<FeeSchedule, (String, &Location)> {
        let rate = match &raw.rate {
            Some(r) => Rate::parse(&r.value).map_err(|m| (m, &r.referenced))?,
            None => Rate::default(),
        };
        let f = FeeSchedule {
            rate,
            fixed: raw.fixed.unwrap_or(0),
            min: raw.min.unwrap_or(0),
            max: raw.max.as_ref().map(|m| m.value),
        };
        if let Some(max) = &raw.max {
            if max.value < f.min {
                return Err(("max is below min".into(), &max.referenced));
            }
        }
        Ok(f)
    }

    /// The schedule in words (`0.6% + 0 fen, min 0, max none`): reports name the schedule
    /// their estimate came from, so a later look can tell whether routes.yaml changed since.
    pub fn describe(&self) -> String {
        let max = self.max.map_or("none".to_string(), |m| m.to_string());
        format!(
            "{} + {} fen, min {}, max {max}",
            self.rate, self.fixed, self.min
        )
    }

    /// The fee for `amount` fen: rate rounded half up to the fen, plus the fixed part,
    /// clamped to [min, max].
    pub fn estimate(&self, amount: u64) -> u64 {
        let proportional = (u128::from(amount) * u128::from(self.rate.ppm) + 500_000) / 1_000_000;
        let fee = u64::try_from(proportional)
            .unwrap_or(u64::MAX)
            .saturating_add(self.fixed);
        let fee = fee.max(self.min);
        match self.max {
            Some(max) => fee.min(max),
            None => fee,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_exactly() {
        assert_eq!(Rate::parse("0.6%").unwrap().ppm, 6000);
        assert_eq!(Rate::parse("0.38%").unwrap().ppm, 3800);
        assert_eq!(Rate::parse("0.375%").unwrap().ppm, 3750);
        assert_eq!(Rate::parse("1%").unwrap().ppm, 10000);
        for bad in ["0.6", "%", "-1%", "0.12345%", "1e2%", "101%", ".5%", "5.%"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_print_as_they_are_written() {
        for text in ["0.6%", "0.38%", "0.375%", "1%", "0%", "0.0001%", "100%"] {
            assert_eq!(Rate::parse(text).unwrap().to_string(), text);
        }
        let f = FeeSchedule {
            rate: Rate::parse("0.55%").unwrap(),
            fixed: 2,
            min: 1,
            max: Some(500),
        };
        assert_eq!(f.describe(), "0.55% + 2 fen, min 1, max 500");
    }

    #[test]
    fn fee_rounds_half_up_and_clamps() {
        let f = FeeSchedule {
            rate: Rate::parse("0.6%").unwrap(),
            ..Default::default()
        };
        assert_eq!(f.estimate(1999), 12); // 11.994 → 12
        assert_eq!(f.estimate(75), 0); // 0.45 → 0
        assert_eq!(f.estimate(84), 1); // 0.504 → 1
        let g = FeeSchedule {
            rate: Rate::parse("0.38%").unwrap(),
            fixed: 10,
            min: 20,
            max: Some(500),
        };
        assert_eq!(g.estimate(100), 20);
        assert_eq!(g.estimate(1_000_000), 500);
        assert_eq!(g.estimate(100_000), 390);
    }
}
