//! Business hours (sans-IO): whether the team is open at a given instant, in the
//! team's time zone. Time comes in as seconds since the Unix epoch.
//!
//! The zone is either a fixed UTC offset or an IANA name ("America/New_York"),
//! whose daylight-saving changes are followed (tz database bundled by `jiff`).

use thiserror::Error;

/// The team's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// A fixed offset from UTC, minutes (e.g. −300 for UTC−05:00).
    Fixed(i32),
    /// A named zone with its daylight-saving rules.
    Named(jiff::tz::TimeZone),
}

/// A weekly schedule: open on `days`, from `open` to `close` minutes after
/// midnight; a `close` before `open` is a night shift ending the next morning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Open days, Monday = 0 … Sunday = 6.
    pub days: [bool; 7],
    /// Opening time, minutes after midnight.
    pub open: u32,
    /// Closing time, minutes after midnight (1440 = midnight).
    pub close: u32,
    /// The clock the hours are read on.
    pub zone: Zone,
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
        // "22:00-06:00" is a night shift: it closes the next morning.
        if open == close {
            return Err(ScheduleError(format!(
                "{hours:?}: opening and closing are the same time"
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
            zone: Zone::Fixed(utc_offset),
        })
    }

    /// The same hours read in the IANA zone `name` (daylight saving followed).
    pub fn in_zone(mut self, name: &str) -> Result<Schedule, ScheduleError> {
        let tz = jiff::tz::TimeZone::get(name.trim()).map_err(|e| {
            ScheduleError(format!(
                "unknown time zone {name:?} (an IANA name like \"Europe/Paris\"): {e}"
            ))
        })?;
        self.zone = Zone::Named(tz);
        Ok(self)
    }

    /// Always open.
    pub fn always() -> Schedule {
        Schedule {
            days: [true; 7],
            open: 0,
            close: 1440,
            zone: Zone::Fixed(0),
        }
    }

    /// Whether the team is open at `unix_seconds`.
    pub fn is_open(&self, unix_seconds: i64) -> bool {
        let offset_seconds = match &self.zone {
            Zone::Fixed(minutes) => i64::from(*minutes) * 60,
            Zone::Named(tz) => jiff::Timestamp::from_second(unix_seconds)
                .map(|t| i64::from(tz.to_offset(t).seconds()))
                .unwrap_or(0),
        };
        let local = unix_seconds + offset_seconds;
        let days = local.div_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let weekday = (days + 3).rem_euclid(7) as usize;
        if self.open < self.close {
            self.days[weekday] && minute >= self.open && minute < self.close
        } else {
            // Overnight: opened on this day's evening, or on the day before.
            let yesterday = (weekday + 6) % 7;
            (self.days[weekday] && minute >= self.open)
                || (self.days[yesterday] && minute < self.close)
        }
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
    fn a_named_zone_follows_daylight_saving() {
        let ny = Schedule::parse("Mon-Fri", "09:00-17:00", "Z")
            .unwrap()
            .in_zone("America/New_York")
            .unwrap();
        // November: EST (UTC−5). 13:30 UTC = 08:30 local, closed; 14:30 UTC open.
        assert!(!ny.is_open(WED_NOON_UTC + 5_400));
        assert!(ny.is_open(WED_NOON_UTC + 9_000));
        // Wednesday 2026-07-15: EDT (UTC−4). 13:30 UTC = 09:30 local, open.
        const WED_NOON_UTC_JULY: i64 = 1_784_116_800;
        assert!(ny.is_open(WED_NOON_UTC_JULY + 5_400));
        assert!(
            !ny.is_open(WED_NOON_UTC_JULY + 21 * 1800),
            "22:30 UTC = 18:30 EDT"
        );
        assert!(
            Schedule::always().in_zone("Mars/Olympus_Mons").is_err(),
            "unknown zones are refused"
        );
    }

    #[test]
    fn a_night_shift_runs_past_midnight_into_the_next_morning() {
        // Tuesday to Saturday nights, 22:00 to 06:00 (UTC).
        let s = Schedule::parse("Tue-Sat", "22:00-06:00", "Z").unwrap();
        assert!(!s.is_open(WED_NOON_UTC), "Wednesday noon");
        assert!(s.is_open(WED_NOON_UTC + 10 * 3600 + 60), "Wednesday 22:01");
        assert!(
            s.is_open(WED_NOON_UTC + 17 * 3600),
            "Thursday 05:00, Wednesday's night"
        );
        assert!(
            !s.is_open(WED_NOON_UTC + 18 * 3600),
            "Thursday 06:00, closed"
        );
        // Monday night is not a shift, so Tuesday 03:00 is closed; Sunday 03:00
        // belongs to Saturday night.
        assert!(!s.is_open(WED_NOON_UTC - 33 * 3600), "Tuesday 03:00");
        assert!(
            s.is_open(WED_NOON_UTC + 3 * 86_400 + 15 * 3600),
            "Sunday 03:00"
        );
        assert!(
            !s.is_open(WED_NOON_UTC + 4 * 86_400 + 15 * 3600),
            "Monday 03:00"
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(Schedule::parse("Funday", "09:00-17:00", "Z").is_err());
        assert!(Schedule::parse("Mon", "09:00-09:00", "Z").is_err());
        assert!(Schedule::parse("Mon", "9-5", "Z").is_err());
        assert!(Schedule::parse("Mon", "09:00-17:00", "01:00").is_err());
        assert_eq!(
            Schedule::parse("Sat-Mon", "00:00-24:00", "Z").unwrap().days,
            [true, false, false, false, false, true, true]
        );
    }
}
