//! Recurring maintenance windows in a named time zone.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::channels::settings::common::{Day, RawWindow};

/// A compiled window: on `days` (all when empty), from `start` to `end` minutes after local
/// midnight in `tz`; an end at or before the start ends on the next day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub days: Vec<Weekday>,
    pub start: u32,
    pub end: u32,
    pub tz: Tz,
}

fn minutes(text: &str) -> Result<u32, String> {
    let t = NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| format!("`{text}` is not a HH:MM time"))?;
    Ok(t.hour() * 60 + t.minute())
}

fn weekday(d: Day) -> Weekday {
    match d {
        Day::Mon => Weekday::Mon,
        Day::Tue => Weekday::Tue,
        Day::Wed => Weekday::Wed,
        Day::Thu => Weekday::Thu,
        Day::Fri => Weekday::Fri,
        Day::Sat => Weekday::Sat,
        Day::Sun => Weekday::Sun,
    }
}

impl Window {
    /// Validates a raw window.
    pub fn compile(raw: &RawWindow) -> Result<Window, String> {
        let tz_name = raw.timezone.as_deref().unwrap_or("Asia/Shanghai");
        let tz: Tz = tz_name
            .parse()
            .map_err(|_| format!("unknown time zone `{tz_name}`"))?;
        let (start, end) = (minutes(&raw.start)?, minutes(&raw.end)?);
        if start == end {
            return Err("a window needs an end different from its start".into());
        }
        Ok(Window {
            days: raw.days.iter().flatten().map(|d| weekday(*d)).collect(),
            start,
            end,
            tz,
        })
    }

    fn starts_on(&self, day: Weekday) -> bool {
        self.days.is_empty() || self.days.contains(&day)
    }

    /// Whether `now` falls inside the window.
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.tz);
        let m = local.hour() * 60 + local.minute();
        let today = local.weekday();
        if self.start < self.end {
            self.starts_on(today) && (self.start..self.end).contains(&m)
        } else {
            // Crosses midnight: the evening part belongs to today, the morning part to yesterday.
            (self.starts_on(today) && m >= self.start)
                || (self.starts_on(today.pred()) && m < self.end)
        }
    }
}

/// The first minute in the week from `from` at which `covered` holds, if any.
pub fn first_minute_in_week(
    from: DateTime<Utc>,
    covered: impl Fn(DateTime<Utc>) -> bool,
) -> Option<DateTime<Utc>> {
    let start = Utc.from_utc_datetime(
        &from
            .naive_utc()
            .with_second(0)
            .unwrap_or(from.naive_utc())
            .with_nanosecond(0)
            .unwrap_or(from.naive_utc()),
    );
    (0..7 * 24 * 60)
        .map(|i| start + Duration::minutes(i))
        .find(|t| covered(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(days: Option<Vec<Day>>, start: &str, end: &str) -> Window {
        Window::compile(&RawWindow {
            days,
            start: start.into(),
            end: end.into(),
            timezone: None,
        })
        .unwrap()
    }

    fn cst(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn daily_window_across_midnight() {
        let win = w(None, "23:00", "00:30");
        assert!(win.contains(cst(2026, 11, 25, 23, 0)));
        assert!(win.contains(cst(2026, 11, 26, 0, 29)));
        assert!(!win.contains(cst(2026, 11, 26, 0, 30)));
        assert!(!win.contains(cst(2026, 11, 25, 22, 59)));
    }

    #[test]
    fn weekly_window_belongs_to_its_start_day() {
        // 2026-11-29 is a Sunday.
        let win = w(Some(vec![Day::Sun]), "23:30", "01:00");
        assert!(win.contains(cst(2026, 11, 29, 23, 45)));
        assert!(
            win.contains(cst(2026, 11, 30, 0, 45)),
            "Monday morning, started on Sunday"
        );
        assert!(!win.contains(cst(2026, 11, 28, 23, 45)), "Saturday");
        let day = w(Some(vec![Day::Wed]), "02:00", "03:00");
        assert!(day.contains(cst(2026, 11, 25, 2, 30)));
        assert!(!day.contains(cst(2026, 11, 26, 2, 30)));
    }

    #[test]
    fn bad_windows_are_rejected() {
        let bad = |start: &str, end: &str, tz: Option<&str>| {
            Window::compile(&RawWindow {
                days: None,
                start: start.into(),
                end: end.into(),
                timezone: tz.map(Into::into),
            })
        };
        assert!(bad("25:00", "01:00", None).is_err());
        assert!(bad("01:00", "01:00", None).is_err());
        assert!(bad("01:00", "02:00", Some("Mars/Olympus")).is_err());
        assert!(bad("01:00", "02:00", Some("Europe/Berlin")).is_ok());
    }
}
