//! A ticket's SLA clocks, folded from its events: the part of the SLA model that the SLA and
//! performance projections share.
//!
//! Each ticket with targets has up to three live timers: `first_response` and `resolution`
//! start when it is opened; `next_response` starts when the customer replies after having been
//! answered. `customer_responded_to` and `customer_info_requested` answer the customer (they
//! fulfil `first_response` and `next_response`); `ticket_resolved` fulfils every live timer;
//! a reopen starts a fresh `resolution` timer (each resolution is measured on its own).
//!
//! Clocks are off while the ticket is `pending_customer`. The ticket keeps its whole pause
//! history, and every figure (business and calendar time used, due and warning instants) is
//! computed from the timer's start, stop and that history on the calendar in force. So a
//! priority change, which replaces the targets (and maybe the calendar), recomputes each live
//! timer from its start, paused time included, and a replay gives the same numbers.
//!
//! Nothing here reads a clock: "now" is a parameter of the read functions.

use std::collections::HashMap;

use closeloop_core::domain::{CalendarDefined, SlaTarget};
use serde::{Deserialize, Serialize};

use crate::calendar::BusinessCalendar;
use crate::fact::{Fact, Targets as EventTargets};
use crate::period::Names;

/// Calendars, folded from `calendar_defined`, and interned as small numbers in order of
/// first use (a ticket may name a calendar before it is defined). Only the names and the
/// definitions are stored; the arithmetic-ready calendars are rebuilt by [`Calendars::restored`].
/// A ticket whose calendar was never defined is measured 24x7 in UTC.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Calendars {
    names: Names,
    #[serde(with = "crate::period::pairs")]
    defs: HashMap<u32, CalendarDefined>,
    #[serde(skip)]
    built: Vec<Option<BusinessCalendar>>,
}

impl Calendars {
    /// The calendar with interned id `id`.
    pub fn get(&self, id: u32) -> &BusinessCalendar {
        static ALWAYS: std::sync::OnceLock<BusinessCalendar> = std::sync::OnceLock::new();
        self.built
            .get(id as usize)
            .and_then(Option::as_ref)
            .unwrap_or_else(|| ALWAYS.get_or_init(|| BusinessCalendar::always("")))
    }

    /// The calendar named `name`, when it was defined.
    pub fn find(&self, name: &str) -> Option<&BusinessCalendar> {
        let id = self.names.find(name)?;
        self.built.get(id as usize).and_then(Option::as_ref)
    }

    /// How many calendar names are interned (defined or named by a ticket).
    pub fn names_len(&self) -> usize {
        self.names.len()
    }

    /// The name of an interned calendar id.
    pub fn name(&self, id: u32) -> &str {
        self.names.name(id)
    }

    /// Folds a `calendar_defined`; a definition that cannot be used is an error for the caller
    /// to report (the projector stops on it rather than measure on a wrong calendar).
    pub fn define(&mut self, e: &CalendarDefined) -> Result<(), crate::calendar::CalendarError> {
        let c = BusinessCalendar::from_event(e)?;
        let id = self.names.id(&e.calendar_id);
        self.defs.insert(id, e.clone());
        self.place(id, c);
        Ok(())
    }

    fn place(&mut self, id: u32, c: BusinessCalendar) {
        let i = id as usize;
        if self.built.len() <= i {
            self.built.resize_with(i + 1, || None);
        }
        self.built[i] = Some(c);
    }

    /// The compact targets of a ticket, interning its calendar.
    pub fn targets(&mut self, sla: &EventTargets) -> Targets {
        Targets {
            calendar: self.names.id(&sla.calendar_id),
            first_response_minutes: sla.first_response_minutes,
            resolution_minutes: sla.resolution_minutes,
            next_response_minutes: sla.next_response_minutes,
            warn_at_percent: sla.warn_at_percent,
        }
    }

    /// Rebuilds the calendars after deserializing.
    pub fn restored(&mut self) -> Result<(), crate::calendar::CalendarError> {
        self.names.restored();
        let mut defs: Vec<(u32, CalendarDefined)> =
            self.defs.iter().map(|(k, v)| (*k, v.clone())).collect();
        defs.sort_by_key(|(k, _)| *k);
        for (id, def) in defs {
            let c = BusinessCalendar::from_event(&def)?;
            self.place(id, c);
        }
        Ok(())
    }
}

/// The targets in force for a ticket, compact (the calendar interned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    pub calendar: u32,
    pub first_response_minutes: u32,
    pub resolution_minutes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_response_minutes: Option<u32>,
    pub warn_at_percent: u8,
}

/// One deadline's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub target: SlaTarget,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warned: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub breach_recorded: bool,
    pub target_minutes: u32,
    /// Unix seconds.
    pub start: i64,
    /// When it was fulfilled; `None` while live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<i64>,
    /// Business / calendar seconds used, final once stopped.
    #[serde(default)]
    pub used_business_s: u32,
    #[serde(default)]
    pub used_calendar_s: u32,
    /// When the target is (or was) reached, if the clock reaches it while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<i64>,
    /// When the warning threshold is (or was) reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_at: Option<i64>,
}

impl Timer {
    pub fn is_live(&self) -> bool {
        self.stop.is_none()
    }

    /// Stopped within its target.
    pub fn met(&self) -> bool {
        self.stop.is_some()
            && i64::from(self.used_business_s) <= i64::from(self.target_minutes) * 60
    }
}

/// A timer that was just fulfilled: what the folds count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub target: SlaTarget,
    pub business_s: i64,
    pub calendar_s: i64,
    pub met: bool,
}

/// The clocks of one ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClock {
    pub opened_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<Targets>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<i64>,
    /// Closed pauses, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<(i64, i64)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub responded: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolved: bool,
    /// Due and warning instants are not computed (a fold that needs only times used).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_deadlines: bool,
    /// Live timers and the last stopped timer of each target, in creation order.
    pub timers: Vec<Timer>,
}

impl TicketClock {
    /// The clock of a ticket opened at `at`; `deadlines: false` skips computing due and warning
    /// instants (the performance fold needs only the times used).
    pub fn open(
        at: i64,
        sla: Option<&EventTargets>,
        deadlines: bool,
        calendars: &mut Calendars,
    ) -> TicketClock {
        let mut clock = TicketClock {
            opened_at: at,
            sla: sla.map(|s| calendars.targets(s)),
            paused_since: None,
            pauses: Vec::new(),
            responded: false,
            resolved: false,
            no_deadlines: !deadlines,
            timers: Vec::with_capacity(2),
        };
        if let Some(sla) = &clock.sla {
            let (first, resolution) = (sla.first_response_minutes, sla.resolution_minutes);
            clock.start(SlaTarget::FirstResponse, first, at, calendars);
            clock.start(SlaTarget::Resolution, resolution, at, calendars);
        }
        clock
    }

    fn minutes_for(&self, target: SlaTarget) -> Option<u32> {
        let sla = self.sla.as_ref()?;
        match target {
            SlaTarget::FirstResponse => Some(sla.first_response_minutes),
            SlaTarget::Resolution => Some(sla.resolution_minutes),
            SlaTarget::NextResponse => sla.next_response_minutes,
        }
    }

    fn calendar<'c>(&self, calendars: &'c Calendars) -> &'c BusinessCalendar {
        calendars.get(self.sla.as_ref().map_or(u32::MAX, |s| s.calendar))
    }

    fn start(&mut self, target: SlaTarget, minutes: u32, at: i64, calendars: &Calendars) {
        // Keep at most one timer per target: the newest (live or last stopped).
        self.timers.retain(|t| t.target != target);
        let mut timer = Timer {
            target,
            target_minutes: minutes,
            start: at,
            stop: None,
            used_business_s: 0,
            used_calendar_s: 0,
            due_at: None,
            warn_at: None,
            warned: false,
            breach_recorded: false,
        };
        self.derive(&mut timer, calendars);
        self.timers.push(timer);
    }

    /// The active (clock-on) segments of `[from, to)`, `to = i64::MAX` for open-ended.
    fn segments(&self, from: i64, to: i64, mut f: impl FnMut(i64, i64) -> bool) {
        let mut cursor = from;
        let pauses = self
            .pauses
            .iter()
            .copied()
            .chain(self.paused_since.map(|p| (p, i64::MAX)));
        for (p0, p1) in pauses {
            if p1 <= cursor {
                continue;
            }
            if p0 >= to {
                break;
            }
            if p0 > cursor && !f(cursor, p0.min(to)) {
                return;
            }
            cursor = cursor.max(p1);
            if cursor >= to {
                return;
            }
        }
        if cursor < to {
            f(cursor, to);
        }
    }

    /// Business and calendar seconds a timer used up to `upto`.
    fn used(&self, timer: &Timer, upto: i64, cal: &BusinessCalendar) -> (i64, i64) {
        let end = timer.stop.unwrap_or(upto).min(upto);
        let (mut business, mut calendar) = (0, 0);
        self.segments(timer.start, end, |a, b| {
            business += cal.business_seconds(a, b);
            calendar += b - a;
            true
        });
        (business, calendar)
    }

    /// The instant at which the timer's clock reaches `seconds` business seconds, if it does
    /// (before its stop and outside pauses).
    fn reaches(&self, timer: &Timer, seconds: i64, cal: &BusinessCalendar) -> Option<i64> {
        let mut remaining = seconds;
        let mut found = None;
        let end = timer.stop.unwrap_or(i64::MAX);
        self.segments(timer.start, end, |a, b| {
            if b == i64::MAX {
                found = cal.add_business_seconds(a, remaining);
                return false;
            }
            let have = cal.business_seconds(a, b);
            if have >= remaining {
                found = cal.add_business_seconds(a, remaining);
                return false;
            }
            remaining -= have;
            true
        });
        found
    }

    /// Recomputes a timer's due and warning instants from the whole history.
    fn derive(&self, timer: &mut Timer, calendars: &Calendars) {
        if self.no_deadlines {
            return;
        }
        let cal = self.calendar(calendars);
        let target_s = i64::from(timer.target_minutes) * 60;
        let warn_pct = i64::from(self.sla.as_ref().map_or(100, |s| s.warn_at_percent));
        timer.due_at = self.reaches(timer, target_s, cal);
        timer.warn_at = self.reaches(timer, target_s * warn_pct / 100, cal);
    }

    fn rederive_live(&mut self, calendars: &Calendars) {
        let mut timers = std::mem::take(&mut self.timers);
        for t in timers.iter_mut().filter(|t| t.is_live()) {
            self.derive(t, calendars);
        }
        self.timers = timers;
    }

    fn stop(
        &mut self,
        targets: &[SlaTarget],
        at: i64,
        calendars: &Calendars,
        out: &mut Vec<Stopped>,
    ) {
        let cal = self.calendar(calendars);
        let mut timers = std::mem::take(&mut self.timers);
        for t in timers
            .iter_mut()
            .filter(|t| t.is_live() && targets.contains(&t.target))
        {
            let (business, calendar) = self.used(t, at, cal);
            t.stop = Some(at.max(t.start));
            t.used_business_s = u32::try_from(business).unwrap_or(u32::MAX);
            t.used_calendar_s = u32::try_from(calendar).unwrap_or(u32::MAX);
            out.push(Stopped {
                target: t.target,
                business_s: business,
                calendar_s: calendar,
                met: t.met(),
            });
        }
        self.timers = timers;
    }

    fn pause(&mut self, at: i64, calendars: &Calendars) {
        if self.paused_since.is_none() {
            self.paused_since = Some(at);
            self.rederive_live(calendars);
        }
    }

    fn resume(&mut self, at: i64, calendars: &Calendars) {
        if let Some(p) = self.paused_since.take() {
            self.pauses.push((p, at.max(p)));
            self.rederive_live(calendars);
        }
    }

    /// Folds one of the ticket's events at business time `at` (Unix seconds); returns the
    /// timers it fulfilled.
    pub fn apply(&mut self, event: &Fact, at: i64, calendars: &mut Calendars) -> Vec<Stopped> {
        let mut out = Vec::new();
        match event {
            Fact::CustomerRespondedTo(_) | Fact::CustomerInfoRequested(_) => {
                self.responded = true;
                self.stop(
                    &[SlaTarget::FirstResponse, SlaTarget::NextResponse],
                    at,
                    calendars,
                    &mut out,
                );
                if matches!(event, Fact::CustomerInfoRequested(_)) {
                    self.pause(at, calendars);
                }
            }
            Fact::CustomerReplied(_) => {
                self.resume(at, calendars);
                let next_live = self
                    .timers
                    .iter()
                    .any(|t| t.is_live() && t.target != SlaTarget::Resolution);
                if self.responded && !self.resolved && !next_live {
                    if let Some(minutes) = self.minutes_for(SlaTarget::NextResponse) {
                        self.start(SlaTarget::NextResponse, minutes, at, calendars);
                    }
                }
            }
            Fact::TicketResolved(_) => {
                self.resume(at, calendars);
                self.resolved = true;
                self.stop(
                    &[
                        SlaTarget::FirstResponse,
                        SlaTarget::NextResponse,
                        SlaTarget::Resolution,
                    ],
                    at,
                    calendars,
                    &mut out,
                );
            }
            Fact::TicketReopened(_) => {
                self.resolved = false;
                if let Some(minutes) = self.minutes_for(SlaTarget::Resolution) {
                    self.start(SlaTarget::Resolution, minutes, at, calendars);
                }
            }
            // A merged ticket takes no more work: its live timers end without a result
            // (the tables write them `cancelled`), and the ones it fulfilled stay.
            Fact::MergedInto(_) => {
                self.timers.retain(|t| !t.is_live());
                self.pauses = Vec::new();
                self.paused_since = None;
            }
            Fact::TicketClosed(_) => {
                // Nothing more can run: the pause history is no longer needed.
                self.pauses = Vec::new();
                self.paused_since = None;
            }
            Fact::PriorityChanged(e) => {
                let targets = e.sla.as_ref().map(|s| calendars.targets(s));
                self.retarget(targets, calendars)
            }
            // Marks the timer whose deadline it was (a deadline moved by a priority change is
            // a new deadline, with its own warning and breach).
            Fact::SlaWarningRaised(e) => {
                let due = Some(e.due_at);
                if let Some(t) = self
                    .timers
                    .iter_mut()
                    .find(|t| t.target == e.target && t.due_at == due)
                {
                    t.warned = true;
                }
            }
            Fact::SlaBreached(e) => {
                let due = Some(e.due_at);
                if let Some(t) = self
                    .timers
                    .iter_mut()
                    .find(|t| t.target == e.target && t.due_at == due)
                {
                    t.breach_recorded = true;
                }
            }
            _ => {}
        }
        out
    }

    /// New targets for the live timers (a priority change): each live timer takes its target's
    /// new minutes and is recomputed from its start on the new calendar; a target the new
    /// policy lacks drops its live timer; a ticket that had no targets gets its clocks started
    /// from the moment it was opened.
    fn retarget(&mut self, sla: Option<Targets>, calendars: &Calendars) {
        let had_targets = self.sla.is_some();
        self.sla = sla;
        if self.sla.is_none() {
            self.timers.retain(|t| !t.is_live());
            return;
        }
        if !had_targets && !self.resolved {
            let opened = self.opened_at;
            if !self.responded {
                let m = self.minutes_for(SlaTarget::FirstResponse).unwrap_or(0);
                self.start(SlaTarget::FirstResponse, m, opened, calendars);
            }
            let m = self.minutes_for(SlaTarget::Resolution).unwrap_or(0);
            self.start(SlaTarget::Resolution, m, opened, calendars);
            return;
        }
        let mut timers = std::mem::take(&mut self.timers);
        timers.retain_mut(|t| {
            if !t.is_live() {
                return true;
            }
            match self.minutes_for(t.target) {
                Some(m) => {
                    t.target_minutes = m;
                    true
                }
                None => false,
            }
        });
        for t in timers.iter_mut().filter(|t| t.is_live()) {
            let before = t.due_at;
            self.derive(t, calendars);
            if t.due_at != before {
                t.warned = false;
                t.breach_recorded = false;
            }
        }
        self.timers = timers;
    }

    /// Business and calendar seconds a timer has used as of `now`.
    pub fn used_at(&self, timer: &Timer, now: i64, calendars: &Calendars) -> (i64, i64) {
        if timer.stop.is_some() {
            return (
                i64::from(timer.used_business_s),
                i64::from(timer.used_calendar_s),
            );
        }
        self.used(timer, now, self.calendar(calendars))
    }

    /// Whether the clock is off (the ticket waits for the customer).
    pub fn is_paused(&self) -> bool {
        self.paused_since.is_some()
    }
}

/// The state of a timer in a report at `now`.
pub fn status_at(clock: &TicketClock, timer: &Timer, now: i64) -> &'static str {
    if timer.stop.is_some() {
        if timer.met() {
            "fulfilled"
        } else {
            "breached"
        }
    } else if timer.breach_recorded || timer.due_at.is_some_and(|d| d <= now) {
        "breached"
    } else if clock.is_paused() {
        "paused"
    } else {
        "running"
    }
}

/// Index of a target in per-target arrays.
pub fn target_index(target: SlaTarget) -> usize {
    match target {
        SlaTarget::FirstResponse => 0,
        SlaTarget::NextResponse => 1,
        SlaTarget::Resolution => 2,
    }
}

/// A target's name as events, tables and reports spell it.
pub fn target_name(target: SlaTarget) -> &'static str {
    match target {
        SlaTarget::FirstResponse => "first_response",
        SlaTarget::NextResponse => "next_response",
        SlaTarget::Resolution => "resolution",
    }
}

/// The targets in per-target array order.
pub const TARGETS: [SlaTarget; 3] = [
    SlaTarget::FirstResponse,
    SlaTarget::NextResponse,
    SlaTarget::Resolution,
];
