//! Business-time arithmetic on a calendar: a time zone, weekly working hours and holidays.
//! Pure (no clock, no IO): the SLA and performance folds call it with times taken from events.
//!
//! Units: times are Unix seconds (`i64`), durations are seconds. Working spans are laid out on
//! each *local* date of the calendar's zone and converted to instants with jiff's "compatible"
//! disambiguation, so a span crossing a DST change holds the real elapsed time (a 00:00-24:00
//! day in Europe/Berlin holds 23 hours on the last Sunday of March and 25 on the last Sunday of
//! October). A calendar open 00:00-24:00 every day with no holidays is "24x7": business time
//! equals elapsed time and no zone lookup is made.

use std::collections::BTreeSet;
use std::sync::Mutex;

use closeloop_core::domain::{CalendarDefined, Weekday};
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

/// Most days a single computation walks (ten years): a bound on work for calendars with
/// almost no working time. A due time beyond it is "never".
pub const WALK_DAYS_MAX: i64 = 3_660;
/// Local days whose spans are memoised per calendar; the memo is cleared when it grows past.
const MEMO_DAYS_MAX: usize = 4_096;

/// A calendar ready for arithmetic.
#[derive(Debug)]
pub struct BusinessCalendar {
    pub calendar_id: String,
    tz: TimeZone,
    /// Per weekday (Monday = 0): sorted, merged working spans in minutes of the day, `0..=1440`.
    week: [Vec<(u16, u16)>; 7],
    holidays: BTreeSet<Date>,
    always: bool,
    /// Local date -> working spans as Unix seconds. A cache, never serialized.
    memo: Mutex<DayTable>,
}

impl Clone for BusinessCalendar {
    fn clone(&self) -> Self {
        BusinessCalendar {
            calendar_id: self.calendar_id.clone(),
            tz: self.tz.clone(),
            week: self.week.clone(),
            holidays: self.holidays.clone(),
            always: self.always,
            memo: Mutex::new(Default::default()),
        }
    }
}

/// Why a calendar definition cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("calendar {calendar_id}: {message}")]
pub struct CalendarError {
    pub calendar_id: String,
    pub message: String,
}

fn weekday_index(day: Weekday) -> usize {
    match day {
        Weekday::Mon => 0,
        Weekday::Tue => 1,
        Weekday::Wed => 2,
        Weekday::Thu => 3,
        Weekday::Fri => 4,
        Weekday::Sat => 5,
        Weekday::Sun => 6,
    }
}

/// "HH:MM" (or "24:00") as minutes of the day.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let minutes = h * 60 + m;
    (m < 60 && minutes <= 1440).then_some(minutes)
}

impl BusinessCalendar {
    /// Builds a calendar from its definition event.
    pub fn from_event(e: &CalendarDefined) -> Result<BusinessCalendar, CalendarError> {
        let err = |message: String| CalendarError {
            calendar_id: e.calendar_id.clone(),
            message,
        };
        let tz = TimeZone::get(&e.time_zone)
            .map_err(|x| err(format!("unknown time zone `{}`: {x}", e.time_zone)))?;
        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        for h in &e.weekly_hours {
            let start =
                parse_hhmm(&h.start).ok_or_else(|| err(format!("bad start `{}`", h.start)))?;
            let end = parse_hhmm(&h.end).ok_or_else(|| err(format!("bad end `{}`", h.end)))?;
            if end > start {
                week[weekday_index(h.day)].push((start, end));
            }
        }
        for spans in &mut week {
            spans.sort_unstable();
            let mut merged: Vec<(u16, u16)> = Vec::with_capacity(spans.len());
            for &(s, e) in spans.iter() {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            *spans = merged;
        }
        let always = e.holidays.is_empty() && week.iter().all(|d| d.as_slice() == [(0, 1440)]);
        Ok(BusinessCalendar {
            calendar_id: e.calendar_id.clone(),
            tz,
            week,
            holidays: e.holidays.iter().copied().collect(),
            always,
            memo: Mutex::new(Default::default()),
        })
    }

    /// A 24x7 calendar in UTC, for tests and for tickets whose calendar is unknown.
    pub fn always(calendar_id: &str) -> BusinessCalendar {
        BusinessCalendar {
            calendar_id: calendar_id.to_owned(),
            tz: TimeZone::UTC,
            week: std::array::from_fn(|_| vec![(0, 1440)]),
            holidays: BTreeSet::new(),
            always: true,
            memo: Mutex::new(Default::default()),
        }
    }

    /// True when business time is elapsed time (24x7, no holidays).
    pub fn is_always(&self) -> bool {
        self.always
    }

    fn has_hours(&self) -> bool {
        self.week.iter().any(|d| !d.is_empty())
    }

    fn instant(&self, date: Date, minute: u16) -> i64 {
        let dt = if minute >= 1440 {
            match date.tomorrow() {
                Ok(next) => DateTime::from_parts(next, Time::midnight()),
                Err(_) => return i64::MAX / 4,
            }
        } else {
            DateTime::from_parts(
                date,
                Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0)
                    .unwrap_or(Time::midnight()),
            )
        };
        self.tz
            .to_ambiguous_timestamp(dt)
            .compatible()
            .map(|t| t.as_second())
            .unwrap_or(i64::MAX / 4)
    }

    /// Working spans of one local date, as Unix seconds; empty on holidays.
    fn compute_spans(&self, date: Date, into: &mut Vec<(i64, i64)>) {
        if self.holidays.contains(&date) {
            return;
        }
        let day = date.weekday().to_monday_zero_offset() as usize;
        into.extend(
            self.week[day]
                .iter()
                .map(|&(s, e)| (self.instant(date, s), self.instant(date, e))),
        );
    }

    /// Business seconds in `[from, to)`; 0 when `to <= from`.
    pub fn business_seconds(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        if self.always {
            return to - from;
        }
        // The local date of an instant is its UTC date or a neighbour; spans are absolute
        // instants, so walking one day more on each side and clipping is exact.
        let (first, last) = (utc_day(from) - 1, utc_day(to) + 1);
        if i64::from(last) - i64::from(first) > WALK_DAYS_MAX {
            return self.business_seconds_slow(from, to);
        }
        let mut table = self.memo.lock().expect("calendar memo poisoned");
        let mut total = 0;
        for day in first..=last {
            for &(s, e) in table.spans(self, day) {
                let (a, b) = (s.max(from), e.min(to));
                if b > a {
                    total += b - a;
                }
            }
        }
        total
    }

    /// Very long intervals: whole days in chunks, so the memo stays bounded.
    fn business_seconds_slow(&self, from: i64, to: i64) -> i64 {
        let chunk = 86_400 * 365;
        let mut total = 0;
        let mut a = from;
        while a < to {
            let b = (a + chunk).min(to);
            total += self.business_seconds(a, b);
            a = b;
        }
        total
    }

    /// The instant at which `seconds` business seconds have passed since `from` (`from` itself
    /// for 0); `None` when that is beyond [`WALK_DAYS_MAX`] days or the calendar has no hours.
    pub fn add_business_seconds(&self, from: i64, seconds: i64) -> Option<i64> {
        if seconds <= 0 {
            return Some(from);
        }
        if self.always {
            return Some(from + seconds);
        }
        if !self.has_hours() {
            return None;
        }
        let mut remaining = seconds;
        let mut table = self.memo.lock().expect("calendar memo poisoned");
        let first = utc_day(from) - 1;
        for day in first..first + WALK_DAYS_MAX as i32 {
            for &(s, e) in table.spans(self, day) {
                let a = s.max(from);
                if e <= a {
                    continue;
                }
                if e - a >= remaining {
                    return Some(a + remaining);
                }
                remaining -= e - a;
            }
        }
        None
    }
}

impl BusinessCalendar {
    /// The close of the `days`-th working day after the local date of `from`: a wait counted
    /// in working days (a resolution awaiting the customer's answer). A working day is a
    /// local date with working hours (not a holiday); its close is the end of its last
    /// working span. `None` when no such day comes within [`WALK_DAYS_MAX`] days.
    pub fn after_working_days(&self, from: i64, days: u32) -> Option<i64> {
        let start = jiff::Timestamp::from_second(from)
            .ok()?
            .to_zoned(self.tz.clone())
            .date();
        let mut counted = 0;
        let mut date = start;
        let mut spans = Vec::new();
        for _ in 0..WALK_DAYS_MAX {
            date = date.tomorrow().ok()?;
            spans.clear();
            self.compute_spans(date, &mut spans);
            if let Some(close) = spans.iter().map(|&(_, e)| e).max() {
                counted += 1;
                if counted >= days.max(1) {
                    return Some(close);
                }
            }
        }
        None
    }
}

/// The UTC day number (days since 1970-01-01) of a Unix time.
fn utc_day(at: i64) -> i32 {
    at.div_euclid(86_400)
        .clamp(i64::from(i32::MIN / 2), i64::from(i32::MAX / 2)) as i32
}

/// Memoised working spans by local date (as a day number), in one flat table: filled on first
/// use, cleared when it would outgrow [`MEMO_DAYS_MAX`] days.
#[derive(Debug, Default)]
struct DayTable {
    /// Day number of `days[0]`.
    base: i32,
    /// Per day: (first index into `spans`, count), once computed.
    days: Vec<Option<(u32, u32)>>,
    spans: Vec<(i64, i64)>,
}

impl DayTable {
    fn spans(&mut self, calendar: &BusinessCalendar, day: i32) -> &[(i64, i64)] {
        let in_table = !self.days.is_empty()
            && day >= self.base
            && ((day - self.base) as usize) < self.days.len();
        if !in_table {
            let (low, high) = if self.days.is_empty() {
                (day, day)
            } else {
                (
                    day.min(self.base),
                    day.max(self.base + self.days.len() as i32 - 1),
                )
            };
            if (high - low) as usize >= MEMO_DAYS_MAX {
                self.days.clear();
                self.spans.clear();
            }
            if self.days.is_empty() {
                // Room for a few weeks before: walks start a little before their first day.
                self.base = day - 64;
                self.days.resize((day - self.base) as usize + 1, None);
            } else if day < self.base {
                let grow = (self.base - day) as usize;
                self.days.splice(0..0, std::iter::repeat_n(None, grow));
                self.base = day;
            } else {
                self.days.resize((day - self.base) as usize + 1, None);
            }
        }
        let slot = (day - self.base) as usize;
        let (start, count) = match self.days[slot] {
            Some(found) => found,
            None => {
                let start = self.spans.len();
                calendar.compute_spans(crate::period::date_of(day), &mut self.spans);
                let found = (start as u32, (self.spans.len() - start) as u32);
                self.days[slot] = Some(found);
                found
            }
        };
        &self.spans[start as usize..(start + count) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_core::domain::WorkingHours;
    use jiff::Timestamp;
    use proptest::prelude::*;

    fn ts(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn office(tz: &str, holidays: &[&str]) -> BusinessCalendar {
        let mut hours: Vec<WorkingHours> = [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ]
        .into_iter()
        .map(|day| WorkingHours {
            day,
            start: "08:00".into(),
            end: "18:00".into(),
        })
        .collect();
        hours.push(WorkingHours {
            day: Weekday::Sat,
            start: "09:00".into(),
            end: "13:00".into(),
        });
        BusinessCalendar::from_event(&CalendarDefined {
            calendar_id: "office".into(),
            time_zone: tz.into(),
            weekly_hours: hours,
            holidays: holidays.iter().map(|d| d.parse().unwrap()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn working_days_skip_holidays_and_days_without_hours() {
        // Berlin office: Mon-Fri 08-18, Sat 09-13, Sundays closed; Wed 2026-12-23 a holiday.
        let c = office("Europe/Berlin", &["2026-12-23"]);
        // Resolved Mon 2026-12-21 at 17:00 local: Tue (1), Thu (2; Wed is a holiday),
        // Fri (3) closes at 18:00 local = 17:00 UTC.
        let from = ts("2026-12-21T16:00:00Z");
        assert_eq!(
            c.after_working_days(from, 1),
            Some(ts("2026-12-22T17:00:00Z"))
        );
        assert_eq!(
            c.after_working_days(from, 3),
            Some(ts("2026-12-25T17:00:00Z"))
        );
        // Saturday counts (09-13 local), Sunday does not.
        assert_eq!(
            c.after_working_days(from, 4),
            Some(ts("2026-12-26T12:00:00Z"))
        );
        assert_eq!(
            c.after_working_days(from, 5),
            Some(ts("2026-12-28T17:00:00Z"))
        );
        // 24x7 in UTC: the end of the n-th next day.
        let always = BusinessCalendar::always("utc");
        assert_eq!(
            always.after_working_days(ts("2026-12-21T23:59:00Z"), 3),
            Some(ts("2026-12-25T00:00:00Z"))
        );
    }

    #[test]
    fn within_one_working_day() {
        let c = office("UTC", &[]);
        // Mon 2026-11-23 09:00 .. 11:30 UTC: 150 minutes.
        assert_eq!(
            c.business_seconds(ts("2026-11-23T09:00:00Z"), ts("2026-11-23T11:30:00Z")),
            150 * 60
        );
        // Before opening counts nothing until 08:00.
        assert_eq!(
            c.business_seconds(ts("2026-11-23T06:00:00Z"), ts("2026-11-23T08:30:00Z")),
            30 * 60
        );
    }

    #[test]
    fn over_a_weekend_in_berlin() {
        // Berlin is UTC+1 in November. Fri 2026-11-27 17:00 local (16:00Z) to Mon 2026-11-30
        // 09:00 local (08:00Z): Fri 60 + Sat 240 + Sun 0 + Mon 60 = 360 minutes.
        let c = office("Europe/Berlin", &[]);
        assert_eq!(
            c.business_seconds(ts("2026-11-27T16:00:00Z"), ts("2026-11-30T08:00:00Z")),
            360 * 60
        );
        // 240 business minutes from Fri 17:00 local: 60 on Fri, then Sat 09:00 + 180 = 12:00
        // local = 11:00Z.
        assert_eq!(
            c.add_business_seconds(ts("2026-11-27T16:00:00Z"), 240 * 60),
            Some(ts("2026-11-28T11:00:00Z"))
        );
        // 360 minutes lands exactly on Monday 09:00 local; 300 on Sat 13:00 local? 60+240 = 300
        // ends at Saturday's close, 12:00Z.
        assert_eq!(
            c.add_business_seconds(ts("2026-11-27T16:00:00Z"), 300 * 60),
            Some(ts("2026-11-28T12:00:00Z"))
        );
        assert_eq!(
            c.add_business_seconds(ts("2026-11-27T16:00:00Z"), 301 * 60),
            Some(ts("2026-11-30T07:01:00Z"))
        );
    }

    #[test]
    fn holidays_count_nothing() {
        // Thu 2026-12-24 and Fri 2026-12-25 and Sat 12-26 are holidays. Wed 23 17:00 local
        // (16:00Z) + 120 minutes: 60 on Wed, then Mon 28 08:00 local + 60 = 09:00 local = 08:00Z.
        let c = office("Europe/Berlin", &["2026-12-24", "2026-12-25", "2026-12-26"]);
        assert_eq!(
            c.add_business_seconds(ts("2026-12-23T16:00:00Z"), 120 * 60),
            Some(ts("2026-12-28T08:00:00Z"))
        );
        assert_eq!(
            c.business_seconds(ts("2026-12-23T16:00:00Z"), ts("2026-12-28T08:00:00Z")),
            120 * 60
        );
    }

    #[test]
    fn daylight_saving_changes() {
        // Berlin leaves summer time on Sun 2026-10-25 (03:00 CEST -> 02:00 CET). Fri 23 Oct
        // 17:00 CEST (15:00Z) to Mon 26 Oct 09:00 CET (08:00Z): Fri 60 + Sat 240 + Mon 60.
        let c = office("Europe/Berlin", &[]);
        assert_eq!(
            c.business_seconds(ts("2026-10-23T15:00:00Z"), ts("2026-10-26T08:00:00Z")),
            360 * 60
        );
        // Saturday 24 Oct opens 09:00 CEST = 07:00Z; Monday 26 opens 08:00 CET = 07:00Z.
        assert_eq!(
            c.add_business_seconds(ts("2026-10-23T15:00:00Z"), 61 * 60),
            Some(ts("2026-10-24T07:01:00Z"))
        );
        assert_eq!(
            c.add_business_seconds(ts("2026-10-23T15:00:00Z"), 301 * 60),
            Some(ts("2026-10-26T07:01:00Z"))
        );
        // A 24x7 calendar in Berlin is elapsed time: the 25-hour day is 1500 minutes.
        let mut always = office("Europe/Berlin", &[]);
        always.week = std::array::from_fn(|_| vec![(0, 1440)]);
        always.always = false; // force the day walk through the zone
        assert_eq!(
            always.business_seconds(ts("2026-10-24T22:00:00Z"), ts("2026-10-25T23:00:00Z")),
            1500 * 60
        );
        // Spring forward, Sun 2026-03-29: the local day has 23 hours.
        assert_eq!(
            always.business_seconds(ts("2026-03-28T23:00:00Z"), ts("2026-03-29T22:00:00Z")),
            1380 * 60
        );
    }

    #[test]
    fn always_is_elapsed_time() {
        let c = BusinessCalendar::always("always");
        assert_eq!(
            c.business_seconds(ts("2026-11-28T23:00:00Z"), ts("2026-11-30T01:00:00Z")),
            26 * 3600
        );
        assert_eq!(
            c.add_business_seconds(ts("2026-11-28T23:00:00Z"), 15 * 60),
            Some(ts("2026-11-28T23:15:00Z"))
        );
    }

    #[test]
    fn no_hours_never_due() {
        let c = BusinessCalendar::from_event(&CalendarDefined {
            calendar_id: "none".into(),
            time_zone: "UTC".into(),
            weekly_hours: vec![],
            holidays: vec![],
        })
        .unwrap();
        assert_eq!(c.add_business_seconds(0, 60), None);
        assert_eq!(c.business_seconds(0, 86_400 * 10), 0);
    }

    /// Minute by minute through the zone: is this minute a working one?
    fn working_minute(c: &BusinessCalendar, at: i64) -> bool {
        let local = c.tz.to_datetime(Timestamp::from_second(at).unwrap());
        if c.holidays.contains(&local.date()) {
            return false;
        }
        let day = local.date().weekday().to_monday_zero_offset() as usize;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        c.week[day].iter().any(|&(s, e)| s <= minute && minute < e)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The day walk agrees with a minute-by-minute count, across DST changes and holidays.
        #[test]
        fn agrees_with_minute_by_minute(start_min in 0i64..(60 * 24 * 400), len_min in 0i64..(60 * 24 * 9)) {
            let c = office("Europe/Berlin", &["2026-12-24", "2026-12-25", "2027-04-02"]);
            // Minutes from 2026-03-01T00:00Z, so both DST changes of 2026 are covered.
            let base = ts("2026-03-01T00:00:00Z");
            let from = base + start_min * 60;
            let to = from + len_min * 60;
            let expected = (0..len_min).filter(|m| working_minute(&c, from + m * 60)).count() as i64 * 60;
            prop_assert_eq!(c.business_seconds(from, to), expected);
            if expected > 0 {
                // The instant `expected` business seconds after `from` is the end of the last
                // working minute before `to`.
                let last = (0..len_min).rev().find(|m| working_minute(&c, from + m * 60)).unwrap();
                prop_assert_eq!(c.add_business_seconds(from, expected), Some(from + (last + 1) * 60));
            }
        }
    }
}
