//! The rows of the analysts' tables, one struct per table, at the grain of a fact. These
//! tables and their columns are a public contract (the README documents each column): a
//! field renamed here is a column renamed for every analyst's SQL.
//!
//! Times are Unix seconds here; SQLite stores them as RFC 3339 text (`2026-11-23T09:15:00Z`,
//! which sorts and works with SQLite's date functions), PostgreSQL as `timestamptz`.
//! Durations are whole minutes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `tickets`: one row per ticket, as it stands after the last event folded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRow {
    pub ticket_id: Uuid,
    pub customer_id: String,
    pub grade: String,
    pub channel: String,
    pub category: String,
    pub priority: String,
    /// `unassigned`, `assigned`, `in_progress`, `pending_customer`, `resolved`, `closed`.
    pub status: String,
    /// Support line 1..3.
    pub line: u8,
    pub assignee: Option<String>,
    pub team: Option<String>,
    #[serde(with = "time")]
    pub opened_at: i64,
    /// The first answer to the customer (`customer_responded_to` or `customer_info_requested`).
    #[serde(with = "time_opt")]
    pub first_response_at: Option<i64>,
    /// The latest resolution (a reopened ticket keeps its last one until resolved again).
    #[serde(with = "time_opt")]
    pub resolved_at: Option<i64>,
    #[serde(with = "time_opt")]
    pub closed_at: Option<i64>,
    pub reopenings: u32,
    pub escalations: u32,
}

impl TicketRow {
    /// Neither resolved nor closed: in an agent's open load, and its timers due.
    pub fn is_open(&self) -> bool {
        !["resolved", "closed"].contains(&self.status.as_str())
    }
}

/// `sla_timers`: one row per timer cycle. A target's first timer is cycle 1; a reopen starts
/// a new `resolution` cycle, a customer reply after an answer a new `next_response` cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRow {
    pub ticket_id: Uuid,
    /// `first_response`, `next_response`, `resolution`.
    pub target: String,
    pub cycle: u32,
    /// As of the last event folded: `running`, `paused`, `fulfilled` (in time), `breached`
    /// (fulfilled late, or a breach recorded), `cancelled` (a priority change's policy has no
    /// such target). A running timer past its due time is `breached` in `report sla` at the
    /// report's time; here it stays `running` until the breach is recorded.
    pub status: String,
    #[serde(with = "time")]
    pub started_at: i64,
    /// When the clock reaches the target (recomputed by pauses and priority changes).
    #[serde(with = "time_opt")]
    pub due_at: Option<i64>,
    /// When the warning threshold is reached.
    #[serde(with = "time_opt")]
    pub warn_at: Option<i64>,
    /// When `sla_warning_raised` was recorded for this deadline.
    #[serde(with = "time_opt")]
    pub warned_at: Option<i64>,
    /// When `sla_breached` was recorded for this deadline.
    #[serde(with = "time_opt")]
    pub breached_at: Option<i64>,
    #[serde(with = "time_opt")]
    pub fulfilled_at: Option<i64>,
    /// Whether it was fulfilled within its target (only once fulfilled).
    pub met: Option<bool>,
    pub target_minutes: u32,
    /// Business and calendar minutes used, once fulfilled (a live timer's use depends on
    /// the time you ask: `report sla` computes it).
    pub business_minutes_used: Option<u32>,
    pub calendar_minutes_used: Option<u32>,
    pub calendar_id: String,
    pub grade: String,
    pub priority: String,
    /// The agent and team credited once fulfilled: the assignee then (the resolver when
    /// there was none).
    pub agent_id: Option<String>,
    pub team: Option<String>,
    /// The ticket's latest cycle of this target (what `report sla` lists; a cancelled one is not listed).
    pub latest: bool,
}

/// `assignments`: one row per period a ticket spent with one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRow {
    pub ticket_id: Uuid,
    /// 1, 2, ... in the ticket's order.
    pub seq: u32,
    pub agent_id: String,
    pub team: String,
    #[serde(with = "time")]
    pub from_at: i64,
    /// `None` while the ticket is still with the agent.
    #[serde(with = "time_opt")]
    pub until_at: Option<i64>,
    /// Why it ended: `reassigned`, `escalated`, `closed`.
    pub ended_by: Option<String>,
    /// How it began: `assigned` (`ticket_assigned`) or `escalated` (to a named agent).
    pub started_by: String,
    /// The ticket's category (complaints are counted per agent and team).
    pub category: String,
}

/// `resolutions`: one row per resolution (a reopen starts the next).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolutionRow {
    pub ticket_id: Uuid,
    /// 1, 2, ...: the `resolution` that ratings name.
    pub resolution: u32,
    pub resolved_by: String,
    /// The ticket's team when resolved.
    pub team: Option<String>,
    #[serde(with = "time")]
    pub resolved_at: i64,
    /// Business minutes from opening to the first answer (the ticket's first resolution
    /// only; none without SLA targets).
    pub first_response_business_minutes: Option<u32>,
    /// Business minutes of this resolution's `resolution` timer (none without SLA targets).
    pub resolution_business_minutes: Option<u32>,
    /// Resolved by the first agent it was assigned to, never escalated nor reopened.
    pub one_touch: bool,
    pub reopened_later: bool,
    /// When the ticket was reopened after this resolution.
    #[serde(with = "time_opt")]
    pub reopened_at: Option<i64>,
    pub category: String,
    pub grade: String,
    pub channel: String,
    /// The customer's answer: `confirmed`, `rejected`, or none (not yet, or never).
    #[serde(default)]
    pub answer: Option<String>,
    #[serde(default, with = "time_opt")]
    pub answered_at: Option<i64>,
    /// When the wait for the answer ends: the close of the `confirmation_wait_days`-th
    /// working day after the resolution, on the ticket's calendar (UTC days without one).
    /// Past it, with no answer, the scheduler closes the ticket `auto_closed_unconfirmed`.
    #[serde(default, with = "time_opt")]
    pub answer_due_at: Option<i64>,
    /// When the ticket was closed on this resolution, and why: `staff` (`close_ticket`; with
    /// no `answer`, closed before the customer answered) or `auto_closed_unconfirmed`.
    #[serde(default, with = "time_opt")]
    pub closed_at: Option<i64>,
    #[serde(default)]
    pub close_reason: Option<String>,
}

impl ResolutionRow {
    /// Still waiting for the customer: not answered, not reopened, not closed.
    pub fn awaits_answer(&self) -> bool {
        self.answer.is_none() && !self.reopened_later && self.closed_at.is_none()
    }
}

/// `satisfaction_ratings`: one row per rating (at most one per source and resolution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatingRow {
    pub ticket_id: Uuid,
    pub resolution: u32,
    /// `survey` or `callback`.
    pub source: String,
    #[serde(with = "time")]
    pub rated_at: i64,
    pub score: u8,
    /// The agent credited (the assignee or resolver when rated).
    pub agent_id: Option<String>,
    pub team: Option<String>,
    pub category: String,
    pub grade: String,
    pub channel: String,
    /// Quality-inspection callback dimensions, 1..5.
    pub recognition: Option<u8>,
    pub efficiency: Option<u8>,
    pub quality: Option<u8>,
    pub overall: Option<u8>,
}

/// `complaint_rulings`: one row per ruling on a complaint ticket. A later ruling supersedes
/// the one before (`superseded_at`); both rows stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulingRow {
    pub ticket_id: Uuid,
    /// 1, 2, ... in the ticket's order.
    pub ruling: u32,
    #[serde(with = "time")]
    pub ruled_at: i64,
    /// Who ruled, and as what: `supervisor`, `inspector` (or `system`).
    pub ruled_by: String,
    pub ruled_by_role: String,
    pub justified: bool,
    /// A code of the complaint-cause list in force at the ruling.
    pub cause: String,
    /// How many staff it charges (their rows are in `complaint_charges`).
    pub charged: u32,
    /// The ticket's assignee and team at the ruling.
    pub assignee: Option<String>,
    pub team: Option<String>,
    /// When the complaint was received (its ticket opened): rulings are counted in the
    /// period of their complaint, and the time to a ruling runs from here.
    #[serde(with = "time")]
    pub complained_at: i64,
    /// When a later ruling replaced this one; none while it stands.
    #[serde(with = "time_opt")]
    pub superseded_at: Option<i64>,
}

/// `follow_ups`: one row per follow-up call or visit planned on a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpRow {
    pub ticket_id: Uuid,
    /// 1, 2, ... in the ticket's order.
    pub follow_up: u32,
    /// `call` or `visit`.
    pub kind: String,
    /// The agent who makes it, and their team when it was planned.
    pub owner: String,
    pub team: String,
    #[serde(with = "time")]
    pub scheduled_at: i64,
    #[serde(with = "time")]
    pub due_by: i64,
    /// When the scheduler warns if it is still unrecorded.
    #[serde(with = "time")]
    pub warn_at: i64,
    /// When the scheduler recorded the warning and the overdue mark.
    #[serde(with = "time_opt")]
    pub warned_at: Option<i64>,
    #[serde(with = "time_opt")]
    pub overdue_at: Option<i64>,
    #[serde(with = "time_opt")]
    pub recorded_at: Option<i64>,
    pub recorded_by: Option<String>,
    /// `satisfied`, `issue_found`, `not_reached`.
    pub outcome: Option<String>,
    /// Visits: when it took place, whether the customer signed, and whether it was entered
    /// more than the week rule's days after.
    #[serde(with = "time_opt")]
    pub visited_at: Option<i64>,
    pub signed: Option<bool>,
    pub entered_late: Option<bool>,
    /// Recorded by `due_by` (once recorded).
    pub in_time: Option<bool>,
}

impl FollowUpRow {
    /// Not recorded yet: the scheduler may still warn or mark it overdue.
    pub fn is_open(&self) -> bool {
        self.recorded_at.is_none()
    }

    /// What the scheduler asks at `now`: open, and its warning or its due time passed
    /// without the mark.
    pub fn follow_up_due(&self, now: i64) -> bool {
        self.is_open()
            && ((self.warned_at.is_none() && self.warn_at <= now)
                || (self.overdue_at.is_none() && self.due_by <= now))
    }
}

/// `deadlines`: one row per step deadline set on a ticket (`set_deadline`), as its events
/// left it. The scheduler finds the warnings and breaches due through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineRow {
    pub ticket_id: Uuid,
    /// 1, 2, ... in the ticket's order.
    pub deadline: u32,
    /// The kind's code (`repair`, `paperwork`, ...).
    pub kind: String,
    /// The agent who does the step, and their team when it was set.
    pub owner: String,
    pub team: String,
    /// The calendar its business minutes are counted on (`None`: elapsed time).
    pub calendar_id: Option<String>,
    #[serde(with = "time")]
    pub set_at: i64,
    /// `None` only when the calendar has no working time within ten years.
    #[serde(with = "time_opt")]
    pub due_at: Option<i64>,
    /// When the scheduler warns (`None`: the kind warns never).
    #[serde(with = "time_opt")]
    pub warn_at: Option<i64>,
    /// `open`, `met` (done by its due time), `breached` (not done, breach recorded) or
    /// `met_late` (done after its breach).
    pub status: String,
    #[serde(with = "time_opt")]
    pub met_at: Option<i64>,
    #[serde(with = "time_opt")]
    pub warned_at: Option<i64>,
    #[serde(with = "time_opt")]
    pub breached_at: Option<i64>,
    /// What the breach brought about (`flag_exchange`), when it did.
    pub consequence: Option<String>,
}

impl DeadlineRow {
    /// What the scheduler asks at `now`: the step not done, and its warning or its due time
    /// passed without the mark.
    pub fn deadline_due(&self, now: i64) -> bool {
        self.met_at.is_none()
            && self.breached_at.is_none()
            && ((self.warned_at.is_none() && self.warn_at.is_some_and(|w| w <= now))
                || self.due_at.is_some_and(|d| d <= now))
    }
}

/// `inspection_samples`: one row per quality-inspection sample drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleRow {
    pub sample_id: Uuid,
    /// `YYYY-MM`: the month whose work is inspected.
    pub period: String,
    pub agent_id: String,
    pub team: String,
    #[serde(with = "time")]
    pub drawn_at: i64,
    /// The draw's seed (as text: it is a 64-bit unsigned number), and how many tickets were
    /// candidates and drawn.
    pub seed: String,
    pub candidates: u32,
    pub items: u32,
}

/// `inspections`: one row per drawn ticket inspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectionRow {
    pub sample_id: Uuid,
    pub ticket_id: Uuid,
    pub period: String,
    pub agent_id: String,
    pub team: String,
    #[serde(with = "time")]
    pub inspected_at: i64,
    pub inspector: String,
    pub recognition: u8,
    pub efficiency: u8,
    pub quality: u8,
    pub overall: u8,
    pub log_complete: bool,
    pub visit_verified: Option<bool>,
    /// `pass` or `fail`.
    pub verdict: String,
    /// For a failed item: the month it is due to be inspected again.
    pub reinspect_in: Option<String>,
}

/// `reinspections_overdue`: one row per failed item whose re-inspection the scheduler found
/// overdue (not inspected again in `due_in`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverdueRow {
    pub sample_id: Uuid,
    pub ticket_id: Uuid,
    /// The failed inspection's month, and the month it was due again.
    pub period: String,
    pub due_in: String,
    pub agent_id: String,
    pub team: String,
    #[serde(with = "time")]
    pub marked_at: i64,
}

/// `complaint_charges`: one row per member of staff a ruling charges with a justified
/// complaint. Performance counts the rows of standing rulings (no `superseded_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRow {
    pub ticket_id: Uuid,
    pub ruling: u32,
    pub agent_id: String,
    /// The agent's team at the ruling.
    pub team: String,
    #[serde(with = "time")]
    pub ruled_at: i64,
    #[serde(with = "time_opt")]
    pub superseded_at: Option<i64>,
}

/// `ticket_links`: one row per ticket and each ticket it is linked to or merged with, kept on
/// both tickets: `relation` is how `ticket_id` relates to `other_ticket_id`, a link's relation
/// (`duplicate_of`, `has_duplicate`, `caused_by`, `causes`, `related`) or, for a merge,
/// `merged_into` on the merged ticket and `merged_from` on the one it was merged into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRow {
    pub ticket_id: Uuid,
    pub other_ticket_id: Uuid,
    pub relation: String,
    #[serde(with = "time")]
    pub linked_at: i64,
}

/// `scorecards`: one row per scorecard definition (`define_scorecard`), by team (`''` for
/// the organisation's) and the day it takes force; a later definition for the same team and
/// day replaces the row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorecardRow {
    pub team: String,
    /// `YYYY-MM-DD` (UTC).
    pub effective_from: String,
    pub results_percent: u8,
    pub basic_percent: u8,
    pub discipline_percent: u8,
    pub bonus_per_excellent_rating: f64,
    pub bonus_cap_points: f64,
    pub deduction_per_justified_complaint: f64,
    pub deduction_cap_points: f64,
    #[serde(with = "time")]
    pub defined_at: i64,
}

/// `absences`: one row per planned absence, as its last event left it. The scheduler finds
/// the starts and ends due through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsenceRow {
    pub absence_id: Uuid,
    pub agent_id: String,
    #[serde(with = "time")]
    pub from_at: i64,
    #[serde(with = "time")]
    pub until_at: i64,
    pub reason: String,
    pub backup_agent_id: String,
    /// `planned`, `started`, `ended` or `cancelled`.
    pub state: String,
    /// When it entered that state.
    #[serde(with = "time")]
    pub changed_at: i64,
}

impl AbsenceRow {
    /// Whether the scheduler owes it a start or an end at `now`.
    pub fn absence_due(&self, now: i64) -> bool {
        (self.state == "planned" && self.from_at <= now)
            || (self.state == "started" && self.until_at <= now)
    }
}

/// `retention_policies`: one row per retention policy (`define_retention_policy`), as last
/// defined. The retention scheduler reads them all (there are a handful).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicyRow {
    pub policy_id: String,
    /// The category it matches; `None`: every category.
    pub category: Option<String>,
    /// The customer grade it matches; `None`: every grade.
    pub grade: Option<String>,
    pub keep_days: u32,
    #[serde(with = "time")]
    pub effective_from: i64,
    #[serde(with = "time")]
    pub defined_at: i64,
    /// The log position of the definition: the latest defined wins a tie between equally
    /// specific policies, as in the domain's directory.
    pub defined_position: i64,
}

/// `customer_erasures`: one row per `customer_data_erased`, the data-protection officer's
/// record of what was erased, when, by whom and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRow {
    /// The log position of the event (the key: a customer may be erased twice in a second).
    pub position: i64,
    pub customer_id: String,
    #[serde(with = "time")]
    pub erased_at: i64,
    /// Who erased: the actor's id (`None` for an erasure recorded before events named it).
    pub erased_by: Option<String>,
    pub reason: String,
    pub reference: String,
}

/// One (customer, category, grade) of a customer whose every ticket is closed and who was
/// not erased since their last closure: the latest closure of that kind of ticket
/// ([`super::TableStore::retention_candidates`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosureRow {
    pub customer_id: String,
    pub category: String,
    pub grade: String,
    #[serde(with = "time")]
    pub last_closed_at: i64,
}

/// `agents`: one row per registered agent, as last registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRow {
    pub agent_id: String,
    pub team: String,
    pub line: u8,
    pub level: String,
    pub team_lead: bool,
}

/// Every table's rows in primary-key order: what tests compare between backends, and between
/// a live model and its replay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dump {
    pub tickets: Vec<TicketRow>,
    pub sla_timers: Vec<TimerRow>,
    pub assignments: Vec<AssignmentRow>,
    pub resolutions: Vec<ResolutionRow>,
    pub satisfaction_ratings: Vec<RatingRow>,
    pub agents: Vec<AgentRow>,
    pub complaint_rulings: Vec<RulingRow>,
    pub complaint_charges: Vec<ChargeRow>,
    pub scorecards: Vec<ScorecardRow>,
    pub follow_ups: Vec<FollowUpRow>,
    pub inspection_samples: Vec<SampleRow>,
    pub inspections: Vec<InspectionRow>,
    pub reinspections_overdue: Vec<OverdueRow>,
    pub absences: Vec<AbsenceRow>,
    pub ticket_links: Vec<LinkRow>,
    pub deadlines: Vec<DeadlineRow>,
    pub retention_policies: Vec<RetentionPolicyRow>,
    pub customer_erasures: Vec<ErasureRow>,
}

/// Times in rows (de)serialize as RFC 3339 text: PostgreSQL casts it to `timestamptz` and
/// prints it back in a form this reads, whatever the session's time zone.
mod time {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(seconds: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::tables::rows::rfc3339(*seconds))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        crate::tables::rows::parse_time(&text).map_err(serde::de::Error::custom)
    }
}

mod time_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(seconds: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match seconds {
            Some(t) => s.serialize_str(&crate::tables::rows::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<std::borrow::Cow<str>>::deserialize(d)?
            .map(|text| crate::tables::rows::parse_time(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A time as the tables store it: RFC 3339 in UTC, to the second.
pub fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

/// Unix seconds of an RFC 3339 time (any offset).
pub fn parse_time(text: &str) -> Result<i64, String> {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("time `{text}`: {e}"))
}
