//! Business hours (sans-IO): whether the team is open at a given instant, in the
//! team's UTC offset. Time comes in as seconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A weekly schedule: open on `days`, from `open` to `close` minutes after midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Open days, Monday = 0 … Sunday = 6.
    pub days: [bool; 7],
    /// Opening time, minutes after midnight.
    pub open: u32,
    /// Closing time, minutes after midnight (1440 = midnight).
    pub close: u32,
    /// Offset from UTC, minutes (e.g. −300 for UTC−05:00).
    pub utc_offset: i32,
}

/// A schedule that cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid business hours: {0}")]
pub struct ScheduleError(pub String);

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(s: &str) -> Result<usize, ScheduleError> {
    let s = s.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|d| s.starts_with(d))
        .ok_or_else(|| ScheduleError(format!("unknown day {s:?} (Mon … Sun)")))
}

fn clock(s: &str) -> Result<u32, ScheduleError> {
    let (h, m) = s
        .trim()
        .split_once(':')
        .ok_or_else(|| ScheduleError(format!("{s:?} is not HH:MM")))?;
    let (h, m): (u32, u32) = (
        h.parse()
            .map_err(|_| ScheduleError(format!("{s:?} is not HH:MM")))?,
        m.parse()
            .map_err(|_| ScheduleError(format!("{s:?} is not HH:MM")))?,
    );
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(ScheduleError(format!("{s:?} is not a time of day")));
    }
    Ok(h * 60 + m)
}

impl Schedule {
    /// Parses days ("Mon-Fri", "Mon,Wed,Sat", "Mon-Sun"), hours ("09:00-17:00")
    /// and an offset ("+01:00", "-05:30", "Z").
    pub fn parse(days: &str, hours: &str, offset: &str) -> Result<Schedule, ScheduleError> {
        let mut open_days = [false; 7];
        for part in days.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut d = a;
                    loop {
                        open_days[d] = true;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => open_days[day(part)?] = true,
            }
        }
        let (open, close) = hours
            .split_once('-')
            .ok_or_else(|| ScheduleError(format!("{hours:?} is not HH:MM-HH:MM")))?;
        let (open, close) = (clock(open)?, clock(close)?);
        if open >= close {
            return Err(ScheduleError(format!(
                "{hours:?}: opening must be before closing"
            )));
        }
        let offset = offset.trim();
        let utc_offset = if offset.eq_ignore_ascii_case("z") || offset.is_empty() {
            0
        } else {
            let (sign, rest) = match offset.as_bytes().first() {
                Some(b'+') => (1, &offset[1..]),
                Some(b'-') => (-1, &offset[1..]),
                _ => {
                    return Err(ScheduleError(format!(
                        "offset {offset:?} must start with + or -"
                    )));
                }
            };
            sign * clock(rest)? as i32
        };
        Ok(Schedule {
            days: open_days,
            open,
            close,
            utc_offset,
        })
    }

    /// Always open.
    pub fn always() -> Schedule {
        Schedule {
            days: [true; 7],
            open: 0,
            close: 1440,
            utc_offset: 0,
        }
    }

    /// Whether the team is open at `unix_seconds`.
    pub fn is_open(&self, unix_seconds: i64) -> bool {
        let local = unix_seconds + i64::from(self.utc_offset) * 60;
        let days = local.div_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let weekday = (days + 3).rem_euclid(7) as usize;
        self.days[weekday] && minute >= self.open && minute < self.close
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-25 was a Wednesday; 12:00 UTC.
    const WED_NOON_UTC: i64 = 1_795_608_000;

    #[test]
    fn office_hours_follow_the_days_the_clock_and_the_offset() {
        let s = Schedule::parse("Mon-Fri", "09:00-17:00", "+00:00").unwrap();
        assert!(s.is_open(WED_NOON_UTC));
        assert!(!s.is_open(WED_NOON_UTC + 6 * 3600), "18:00");
        assert!(!s.is_open(WED_NOON_UTC + 3 * 86_400), "Saturday");
        let ny = Schedule::parse("Mon-Fri", "09:00-17:00", "-05:00").unwrap();
        assert!(!ny.is_open(WED_NOON_UTC), "12:00 UTC is 07:00 in New York");
        assert!(ny.is_open(WED_NOON_UTC + 3 * 3600), "10:00 in New York");
        assert!(Schedule::always().is_open(WED_NOON_UTC));
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(Schedule::parse("Funday", "09:00-17:00", "Z").is_err());
        assert!(Schedule::parse("Mon", "17:00-09:00", "Z").is_err());
        assert!(Schedule::parse("Mon", "9-5", "Z").is_err());
        assert!(Schedule::parse("Mon", "09:00-17:00", "01:00").is_err());
        assert_eq!(
            Schedule::parse("Sat-Mon", "00:00-24:00", "Z").unwrap().days,
            [true, false, false, false, false, true, true]
        );
    }
}
