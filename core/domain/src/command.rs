//! Commands: what callers ask the engine to do. One payload struct per command type; the
//! envelope carries who asks, when, and the idempotency key. Parsing lives in `parse.rs`.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::types::*;

/// The one stream of the complaint-cause list: the organisation has one list, and each
/// `define_complaint_causes` replaces it.
pub const COMPLAINT_CAUSES_STREAM: &str = "complaint_causes-list";

/// The one stream of the scorecards (the organisation's and the teams'): each definition is
/// an event of it, in force from its date.
pub const SCORECARDS_STREAM: &str = "scorecard-all";

/// A command as received: envelope plus typed payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandEnvelope {
    /// Idempotency key: a retried command with the same id returns its first reply.
    pub command_id: Uuid,
    pub actor: Actor,
    /// Business time of the command; the time of receipt when the caller gave none.
    pub occurred_at: Option<Timestamp>,
    /// Optimistic concurrency: the stream version the caller last saw.
    pub expected_version: Option<u64>,
    #[serde(flatten)]
    pub command: Command,
}

/// Calls `$callback! { "open_ticket" => OpenTicket, ... }` with every command of the
/// public contract: its type name and its variant of [`Command`], which is also the name of
/// its payload type. Code elsewhere that must handle every command type (the schema
/// generator) follows this one list instead of a copy of it.
#[macro_export]
macro_rules! for_each_command {
    ($callback:ident) => {
        $callback! {
            "open_ticket" => OpenTicket,
            "assign_ticket" => AssignTicket,
            "respond_to_customer" => RespondToCustomer,
            "request_customer_info" => RequestCustomerInfo,
            "record_customer_reply" => RecordCustomerReply,
            "escalate_ticket" => EscalateTicket,
            "change_priority" => ChangePriority,
            "add_note" => AddNote,
            "resolve_ticket" => ResolveTicket,
            "reopen_ticket" => ReopenTicket,
            "close_ticket" => CloseTicket,
            "record_satisfaction" => RecordSatisfaction,
            "register_agent" => RegisterAgent,
            "set_agent_availability" => SetAgentAvailability,
            "register_customer" => RegisterCustomer,
            "define_calendar" => DefineCalendar,
            "define_sla_policy" => DefineSlaPolicy,
            "raise_sla_warning" => RaiseSlaWarning,
            "record_sla_breach" => RecordSlaBreach,
            "confirm_resolution" => ConfirmResolution,
            "reject_resolution" => RejectResolution,
            "close_unconfirmed" => CloseUnconfirmed,
            "register_inspector" => RegisterInspector,
            "define_complaint_causes" => DefineComplaintCauses,
            "rule_complaint" => RuleComplaint,
            "define_scorecard" => DefineScorecard,
            "schedule_follow_up" => ScheduleFollowUp,
            "record_follow_up" => RecordFollowUp,
            "raise_follow_up_warning" => RaiseFollowUpWarning,
            "record_follow_up_overdue" => RecordFollowUpOverdue,
            "draw_inspection_sample" => DrawInspectionSample,
            "record_inspection" => RecordInspection,
            "record_reinspection_overdue" => RecordReinspectionOverdue,
            "plan_absence" => PlanAbsence,
            "cancel_absence" => CancelAbsence,
            "start_absence" => StartAbsence,
            "end_absence" => EndAbsence,
            "link_tickets" => LinkTickets,
            "merge_ticket" => MergeTicket,
            "erase_customer_data" => EraseCustomerData,
            "define_deadline_kind" => DefineDeadlineKind,
            "set_deadline" => SetDeadline,
            "complete_deadline" => CompleteDeadline,
            "raise_deadline_warning" => RaiseDeadlineWarning,
            "record_deadline_breach" => RecordDeadlineBreach,
            "define_retention_policy" => DefineRetentionPolicy,
        }
    };
}

macro_rules! commands {
    ($($wire:literal => $variant:ident),+ $(,)?) => {
        /// Every command of the public contract, tagged by `type` with its `payload`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "type", content = "payload", rename_all = "snake_case")]
        pub enum Command { $($variant($variant)),+ }

        impl Command {
            /// Every command type name, as on the wire and in NATS subjects.
            pub const TYPES: &'static [&'static str] = &[$($wire),+];

            /// This command's type name.
            pub fn command_type(&self) -> &'static str {
                match self { $(Command::$variant(_) => $wire),+ }
            }

            /// Decodes a payload for the named type; `None` for an unknown type.
            pub(crate) fn decode(
                command_type: &str,
                payload: serde_json::Value,
            ) -> Option<Result<Command, serde_path_to_error::Error<serde_json::Error>>> {
                match command_type {
                    $($wire => Some(serde_path_to_error::deserialize(payload).map(Command::$variant)),)+
                    _ => None,
                }
            }
        }
    };
}

crate::for_each_command!(commands);

impl Command {
    /// The stream this command writes to: `<category>-<id>`.
    pub fn stream(&self) -> String {
        match self {
            Command::RegisterAgent(c) => format!("agent-{}", c.agent_id),
            Command::SetAgentAvailability(c) => format!("agent-{}", c.agent_id),
            Command::PlanAbsence(c) => format!("agent-{}", c.agent_id),
            Command::CancelAbsence(c) => format!("agent-{}", c.agent_id),
            Command::StartAbsence(c) => format!("agent-{}", c.agent_id),
            Command::EndAbsence(c) => format!("agent-{}", c.agent_id),
            Command::RegisterCustomer(c) => format!("customer-{}", c.customer_id),
            Command::EraseCustomerData(c) => format!("customer-{}", c.customer_id),
            Command::DefineCalendar(c) => format!("calendar-{}", c.calendar_id),
            Command::DefineSlaPolicy(c) => format!("sla_policy-{}", c.policy_id),
            Command::DefineRetentionPolicy(c) => format!("retention_policy-{}", c.policy_id),
            Command::RegisterInspector(c) => format!("inspector-{}", c.inspector_id),
            Command::DefineComplaintCauses(_) => COMPLAINT_CAUSES_STREAM.to_owned(),
            Command::DefineScorecard(_) => SCORECARDS_STREAM.to_owned(),
            Command::DefineDeadlineKind(c) => format!("deadline_kind-{}", c.kind),
            Command::DrawInspectionSample(c) => format!("inspection-{}", c.sample_id),
            Command::RecordInspection(c) => format!("inspection-{}", c.sample_id),
            Command::RecordReinspectionOverdue(c) => format!("inspection-{}", c.sample_id),
            other => format!(
                "ticket-{}",
                other
                    .ticket_id()
                    .expect("every other command names a ticket")
            ),
        }
    }

    /// The second ticket a command names besides the one it acts on (the other ticket of a
    /// link, the target of a merge): the handler loads it for the decision
    /// ([`crate::Context::other`]) and records the counterpart event on it
    /// ([`crate::Event::counterpart`]).
    pub fn other_ticket_id(&self) -> Option<Uuid> {
        match self {
            Command::LinkTickets(c) => Some(c.other_ticket_id),
            Command::MergeTicket(c) => Some(c.into_ticket_id),
            _ => None,
        }
    }

    /// The ticket a ticket command acts on; `None` for reference-data commands.
    pub fn ticket_id(&self) -> Option<Uuid> {
        Some(match self {
            Command::OpenTicket(c) => c.ticket_id,
            Command::AssignTicket(c) => c.ticket_id,
            Command::RespondToCustomer(c) => c.ticket_id,
            Command::RequestCustomerInfo(c) => c.ticket_id,
            Command::RecordCustomerReply(c) => c.ticket_id,
            Command::EscalateTicket(c) => c.ticket_id,
            Command::ChangePriority(c) => c.ticket_id,
            Command::AddNote(c) => c.ticket_id,
            Command::ResolveTicket(c) => c.ticket_id,
            Command::ReopenTicket(c) => c.ticket_id,
            Command::CloseTicket(c) => c.ticket_id,
            Command::RecordSatisfaction(c) => c.ticket_id,
            Command::RaiseSlaWarning(c) => c.ticket_id,
            Command::RecordSlaBreach(c) => c.ticket_id,
            Command::ConfirmResolution(c) => c.ticket_id,
            Command::RejectResolution(c) => c.ticket_id,
            Command::CloseUnconfirmed(c) => c.ticket_id,
            Command::RuleComplaint(c) => c.ticket_id,
            Command::ScheduleFollowUp(c) => c.ticket_id,
            Command::RecordFollowUp(c) => c.ticket_id,
            Command::RaiseFollowUpWarning(c) => c.ticket_id,
            Command::RecordFollowUpOverdue(c) => c.ticket_id,
            Command::LinkTickets(c) => c.ticket_id,
            Command::MergeTicket(c) => c.ticket_id,
            Command::SetDeadline(c) => c.ticket_id,
            Command::CompleteDeadline(c) => c.ticket_id,
            Command::RaiseDeadlineWarning(c) => c.ticket_id,
            Command::RecordDeadlineBreach(c) => c.ticket_id,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenTicket {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub customer_id: String,
    pub channel: Channel,
    pub category: Category,
    pub priority: Priority,
    #[schemars(length(min = 1, max = crate::limits::SHORT_TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignTicket {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub agent_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RespondToCustomer {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestCustomerInfo {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub question: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordCustomerReply {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalateTicket {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub to_agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePriority {
    pub ticket_id: Uuid,
    pub priority: Priority,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNote {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub text: String,
    #[serde(default)]
    pub visible_to_customer: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveTicket {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub resolution: String,
    /// How it was settled (repaired, exchanged, refunded, advice, other); optional, so
    /// callers that never name one keep working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ResolutionOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenTicket {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseTicket {
    pub ticket_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSatisfaction {
    pub ticket_id: Uuid,
    /// 1 (very dissatisfied) ..= 5 (very satisfied).
    #[schemars(range(min = 1, max = 5))]
    pub score: u8,
    pub source: RatingSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub comment: Option<String>,
    /// Quality-inspection ratings; only with `source: callback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<Dimensions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub agent_id: String,
    #[schemars(length(min = 1, max = crate::limits::SHORT_TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "staff"))]
    pub name: String,
    #[schemars(length(min = 1, max = crate::limits::SHORT_TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    pub team: String,
    /// Support line 1, 2 or 3.
    #[schemars(range(min = crate::types::LINE_MIN, max = crate::types::LINE_MAX))]
    pub line: u8,
    pub level: Level,
    #[serde(default)]
    pub team_lead: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub backup_agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAgentAvailability {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub agent_id: String,
    pub available: bool,
    /// Who covers while the agent is away; the registered backup when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub backup_agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterCustomer {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub customer_id: String,
    #[schemars(length(min = 1, max = crate::limits::SHORT_TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub name: String,
    pub grade: Grade,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub account_manager_id: Option<String>,
}

/// Erases a customer's personal data by crypto-shredding (README, "Personal data"): the
/// customer's data key is destroyed, so every customer field stored under it reads as
/// `[erased]` from then on, everywhere; nothing else changes (states, SLA figures, ratings,
/// credit). For `system` and the `privacy_officer` role only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseCustomerData {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub customer_id: String,
    /// Why: the ground of the erasure (a request, a retention policy). Kept for the
    /// data-protection officer's report, so it must name no person.
    #[schemars(length(min = 1, max = crate::limits::SHORT_TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    pub reason: String,
    /// The reference of the erasure request (the data-protection office's case number).
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub reference: String,
}

/// How long after closure a customer's personal data is kept (README, "Personal data"):
/// the retention scheduler erases a customer's data once every ticket of theirs is closed
/// and `keep_days` after each closure (under the policy matching that ticket) have passed,
/// and never before `effective_from`. The most specific matching policy applies, the latest
/// defined winning a tie; defining the same `policy_id` again replaces it. For `system` and
/// the `privacy_officer` role only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineRetentionPolicy {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub policy_id: String,
    #[serde(rename = "match", default)]
    pub matches: RetentionMatch,
    /// Days after a ticket's closure that its customer's personal data is kept; 1..=3650.
    #[schemars(range(min = 1, max = crate::limits::RETENTION_DAYS_MAX))]
    pub keep_days: u32,
    /// No erasure under this policy before this moment, so a policy can be announced
    /// before it takes effect on data already past its `keep_days`.
    pub effective_from: jiff::Timestamp,
}

/// A business calendar: the working hours that SLA targets and working-day waits are counted
/// in. Each local date of `time_zone` has the hours of the first of these that names it:
/// 1. its `hours_overrides` entry (a half day; no hours: closed),
/// 2. its `working_days` entry (a make-up day worked, such as a Sunday before the Spring
///    Festival),
/// 3. `holidays`: no hours,
/// 4. the `weekly_hours` of its weekday.
///
/// A date may be named in only one of `holidays`, `working_days` and `hours_overrides`, and
/// once there, so the order never has to break a tie the command left open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineCalendar {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub calendar_id: String,
    /// IANA time-zone name, such as `Europe/Berlin` or `UTC`.
    pub time_zone: String,
    #[schemars(length(min = 1))]
    pub weekly_hours: Vec<WorkingHours>,
    /// Dates (YYYY-MM-DD) on which no business minutes count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<jiff::civil::Date>,
    /// Make-up working days: dates worked although their weekday has no hours, with the
    /// hours worked (which replace the weekday's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::limits::CALENDAR_DATES_MAX))]
    pub working_days: Vec<WorkingDay>,
    /// Dates with other hours than their weekday's, such as half days before a holiday.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::limits::CALENDAR_DATES_MAX))]
    pub hours_overrides: Vec<HoursOverride>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineSlaPolicy {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub policy_id: String,
    #[serde(rename = "match")]
    pub matches: PolicyMatch,
    #[schemars(range(min = 1, max = crate::limits::TARGET_MINUTES_MAX))]
    pub first_response_minutes: u32,
    #[schemars(range(min = 1, max = crate::limits::TARGET_MINUTES_MAX))]
    pub resolution_minutes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::limits::TARGET_MINUTES_MAX))]
    pub next_response_minutes: Option<u32>,
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub calendar_id: String,
    /// 1..=99: a warning is raised when this share of a target is used.
    #[schemars(range(min = 1, max = 99))]
    pub warn_at_percent: u8,
    /// How many working days (on `calendar_id`) a resolved ticket waits for the customer to
    /// confirm or reject the resolution before the engine closes it unconfirmed; 1..=60,
    /// [`CONFIRMATION_WAIT_DAYS_DEFAULT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::limits::CONFIRMATION_WAIT_DAYS_MAX))]
    pub confirmation_wait_days: Option<u8>,
}

/// The working days a resolved ticket waits for the customer's answer when its policy names
/// none (and for tickets without a policy, in calendar days): three, the wait most helpdesks
/// give before closing a solved ticket on their own.
pub const CONFIRMATION_WAIT_DAYS_DEFAULT: u8 = 3;

/// The SLA scheduler's command (role `system` only): a target's warning threshold passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaiseSlaWarning {
    pub ticket_id: Uuid,
    pub target: SlaTarget,
    pub due_at: Timestamp,
    /// The moment the warning threshold was crossed, which may be well before the command
    /// (a scheduler that starts late): the event carries it, so the trail names the moment
    /// as well as the decision time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_at: Option<Timestamp>,
}

/// The SLA scheduler's command (role `system` only): a target's deadline passed unmet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSlaBreach {
    pub ticket_id: Uuid,
    pub target: SlaTarget,
    pub due_at: Timestamp,
}

/// The customer confirms that the current resolution solved their request (role `service`,
/// acting for the customer, on a ticket it or staff opened). Only while the ticket is
/// resolved and the resolution has no answer yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmResolution {
    pub ticket_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub comment: Option<String>,
}

/// The customer says the current resolution did not solve their request (role `service`, as
/// for [`ConfirmResolution`]): the ticket reopens, starting a new resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectResolution {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
}

/// The scheduler's command (role `system` only): the customer did not answer resolution
/// number `resolution` by `answer_due_at`, so the ticket is closed unconfirmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseUnconfirmed {
    pub ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    pub resolution: u32,
    pub answer_due_at: Timestamp,
}

/// Registers (or renames) a quality inspector (role `system` only: the quality department
/// is provisioned, not self-appointed). An inspector is staff outside the teams: never
/// assigned tickets, never a backup; they rule on complaints and read the tickets they rule
/// on (docs/domain.md, Quality inspection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterInspector {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub inspector_id: String,
    #[schemars(length(min = 1, max = crate::limits::SHORT_TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "staff"))]
    pub name: String,
}

/// Replaces the list of complaint causes rulings choose from (role `system` or a
/// supervisor). Earlier rulings keep the codes they named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineComplaintCauses {
    /// 1..=100 causes, each code once.
    #[schemars(length(min = 1, max = crate::limits::COMPLAINT_CAUSES_MAX))]
    pub causes: Vec<ComplaintCause>,
}

/// Rules on a complaint ticket (role `supervisor`, for their team's tickets, or
/// `inspector`): justified or not, why, and who is charged with it. A later ruling on the
/// same ticket supersedes the earlier one; both stay in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleComplaint {
    pub ticket_id: Uuid,
    pub justified: bool,
    /// A code of the complaint-cause list in force.
    #[schemars(pattern(crate::limits::CAUSE_CODE_PATTERN))]
    pub cause: String,
    /// The staff (registered agents) charged with a justified complaint: 0..=10, each once;
    /// none for an unjustified one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::limits::CHARGED_STAFF_MAX), inner(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN)), extend("uniqueItems" = true))]
    pub charged: Vec<String>,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub note: String,
}

/// Sets the weights of the staff scorecard (docs/domain.md, Staff performance) from a date
/// on: the organisation's (no `team`; role `system`) or a team's (role `system`, or the
/// team's own lead). The manual's bounds are checked: results at least 60%, basic service
/// work at least 30%, daily discipline at most 10%, the three summing to 100; bonus and
/// deduction items each capped at 10 points (10% of the total). A report period is scored
/// with the scorecard in force on its first day; a later definition never rescores an
/// earlier period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineScorecard {
    /// The team it applies to; absent: the organisation's, for teams without their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::SHORT_TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    pub team: Option<String>,
    /// The first day (UTC) it is in force.
    pub effective_from: jiff::civil::Date,
    /// Results (SLA compliance, satisfaction, the quality-inspection score), whole percent:
    /// at least 60.
    #[schemars(range(min = crate::limits::SCORECARD_RESULTS_MIN, max = 100))]
    pub results_percent: u8,
    /// Basic service work (resolution rate, one-touch rate): at least 30.
    #[schemars(range(min = crate::limits::SCORECARD_BASIC_MIN, max = 100))]
    pub basic_percent: u8,
    /// Daily discipline (100 minus the reopen rate): at most 10.
    #[schemars(range(min = 0, max = crate::limits::SCORECARD_DISCIPLINE_MAX))]
    pub discipline_percent: u8,
    /// Points per survey rating of 5, 0..=10.
    #[schemars(range(min = 0.0, max = crate::limits::SCORECARD_ITEM_POINTS_MAX))]
    pub bonus_per_excellent_rating: f64,
    /// At most this many bonus points, 0..=10 (10% of the total).
    #[schemars(range(min = 0.0, max = crate::limits::SCORECARD_ITEM_POINTS_MAX))]
    pub bonus_cap_points: f64,
    /// Points taken per justified complaint, 0..=10.
    #[schemars(range(min = 0.0, max = crate::limits::SCORECARD_ITEM_POINTS_MAX))]
    pub deduction_per_justified_complaint: f64,
    /// At most this many points taken, 0..=10 (10% of the total).
    #[schemars(range(min = 0.0, max = crate::limits::SCORECARD_ITEM_POINTS_MAX))]
    pub deduction_cap_points: f64,
}

/// Plans a follow-up call or visit on a ticket (staff in its care, their lead, or `system`),
/// owned by a registered agent (an agent plans only their own), due by a time. A ticket
/// takes follow-ups in any state, a closed one included: they come after the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFollowUp {
    pub ticket_id: Uuid,
    pub kind: FollowUpKind,
    pub due_by: Timestamp,
    /// The agent who makes the call or the visit.
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub owner: String,
}

/// Records a follow-up (its owner, staff covering them, their lead, or `system`): what it
/// found and a summary; for a visit, when it took place and whether the customer signed the
/// record. A visit entered more than [`crate::Rules::visit_entry_days_max`] days after it took
/// place is flagged late (the manuals' one-week rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordFollowUp {
    pub ticket_id: Uuid,
    /// Which follow-up of the ticket (1, 2, ...: `follow_up_scheduled`'s number).
    #[schemars(range(min = 1))]
    pub follow_up: u32,
    pub outcome: FollowUpOutcome,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub summary: String,
    /// Visits only (and required for them): when it took place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visited_at: Option<Timestamp>,
    /// Visits only (and required for them): whether the customer signed the visit record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<bool>,
}

/// The scheduler's command (role `system` only): a follow-up nears its due time unrecorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaiseFollowUpWarning {
    pub ticket_id: Uuid,
    #[schemars(range(min = 1))]
    pub follow_up: u32,
    pub due_by: Timestamp,
}

/// The scheduler's command (role `system` only): a follow-up's due time passed unrecorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordFollowUpOverdue {
    pub ticket_id: Uuid,
    #[schemars(range(min = 1))]
    pub follow_up: u32,
    pub due_by: Timestamp,
}

/// Draws a quality-inspection sample (role `inspector` or `system`): of `candidates` (the
/// agent's tickets resolved in `period`, as the caller read them: `closeloop inspect draw`
/// reads them from the tables), the `size` whose key `UUID v5(seed namespace, ticket id)`
/// sorts first, where the namespace is the UUID of `seed` (`Uuid::from_u64_pair(seed, 0)`).
/// The event keeps the candidates, the seed and the items drawn, so anyone can repeat the
/// draw with any UUID v5 tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrawInspectionSample {
    pub sample_id: Uuid,
    /// `YYYY-MM`: the month whose work is inspected.
    #[schemars(pattern(crate::limits::MONTH_PATTERN))]
    pub period: String,
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub agent_id: String,
    /// How many to draw: 1..=50 (all candidates when fewer).
    #[schemars(range(min = 1, max = INSPECTION_SIZE_MAX))]
    pub size: u32,
    pub seed: u64,
    /// 1..=1000 ticket ids, each once.
    #[schemars(length(min = 1, max = INSPECTION_CANDIDATES_MAX), extend("uniqueItems" = true))]
    pub candidates: Vec<Uuid>,
    /// Tickets that failed the previous period's inspection, taken into this sample besides
    /// the draw (the manuals: what failed is inspected again the next month); at most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = INSPECTION_SIZE_MAX), extend("uniqueItems" = true))]
    pub reinspect: Vec<Uuid>,
}

/// Records the inspection of one drawn ticket (role `inspector` or `system`), once: the
/// four callback dimensions (1..5), whether the service log is complete (date, content,
/// outcome), whether a claimed visit really happened (when one was claimed), and a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordInspection {
    pub sample_id: Uuid,
    pub ticket_id: Uuid,
    pub dimensions: Dimensions,
    pub log_complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit_verified: Option<bool>,
    pub verdict: Verdict,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub note: String,
}

impl DrawInspectionSample {
    /// What the sample holds: `reinspect`, then the `size` other candidates the seed draws
    /// ([`draw_items`]).
    pub fn items(&self) -> Vec<Uuid> {
        let others: Vec<Uuid> = self
            .candidates
            .iter()
            .filter(|id| !self.reinspect.contains(id))
            .copied()
            .collect();
        let mut items = self.reinspect.clone();
        items.extend(draw_items(self.seed, &others, self.size));
        items
    }
}

/// The month after `period` (`YYYY-MM`, as parsing checks it): when a failed inspection is
/// due again.
pub fn next_month(period: &str) -> String {
    let (year, month) = period.split_once('-').unwrap_or(("0", "0"));
    let (year, month): (u32, u32) = (year.parse().unwrap_or(0), month.parse().unwrap_or(0));
    if month >= 12 {
        format!("{:04}-01", year + 1)
    } else {
        format!("{year:04}-{:02}", month + 1)
    }
}

/// Most candidates one draw takes (a month of one agent's resolved tickets fits).
pub const INSPECTION_CANDIDATES_MAX: usize = 1_000;
/// Most items one sample holds.
pub const INSPECTION_SIZE_MAX: u32 = 50;

/// The items a draw takes: the `size` candidates whose key, UUID v5 of the ticket id in the
/// namespace `Uuid::from_u64_pair(seed, 0)`, sorts first (ties cannot happen: the keys are
/// distinct for distinct tickets), in key order.
pub fn draw_items(seed: u64, candidates: &[Uuid], size: u32) -> Vec<Uuid> {
    let namespace = Uuid::from_u64_pair(seed, 0);
    let mut keyed: Vec<(Uuid, Uuid)> = candidates
        .iter()
        .map(|id| (Uuid::new_v5(&namespace, id.as_bytes()), *id))
        .collect();
    keyed.sort();
    keyed
        .into_iter()
        .take(size as usize)
        .map(|(_, id)| id)
        .collect()
}

/// The scheduler's command (role `system` only): a ticket that failed its inspection in
/// sample `sample_id` was not inspected again in the month after (its `reinspect_in`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordReinspectionOverdue {
    pub sample_id: Uuid,
    pub ticket_id: Uuid,
}

/// Links a ticket to another (staff in its care, their lead, or `system`): a duplicate and
/// the ticket it duplicates, an incident and the problem ticket that caused it, or two
/// related tickets. `ticket_linked` is appended on both tickets, the other's with the inverse
/// relation. Both must exist and neither be merged; a link is made once per pair and
/// relation. Closed tickets take links too (an incident is often tied to its problem after
/// it is settled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkTickets {
    pub ticket_id: Uuid,
    pub other_ticket_id: Uuid,
    /// How `ticket_id` relates to `other_ticket_id`.
    pub relation: LinkRelation,
}

/// Merges a ticket (the source, `ticket_id`) into another (`into_ticket_id`, open and not
/// merged itself), with a reason (staff in the source's care, their lead, or `system`). The
/// source gets `ticket_merged_into` and from then on accepts nothing but reads: every command
/// on it is refused, naming the target. The target gets `ticket_merged`. Nothing is moved or
/// deleted: SLA results, ratings and performance credit earned on the source stay with the
/// source and its agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeTicket {
    pub ticket_id: Uuid,
    pub into_ticket_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    #[schemars(extend("x-personal-data" = "customer"))]
    pub reason: String,
}

/// Plans an absence of `agent_id` from `from` until `until` (docs/domain.md, People and tiers:
/// A/B roles). Nothing moves when it is planned: the scheduler starts it at `from` and ends
/// it at `until`, and backup coverage moves the agent's open tickets then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanAbsence {
    /// Chosen by the caller, so the absence can be cancelled by name.
    pub absence_id: Uuid,
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub agent_id: String,
    pub from: Timestamp,
    pub until: Timestamp,
    pub reason: AbsenceReason,
    /// Who covers; the registered backup when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub backup_agent_id: Option<String>,
}

/// Cancels a planned absence; one under way ends at once (the agent is back early).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelAbsence {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub agent_id: String,
    pub absence_id: Uuid,
}

/// The scheduler's (role `system`): a planned absence's start has come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartAbsence {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub agent_id: String,
    pub absence_id: Uuid,
}

/// The scheduler's (role `system`): an absence under way has reached its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndAbsence {
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub agent_id: String,
    pub absence_id: Uuid,
}

/// Defines (or redefines) a kind of step deadline (role `system` or a supervisor, as the
/// other reference data): its default duration in business minutes (or hours), the calendar
/// it is counted on (absent: the ticket's, that of its SLA policy), how long before the due
/// time the scheduler warns, and what a breach brings about. The manuals' kinds (repair,
/// on-site response, return inspection, paperwork, visit record) are configuration, defined
/// with this command, never constants. A redefinition changes deadlines set after it only:
/// `deadline_set` copies what it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineDeadlineKind {
    /// The kind's code, such as `repair`: `[a-z0-9_]`, 1..=40 characters.
    #[schemars(pattern(crate::limits::CAUSE_CODE_PATTERN))]
    pub kind: String,
    /// The default duration in business minutes; exactly one of this and `business_hours`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::limits::TARGET_MINUTES_MAX))]
    pub business_minutes: Option<u32>,
    /// The default duration in business hours; exactly one of this and `business_minutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::limits::DEADLINE_HOURS_MAX))]
    pub business_hours: Option<u32>,
    /// The calendar the duration is counted on; absent: the ticket's (its SLA policy's), or
    /// elapsed time for a ticket without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub calendar_id: Option<String>,
    /// The scheduler warns this many business minutes before the due time; 0: no warning.
    #[serde(default)]
    #[schemars(range(max = crate::limits::TARGET_MINUTES_MAX))]
    pub warn_before_minutes: u32,
    /// What a breach brings about besides the `deadline_breached` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_breach: Option<DeadlineConsequence>,
}

impl DefineDeadlineKind {
    /// The default duration in business minutes, whichever unit the command named.
    pub fn minutes(&self) -> u32 {
        self.business_minutes
            .or(self.business_hours.map(|h| h.saturating_mul(60)))
            .unwrap_or(0)
    }
}

/// Sets a deadline on a step of a ticket (staff who may act on it, their lead, or `system`):
/// a kind defined with `define_deadline_kind`, an owner (a registered agent; an agent sets
/// only their own), and a due time: `due_at`, or `business_minutes` counted from now on the
/// kind's calendar (the ticket's when the kind names none), the kind's default when neither
/// is given. Numbered 1, 2, ... per ticket. A closed ticket takes deadlines too (a returned
/// product is checked after the ticket that took it back is settled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDeadline {
    pub ticket_id: Uuid,
    #[schemars(pattern(crate::limits::CAUSE_CODE_PATTERN))]
    pub kind: String,
    /// Business minutes from now on the deadline's calendar; at most one of this and
    /// `due_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::limits::TARGET_MINUTES_MAX))]
    pub business_minutes: Option<u32>,
    /// An absolute due time, after now; at most one of this and `business_minutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// The agent who does the step.
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub owner: String,
}

/// The step is done (its owner, staff covering them, whoever holds the ticket, their lead,
/// or `system`): the deadline is met, or, after its breach, completed late.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteDeadline {
    pub ticket_id: Uuid,
    /// Which deadline of the ticket (1, 2, ...: `deadline_set`'s number).
    #[schemars(range(min = 1))]
    pub deadline: u32,
}

/// The scheduler's command (role `system` only): a step deadline nears its due time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaiseDeadlineWarning {
    pub ticket_id: Uuid,
    #[schemars(range(min = 1))]
    pub deadline: u32,
    pub due_at: Timestamp,
}

/// The scheduler's command (role `system` only): a step deadline's due time passed with the
/// step not done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordDeadlineBreach {
    pub ticket_id: Uuid,
    #[schemars(range(min = 1))]
    pub deadline: u32,
    pub due_at: Timestamp,
}
