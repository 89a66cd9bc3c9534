//! Fees measured from statements, beside routes.yaml's: what `/admin/routes`, `explain`,
//! `check` and the log show so that ops correct a channel's `fee` with numbers.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;

use super::report::{Report, RunStatus};
use crate::config::{FeeSchedule, Rate};

/// The fee rate a channel's statement showed, beside routes.yaml's estimate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MeasuredFee {
    /// The day of the statement.
    pub date: NaiveDate,
    pub paid_amount: crate::money::Fen,
    pub actual_fee: crate::money::Fen,
    pub effective_rate_ppm: Option<u64>,
    pub estimated_rate_ppm: Option<u64>,
    /// The fee schedule the estimate came from (absent in reports of older versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// How far (in parts per million of the paid amount) the measured fee rate may be from the
/// estimate before payroute warns that routes.yaml's `fee` is off.
pub const FEE_WARN_PPM: u64 = 500;

/// A measured fee held against a channel's fee schedule of now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeeCheck {
    /// Nothing was paid that day, so nothing was measured.
    NotMeasured,
    /// Within [`FEE_WARN_PPM`] of the estimate.
    Agrees,
    /// Further apart than [`FEE_WARN_PPM`] (rates in ppm).
    Differs { measured: u64, estimated: u64 },
    /// routes.yaml's fee changed since that statement: the next reconciliation tells.
    ScheduleChanged,
}

impl MeasuredFee {
    /// The fees of a completed report.
    pub fn of(report: &Report) -> MeasuredFee {
        MeasuredFee {
            date: report.date,
            paid_amount: report.fees.paid_amount,
            actual_fee: report.fees.actual_fee,
            effective_rate_ppm: report.fees.effective_rate_ppm,
            estimated_rate_ppm: report.fees.estimated_rate_ppm,
            schedule: report.fees.schedule.clone(),
        }
    }

    /// (measured, estimated) rates in ppm when they are further apart than [`FEE_WARN_PPM`].
    pub fn off(&self) -> Option<(u64, u64)> {
        let (m, e) = (self.effective_rate_ppm?, self.estimated_rate_ppm?);
        (m.abs_diff(e) > FEE_WARN_PPM).then_some((m, e))
    }

    /// This measurement against the channel's `fee` of now.
    pub fn check(&self, current: &FeeSchedule) -> FeeCheck {
        if self.effective_rate_ppm.is_none() {
            return FeeCheck::NotMeasured;
        }
        if self
            .schedule
            .as_deref()
            .is_some_and(|s| s != current.describe())
        {
            return FeeCheck::ScheduleChanged;
        }
        match self.off() {
            Some((measured, estimated)) => FeeCheck::Differs {
                measured,
                estimated,
            },
            None => FeeCheck::Agrees,
        }
    }

    /// One line for people: what the statement showed and what routes.yaml gives.
    pub fn describe(&self, channel: &str, current: &FeeSchedule) -> String {
        let rate = |ppm: Option<u64>| ppm.map_or("-".to_string(), |p| Rate { ppm: p }.to_string());
        let head = format!(
            "channel `{channel}`: the statement of {} shows a fee rate of {} ({} fen on {} fen paid)",
            self.date,
            rate(self.effective_rate_ppm),
            self.actual_fee,
            self.paid_amount
        );
        match self.check(current) {
            FeeCheck::NotMeasured => format!("{head}: nothing to measure"),
            FeeCheck::Agrees => format!(
                "{head}, routes.yaml's fee gives {}",
                rate(self.estimated_rate_ppm)
            ),
            FeeCheck::Differs { estimated, .. } => format!(
                "{head}, routes.yaml's fee gives {}: correct its `fee` (routing ranks channels by it)",
                Rate { ppm: estimated }
            ),
            FeeCheck::ScheduleChanged => format!(
                "{head} (under an earlier fee in routes.yaml: the next reconciliation measures the new one)"
            ),
        }
    }
}

/// The latest completed report's fees of each channel, from the reports stored under
/// `data_dir` (none when it holds none).
pub fn measured_fees(data_dir: &Path) -> HashMap<String, MeasuredFee> {
    let mut out: HashMap<String, MeasuredFee> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(data_dir.join("reconciliations")) else {
        return out;
    };
    for entry in entries.flatten().take(10_000) {
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(report) = serde_json::from_slice::<Report>(&bytes) else {
            continue;
        };
        if report.status != RunStatus::Completed {
            continue;
        }
        let newer = out
            .get(&report.channel)
            .is_none_or(|m| m.date < report.date);
        if newer {
            out.insert(report.channel.clone(), MeasuredFee::of(&report));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Fen;

    fn measured(rate_ppm: u64, estimated_ppm: u64, schedule: Option<&str>) -> MeasuredFee {
        MeasuredFee {
            date: NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
            paid_amount: Fen(1_000_000),
            actual_fee: Fen(rate_ppm),
            effective_rate_ppm: Some(rate_ppm),
            estimated_rate_ppm: Some(estimated_ppm),
            schedule: schedule.map(str::to_string),
        }
    }

    fn schedule(rate: &str) -> FeeSchedule {
        FeeSchedule {
            rate: Rate::parse(rate).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn a_measured_rate_is_held_against_the_schedule_it_was_estimated_with() {
        let now = schedule("0.55%");
        let same = Some(now.describe());
        let m = measured(6000, 5500, same.as_deref());
        assert_eq!(
            m.check(&now),
            FeeCheck::Agrees,
            "500 ppm apart is within the threshold"
        );
        let m = measured(6001, 5500, same.as_deref());
        assert_eq!(
            m.check(&now),
            FeeCheck::Differs {
                measured: 6001,
                estimated: 5500
            }
        );
        let text = m.describe("alipay", &now);
        assert!(text.contains("0.6001%") && text.contains("0.55%"), "{text}");
        assert!(text.contains("correct its `fee`"), "{text}");
        // Ops corrected routes.yaml: no warning until a statement under the new fee says so.
        assert_eq!(m.check(&schedule("0.6%")), FeeCheck::ScheduleChanged);
        // A report of an older version names no schedule: compared as it is.
        assert!(matches!(
            measured(6001, 5500, None).check(&schedule("0.6%")),
            FeeCheck::Differs { .. }
        ));
        let mut nothing = measured(0, 0, same.as_deref());
        (nothing.effective_rate_ppm, nothing.estimated_rate_ppm) = (None, None);
        assert_eq!(nothing.check(&now), FeeCheck::NotMeasured);
    }
}
