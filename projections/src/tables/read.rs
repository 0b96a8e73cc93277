//! What reports and the SLA scheduler ask of the tables: the read half of [`TableStore`].
//!
//! Every read is bounded by what it returns, never by the size of the tables: statistics
//! stream the rows of one dated column's range through a callback (the caller folds them
//! into per-period groups), the SLA list is one page of an index on the latest timers, the
//! scheduler one page of the index on open timers, and the compliance and load counts are
//! `GROUP BY` queries answered by the database.
//!
//! [`TableStore`]: super::TableStore

use uuid::Uuid;

use super::rows::*;

/// A half-open range of times, `[from, to)` in Unix seconds; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Span {
    pub fn contains(&self, at: i64) -> bool {
        self.from.is_none_or(|f| f <= at) && self.to.is_none_or(|t| at < t)
    }

    /// The bounds as the tables store times (RFC 3339 text).
    pub fn text(&self) -> (Option<String>, Option<String>) {
        (self.from.map(rfc3339), self.to.map(rfc3339))
    }
}

/// A dated column a statistic ranges over, and so the table it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dated {
    /// `tickets.opened_at`.
    TicketOpened,
    /// `tickets.closed_at`.
    TicketClosed,
    /// `assignments.from_at`.
    AssignmentStarted,
    /// `assignments.until_at`.
    AssignmentEnded,
    /// `resolutions.resolved_at`.
    Resolved,
    /// `resolutions.reopened_at`.
    Reopened,
    /// `satisfaction_ratings.rated_at`.
    Rated,
    /// `sla_timers.fulfilled_at`.
    TimerFulfilled,
    /// `complaint_rulings.complained_at`.
    RulingComplained,
    /// `complaint_charges.ruled_at`.
    Charged,
    /// `follow_ups.due_by`.
    FollowUpDue,
    /// `inspection_samples.drawn_at`.
    SampleDrawn,
    /// `inspections.inspected_at`.
    Inspected,
    /// `reinspections_overdue.marked_at`.
    ReinspectionOverdue,
    /// `deadlines.due_at`.
    DeadlineDue,
}

impl Dated {
    /// (table, column). Constants: never text from a request.
    pub fn table_column(self) -> (&'static str, &'static str) {
        match self {
            Dated::TicketOpened => ("tickets", "opened_at"),
            Dated::TicketClosed => ("tickets", "closed_at"),
            Dated::AssignmentStarted => ("assignments", "from_at"),
            Dated::AssignmentEnded => ("assignments", "until_at"),
            Dated::Resolved => ("resolutions", "resolved_at"),
            Dated::Reopened => ("resolutions", "reopened_at"),
            Dated::Rated => ("satisfaction_ratings", "rated_at"),
            Dated::TimerFulfilled => ("sla_timers", "fulfilled_at"),
            Dated::RulingComplained => ("complaint_rulings", "complained_at"),
            Dated::Charged => ("complaint_charges", "ruled_at"),
            Dated::FollowUpDue => ("follow_ups", "due_by"),
            Dated::SampleDrawn => ("inspection_samples", "drawn_at"),
            Dated::Inspected => ("inspections", "inspected_at"),
            Dated::ReinspectionOverdue => ("reinspections_overdue", "marked_at"),
            Dated::DeadlineDue => ("deadlines", "due_at"),
        }
    }

    /// The row's value of this column.
    pub fn of(self, row: &AnyRow) -> Option<i64> {
        match (self, row) {
            (Dated::TicketOpened, AnyRow::Ticket(r)) => Some(r.opened_at),
            (Dated::TicketClosed, AnyRow::Ticket(r)) => r.closed_at,
            (Dated::AssignmentStarted, AnyRow::Assignment(r)) => Some(r.from_at),
            (Dated::AssignmentEnded, AnyRow::Assignment(r)) => r.until_at,
            (Dated::Resolved, AnyRow::Resolution(r)) => Some(r.resolved_at),
            (Dated::Reopened, AnyRow::Resolution(r)) => r.reopened_at,
            (Dated::Rated, AnyRow::Rating(r)) => Some(r.rated_at),
            (Dated::TimerFulfilled, AnyRow::Timer(r)) => r.fulfilled_at,
            (Dated::RulingComplained, AnyRow::Ruling(r)) => Some(r.complained_at),
            (Dated::Charged, AnyRow::Charge(r)) => Some(r.ruled_at),
            (Dated::FollowUpDue, AnyRow::FollowUp(r)) => Some(r.due_by),
            (Dated::SampleDrawn, AnyRow::Sample(r)) => Some(r.drawn_at),
            (Dated::Inspected, AnyRow::Inspection(r)) => Some(r.inspected_at),
            (Dated::ReinspectionOverdue, AnyRow::Overdue(r)) => Some(r.marked_at),
            (Dated::DeadlineDue, AnyRow::Deadline(r)) => r.due_at,
            _ => None,
        }
    }
}

/// A row of any table, as [`super::TableStore::scan`] hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyRow {
    Ticket(TicketRow),
    Timer(TimerRow),
    Assignment(AssignmentRow),
    Resolution(ResolutionRow),
    Rating(RatingRow),
    Ruling(RulingRow),
    Charge(ChargeRow),
    FollowUp(FollowUpRow),
    Sample(SampleRow),
    Inspection(InspectionRow),
    Overdue(OverdueRow),
    Deadline(DeadlineRow),
}

/// The order in which the scheduler reads the step deadlines due: by due time, then ticket
/// and number (the SQL stores order alike).
pub fn deadline_order(r: &DeadlineRow) -> (i64, Uuid, u32) {
    (r.due_at.unwrap_or(i64::MAX), r.ticket_id, r.deadline)
}

/// Which tickets' timers the SLA report covers: by the ticket's current assignee and team,
/// and the time it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerFilter {
    pub agent: Option<String>,
    pub team: Option<String>,
    pub opened: Span,
}

/// Where a page of the SLA list starts: after this (due time, ticket, target). A timer with
/// no due time sorts last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub due_at: Option<i64>,
    pub ticket_id: Uuid,
    pub target: String,
}

impl Cursor {
    /// The sort key: due time (none last), ticket, target.
    pub fn key(&self) -> (i64, Uuid, &str) {
        (
            self.due_at.unwrap_or(i64::MAX),
            self.ticket_id,
            &self.target,
        )
    }

    /// `DUE_SECONDS/TICKET/TARGET` (`-` for no due time): opaque to callers.
    pub fn encode(&self) -> String {
        let due = self.due_at.map_or("-".to_owned(), |d| d.to_string());
        format!("{due}/{}/{}", self.ticket_id, self.target)
    }

    pub fn decode(text: &str) -> Result<Cursor, String> {
        let bad = || format!("`{text}` is not a page cursor of this report");
        let mut parts = text.splitn(3, '/');
        let (Some(due), Some(id), Some(target)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let due_at = match due {
            "-" => None,
            d => Some(d.parse::<i64>().map_err(|_| bad())?),
        };
        if !["first_response", "next_response", "resolution"].contains(&target) {
            return Err(bad());
        }
        Ok(Cursor {
            due_at,
            ticket_id: id.parse().map_err(|_| bad())?,
            target: target.to_owned(),
        })
    }
}

/// One page of the SLA list: the latest cycle of each target of the filtered tickets,
/// soonest due first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerPage {
    pub filter: TimerFilter,
    /// The report's time (for `at_risk_only`).
    pub now: i64,
    /// Only live timers that are breached or past their warning threshold at `now`.
    pub at_risk_only: bool,
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// A listed timer and its ticket's current assignee and team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub timer: TimerRow,
    pub assignee: Option<String>,
    pub team: Option<String>,
}

/// Timers met and breached for one (grade, target): fulfilled cycles by whether they met
/// their target, plus live ones already breached at the report's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compliance {
    pub grade: String,
    pub target: String,
    /// The ticket's team (none while unassigned): the SLA report sums over it for the
    /// split by grade and over grades for the split by team.
    pub team: Option<String>,
    pub met: u64,
    pub breached: u64,
}

/// The SLA report's counts at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaCounts {
    pub compliance: Vec<Compliance>,
    /// Live timers (latest cycles not fulfilled).
    pub open: u64,
    /// Live timers breached or past their warning threshold.
    pub at_risk: u64,
}

/// Compliance per team and target, summed over grades, teams by name (unassigned last, as
/// no team), rows with nothing met or breached left out.
pub fn by_team(rows: &[Compliance]) -> Vec<(Option<String>, String, u64, u64)> {
    let mut summed: std::collections::BTreeMap<(bool, Option<String>, String), (u64, u64)> =
        std::collections::BTreeMap::new();
    for c in rows {
        let s = summed
            .entry((c.team.is_none(), c.team.clone(), c.target.clone()))
            .or_default();
        s.0 += c.met;
        s.1 += c.breached;
    }
    summed
        .into_iter()
        .filter(|(_, (met, breached))| met + breached > 0)
        .map(|((_, team, target), (met, breached))| (team, target, met, breached))
        .collect()
}

/// Whether a live timer row is breached at `now`: recorded, or past its due time.
pub fn breached_at_now(t: &TimerRow, now: i64) -> bool {
    t.fulfilled_at.is_none() && (t.status == "breached" || t.due_at.is_some_and(|d| d <= now))
}

/// Whether a live timer row is at risk at `now`: breached, or past its warning threshold.
pub fn at_risk_at_now(t: &TimerRow, now: i64) -> bool {
    breached_at_now(t, now) || (t.fulfilled_at.is_none() && t.warn_at.is_some_and(|w| w <= now))
}

/// Whether a ticket row passes a timer filter.
pub fn ticket_passes(filter: &TimerFilter, ticket: &TicketRow) -> bool {
    filter
        .agent
        .as_deref()
        .is_none_or(|a| ticket.assignee.as_deref() == Some(a))
        && filter
            .team
            .as_deref()
            .is_none_or(|t| ticket.team.as_deref() == Some(t))
        && filter.opened.contains(ticket.opened_at)
}

/// Whether a timer row is one the scheduler must act on at `now`: the latest cycle of an open
/// ticket, live, and past its due time with no breach recorded, or past its warning
/// threshold with neither a warning nor a breach recorded.
pub fn scheduler_due(t: &TimerRow, now: i64) -> bool {
    t.latest
        && t.fulfilled_at.is_none()
        && t.status != "breached"
        && t.status != "cancelled"
        && (t.due_at.is_some_and(|d| d < now)
            || (t.warn_at.is_some_and(|w| w <= now) && t.warned_at.is_none()))
}

/// Sorts and cuts compliance counts in report order (grade, then target).
pub fn in_report_order(rows: Vec<Compliance>) -> Vec<Compliance> {
    use closeloop_core::domain::Grade;
    let grade_rank = |g: &str| Grade::ALL.iter().position(|x| x.as_str() == g);
    // Summed over teams: one row per grade and target.
    let mut summed: std::collections::BTreeMap<(String, String), (u64, u64)> =
        std::collections::BTreeMap::new();
    for c in rows {
        let s = summed.entry((c.grade, c.target)).or_default();
        s.0 += c.met;
        s.1 += c.breached;
    }
    let mut rows: Vec<Compliance> = summed
        .into_iter()
        .map(|((grade, target), (met, breached))| Compliance {
            grade,
            target,
            team: None,
            met,
            breached,
        })
        .collect();
    rows.retain(|c| c.met + c.breached > 0);
    rows.sort_by(|a, b| {
        (
            grade_rank(&a.grade).unwrap_or(usize::MAX),
            &a.grade,
            &a.target,
        )
            .cmp(&(
                grade_rank(&b.grade).unwrap_or(usize::MAX),
                &b.grade,
                &b.target,
            ))
    });
    rows
}
