//! Business-time arithmetic on a calendar: a time zone, weekly working hours, holidays,
//! make-up working days and dates with other hours (half days). Pure (no clock, no IO): the
//! SLA and performance folds call it with times taken from events.
//!
//! A local date's hours are those of the first rule that names it: its `hours_overrides`
//! entry, its `working_days` entry, none when it is a holiday, else its weekday's
//! (`DefineCalendar` documents the order; the parser lets a date be named only once).
//!
//! Units: times are Unix seconds (`i64`), durations are seconds. Working spans are laid out on
//! each *local* date of the calendar's zone and converted to instants with jiff's "compatible"
//! disambiguation, so a span crossing a DST change holds the real elapsed time (a 00:00-24:00
//! day in Europe/Berlin holds 23 hours on the last Sunday of March and 25 on the last Sunday of
//! October). A calendar open 00:00-24:00 every day with no holidays, and whose dated entries
//! all say 00:00-24:00 too, is "24x7": business time equals elapsed time and no zone lookup is
//! made.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use closeloop_core::domain::{CalendarDefined, HoursSpan, Weekday};
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
    /// Dates whose hours are their own (make-up working days and overrides, the override
    /// winning): sorted, merged spans as in `week`, empty for a date closed by an override.
    dated: BTreeMap<Date, Vec<(u16, u16)>>,
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
            dated: self.dated.clone(),
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

/// Spans in minutes of the day, sorted and with overlapping or touching spans merged; empty
/// spans (end not after start) dropped.
fn merged(mut spans: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    spans.retain(|&(s, e)| e > s);
    spans.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
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
        let span = |start: &str, end: &str| -> Result<(u16, u16), CalendarError> {
            let s = parse_hhmm(start).ok_or_else(|| err(format!("bad start `{start}`")))?;
            let e = parse_hhmm(end).ok_or_else(|| err(format!("bad end `{end}`")))?;
            Ok((s, e))
        };
        let day = |hours: &[HoursSpan]| -> Result<Vec<(u16, u16)>, CalendarError> {
            Ok(merged(
                hours
                    .iter()
                    .map(|h| span(&h.start, &h.end))
                    .collect::<Result<_, _>>()?,
            ))
        };
        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        for h in &e.weekly_hours {
            week[weekday_index(h.day)].push(span(&h.start, &h.end)?);
        }
        let week = week.map(merged);
        // The order of the rules: an override replaces a make-up day's entry, and both take
        // the place of a holiday or the weekday's hours (see `compute_spans`).
        let mut dated = BTreeMap::new();
        for d in &e.working_days {
            dated.insert(d.date, day(&d.hours)?);
        }
        for d in &e.hours_overrides {
            dated.insert(d.date, day(&d.hours)?);
        }
        let full = |spans: &Vec<(u16, u16)>| spans.as_slice() == [(0, 1440)];
        let always = e.holidays.iter().all(|h| dated.contains_key(h))
            && week.iter().all(full)
            && dated.values().all(full);
        Ok(BusinessCalendar {
            calendar_id: e.calendar_id.clone(),
            tz,
            week,
            holidays: e.holidays.iter().copied().collect(),
            dated,
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
            dated: BTreeMap::new(),
            always: true,
            memo: Mutex::new(Default::default()),
        }
    }

    /// True when business time is elapsed time (24x7, no holidays, no dated entry other than
    /// 00:00-24:00).
    pub fn is_always(&self) -> bool {
        self.always
    }

    fn has_hours(&self) -> bool {
        self.week
            .iter()
            .chain(self.dated.values())
            .any(|d| !d.is_empty())
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

    /// The working spans of one local date in minutes of the day, by the order of the rules:
    /// its own entry (an override, else a make-up day), else none on a holiday, else its
    /// weekday's.
    fn day_spans(&self, date: Date) -> &[(u16, u16)] {
        if let Some(spans) = self.dated.get(&date) {
            return spans;
        }
        if self.holidays.contains(&date) {
            return &[];
        }
        &self.week[date.weekday().to_monday_zero_offset() as usize]
    }

    /// Working spans of one local date, as Unix seconds (see [`Self::day_spans`]).
    fn compute_spans(&self, date: Date, into: &mut Vec<(i64, i64)>) {
        into.extend(
            self.day_spans(date)
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
    /// local date with working hours by the calendar's rules (a make-up day is one; a holiday
    /// or a date an override closes is not); its close is the end of its last working span. `None` when no such day comes within [`WALK_DAYS_MAX`] days.
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
    use closeloop_core::domain::{HoursOverride, WorkingDay, WorkingHours};
    use jiff::Timestamp;
    use proptest::prelude::*;

    fn ts(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn office(tz: &str, holidays: &[&str]) -> BusinessCalendar {
        BusinessCalendar::from_event(&office_definition(tz, holidays)).unwrap()
    }

    /// Mon-Fri 08:00-18:00, Sat 09:00-13:00.
    fn office_definition(tz: &str, holidays: &[&str]) -> CalendarDefined {
        let hours = [
            WorkingHours::on(&Weekday::MON_TO_FRI, "08:00", "18:00"),
            WorkingHours::on(&[Weekday::Sat], "09:00", "13:00"),
        ]
        .concat();
        CalendarDefined {
            calendar_id: "office".into(),
            time_zone: tz.into(),
            weekly_hours: hours,
            holidays: holidays.iter().map(|d| d.parse().unwrap()).collect(),
            working_days: vec![],
            hours_overrides: vec![],
        }
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
            working_days: vec![],
            hours_overrides: vec![],
        })
        .unwrap();
        assert_eq!(c.add_business_seconds(0, 60), None);
        assert_eq!(c.business_seconds(0, 86_400 * 10), 0);
    }

    fn spans(hours: &[(&str, &str)]) -> Vec<HoursSpan> {
        hours
            .iter()
            .map(|&(start, end)| HoursSpan {
                start: start.into(),
                end: end.into(),
            })
            .collect()
    }

    /// A Spring-Festival-style schedule in Shanghai (UTC+8, no DST): Monday to Friday
    /// 09:00-12:00 and 13:00-18:00 (480 minutes); a week of holidays, Mon 2026-02-16 to Sun
    /// 2026-02-22; a half day, Fri 2026-02-13, 09:00-12:00; two weekend make-up days, Sun
    /// 2026-02-08 and Sat 2026-02-28, worked as weekdays.
    fn spring_festival() -> CalendarDefined {
        let day = [("09:00", "12:00"), ("13:00", "18:00")];
        CalendarDefined {
            calendar_id: "shanghai".into(),
            time_zone: "Asia/Shanghai".into(),
            weekly_hours: Weekday::MON_TO_FRI
                .into_iter()
                .flat_map(|day_of_week| {
                    day.map(|(start, end)| WorkingHours {
                        day: day_of_week,
                        start: start.into(),
                        end: end.into(),
                    })
                })
                .collect(),
            holidays: (16..=22).map(|d| jiff::civil::date(2026, 2, d)).collect(),
            working_days: [(2, 8), (2, 28)]
                .map(|(m, d)| WorkingDay {
                    date: jiff::civil::date(2026, m, d),
                    hours: spans(&day),
                })
                .to_vec(),
            hours_overrides: vec![HoursOverride {
                date: jiff::civil::date(2026, 2, 13),
                hours: spans(&[("09:00", "12:00")]),
            }],
        }
    }

    /// Due times worked by hand, to the minute (local = UTC + 8).
    #[test]
    fn spring_festival_make_up_days_and_half_day() {
        let c = BusinessCalendar::from_event(&spring_festival()).unwrap();
        assert!(!c.is_always());
        let mins = |m: i64| m * 60;
        // Fri 02-06 17:00 local + 480: Fri 60 (17-18), Sat closed, Sun 02-08 is a make-up
        // day: 180 (09-12) + 240 (13-17) -> Sun 17:00 local = 09:00Z. The warning at 75%
        // (360): 60 + 180 + 120 -> Sun 15:00 local = 07:00Z.
        let from = ts("2026-02-06T09:00:00Z");
        assert_eq!(
            c.add_business_seconds(from, mins(480)),
            Some(ts("2026-02-08T09:00:00Z"))
        );
        assert_eq!(
            c.add_business_seconds(from, mins(360)),
            Some(ts("2026-02-08T07:00:00Z"))
        );
        // Without the make-up day, Monday 02-09 17:00 local.
        let mut plain = spring_festival();
        plain.working_days.clear();
        assert_eq!(
            BusinessCalendar::from_event(&plain)
                .unwrap()
                .add_business_seconds(from, mins(480)),
            Some(ts("2026-02-09T09:00:00Z"))
        );
        // Thu 02-12 16:00 local + 600: Thu 120, Fri 02-13 half day 180 (300), the weekend and
        // the holiday week nothing, Mon 02-23 180 (480) + 120 -> 15:00 local = 07:00Z.
        let from = ts("2026-02-12T08:00:00Z");
        assert_eq!(
            c.add_business_seconds(from, mins(600)),
            Some(ts("2026-02-23T07:00:00Z"))
        );
        // 300 ends exactly at the half day's close, Fri 12:00 local = 04:00Z; one more minute
        // is Mon 02-23 09:01 local.
        assert_eq!(
            c.add_business_seconds(from, mins(300)),
            Some(ts("2026-02-13T04:00:00Z"))
        );
        assert_eq!(
            c.add_business_seconds(from, mins(301)),
            Some(ts("2026-02-23T01:01:00Z"))
        );
        // Fri 02-13 11:00 local + 2,700: Fri 60, Mon-Fri 02-23..27 5 x 480 (2,460), Sat 02-28
        // make-up 180 (2,640) + 60 -> 14:00 local = 06:00Z.
        let from = ts("2026-02-13T03:00:00Z");
        assert_eq!(
            c.add_business_seconds(from, mins(2_700)),
            Some(ts("2026-02-28T06:00:00Z"))
        );
        assert_eq!(
            c.business_seconds(from, ts("2026-02-28T06:00:00Z")),
            mins(2_700)
        );
        // Fri 02-06 00:00 to Mon 03-02 00:00 local: Fri 480, Sun make-up 480, Mon-Thu
        // 4 x 480, Fri half 180, the holidays 0, Mon-Fri 5 x 480, Sat make-up 480: 5,940.
        assert_eq!(
            c.business_seconds(ts("2026-02-05T16:00:00Z"), ts("2026-03-01T16:00:00Z")),
            mins(5_940)
        );
        // Working days: after Thu 02-12, the half day is the first (it closes 12:00 local),
        // Mon 02-23 the second; after Fri 02-27, the make-up Saturday.
        assert_eq!(
            c.after_working_days(ts("2026-02-12T08:00:00Z"), 1),
            Some(ts("2026-02-13T04:00:00Z"))
        );
        assert_eq!(
            c.after_working_days(ts("2026-02-12T08:00:00Z"), 2),
            Some(ts("2026-02-23T10:00:00Z"))
        );
        assert_eq!(
            c.after_working_days(ts("2026-02-27T08:00:00Z"), 1),
            Some(ts("2026-02-28T10:00:00Z"))
        );
    }

    #[test]
    fn dated_hours_count_in_24x7_only_when_they_change_nothing() {
        let mut e = CalendarDefined {
            calendar_id: "always".into(),
            time_zone: "UTC".into(),
            weekly_hours: Weekday::ALL
                .iter()
                .map(|&day| WorkingHours {
                    day,
                    start: "00:00".into(),
                    end: "24:00".into(),
                })
                .collect(),
            holidays: vec![],
            working_days: vec![],
            hours_overrides: vec![HoursOverride {
                date: jiff::civil::date(2026, 2, 13),
                hours: spans(&[("00:00", "12:00"), ("12:00", "24:00")]),
            }],
        };
        assert!(BusinessCalendar::from_event(&e).unwrap().is_always());
        e.hours_overrides[0].hours = spans(&[("00:00", "12:00")]);
        let half = BusinessCalendar::from_event(&e).unwrap();
        assert!(!half.is_always());
        assert_eq!(
            half.business_seconds(ts("2026-02-13T00:00:00Z"), ts("2026-02-14T00:00:00Z")),
            12 * 3600
        );
        // A calendar without weekly hours still has its make-up days.
        e.weekly_hours.clear();
        e.hours_overrides.clear();
        e.working_days = vec![WorkingDay {
            date: jiff::civil::date(2026, 2, 8),
            hours: spans(&[("09:00", "10:00")]),
        }];
        let once = BusinessCalendar::from_event(&e).unwrap();
        assert_eq!(
            once.add_business_seconds(ts("2026-02-01T00:00:00Z"), 1800),
            Some(ts("2026-02-08T09:30:00Z"))
        );
        assert_eq!(
            once.add_business_seconds(ts("2026-02-01T00:00:00Z"), 3601),
            None
        );
    }

    /// Minute by minute through the zone, from the definition itself by the documented order
    /// (override, make-up day, holiday, weekday): is this minute a working one?
    fn working_minute(e: &CalendarDefined, tz: &TimeZone, at: i64) -> bool {
        let local = tz.to_datetime(Timestamp::from_second(at).unwrap());
        let date = local.date();
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let within = |start: &str, end: &str| {
            parse_hhmm(start).unwrap() <= minute && minute < parse_hhmm(end).unwrap()
        };
        let own = |hours: &[HoursSpan]| hours.iter().any(|h| within(&h.start, &h.end));
        if let Some(o) = e.hours_overrides.iter().find(|o| o.date == date) {
            return own(&o.hours);
        }
        if let Some(w) = e.working_days.iter().find(|w| w.date == date) {
            return own(&w.hours);
        }
        if e.holidays.contains(&date) {
            return false;
        }
        e.weekly_hours.iter().any(|h| {
            weekday_index(h.day) == date.weekday().to_monday_zero_offset() as usize
                && within(&h.start, &h.end)
        })
    }

    /// Random spans of one date, 0..3 of them, at least `min`; boundaries on quarter hours from
    /// 03:00 (clear of Berlin's DST hour, where a local time is missing or doubled) to 24:00.
    fn random_spans(min: usize) -> impl Strategy<Value = Vec<HoursSpan>> {
        prop::collection::vec((0u16..80, 1u16..40), min..3).prop_map(|raw| {
            let clock = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
            raw.into_iter()
                .map(|(start, len)| {
                    let start = 180 + start * 15;
                    HoursSpan {
                        start: clock(start),
                        end: clock((start + len * 15).min(1440)),
                    }
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// The day walk agrees with a minute-by-minute count, across DST changes, holidays,
        /// make-up days and overrides (named near the interval, a date sometimes in more than
        /// one list, so the order of the rules is exercised too).
        #[test]
        fn agrees_with_minute_by_minute(
            start_min in 0i64..(60 * 24 * 400),
            len_min in 0i64..(60 * 24 * 9),
            holidays in prop::collection::vec(-1i32..10, 0..3),
            working in prop::collection::vec((-1i32..10, random_spans(1)), 0..4),
            overrides in prop::collection::vec((-1i32..10, random_spans(0)), 0..4),
            pick in 0.0f64..1.0,
        ) {
            // Minutes from 2026-03-01T00:00Z, so both DST changes of 2026 are covered.
            let base = ts("2026-03-01T00:00:00Z");
            let from = base + start_min * 60;
            let to = from + len_min * 60;
            let first = crate::period::date_of(utc_day(from));
            let date = |offset: i32| first.checked_add(jiff::Span::new().days(offset)).unwrap();
            let mut e = office_definition("Europe/Berlin", &[]);
            e.holidays = ["2026-12-24", "2026-12-25", "2027-04-02"]
                .map(|d| d.parse().unwrap())
                .into_iter()
                .chain(holidays.into_iter().map(date))
                .collect();
            for (offset, hours) in working {
                let date = date(offset);
                if !e.working_days.iter().any(|w| w.date == date) {
                    e.working_days.push(WorkingDay { date, hours });
                }
            }
            for (offset, hours) in overrides {
                let date = date(offset);
                if !e.hours_overrides.iter().any(|o| o.date == date) {
                    e.hours_overrides.push(HoursOverride { date, hours });
                }
            }
            let c = BusinessCalendar::from_event(&e).unwrap();
            let tz = TimeZone::get(&e.time_zone).unwrap();
            let working: Vec<i64> = (0..len_min)
                .filter(|m| working_minute(&e, &tz, from + m * 60))
                .collect();
            prop_assert_eq!(c.business_seconds(from, to), working.len() as i64 * 60);
            if !working.is_empty() {
                // The instant k business minutes after `from` is the end of the k-th working
                // minute: checked for the last and for one picked at random.
                let k = ((working.len() - 1) as f64 * pick) as usize;
                for k in [k, working.len() - 1] {
                    prop_assert_eq!(
                        c.add_business_seconds(from, (k as i64 + 1) * 60),
                        Some(from + (working[k] + 1) * 60)
                    );
                }
            }
        }
    }
}
