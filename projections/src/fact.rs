//! The lean form of an event that the report folds (SLA, satisfaction, performance) read: only
//! the fields some fold uses, with names borrowed rather than copied.
//!
//! Why: most of an event's bytes are text no projection reads (subjects, descriptions,
//! messages, notes, comments), and decoding into the full [`Event`] allocates a `String` for
//! each of them, then frees it. Decoded from JSON ([`Lean::from_json`]), a [`Fact`] checks those
//! fields as the full decoder does (present when required, strings, numbers or enums of the
//! right kind), so the two accept the same events, but it never copies them; agent, team and
//! calendar names are borrowed from the input unless they hold escapes. Built from an [`Event`]
//! ([`Fact::from`]), it borrows from the event. Either way the folds see the same facts, so a
//! model folded from either is the same model (`tests/lean.rs` checks it on generated histories).

use std::borrow::Cow;

use closeloop_core::domain::*;
use closeloop_core::log::Position;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

/// One event as the report folds see it: its envelope and its [`Fact`], borrowed from the
/// serialized event (or from a [`crate::record::Record`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Lean<'a> {
    pub position: Position,
    pub stream: Cow<'a, str>,
    /// Business time (`occurred_at`) as Unix seconds.
    pub at: i64,
    pub fact: Fact<'a>,
}

impl Lean<'_> {
    /// The ticket id of a ticket event.
    pub fn ticket_id(&self) -> Option<Uuid> {
        self.fact.ticket_id()
    }
}

/// What the report folds read of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact<'a> {
    TicketOpened(Opened<'a>),
    TicketAssigned(Assigned<'a>),
    TicketEscalated(Escalated<'a>),
    CustomerRespondedTo(Uuid),
    CustomerInfoRequested(Uuid),
    CustomerReplied(Uuid),
    PriorityChanged(PriorityChange<'a>),
    NoteAdded(Uuid),
    TicketResolved(Resolved<'a>),
    TicketReopened(Uuid),
    TicketClosed(Uuid),
    /// `resolution_confirmed` or `resolution_rejected`.
    ResolutionAnswered(Uuid),
    /// `complaint_ruled` (no clock reads it; the tables read the full event).
    ComplaintRuled(Uuid),
    /// A follow-up's events (no clock reads them; the tables read the full event).
    FollowUp(Uuid),
    /// A step deadline's events (no clock reads them; the tables read the full event).
    StepDeadline(Uuid),
    /// `ticket_linked` or `ticket_merged` (no clock reads them).
    Relation(Uuid),
    /// `ticket_merged_into`: the source's live timers end, cancelled (it takes no more
    /// work); the cycles it already fulfilled stay its own.
    MergedInto(Uuid),
    SatisfactionRecorded(Rated<'a>),
    SlaWarningRaised(Deadline),
    SlaBreached(Deadline),
    AgentRegistered(Agent<'a>),
    /// Rare, and kept whole by the folds that read it.
    CalendarDefined(Cow<'a, CalendarDefined>),
    /// An event no report fold reads (customer and policy definitions, availability).
    Other,
}

/// A text field no fold reads: checked to be a string, as the full decoder does, and dropped
/// without being copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unread;

impl<'de> Deserialize<'de> for Unread {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unread, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Unread;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, _: &str) -> Result<Unread, E> {
                Ok(Unread)
            }
        }
        d.deserialize_str(V)
    }
}

/// `ticket_opened`: what the folds read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Opened<'a> {
    pub ticket_id: Uuid,
    #[serde(rename = "customer_id")]
    _customer_id: Unread,
    pub grade: Grade,
    pub channel: Channel,
    pub category: Category,
    pub priority: Priority,
    #[serde(rename = "subject")]
    _subject: Unread,
    #[serde(default, rename = "description")]
    _description: Option<Unread>,
    #[serde(borrow)]
    pub sla: Option<Targets<'a>>,
}

/// [`SlaTargets`] without the policy id (no fold reads it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Targets<'a> {
    #[serde(rename = "policy_id")]
    _policy_id: Unread,
    #[serde(borrow)]
    pub calendar_id: Cow<'a, str>,
    pub first_response_minutes: u32,
    pub resolution_minutes: u32,
    #[serde(default)]
    pub next_response_minutes: Option<u32>,
    pub warn_at_percent: u8,
    #[serde(default, rename = "confirmation_wait_days")]
    _confirmation_wait_days: Option<u8>,
}

/// `ticket_assigned`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Assigned<'a> {
    pub ticket_id: Uuid,
    #[serde(borrow)]
    pub agent_id: Cow<'a, str>,
    #[serde(borrow)]
    pub team: Cow<'a, str>,
    #[serde(default, rename = "previous_agent_id")]
    _previous_agent_id: Option<Unread>,
}

/// `ticket_escalated`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Escalated<'a> {
    pub ticket_id: Uuid,
    #[serde(rename = "from_line")]
    _from_line: u8,
    #[serde(rename = "to_line")]
    _to_line: u8,
    #[serde(rename = "reason")]
    _reason: Unread,
    #[serde(default, rename = "from_agent_id")]
    _from_agent_id: Option<Unread>,
    #[serde(default, borrow)]
    pub to_agent_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub to_team: Option<Cow<'a, str>>,
}

/// `priority_changed`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PriorityChange<'a> {
    pub ticket_id: Uuid,
    #[serde(rename = "from")]
    _from: Priority,
    pub to: Priority,
    #[serde(rename = "reason")]
    _reason: Unread,
    #[serde(borrow)]
    pub sla: Option<Targets<'a>>,
}

/// `ticket_resolved`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Resolved<'a> {
    pub ticket_id: Uuid,
    #[serde(rename = "resolution")]
    _resolution: Unread,
    #[serde(borrow)]
    pub agent_id: Cow<'a, str>,
    #[serde(default, rename = "outcome")]
    _outcome: Option<ResolutionOutcome>,
}

/// `satisfaction_recorded`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Rated<'a> {
    pub ticket_id: Uuid,
    pub score: u8,
    pub source: RatingSource,
    #[serde(default, rename = "comment")]
    _comment: Option<Unread>,
    #[serde(default)]
    pub dimensions: Option<Dimensions>,
    #[serde(default, borrow)]
    pub agent_id: Option<Cow<'a, str>>,
    #[serde(rename = "resolution")]
    _resolution: u32,
}

/// `sla_warning_raised` and `sla_breached`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub ticket_id: Uuid,
    pub target: SlaTarget,
    /// Unix seconds.
    pub due_at: i64,
}

/// `agent_registered`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Agent<'a> {
    #[serde(borrow)]
    pub agent_id: Cow<'a, str>,
    #[serde(rename = "name")]
    _name: Unread,
    #[serde(borrow)]
    pub team: Cow<'a, str>,
    #[serde(rename = "line")]
    _line: u8,
    #[serde(rename = "level")]
    _level: Level,
    #[serde(rename = "team_lead")]
    _team_lead: bool,
    #[serde(default, rename = "backup_agent_id")]
    _backup_agent_id: Option<Unread>,
}

/// Events that carry only a ticket id and text: the field names, checked like [`Unread`].
macro_rules! ticket_only {
    ($($name:ident { $($text:ident: $ty:ty),* }),+ $(,)?) => {$(
        #[derive(Deserialize)]
        struct $name {
            ticket_id: Uuid,
            $(#[allow(dead_code)] $text: $ty,)*
        }
    )+};
}

ticket_only! {
    RespondedWire { message: Unread },
    InfoRequestedWire { question: Unread },
    RepliedWire { message: Unread },
    NoteWire { text: Unread, visible_to_customer: bool },
    ReopenedWire { reason: Unread },
    ClosedWire { reason: Option<CloseReason>, answer_due_at: Option<jiff::Timestamp> },
    ConfirmedWire { resolution: u32, comment: Option<Unread> },
    RejectedWire { resolution: u32, reason: Unread },
}

fn name(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

fn targets(t: &SlaTargets) -> Targets<'_> {
    Targets {
        _policy_id: Unread,
        calendar_id: name(&t.calendar_id),
        first_response_minutes: t.first_response_minutes,
        resolution_minutes: t.resolution_minutes,
        next_response_minutes: t.next_response_minutes,
        warn_at_percent: t.warn_at_percent,
        _confirmation_wait_days: t.confirmation_wait_days,
    }
}

impl<'a> From<&'a Event> for Fact<'a> {
    fn from(event: &'a Event) -> Fact<'a> {
        match event {
            Event::TicketOpened(e) => Fact::TicketOpened(Opened {
                ticket_id: e.ticket_id,
                _customer_id: Unread,
                grade: e.grade,
                channel: e.channel,
                category: e.category,
                priority: e.priority,
                _subject: Unread,
                _description: e.description.as_ref().map(|_| Unread),
                sla: e.sla.as_ref().map(targets),
            }),
            Event::TicketAssigned(e) => Fact::TicketAssigned(Assigned {
                ticket_id: e.ticket_id,
                agent_id: name(&e.agent_id),
                team: name(&e.team),
                _previous_agent_id: e.previous_agent_id.as_ref().map(|_| Unread),
            }),
            Event::TicketEscalated(e) => Fact::TicketEscalated(Escalated {
                ticket_id: e.ticket_id,
                _from_line: e.from_line,
                _to_line: e.to_line,
                _reason: Unread,
                _from_agent_id: e.from_agent_id.as_ref().map(|_| Unread),
                to_agent_id: e.to_agent_id.as_deref().map(name),
                to_team: e.to_team.as_deref().map(name),
            }),
            Event::CustomerRespondedTo(e) => Fact::CustomerRespondedTo(e.ticket_id),
            Event::CustomerInfoRequested(e) => Fact::CustomerInfoRequested(e.ticket_id),
            Event::CustomerReplied(e) => Fact::CustomerReplied(e.ticket_id),
            Event::PriorityChanged(e) => Fact::PriorityChanged(PriorityChange {
                ticket_id: e.ticket_id,
                _from: e.from,
                to: e.to,
                _reason: Unread,
                sla: e.sla.as_ref().map(targets),
            }),
            Event::NoteAdded(e) => Fact::NoteAdded(e.ticket_id),
            Event::TicketResolved(e) => Fact::TicketResolved(Resolved {
                ticket_id: e.ticket_id,
                _resolution: Unread,
                agent_id: name(&e.agent_id),
                _outcome: e.outcome,
            }),
            Event::TicketReopened(e) => Fact::TicketReopened(e.ticket_id),
            Event::TicketClosed(e) => Fact::TicketClosed(e.ticket_id),
            Event::ResolutionConfirmed(e) => Fact::ResolutionAnswered(e.ticket_id),
            Event::ResolutionRejected(e) => Fact::ResolutionAnswered(e.ticket_id),
            Event::ComplaintRuled(e) => Fact::ComplaintRuled(e.ticket_id),
            Event::FollowUpScheduled(e) => Fact::FollowUp(e.ticket_id),
            Event::FollowUpRecorded(e) => Fact::FollowUp(e.ticket_id),
            Event::FollowUpWarningRaised(e) => Fact::FollowUp(e.ticket_id),
            Event::FollowUpOverdue(e) => Fact::FollowUp(e.ticket_id),
            Event::DeadlineSet(e) => Fact::StepDeadline(e.ticket_id),
            Event::DeadlineMet(e) => Fact::StepDeadline(e.ticket_id),
            Event::DeadlineWarningRaised(e) => Fact::StepDeadline(e.ticket_id),
            Event::DeadlineBreached(e) => Fact::StepDeadline(e.ticket_id),
            Event::TicketLinked(e) => Fact::Relation(e.ticket_id),
            Event::TicketMergedInto(e) => Fact::MergedInto(e.ticket_id),
            Event::TicketMerged(e) => Fact::Relation(e.ticket_id),
            Event::SatisfactionRecorded(e) => Fact::SatisfactionRecorded(Rated {
                ticket_id: e.ticket_id,
                score: e.score,
                source: e.source,
                _comment: e.comment.as_ref().map(|_| Unread),
                dimensions: e.dimensions,
                agent_id: e.agent_id.as_deref().map(name),
                _resolution: e.resolution,
            }),
            Event::SlaWarningRaised(e) => Fact::SlaWarningRaised(Deadline {
                ticket_id: e.ticket_id,
                target: e.target,
                due_at: e.due_at.as_second(),
            }),
            Event::SlaBreached(e) => Fact::SlaBreached(Deadline {
                ticket_id: e.ticket_id,
                target: e.target,
                due_at: e.due_at.as_second(),
            }),
            Event::AgentRegistered(e) => Fact::AgentRegistered(Agent {
                agent_id: name(&e.agent_id),
                _name: Unread,
                team: name(&e.team),
                _line: e.line,
                _level: e.level,
                _team_lead: e.team_lead,
                _backup_agent_id: e.backup_agent_id.as_ref().map(|_| Unread),
            }),
            Event::CalendarDefined(e) => Fact::CalendarDefined(Cow::Borrowed(e)),
            Event::AgentAvailabilityChanged(_)
            | Event::CustomerRegistered(_)
            | Event::CustomerDataErased(_)
            | Event::RetentionPolicyDefined(_)
            | Event::SlaPolicyDefined(_)
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
            | Event::DeadlineKindDefined(_) => Fact::Other,
        }
    }
}

impl Fact<'_> {
    /// The ticket a ticket event belongs to; `None` for directory events.
    pub fn ticket_id(&self) -> Option<Uuid> {
        Some(match self {
            Fact::TicketOpened(e) => e.ticket_id,
            Fact::TicketAssigned(e) => e.ticket_id,
            Fact::TicketEscalated(e) => e.ticket_id,
            Fact::PriorityChanged(e) => e.ticket_id,
            Fact::TicketResolved(e) => e.ticket_id,
            Fact::SatisfactionRecorded(e) => e.ticket_id,
            Fact::SlaWarningRaised(e) | Fact::SlaBreached(e) => e.ticket_id,
            Fact::CustomerRespondedTo(id)
            | Fact::CustomerInfoRequested(id)
            | Fact::CustomerReplied(id)
            | Fact::NoteAdded(id)
            | Fact::TicketReopened(id)
            | Fact::TicketClosed(id)
            | Fact::ResolutionAnswered(id)
            | Fact::ComplaintRuled(id)
            | Fact::FollowUp(id)
            | Fact::StepDeadline(id)
            | Fact::Relation(id)
            | Fact::MergedInto(id) => *id,
            Fact::AgentRegistered(_) | Fact::CalendarDefined(_) | Fact::Other => return None,
        })
    }

    /// Decodes event data of the type's current schema version into its fact. Types no fold
    /// reads are still decoded in full (and dropped), so both decoders refuse the same data.
    pub(crate) fn decode<'de: 'a, 'a, D: Deserializer<'de>>(
        event_type: &str,
        d: D,
    ) -> Result<Fact<'a>, D::Error> {
        fn deadline(ticket_id: Uuid, target: SlaTarget, due_at: jiff::Timestamp) -> Deadline {
            Deadline {
                ticket_id,
                target,
                due_at: due_at.as_second(),
            }
        }
        Ok(match event_type {
            "ticket_opened" => Fact::TicketOpened(Deserialize::deserialize(d)?),
            "ticket_assigned" => Fact::TicketAssigned(Deserialize::deserialize(d)?),
            "ticket_escalated" => Fact::TicketEscalated(Deserialize::deserialize(d)?),
            "customer_responded_to" => {
                Fact::CustomerRespondedTo(RespondedWire::deserialize(d)?.ticket_id)
            }
            "customer_info_requested" => {
                Fact::CustomerInfoRequested(InfoRequestedWire::deserialize(d)?.ticket_id)
            }
            "customer_replied" => Fact::CustomerReplied(RepliedWire::deserialize(d)?.ticket_id),
            "priority_changed" => Fact::PriorityChanged(Deserialize::deserialize(d)?),
            "note_added" => Fact::NoteAdded(NoteWire::deserialize(d)?.ticket_id),
            "ticket_resolved" => Fact::TicketResolved(Deserialize::deserialize(d)?),
            "ticket_reopened" => Fact::TicketReopened(ReopenedWire::deserialize(d)?.ticket_id),
            "ticket_closed" => Fact::TicketClosed(ClosedWire::deserialize(d)?.ticket_id),
            "resolution_confirmed" => {
                Fact::ResolutionAnswered(ConfirmedWire::deserialize(d)?.ticket_id)
            }
            "resolution_rejected" => {
                Fact::ResolutionAnswered(RejectedWire::deserialize(d)?.ticket_id)
            }
            "complaint_ruled" => Fact::ComplaintRuled(ComplaintRuled::deserialize(d)?.ticket_id),
            "follow_up_scheduled" => Fact::FollowUp(FollowUpScheduled::deserialize(d)?.ticket_id),
            "follow_up_recorded" => Fact::FollowUp(FollowUpRecorded::deserialize(d)?.ticket_id),
            "follow_up_warning_raised" => {
                Fact::FollowUp(FollowUpWarningRaised::deserialize(d)?.ticket_id)
            }
            "follow_up_overdue" => Fact::FollowUp(FollowUpOverdue::deserialize(d)?.ticket_id),
            "deadline_set" => Fact::StepDeadline(DeadlineSet::deserialize(d)?.ticket_id),
            "deadline_met" => Fact::StepDeadline(DeadlineMet::deserialize(d)?.ticket_id),
            "deadline_warning_raised" => {
                Fact::StepDeadline(DeadlineWarningRaised::deserialize(d)?.ticket_id)
            }
            "deadline_breached" => Fact::StepDeadline(DeadlineBreached::deserialize(d)?.ticket_id),
            "ticket_linked" => Fact::Relation(TicketLinked::deserialize(d)?.ticket_id),
            "ticket_merged_into" => Fact::MergedInto(TicketMergedInto::deserialize(d)?.ticket_id),
            "ticket_merged" => Fact::Relation(TicketMerged::deserialize(d)?.ticket_id),
            "satisfaction_recorded" => Fact::SatisfactionRecorded(Deserialize::deserialize(d)?),
            "sla_warning_raised" => {
                let e = SlaWarningRaised::deserialize(d)?;
                Fact::SlaWarningRaised(deadline(e.ticket_id, e.target, e.due_at))
            }
            "sla_breached" => {
                let e = SlaBreached::deserialize(d)?;
                Fact::SlaBreached(deadline(e.ticket_id, e.target, e.due_at))
            }
            "agent_registered" => Fact::AgentRegistered(Deserialize::deserialize(d)?),
            "calendar_defined" => Fact::CalendarDefined(Cow::Owned(Deserialize::deserialize(d)?)),
            "agent_availability_changed" => {
                AgentAvailabilityChanged::deserialize(d)?;
                Fact::Other
            }
            "customer_registered" => {
                CustomerRegistered::deserialize(d)?;
                Fact::Other
            }
            "customer_data_erased" => {
                CustomerDataErased::deserialize(d)?;
                Fact::Other
            }
            "retention_policy_defined" => {
                RetentionPolicyDefined::deserialize(d)?;
                Fact::Other
            }
            "sla_policy_defined" => {
                SlaPolicyDefined::deserialize(d)?;
                Fact::Other
            }
            "inspector_registered" => {
                InspectorRegistered::deserialize(d)?;
                Fact::Other
            }
            "complaint_causes_defined" => {
                ComplaintCausesDefined::deserialize(d)?;
                Fact::Other
            }
            "scorecard_defined" => {
                ScorecardDefined::deserialize(d)?;
                Fact::Other
            }
            "inspection_sample_drawn" => {
                InspectionSampleDrawn::deserialize(d)?;
                Fact::Other
            }
            "inspection_recorded" => {
                InspectionRecorded::deserialize(d)?;
                Fact::Other
            }
            "reinspection_overdue" => {
                ReinspectionOverdue::deserialize(d)?;
                Fact::Other
            }
            "absence_planned" => {
                AbsencePlanned::deserialize(d)?;
                Fact::Other
            }
            "absence_cancelled" => {
                AbsenceCancelled::deserialize(d)?;
                Fact::Other
            }
            "absence_started" => {
                AbsenceStarted::deserialize(d)?;
                Fact::Other
            }
            "absence_ended" => {
                AbsenceEnded::deserialize(d)?;
                Fact::Other
            }
            "deadline_kind_defined" => {
                DeadlineKindDefined::deserialize(d)?;
                Fact::Other
            }
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown event type `{other}`"
                )))
            }
        })
    }
}
