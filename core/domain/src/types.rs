//! The domain's vocabulary: roles, grades, channels, states. Every enum here is part of the
//! public contract (docs/contract.md), so variant names are the snake_case strings on the wire.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// Who is acting. Authorization (see `authorize`) is decided from the role and, for agents,
    /// supervisors and inspectors, from their registration.
    Role {
        Agent => "agent",
        Supervisor => "supervisor",
        Auditor => "auditor",
        Service => "service",
        System => "system",
        Inspector => "inspector",
        PrivacyOfficer => "privacy_officer",
    }
);

wire_enum!(
    /// How the customer reached us.
    Channel {
        Phone => "phone",
        Email => "email",
        Chat => "chat",
        Web => "web",
        Visit => "visit",
        Callback => "callback",
    }
);

wire_enum!(
    /// What kind of request a ticket is.
    Category {
        Inquiry => "inquiry",
        Incident => "incident",
        Complaint => "complaint",
        Repair => "repair",
        Return => "return",
        ServiceRequest => "service_request",
    }
);

wire_enum!(
    /// Ticket priority; ordered from least to most urgent.
    Priority {
        Low => "low",
        Normal => "normal",
        High => "high",
        Urgent => "urgent",
    }
);

wire_enum!(
    /// Customer grade: two VIP grades, three group classes, and everyone else.
    Grade {
        VipDiamond => "vip_diamond",
        VipGold => "vip_gold",
        GroupA => "group_a",
        GroupB => "group_b",
        GroupC => "group_c",
        Standard => "standard",
    }
);

wire_enum!(
    /// Seniority of an agent or account manager.
    Level {
        Junior => "junior",
        Intermediate => "intermediate",
        Senior => "senior",
    }
);

wire_enum!(
    /// Where a satisfaction rating came from.
    RatingSource {
        Survey => "survey",
        Callback => "callback",
    }
);

wire_enum!(
    /// The customer's answer to a resolution (docs/domain.md, The loop every request must
    /// close: a job counts as done only with the customer's feedback on it).
    Answer {
        Confirmed => "confirmed",
        Rejected => "rejected",
    }
);

wire_enum!(
    /// How one ticket relates to another (`link_tickets`, `ticket_linked`). Each relation has
    /// an inverse, which the other ticket's `ticket_linked` carries: a duplicate and the
    /// ticket it duplicates, an incident and the problem that caused it, or two related
    /// tickets.
    LinkRelation {
        DuplicateOf => "duplicate_of",
        HasDuplicate => "has_duplicate",
        CausedBy => "caused_by",
        Causes => "causes",
        Related => "related",
    }
);

impl LinkRelation {
    /// The relation as seen from the other ticket.
    pub fn inverse(self) -> LinkRelation {
        match self {
            LinkRelation::DuplicateOf => LinkRelation::HasDuplicate,
            LinkRelation::HasDuplicate => LinkRelation::DuplicateOf,
            LinkRelation::CausedBy => LinkRelation::Causes,
            LinkRelation::Causes => LinkRelation::CausedBy,
            LinkRelation::Related => LinkRelation::Related,
        }
    }
}

wire_enum!(
    /// How a follow-up reaches the customer after the service (docs/domain.md,
    /// Follow-ups).
    FollowUpKind {
        Call => "call",
        Visit => "visit",
    }
);

wire_enum!(
    /// Why an agent is away on a planned absence (the backup rules: leave, travel, illness,
    /// training).
    AbsenceReason {
        Leave => "leave",
        Travel => "travel",
        Illness => "illness",
        Training => "training",
        Other => "other",
    }
);

wire_enum!(
    /// What follows when a step deadline of a kind is breached (`define_deadline_kind`'s
    /// `on_breach`): `flag_exchange` flags the ticket for exchange (the manuals: a repair not
    /// done within three days is exchanged).
    DeadlineConsequence {
        FlagExchange => "flag_exchange",
    }
);

wire_enum!(
    /// How a ticket was settled (`resolve_ticket`'s optional `outcome`).
    ResolutionOutcome {
        Repaired => "repaired",
        Exchanged => "exchanged",
        Refunded => "refunded",
        Advice => "advice",
        Other => "other",
    }
);

wire_enum!(
    /// What a follow-up found.
    FollowUpOutcome {
        Satisfied => "satisfied",
        IssueFound => "issue_found",
        NotReached => "not_reached",
    }
);

wire_enum!(
    /// An inspector's verdict on an inspected item; a failed one is inspected again in the
    /// next period.
    Verdict {
        Pass => "pass",
        Fail => "fail",
    }
);

wire_enum!(
    /// Why a ticket was closed: by staff (`close_ticket`), or by the engine when the customer
    /// did not answer a resolution within the policy's wait.
    CloseReason {
        Staff => "staff",
        AutoClosedUnconfirmed => "auto_closed_unconfirmed",
    }
);

impl Default for CloseReason {
    /// Events written before close reasons existed were all closed by staff.
    fn default() -> Self {
        CloseReason::Staff
    }
}

wire_enum!(
    /// A ticket's place in the loop. `unassigned -> assigned -> in_progress <-> pending_customer
    /// -> resolved -> closed`, with `reopen` from resolved.
    TicketStatus {
        Unassigned => "unassigned",
        Assigned => "assigned",
        InProgress => "in_progress",
        PendingCustomer => "pending_customer",
        Resolved => "resolved",
        Closed => "closed",
    }
);

wire_enum!(
    /// Days of the week, for calendars.
    Weekday {
        Mon => "mon",
        Tue => "tue",
        Wed => "wed",
        Thu => "thu",
        Fri => "fri",
        Sat => "sat",
        Sun => "sun",
    }
);

impl Weekday {
    /// Monday to Friday.
    pub const MON_TO_FRI: [Weekday; 5] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ];
}

impl TicketStatus {
    /// Open means someone still owes the customer work.
    pub fn is_open(self) -> bool {
        !matches!(self, TicketStatus::Resolved | TicketStatus::Closed)
    }
}

/// The one who issued a command.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// For agents and supervisors, their `agent_id`; for services and the system, a name.
    #[schemars(length(min = 1, max = crate::limits::ID_CHARS_MAX), pattern(crate::limits::ID_PATTERN))]
    pub id: String,
    pub role: Role,
}

impl Actor {
    /// The engine's own process managers.
    pub fn system(name: &str) -> Actor {
        Actor {
            id: name.to_owned(),
            role: Role::System,
        }
    }
}

/// Quality-inspection callback ratings, each 1..5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dimensions {
    #[schemars(range(min = 1, max = 5))]
    pub recognition: u8,
    #[schemars(range(min = 1, max = 5))]
    pub efficiency: u8,
    #[schemars(range(min = 1, max = 5))]
    pub quality: u8,
    #[schemars(range(min = 1, max = 5))]
    pub overall: u8,
}

/// One entry of the complaint-cause list (`define_complaint_causes`): the code a ruling
/// names, and what it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplaintCause {
    /// Lowercase letters, digits and `_`, 1..=40 characters.
    #[schemars(pattern(crate::limits::CAUSE_CODE_PATTERN))]
    pub code: String,
    /// 1..=200 characters.
    #[schemars(length(min = 1, max = crate::limits::SHORT_TEXT_CHARS_MAX), pattern(crate::limits::TEXT_PATTERN))]
    pub label: String,
}

/// A member of staff a complaint ruling charges, with their team at the ruling (so team
/// figures need no directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargedStaff {
    pub agent_id: String,
    pub team: String,
}

/// Support line: 1 first line, 2 specialists, 3 management.
pub const LINE_MIN: u8 = 1;
/// The highest line; escalation stops here.
pub const LINE_MAX: u8 = 3;

/// One span of working hours on a weekday.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkingHours {
    pub day: Weekday,
    /// "HH:MM", 00:00 ..= 23:59.
    #[schemars(pattern(crate::limits::CLOCK_START_PATTERN))]
    pub start: String,
    /// "HH:MM", after `start`; "24:00" ends the day.
    #[schemars(pattern(crate::limits::CLOCK_END_PATTERN))]
    pub end: String,
}

impl WorkingHours {
    /// The same span, `start` to `end`, on each of `days`: a calendar's week is written as
    /// a few of these (`Weekday::MON_TO_FRI` 08:00-18:00, then Saturday 09:00-13:00).
    pub fn on(days: &[Weekday], start: &str, end: &str) -> Vec<WorkingHours> {
        days.iter()
            .map(|&day| WorkingHours {
                day,
                start: start.to_owned(),
                end: end.to_owned(),
            })
            .collect()
    }
}

/// One span of working hours on a given date (of a make-up working day or an override).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HoursSpan {
    /// "HH:MM", 00:00 ..= 23:59.
    #[schemars(pattern(crate::limits::CLOCK_START_PATTERN))]
    pub start: String,
    /// "HH:MM", after `start`; "24:00" ends the day.
    #[schemars(pattern(crate::limits::CLOCK_END_PATTERN))]
    pub end: String,
}

/// A make-up working day: a date worked although its weekday has no hours, such as a Sunday
/// worked before the Spring Festival. Its `hours` are the date's working hours, in place of
/// its weekday's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkingDay {
    pub date: jiff::civil::Date,
    /// At least one span: a make-up day is worked.
    #[schemars(length(min = 1, max = crate::limits::DAY_SPANS_MAX))]
    pub hours: Vec<HoursSpan>,
}

/// Other hours on one date, such as a half day before a holiday; an empty `hours` list
/// closes the date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HoursOverride {
    pub date: jiff::civil::Date,
    #[schemars(length(max = crate::limits::DAY_SPANS_MAX))]
    pub hours: Vec<HoursSpan>,
}

/// Which tickets a policy applies to; an absent field matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<Grade>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
}

/// Which closed tickets a retention policy applies to; an absent field matches everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<Grade>,
}

/// Which target of a ticket a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlaTarget {
    FirstResponse,
    NextResponse,
    Resolution,
}
