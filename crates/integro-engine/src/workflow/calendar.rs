//! Business calendars: the open hours SLAs are measured in.
//!
//! "Answer within 4 hours" means 4 open hours: a case opened on Friday at
//! 16:00 in an office open 09:00–17:30 is due on Monday at 11:30, and later
//! still when Monday is a holiday. Hours are local to the calendar's IANA
//! time zone and converted with jiff, so a day with a DST change is as long
//! as it really is. Without a calendar SLAs run on wall-clock time.

use super::Problem;
use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// Most open intervals on one weekday.
pub const MAX_INTERVALS_PER_DAY: usize = 12;
/// Most holidays in one calendar.
pub const MAX_HOLIDAYS: usize = 1000;
/// How far ahead [`BusinessCalendar::add_business`] looks for open time
/// before giving up, in days (a bound on the work, whatever the input).
const MAX_DAYS_SCANNED: i64 = 366 * 20;

/// Weekly open hours in a time zone, minus holidays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessCalendar {
    /// IANA name, e.g. `Europe/Lisbon`.
    pub time_zone: String,
    pub weekly: Weekly,
    /// Closed days, `YYYY-MM-DD` in the calendar's time zone.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// Open intervals per weekday; a day not given is closed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Weekly {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monday: Vec<Interval>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tuesday: Vec<Interval>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wednesday: Vec<Interval>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thursday: Vec<Interval>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub friday: Vec<Interval>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saturday: Vec<Interval>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sunday: Vec<Interval>,
}

/// Open from `start` to `end`, local `HH:MM` times; `end` may be `24:00`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    pub start: String,
    pub end: String,
}

impl Weekly {
    fn days(&self) -> [(&'static str, Weekday, &[Interval]); 7] {
        [
            ("monday", Weekday::Monday, &self.monday),
            ("tuesday", Weekday::Tuesday, &self.tuesday),
            ("wednesday", Weekday::Wednesday, &self.wednesday),
            ("thursday", Weekday::Thursday, &self.thursday),
            ("friday", Weekday::Friday, &self.friday),
            ("saturday", Weekday::Saturday, &self.saturday),
            ("sunday", Weekday::Sunday, &self.sunday),
        ]
    }
}

/// `HH:MM` as minutes since midnight, 00:00 to 24:00.
fn minutes(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// A calendar ready for arithmetic: parsed once per call.
struct Compiled {
    tz: TimeZone,
    /// Open minutes per weekday (Monday first), sorted, non-overlapping.
    week: [Vec<(u32, u32)>; 7],
    /// Sorted.
    holidays: Vec<Date>,
}

impl BusinessCalendar {
    /// Checks the time zone, the hours and the holidays; a calendar that is
    /// never open is refused (no deadline could ever be computed).
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        if TimeZone::get(&self.time_zone).is_err() {
            problems.push(Problem::new(
                "time_zone",
                format!(
                    "`{}` is not a known IANA time zone (e.g. Europe/Lisbon, America/New_York)",
                    crate::text::truncate_chars(&self.time_zone, 60)
                ),
            ));
        }
        let mut open = false;
        for (name, _, intervals) in self.weekly.days() {
            if intervals.len() > MAX_INTERVALS_PER_DAY {
                problems.push(Problem::new(
                    format!("weekly.{name}"),
                    format!("at most {MAX_INTERVALS_PER_DAY} intervals a day"),
                ));
                continue;
            }
            let mut parsed: Vec<(u32, u32, usize)> = Vec::new();
            for (i, interval) in intervals.iter().enumerate() {
                let path = format!("weekly.{name}[{i}]");
                match (minutes(&interval.start), minutes(&interval.end)) {
                    (None, _) => problems.push(Problem::new(
                        format!("{path}.start"),
                        "write a time as HH:MM, from 00:00 to 23:59",
                    )),
                    (_, None) => problems.push(Problem::new(
                        format!("{path}.end"),
                        "write a time as HH:MM, from 00:01 to 24:00",
                    )),
                    (Some(s), Some(e)) if s >= e => problems.push(Problem::new(
                        path,
                        "the interval must end after it starts (an interval cannot run past midnight: split it in two days)",
                    )),
                    (Some(s), Some(e)) => parsed.push((s, e, i)),
                }
            }
            parsed.sort();
            for pair in parsed.windows(2) {
                if pair[1].0 < pair[0].1 {
                    problems.push(Problem::new(
                        format!("weekly.{name}[{}]", pair[1].2),
                        "overlaps another interval of the same day",
                    ));
                }
            }
            open |= !parsed.is_empty();
        }
        if !open {
            problems.push(Problem::new(
                "weekly",
                "the calendar is never open: give at least one weekday open hours",
            ));
        }
        if self.holidays.len() > MAX_HOLIDAYS {
            problems.push(Problem::new(
                "holidays",
                format!("at most {MAX_HOLIDAYS} holidays"),
            ));
        } else {
            for (i, day) in self.holidays.iter().enumerate() {
                if super::fields::date(day).is_err() {
                    problems.push(Problem::new(
                        format!("holidays[{i}]"),
                        "write a date as YYYY-MM-DD, such as 2026-12-25",
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn compile(&self) -> Option<Compiled> {
        let tz = TimeZone::get(&self.time_zone).ok()?;
        let mut week: [Vec<(u32, u32)>; 7] = Default::default();
        for (slot, (_, _, intervals)) in week.iter_mut().zip(self.weekly.days()) {
            for interval in intervals.iter().take(MAX_INTERVALS_PER_DAY) {
                if let (Some(s), Some(e)) = (minutes(&interval.start), minutes(&interval.end))
                    && s < e
                {
                    slot.push((s, e));
                }
            }
            slot.sort_unstable();
            // Merge overlaps so no open minute counts twice.
            let mut merged: Vec<(u32, u32)> = Vec::with_capacity(slot.len());
            for &(s, e) in slot.iter() {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            *slot = merged;
        }
        if week.iter().all(Vec::is_empty) {
            return None;
        }
        let mut holidays: Vec<Date> = self
            .holidays
            .iter()
            .take(MAX_HOLIDAYS)
            .filter_map(|d| d.parse::<Date>().ok())
            .collect();
        holidays.sort_unstable();
        Some(Compiled { tz, week, holidays })
    }

    /// When `duration_ms` of open time will have passed after `start_ms`
    /// (Unix milliseconds). Time before opening, after closing, on closed
    /// days and holidays does not count; a deadline that falls exactly at
    /// closing time stays there. An invalid calendar counts wall-clock
    /// time, and a deadline more than 20 years of days away is `i64::MAX`.
    pub fn add_business(&self, start_ms: i64, duration_ms: i64) -> i64 {
        let Some(cal) = self.compile() else {
            return start_ms.saturating_add(duration_ms.max(0));
        };
        let mut remaining = duration_ms.max(0);
        let Some(mut day) = cal.local_date(start_ms) else {
            return i64::MAX;
        };
        for _ in 0..MAX_DAYS_SCANNED {
            for (open, close) in cal.open_periods(day) {
                let from = open.max(start_ms);
                if close <= from {
                    continue;
                }
                if remaining <= close - from {
                    return from + remaining;
                }
                remaining -= close - from;
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => return i64::MAX,
            }
        }
        i64::MAX
    }

    /// Open time between `from_ms` and `to_ms`, in milliseconds; 0 when `to`
    /// is not after `from`. An invalid calendar counts wall-clock time.
    pub fn business_elapsed(&self, from_ms: i64, to_ms: i64) -> i64 {
        if to_ms <= from_ms {
            return 0;
        }
        let Some(cal) = self.compile() else {
            return to_ms.saturating_sub(from_ms);
        };
        let Some(mut day) = cal.local_date(from_ms) else {
            return 0;
        };
        let mut total = 0i64;
        for _ in 0..MAX_DAYS_SCANNED {
            let mut past_end = true;
            for (open, close) in cal.open_periods(day) {
                let (s, e) = (open.max(from_ms), close.min(to_ms));
                if e > s {
                    total += e - s;
                }
                past_end &= open >= to_ms;
            }
            // A day whose midnight is past `to` ends the walk, open or not.
            if past_end && cal.midnight(day).is_none_or(|m| m >= to_ms) {
                break;
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        total
    }
}

impl Compiled {
    fn local_date(&self, ms: i64) -> Option<Date> {
        let ts = Timestamp::from_millisecond(ms).ok()?;
        Some(self.tz.to_datetime(ts).date())
    }

    /// Midnight starting `day`, as Unix milliseconds.
    fn midnight(&self, day: Date) -> Option<i64> {
        self.at(day, 0)
    }

    /// Local `minute` of `day` as Unix milliseconds. A time skipped by a DST
    /// change maps to the same offset later; a repeated one to its first
    /// occurrence (jiff's "compatible" rule).
    fn at(&self, day: Date, minute: u32) -> Option<i64> {
        let dt: DateTime = if minute >= 24 * 60 {
            day.tomorrow().ok()?.to_datetime(Time::midnight())
        } else {
            let time = Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0).ok()?;
            day.to_datetime(time)
        };
        let ts = self.tz.to_ambiguous_timestamp(dt).compatible().ok()?;
        Some(ts.as_millisecond())
    }

    /// The open periods of `day` as Unix milliseconds; none on holidays.
    fn open_periods(&self, day: Date) -> Vec<(i64, i64)> {
        if self.holidays.binary_search(&day).is_ok() {
            return Vec::new();
        }
        let index = day.weekday().to_monday_zero_offset() as usize;
        self.week
            .get(index)
            .into_iter()
            .flatten()
            .filter_map(|&(s, e)| Some((self.at(day, s)?, self.at(day, e)?)))
            .filter(|(s, e)| e > s)
            .collect()
    }
}

/// Wall-clock arithmetic when no calendar applies, for symmetry with
/// [`BusinessCalendar::add_business`].
pub(crate) fn add(calendar: Option<&BusinessCalendar>, start_ms: i64, duration_ms: i64) -> i64 {
    match calendar {
        Some(c) => c.add_business(start_ms, duration_ms),
        None => start_ms.saturating_add(duration_ms.max(0)),
    }
}

/// Elapsed time with or without a calendar.
pub(crate) fn elapsed(calendar: Option<&BusinessCalendar>, from_ms: i64, to_ms: i64) -> i64 {
    match calendar {
        Some(c) => c.business_elapsed(from_ms, to_ms),
        None => to_ms.saturating_sub(from_ms).max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office(tz: &str) -> BusinessCalendar {
        let day = || {
            vec![Interval {
                start: "09:00".into(),
                end: "17:30".into(),
            }]
        };
        BusinessCalendar {
            time_zone: tz.into(),
            weekly: Weekly {
                monday: day(),
                tuesday: day(),
                wednesday: day(),
                thursday: day(),
                friday: day(),
                ..Weekly::default()
            },
            holidays: vec![],
        }
    }

    /// Unix ms of a local time in `tz`.
    fn ms(tz: &str, local: &str) -> i64 {
        let dt: DateTime = local.parse().unwrap();
        dt.to_zoned(TimeZone::get(tz).unwrap())
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    const HOUR: i64 = 3600 * 1000;
    const LISBON: &str = "Europe/Lisbon";

    #[test]
    fn within_one_day() {
        let c = office(LISBON);
        let start = ms(LISBON, "2026-03-04T10:00");
        assert_eq!(
            c.add_business(start, 4 * HOUR),
            ms(LISBON, "2026-03-04T14:00")
        );
        // Before opening: the clock starts at 09:00.
        let early = ms(LISBON, "2026-03-04T06:00");
        assert_eq!(c.add_business(early, HOUR), ms(LISBON, "2026-03-04T10:00"));
        // Exactly at closing.
        assert_eq!(
            c.add_business(start, 7 * HOUR + HOUR / 2),
            ms(LISBON, "2026-03-04T17:30")
        );
        assert_eq!(c.add_business(start, 0), start);
    }

    #[test]
    fn across_a_weekend() {
        let c = office(LISBON);
        // Friday 16:00 + 4h: 1.5h on Friday, 2.5h on Monday.
        let friday = ms(LISBON, "2026-03-06T16:00");
        let due = c.add_business(friday, 4 * HOUR);
        assert_eq!(due, ms(LISBON, "2026-03-09T11:30"));
        assert_eq!(c.business_elapsed(friday, due), 4 * HOUR);
        // Saturday counts nothing.
        let sat = ms(LISBON, "2026-03-07T10:00");
        assert_eq!(c.business_elapsed(sat, ms(LISBON, "2026-03-08T20:00")), 0);
        assert_eq!(c.add_business(sat, HOUR), ms(LISBON, "2026-03-09T10:00"));
    }

    #[test]
    fn across_a_holiday() {
        let mut c = office(LISBON);
        c.holidays = vec!["2026-03-09".into()];
        let friday = ms(LISBON, "2026-03-06T16:00");
        assert_eq!(
            c.add_business(friday, 4 * HOUR),
            ms(LISBON, "2026-03-10T11:30")
        );
        assert_eq!(
            c.business_elapsed(friday, ms(LISBON, "2026-03-10T11:30")),
            4 * HOUR
        );
    }

    #[test]
    fn across_dst_changes() {
        // New York springs forward on Sunday 2026-03-08 at 02:00.
        let ny = "America/New_York";
        let mut c = office(ny);
        c.weekly.sunday = vec![Interval {
            start: "00:00".into(),
            end: "06:00".into(),
        }];
        let sunday = ms(ny, "2026-03-08T00:00");
        // 00:00–06:00 local on that day is only 5 real hours.
        assert_eq!(
            c.business_elapsed(sunday, ms(ny, "2026-03-08T12:00")),
            5 * HOUR
        );
        // Friday 16:00 + 4h lands on Monday 11:30 local, whatever the offset.
        let friday = ms(ny, "2026-03-06T16:00");
        let due = c.add_business(friday, 4 * HOUR + 5 * HOUR);
        assert_eq!(due, ms(ny, "2026-03-09T11:30"));
        // Wall-clock hours between the two differ from the naive count.
        assert_eq!(due - friday, (2 * 24 + 19) * HOUR + HOUR / 2 - HOUR);
        // Lisbon falls back on 2026-10-25 (Sunday); Monday's hours are intact.
        let c = office(LISBON);
        let friday = ms(LISBON, "2026-10-23T16:00");
        assert_eq!(
            c.add_business(friday, 4 * HOUR),
            ms(LISBON, "2026-10-26T11:30")
        );
    }

    #[test]
    fn split_days_and_midnight() {
        let mut c = office(LISBON);
        c.weekly.monday = vec![
            Interval {
                start: "13:00".into(),
                end: "24:00".into(),
            },
            Interval {
                start: "09:00".into(),
                end: "12:00".into(),
            },
        ];
        let monday = ms(LISBON, "2026-03-09T11:00");
        assert_eq!(
            c.add_business(monday, 2 * HOUR),
            ms(LISBON, "2026-03-09T14:00")
        );
        assert_eq!(
            c.add_business(monday, 12 * HOUR),
            ms(LISBON, "2026-03-10T00:00")
        );
        assert_eq!(
            c.business_elapsed(monday, ms(LISBON, "2026-03-10T00:00")),
            12 * HOUR
        );
    }

    #[test]
    fn validation() {
        assert_eq!(office(LISBON).validate(), Ok(()));
        let mut c = office("Mars/Olympus");
        c.weekly = Weekly::default();
        c.holidays = vec!["2026-02-30".into()];
        let problems = c.validate().unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["time_zone", "weekly", "holidays[0]"]);
        assert!(problems[1].message.contains("never open"));
        let mut c = office(LISBON);
        c.weekly.monday = vec![
            Interval {
                start: "9:00".into(),
                end: "12:00".into(),
            },
            Interval {
                start: "12:00".into(),
                end: "11:00".into(),
            },
            Interval {
                start: "10:00".into(),
                end: "24:01".into(),
            },
        ];
        c.weekly.tuesday = vec![
            Interval {
                start: "09:00".into(),
                end: "12:00".into(),
            },
            Interval {
                start: "11:00".into(),
                end: "13:00".into(),
            },
        ];
        let problems = c.validate().unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "weekly.monday[0].start",
                "weekly.monday[1]",
                "weekly.monday[2].end",
                "weekly.tuesday[1]"
            ]
        );
    }

    #[test]
    fn hostile_inputs_are_bounded() {
        let c = office(LISBON);
        assert_eq!(c.add_business(i64::MAX, HOUR), i64::MAX);
        assert_eq!(c.add_business(0, i64::MAX), i64::MAX);
        assert_eq!(c.business_elapsed(i64::MIN, i64::MAX), 0);
        let mut never = office(LISBON);
        never.weekly = Weekly::default();
        // Invalid calendars fall back to wall-clock time.
        assert_eq!(never.add_business(0, HOUR), HOUR);
        assert_eq!(never.business_elapsed(0, HOUR), HOUR);
        let mut closed = office(LISBON);
        closed.holidays = (0..1000)
            .map(|d| {
                Date::new(2026, 1, 1)
                    .unwrap()
                    .checked_add(jiff::Span::new().days(d))
                    .unwrap()
                    .to_string()
            })
            .collect();
        let start = ms(LISBON, "2026-01-01T00:00");
        let due = closed.add_business(start, HOUR);
        assert!(due > ms(LISBON, "2028-09-26T00:00"), "{due}");
    }
}
