//! Events: the facts the log keeps. Names are snake_case past tense (docs/contract.md). Each event
//! carries everything a projection needs (principle 2), so `ticket_opened` copies the
//! customer's grade and the targets in force, and `priority_changed` the re-derived targets.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::types::*;

/// The schema version every event type started at. Each type's current version is
/// [`current_schema_version`]; older versions are upcast on read (`upcast.rs`); a stored
/// event is never rewritten.
pub const CURRENT_SCHEMA_VERSION: u32 = 1;

/// The schema version of `note_added`: 2 since `visible_to_customer` was added (version 1,
/// the first release, had only internal notes).
pub const NOTE_ADDED_SCHEMA_VERSION: u32 = 2;

/// The current schema version of an event type (what this build writes and decodes
/// directly); `CURRENT_SCHEMA_VERSION` (1) for types never changed and for unknown types.
pub const fn current_schema_version(event_type: &str) -> u32 {
    // `const` string comparison: the only type at version 2 is `note_added`.
    let a = event_type.as_bytes();
    let b = b"note_added";
    if a.len() != b.len() {
        return CURRENT_SCHEMA_VERSION;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return CURRENT_SCHEMA_VERSION;
        }
        i += 1;
    }
    NOTE_ADDED_SCHEMA_VERSION
}

/// Calls `$callback! { "ticket_opened" => TicketOpened, ... }` with every event of the
/// public contract: its type name and its variant of [`Event`], which is also the name of its
/// data type. Code elsewhere that must handle every event type (the lean decoder of the
/// projections, the schema generator) follows this one list instead of a copy of it.
#[macro_export]
macro_rules! for_each_event {
    ($callback:ident) => {
        $callback! {
            "ticket_opened" => TicketOpened,
            "ticket_assigned" => TicketAssigned,
            "ticket_escalated" => TicketEscalated,
            "customer_responded_to" => CustomerRespondedTo,
            "customer_info_requested" => CustomerInfoRequested,
            "customer_replied" => CustomerReplied,
            "priority_changed" => PriorityChanged,
            "note_added" => NoteAdded,
            "ticket_resolved" => TicketResolved,
            "ticket_reopened" => TicketReopened,
            "ticket_closed" => TicketClosed,
            "satisfaction_recorded" => SatisfactionRecorded,
            "sla_warning_raised" => SlaWarningRaised,
            "sla_breached" => SlaBreached,
            "resolution_confirmed" => ResolutionConfirmed,
            "resolution_rejected" => ResolutionRejected,
            "complaint_ruled" => ComplaintRuled,
            "follow_up_scheduled" => FollowUpScheduled,
            "follow_up_recorded" => FollowUpRecorded,
            "follow_up_warning_raised" => FollowUpWarningRaised,
            "follow_up_overdue" => FollowUpOverdue,
            "agent_registered" => AgentRegistered,
            "agent_availability_changed" => AgentAvailabilityChanged,
            "customer_registered" => CustomerRegistered,
            "calendar_defined" => CalendarDefined,
            "sla_policy_defined" => SlaPolicyDefined,
            "inspector_registered" => InspectorRegistered,
            "complaint_causes_defined" => ComplaintCausesDefined,
            "scorecard_defined" => ScorecardDefined,
            "inspection_sample_drawn" => InspectionSampleDrawn,
            "inspection_recorded" => InspectionRecorded,
            "reinspection_overdue" => ReinspectionOverdue,
            "absence_planned" => AbsencePlanned,
            "absence_cancelled" => AbsenceCancelled,
            "absence_started" => AbsenceStarted,
            "absence_ended" => AbsenceEnded,
            "ticket_linked" => TicketLinked,
            "ticket_merged_into" => TicketMergedInto,
            "ticket_merged" => TicketMerged,
            "customer_data_erased" => CustomerDataErased,
            "deadline_kind_defined" => DeadlineKindDefined,
            "deadline_set" => DeadlineSet,
            "deadline_met" => DeadlineMet,
            "deadline_warning_raised" => DeadlineWarningRaised,
            "deadline_breached" => DeadlineBreached,
            "retention_policy_defined" => RetentionPolicyDefined,
        }
    };
}

macro_rules! events {
    ($($wire:literal => $variant:ident),+ $(,)?) => {
        /// Every event of the public contract.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "type", content = "data", rename_all = "snake_case")]
        pub enum Event { $($variant($variant)),+ }

        impl Event {
            /// Every event type name, as stored and as the last token of its NATS subject.
            pub const TYPES: &'static [&'static str] = &[$($wire),+];

            /// This event's type name.
            pub fn event_type(&self) -> &'static str {
                match self { $(Event::$variant(_) => $wire),+ }
            }

            /// The schema version this event is written at.
            pub fn schema_version(&self) -> u32 {
                current_schema_version(self.event_type())
            }

            /// The event's data as JSON, for storage.
            pub fn data(&self) -> serde_json::Value {
                match self {
                    $(Event::$variant(d) => serde_json::to_value(d),)+
                }
                .expect("event data is plain data and always serializes")
            }

            /// Decodes stored data of the type's current schema version
            /// ([`current_schema_version`]); older versions go through `upcast`.
            pub fn from_data(event_type: &str, data: serde_json::Value) -> Result<Event, String> {
                match event_type {
                    $($wire => serde_json::from_value(data).map(Event::$variant).map_err(|e| e.to_string()),)+
                    other => Err(format!("unknown event type `{other}`")),
                }
            }
        }
    };
}

crate::for_each_event!(events);

impl Event {
    /// The ticket a ticket event belongs to; `None` for directory events.
    pub fn ticket_id(&self) -> Option<Uuid> {
        Some(match self {
            Event::TicketOpened(e) => e.ticket_id,
            Event::TicketAssigned(e) => e.ticket_id,
            Event::TicketEscalated(e) => e.ticket_id,
            Event::CustomerRespondedTo(e) => e.ticket_id,
            Event::CustomerInfoRequested(e) => e.ticket_id,
            Event::CustomerReplied(e) => e.ticket_id,
            Event::PriorityChanged(e) => e.ticket_id,
            Event::NoteAdded(e) => e.ticket_id,
            Event::TicketResolved(e) => e.ticket_id,
            Event::TicketReopened(e) => e.ticket_id,
            Event::TicketClosed(e) => e.ticket_id,
            Event::SatisfactionRecorded(e) => e.ticket_id,
            Event::SlaWarningRaised(e) => e.ticket_id,
            Event::SlaBreached(e) => e.ticket_id,
            Event::ResolutionConfirmed(e) => e.ticket_id,
            Event::ResolutionRejected(e) => e.ticket_id,
            Event::ComplaintRuled(e) => e.ticket_id,
            Event::FollowUpScheduled(e) => e.ticket_id,
            Event::FollowUpRecorded(e) => e.ticket_id,
            Event::FollowUpWarningRaised(e) => e.ticket_id,
            Event::FollowUpOverdue(e) => e.ticket_id,
            Event::TicketLinked(e) => e.ticket_id,
            Event::TicketMergedInto(e) => e.ticket_id,
            Event::TicketMerged(e) => e.ticket_id,
            Event::DeadlineSet(e) => e.ticket_id,
            Event::DeadlineMet(e) => e.ticket_id,
            Event::DeadlineWarningRaised(e) => e.ticket_id,
            Event::DeadlineBreached(e) => e.ticket_id,
            Event::DeadlineKindDefined(_)
            | Event::AgentRegistered(_)
            | Event::InspectorRegistered(_)
            | Event::ComplaintCausesDefined(_)
            | Event::ScorecardDefined(_)
            | Event::InspectionSampleDrawn(_)
            | Event::InspectionRecorded(_)
            | Event::ReinspectionOverdue(_)
            | Event::AbsencePlanned(_)
            | Event::AbsenceCancelled(_)
            | Event::AbsenceStarted(_)
            | Event::AbsenceEnded(_)
            | Event::AgentAvailabilityChanged(_)
            | Event::CustomerRegistered(_)
            | Event::CustomerDataErased(_)
            | Event::CalendarDefined(_)
            | Event::RetentionPolicyDefined(_)
            | Event::SlaPolicyDefined(_) => return None,
        })
    }
}

impl Event {
    /// The event another ticket records because of this one: a link's inverse on the other
    /// ticket, a merge's `ticket_merged` on its target; `None` for every other event. The
    /// command handler appends it right after this one's command commits (see
    /// `commands/src/handler.rs`, counterparts).
    pub fn counterpart(&self) -> Option<Event> {
        match self {
            Event::TicketLinked(e) => Some(Event::TicketLinked(TicketLinked {
                ticket_id: e.other_ticket_id,
                other_ticket_id: e.ticket_id,
                relation: e.relation.inverse(),
            })),
            Event::TicketMergedInto(e) => Some(Event::TicketMerged(TicketMerged {
                ticket_id: e.into_ticket_id,
                from_ticket_id: e.ticket_id,
                reason: e.reason.clone(),
            })),
            _ => None,
        }
    }
}

/// The targets promised to a ticket, copied from the policy in force when it was opened (or
/// when its priority changed), so its own history says what was promised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlaTargets {
    pub policy_id: String,
    pub calendar_id: String,
    pub first_response_minutes: u32,
    pub resolution_minutes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_response_minutes: Option<u32>,
    pub warn_at_percent: u8,
    /// Working days a resolution waits for the customer's answer (absent: the default,
    /// `CONFIRMATION_WAIT_DAYS_DEFAULT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_wait_days: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TicketOpened {
    pub ticket_id: Uuid,
    pub customer_id: String,
    /// The customer's grade when the ticket was opened (`standard` if never registered).
    pub grade: Grade,
    pub channel: Channel,
    pub category: Category,
    pub priority: Priority,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub description: Option<String>,
    /// `None` when no policy matched: the ticket has no targets.
    pub sla: Option<SlaTargets>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TicketAssigned {
    pub ticket_id: Uuid,
    pub agent_id: String,
    /// The assignee's team, so team read models need no directory.
    pub team: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TicketEscalated {
    pub ticket_id: Uuid,
    pub from_line: u8,
    pub to_line: u8,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_team: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerRespondedTo {
    pub ticket_id: Uuid,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerInfoRequested {
    pub ticket_id: Uuid,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub question: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerReplied {
    pub ticket_id: Uuid,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PriorityChanged {
    pub ticket_id: Uuid,
    pub from: Priority,
    pub to: Priority,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
    /// The targets re-derived for the new priority (`None`: no policy matches).
    pub sla: Option<SlaTargets>,
}

/// `note_added`, schema version 2 (current).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NoteAdded {
    pub ticket_id: Uuid,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub text: String,
    pub visible_to_customer: bool,
}

/// `note_added`, schema version 1 (the first release): notes were always internal, and
/// had no `visible_to_customer`. Read only by the upcaster and the published schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NoteAddedV1 {
    pub ticket_id: Uuid,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TicketResolved {
    pub ticket_id: Uuid,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub resolution: String,
    /// Who resolved it: the assignee at the time.
    pub agent_id: String,
    /// How it was settled, when the command named it (absent in events recorded before the
    /// field existed, which read and hash as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ResolutionOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TicketReopened {
    pub ticket_id: Uuid,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TicketClosed {
    pub ticket_id: Uuid,
    /// `staff` (`close_ticket`; also what an event without the field means) or
    /// `auto_closed_unconfirmed` (the customer did not answer in time).
    #[serde(default)]
    pub reason: CloseReason,
    /// For `auto_closed_unconfirmed`: when the wait for the customer's answer ended (the
    /// close itself happens at the scheduler's decision time, at or after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_due_at: Option<jiff::Timestamp>,
}

/// The customer confirmed resolution number `resolution`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResolutionConfirmed {
    pub ticket_id: Uuid,
    pub resolution: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub comment: Option<String>,
}

/// The customer rejected resolution number `resolution`; a `ticket_reopened` follows in the
/// same append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResolutionRejected {
    pub ticket_id: Uuid,
    pub resolution: u32,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
}

/// Ruling number `ruling` (1, 2, ...) on a complaint; it supersedes ruling `ruling - 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComplaintRuled {
    pub ticket_id: Uuid,
    pub ruling: u32,
    pub justified: bool,
    pub cause: String,
    /// The staff charged, with their teams at the ruling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charged: Vec<ChargedStaff>,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub note: String,
    /// Who ruled: a supervisor or an inspector (also in the event's metadata; here so the
    /// read models need nothing but the data).
    pub ruled_by: Actor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SatisfactionRecorded {
    pub ticket_id: Uuid,
    pub score: u8,
    pub source: RatingSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<Dimensions>,
    /// The agent rated: the assignee when the rating was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Which resolution (1 = the first) the rating is for.
    pub resolution: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SlaWarningRaised {
    pub ticket_id: Uuid,
    pub target: SlaTarget,
    pub due_at: jiff::Timestamp,
    /// The moment the warning threshold was crossed (the event itself is appended at the
    /// scheduler's decision time, never before the stream's last event). Absent in warnings
    /// recorded before it was added, whose threshold moment only the read models know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_at: Option<jiff::Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SlaBreached {
    pub ticket_id: Uuid,
    pub target: SlaTarget,
    pub due_at: jiff::Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentRegistered {
    pub agent_id: String,
    #[schemars(extend("x-personal-data" = "staff"))]
    pub name: String,
    pub team: String,
    pub line: u8,
    pub level: Level,
    pub team_lead: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentAvailabilityChanged {
    pub agent_id: String,
    pub available: bool,
    /// Who covers while the agent is away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerRegistered {
    pub customer_id: String,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub name: String,
    pub grade: Grade,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_manager_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CalendarDefined {
    pub calendar_id: String,
    pub time_zone: String,
    pub weekly_hours: Vec<WorkingHours>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<jiff::civil::Date>,
    /// Make-up working days (see `DefineCalendar` for the order of the rules). Added to
    /// schema version 1 without a new version: absent in events written before it existed,
    /// meaning none, and left out when empty, so those events read and hash as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub working_days: Vec<WorkingDay>,
    /// Dates with other hours (half days, closed dates); added like `working_days`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hours_overrides: Vec<HoursOverride>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SlaPolicyDefined {
    pub policy_id: String,
    #[serde(rename = "match")]
    pub matches: PolicyMatch,
    pub first_response_minutes: u32,
    pub resolution_minutes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_response_minutes: Option<u32>,
    pub calendar_id: String,
    pub warn_at_percent: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_wait_days: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InspectorRegistered {
    pub inspector_id: String,
    #[schemars(extend("x-personal-data" = "staff"))]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComplaintCausesDefined {
    pub causes: Vec<ComplaintCause>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScorecardDefined {
    /// Absent: the organisation's scorecard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub effective_from: jiff::civil::Date,
    /// Results (SLA compliance, satisfaction, the quality-inspection score), whole percent:
    /// at least 60.
    pub results_percent: u8,
    /// Basic service work (resolution rate, one-touch rate): at least 30.
    pub basic_percent: u8,
    /// Daily discipline (100 minus the reopen rate): at most 10.
    pub discipline_percent: u8,
    /// Points per survey rating of 5, 0..=10.
    pub bonus_per_excellent_rating: f64,
    /// At most this many bonus points, 0..=10 (10% of the total).
    pub bonus_cap_points: f64,
    /// Points taken per justified complaint, 0..=10.
    pub deduction_per_justified_complaint: f64,
    /// At most this many points taken, 0..=10 (10% of the total).
    pub deduction_cap_points: f64,
}

/// Follow-up number `follow_up` (1, 2, ...) of the ticket was planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FollowUpScheduled {
    pub ticket_id: Uuid,
    pub follow_up: u32,
    pub kind: FollowUpKind,
    pub due_by: jiff::Timestamp,
    /// When the scheduler warns if it is still unrecorded (`Rules::follow_up_warn_hours`
    /// before `due_by`).
    pub warn_at: jiff::Timestamp,
    pub owner: String,
    /// The owner's team when it was planned.
    pub team: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FollowUpRecorded {
    pub ticket_id: Uuid,
    pub follow_up: u32,
    pub kind: FollowUpKind,
    pub outcome: FollowUpOutcome,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visited_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<bool>,
    /// A visit entered more than `Rules::visit_entry_days_max` days after it took place.
    pub entered_late: bool,
    /// Who entered it (counted against them when `entered_late`).
    pub recorded_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FollowUpWarningRaised {
    pub ticket_id: Uuid,
    pub follow_up: u32,
    pub due_by: jiff::Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FollowUpOverdue {
    pub ticket_id: Uuid,
    pub follow_up: u32,
    pub due_by: jiff::Timestamp,
}

/// A quality-inspection sample: the draw's inputs and what it drew (see
/// `DrawInspectionSample`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InspectionSampleDrawn {
    pub sample_id: Uuid,
    pub period: String,
    pub agent_id: String,
    /// The agent's team at the draw.
    pub team: String,
    pub size: u32,
    pub seed: u64,
    pub candidates: Vec<Uuid>,
    /// Failed items of the previous period taken again (first in `items`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reinspect: Vec<Uuid>,
    /// What the sample holds: `reinspect`, then the draw from the other candidates.
    pub items: Vec<Uuid>,
}

/// One drawn ticket inspected. A failed one is due again in `reinspect_in` (the next month).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InspectionRecorded {
    pub sample_id: Uuid,
    pub ticket_id: Uuid,
    pub period: String,
    pub agent_id: String,
    pub team: String,
    pub dimensions: Dimensions,
    pub log_complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit_verified: Option<bool>,
    pub verdict: Verdict,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub note: String,
    /// Who inspected it.
    pub inspector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reinspect_in: Option<String>,
}

/// A failed item of sample `sample_id` was not inspected again in `due_in`, the month after
/// its inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReinspectionOverdue {
    pub sample_id: Uuid,
    pub ticket_id: Uuid,
    /// The failed inspection's month and the month it was due again.
    pub period: String,
    pub due_in: String,
    pub agent_id: String,
    pub team: String,
}

/// A ticket was linked to another: on both tickets, each with the relation as seen from it
/// (`relation` is how `ticket_id` relates to `other_ticket_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TicketLinked {
    pub ticket_id: Uuid,
    pub other_ticket_id: Uuid,
    pub relation: LinkRelation,
}

/// This ticket (the source) was merged into `into_ticket_id`: from now on it accepts nothing
/// but reads. What it earned before (SLA results, ratings, credit) stays with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TicketMergedInto {
    pub ticket_id: Uuid,
    pub into_ticket_id: Uuid,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
}

/// Ticket `from_ticket_id` was merged into this one (the target), so its history shows the
/// merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TicketMerged {
    pub ticket_id: Uuid,
    pub from_ticket_id: Uuid,
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
}

/// An absence of `agent_id` was planned, `backup_agent_id` covering (the one named, or the
/// registered backup when none was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AbsencePlanned {
    pub absence_id: Uuid,
    pub agent_id: String,
    pub from: jiff::Timestamp,
    pub until: jiff::Timestamp,
    pub reason: AbsenceReason,
    pub backup_agent_id: String,
}

/// A planned absence was cancelled; `under_way` when it had started (the agent is back). Like
/// every absence event it names the whole absence, so a projection needs no earlier event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AbsenceCancelled {
    pub absence_id: Uuid,
    pub agent_id: String,
    pub from: jiff::Timestamp,
    pub until: jiff::Timestamp,
    pub reason: AbsenceReason,
    pub backup_agent_id: String,
    pub under_way: bool,
}

/// A planned absence began at its `from`: the agent is away, `backup_agent_id` covering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AbsenceStarted {
    pub absence_id: Uuid,
    pub agent_id: String,
    pub from: jiff::Timestamp,
    pub until: jiff::Timestamp,
    pub reason: AbsenceReason,
    pub backup_agent_id: String,
}

/// An absence under way ended at its `until`: the agent is back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AbsenceEnded {
    pub absence_id: Uuid,
    pub agent_id: String,
    pub from: jiff::Timestamp,
    pub until: jiff::Timestamp,
    pub reason: AbsenceReason,
    pub backup_agent_id: String,
}

/// The customer's data key was destroyed: every customer field stored under it reads as
/// `[erased]` from now on (see `EraseCustomerData`). The key itself is outside the log; this
/// is the audit record of its destruction, on the customer's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerDataErased {
    pub customer_id: String,
    pub reason: String,
    /// The erasure request's reference.
    pub reference: String,
    /// Who erased (the actor's id), for the data-protection officer's report: the event's
    /// metadata names the actor too, but the read side folds data only. Absent in erasures
    /// recorded before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_by: Option<String>,
}

/// A retention policy was defined (or replaced): see `DefineRetentionPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RetentionPolicyDefined {
    pub policy_id: String,
    #[serde(rename = "match", default)]
    pub matches: RetentionMatch,
    pub keep_days: u32,
    pub effective_from: jiff::Timestamp,
}

/// A kind of step deadline was defined (see `DefineDeadlineKind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadlineKindDefined {
    pub kind: String,
    /// The default duration, in business minutes (hours given are converted).
    pub business_minutes: u32,
    /// Absent: counted on the ticket's calendar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_id: Option<String>,
    pub warn_before_minutes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_breach: Option<DeadlineConsequence>,
}

/// Step deadline number `deadline` (1, 2, ...) of the ticket was set. It carries what the
/// kind said when it was set, so a later redefinition never moves it. The due time is
/// `due_at` when absolute; otherwise `business_minutes` counted from the event's business
/// time on `calendar_id` (elapsed time when none), which the read side computes on the
/// calendar as defined at that point of the log (the domain does no calendar arithmetic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadlineSet {
    pub ticket_id: Uuid,
    pub deadline: u32,
    pub kind: String,
    pub owner: String,
    /// The owner's team when it was set.
    pub team: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<jiff::Timestamp>,
    /// The calendar business minutes (the duration and the warning) are counted on; absent:
    /// elapsed time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_id: Option<String>,
    pub warn_before_minutes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_breach: Option<DeadlineConsequence>,
}

/// The step of deadline `deadline` was done; `late` when after its breach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadlineMet {
    pub ticket_id: Uuid,
    pub deadline: u32,
    pub kind: String,
    pub late: bool,
    pub completed_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadlineWarningRaised {
    pub ticket_id: Uuid,
    pub deadline: u32,
    pub kind: String,
    pub due_at: jiff::Timestamp,
}

/// A step deadline passed with the step not done; `consequence` is what its kind's
/// `on_breach` brought about (`flag_exchange`: the ticket is flagged for exchange).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadlineBreached {
    pub ticket_id: Uuid,
    pub deadline: u32,
    pub kind: String,
    pub due_at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consequence: Option<DeadlineConsequence>,
}
