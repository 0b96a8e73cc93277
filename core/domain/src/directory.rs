//! The directory: agents, customers, calendars, SLA policies, inspectors, the
//! complaint-cause list and the kinds of step deadline, folded from their streams.
//! Ticket decisions read it (authorization, the customer's grade, the policy in force); the
//! command handler keeps it caught up with the log and passes it in, so the domain never
//! fetches anything itself.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::event::*;
use super::types::*;

/// The categories whose streams the directory folds.
pub const DIRECTORY_CATEGORIES: &[&str] = &[
    "agent",
    "customer",
    "calendar",
    "sla_policy",
    "retention_policy",
    "inspector",
    "complaint_causes",
    "scorecard",
    "inspection",
    "deadline_kind",
];

/// Numbers from the operating manuals that are defaults, never constants (docs/domain.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rules {
    /// Most members of one team, the team lead included.
    pub team_members_max: usize,
    /// The bounds on a command's business time (`time.rs`).
    pub time: super::time::TimeRules,
    /// A visit entered more than this many days after it took place is flagged late (the
    /// manuals: a visit is entered in the system within one week).
    pub visit_entry_days_max: u32,
    /// How long before a follow-up's due time the scheduler warns that it is unrecorded.
    pub follow_up_warn_hours: u32,
    /// Most follow-ups one ticket may hold (each is a deadline the scheduler tracks).
    pub follow_ups_max: usize,
    /// The shortest and longest planned absence, in days (the backup rules cover absences
    /// from one day to two months).
    pub absence_days_min: u32,
    pub absence_days_max: u32,
    /// Most step deadlines one ticket may hold (each is a deadline the scheduler tracks).
    pub deadlines_max: usize,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            team_members_max: 8,
            time: super::time::TimeRules::default(),
            visit_entry_days_max: 7,
            follow_up_warn_hours: 24,
            follow_ups_max: 20,
            absence_days_min: 1,
            absence_days_max: 62,
            deadlines_max: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Agent {
    pub agent_id: String,
    pub name: String,
    pub team: String,
    pub line: u8,
    pub level: Level,
    pub team_lead: bool,
    pub backup_agent_id: Option<String>,
    pub available: bool,
    /// While away: who covers their work.
    pub covered_by: Option<String>,
    /// Planned absences not yet ended or cancelled, in the order planned.
    #[serde(default)]
    pub absences: Vec<Absence>,
}

/// A planned absence, as its events leave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Absence {
    pub absence_id: uuid::Uuid,
    pub from: jiff::Timestamp,
    pub until: jiff::Timestamp,
    pub reason: AbsenceReason,
    pub backup_agent_id: String,
    /// Whether it began (`absence_started`).
    pub started: bool,
}

impl Agent {
    /// The absence under way, if any: the agent is away on it.
    pub fn absence_under_way(&self) -> Option<&Absence> {
        self.absences.iter().find(|a| a.started)
    }

    /// A planned absence of theirs sharing a moment with `from..until`.
    pub fn absence_overlapping(
        &self,
        from: jiff::Timestamp,
        until: jiff::Timestamp,
    ) -> Option<&Absence> {
        self.absences
            .iter()
            .find(|a| a.from < until && from < a.until)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Customer {
    pub customer_id: String,
    pub name: String,
    pub grade: Grade,
    pub account_manager_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Calendar {
    pub calendar_id: String,
    pub time_zone: String,
    pub weekly_hours: Vec<WorkingHours>,
    pub holidays: Vec<jiff::civil::Date>,
    pub working_days: Vec<WorkingDay>,
    pub hours_overrides: Vec<HoursOverride>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Policy {
    pub policy_id: String,
    pub matches: PolicyMatch,
    pub first_response_minutes: u32,
    pub resolution_minutes: u32,
    pub next_response_minutes: Option<u32>,
    pub calendar_id: String,
    pub warn_at_percent: u8,
    pub confirmation_wait_days: Option<u8>,
    /// Order of definition: the latest defined wins a tie.
    pub defined_seq: u64,
}

/// A retention policy in force (`define_retention_policy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RetentionPolicy {
    pub policy_id: String,
    pub matches: RetentionMatch,
    pub keep_days: u32,
    pub effective_from: jiff::Timestamp,
    /// Order of definition: the latest defined wins a tie.
    pub defined_seq: u64,
}

/// A registered quality inspector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Inspector {
    pub inspector_id: String,
    pub name: String,
}

/// A drawn quality-inspection sample, and which of its items were inspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sample {
    pub period: String,
    pub agent_id: String,
    pub team: String,
    pub items: Vec<uuid::Uuid>,
    pub inspected: Vec<uuid::Uuid>,
    /// Items that failed, and those of them whose re-inspection the scheduler found overdue.
    #[serde(default)]
    pub failed: Vec<uuid::Uuid>,
    #[serde(default)]
    pub overdue: Vec<uuid::Uuid>,
}

/// A kind of step deadline, as its last definition left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeadlineKind {
    pub kind: String,
    pub business_minutes: u32,
    pub calendar_id: Option<String>,
    pub warn_before_minutes: u32,
    pub on_breach: Option<DeadlineConsequence>,
}

/// Reference data as of some log position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directory {
    pub agents: HashMap<String, Agent>,
    pub customers: HashMap<String, Customer>,
    pub calendars: HashMap<String, Calendar>,
    pub policies: HashMap<String, Policy>,
    /// Retention policies by id.
    pub retention_policies: HashMap<String, RetentionPolicy>,
    pub inspectors: HashMap<String, Inspector>,
    /// Quality-inspection samples by id.
    pub samples: HashMap<uuid::Uuid, Sample>,
    /// The kinds of step deadline defined, by code.
    pub deadline_kinds: HashMap<String, DeadlineKind>,
    /// The complaint-cause list in force: code to label.
    pub complaint_causes: std::collections::BTreeMap<String, String>,
    /// Version of each directory stream, for the expected-version check of the next append.
    pub versions: HashMap<String, u64>,
    definitions: u64,
}

impl Directory {
    /// Folds one event of a directory stream; events of other streams are ignored.
    pub fn apply(&mut self, stream: &str, version: u64, event: &Event) {
        match event {
            Event::AgentRegistered(e) => {
                let previous = self.agents.get(&e.agent_id);
                let agent = Agent {
                    agent_id: e.agent_id.clone(),
                    name: e.name.clone(),
                    team: e.team.clone(),
                    line: e.line,
                    level: e.level,
                    team_lead: e.team_lead,
                    backup_agent_id: e.backup_agent_id.clone(),
                    available: previous.is_none_or(|a| a.available),
                    covered_by: previous.and_then(|a| a.covered_by.clone()),
                    absences: previous.map(|a| a.absences.clone()).unwrap_or_default(),
                };
                self.agents.insert(e.agent_id.clone(), agent);
            }
            Event::AgentAvailabilityChanged(e) => {
                if let Some(agent) = self.agents.get_mut(&e.agent_id) {
                    agent.available = e.available;
                    agent.covered_by = if e.available {
                        None
                    } else {
                        e.backup_agent_id.clone()
                    };
                }
            }
            Event::AbsencePlanned(e) => {
                if let Some(agent) = self.agents.get_mut(&e.agent_id) {
                    agent.absences.push(Absence {
                        absence_id: e.absence_id,
                        from: e.from,
                        until: e.until,
                        reason: e.reason,
                        backup_agent_id: e.backup_agent_id.clone(),
                        started: false,
                    });
                }
            }
            Event::AbsenceStarted(e) => {
                if let Some(agent) = self.agents.get_mut(&e.agent_id) {
                    if let Some(a) = agent
                        .absences
                        .iter_mut()
                        .find(|a| a.absence_id == e.absence_id)
                    {
                        a.started = true;
                    }
                    agent.available = false;
                    agent.covered_by = Some(e.backup_agent_id.clone());
                }
            }
            Event::AbsenceCancelled(AbsenceCancelled {
                agent_id,
                absence_id,
                ..
            })
            | Event::AbsenceEnded(AbsenceEnded {
                agent_id,
                absence_id,
                ..
            }) => {
                if let Some(agent) = self.agents.get_mut(agent_id) {
                    let index = agent
                        .absences
                        .iter()
                        .position(|a| a.absence_id == *absence_id);
                    if let Some(gone) = index.map(|i| agent.absences.remove(i)) {
                        // Back from an absence under way: coverage hands the tickets back.
                        if gone.started {
                            agent.available = true;
                            agent.covered_by = None;
                        }
                    }
                }
            }
            Event::CustomerRegistered(e) => {
                self.customers.insert(
                    e.customer_id.clone(),
                    Customer {
                        customer_id: e.customer_id.clone(),
                        name: e.name.clone(),
                        grade: e.grade,
                        account_manager_id: e.account_manager_id.clone(),
                    },
                );
            }
            Event::CalendarDefined(e) => {
                self.calendars.insert(
                    e.calendar_id.clone(),
                    Calendar {
                        calendar_id: e.calendar_id.clone(),
                        time_zone: e.time_zone.clone(),
                        weekly_hours: e.weekly_hours.clone(),
                        holidays: e.holidays.clone(),
                        working_days: e.working_days.clone(),
                        hours_overrides: e.hours_overrides.clone(),
                    },
                );
            }
            Event::SlaPolicyDefined(e) => {
                self.definitions += 1;
                self.policies.insert(
                    e.policy_id.clone(),
                    Policy {
                        policy_id: e.policy_id.clone(),
                        matches: e.matches.clone(),
                        first_response_minutes: e.first_response_minutes,
                        resolution_minutes: e.resolution_minutes,
                        next_response_minutes: e.next_response_minutes,
                        calendar_id: e.calendar_id.clone(),
                        warn_at_percent: e.warn_at_percent,
                        confirmation_wait_days: e.confirmation_wait_days,
                        defined_seq: self.definitions,
                    },
                );
            }
            Event::RetentionPolicyDefined(e) => {
                self.definitions += 1;
                self.retention_policies.insert(
                    e.policy_id.clone(),
                    RetentionPolicy {
                        policy_id: e.policy_id.clone(),
                        matches: e.matches,
                        keep_days: e.keep_days,
                        effective_from: e.effective_from,
                        defined_seq: self.definitions,
                    },
                );
            }
            Event::InspectorRegistered(e) => {
                self.inspectors.insert(
                    e.inspector_id.clone(),
                    Inspector {
                        inspector_id: e.inspector_id.clone(),
                        name: e.name.clone(),
                    },
                );
            }
            Event::ComplaintCausesDefined(e) => {
                self.complaint_causes = e
                    .causes
                    .iter()
                    .map(|c| (c.code.clone(), c.label.clone()))
                    .collect();
            }
            Event::InspectionSampleDrawn(e) => {
                self.samples.insert(
                    e.sample_id,
                    Sample {
                        period: e.period.clone(),
                        agent_id: e.agent_id.clone(),
                        team: e.team.clone(),
                        items: e.items.clone(),
                        inspected: Vec::new(),
                        failed: Vec::new(),
                        overdue: Vec::new(),
                    },
                );
            }
            Event::InspectionRecorded(e) => {
                if let Some(s) = self.samples.get_mut(&e.sample_id) {
                    s.inspected.push(e.ticket_id);
                    if e.verdict == Verdict::Fail {
                        s.failed.push(e.ticket_id);
                    }
                }
            }
            Event::ReinspectionOverdue(e) => {
                if let Some(s) = self.samples.get_mut(&e.sample_id) {
                    s.overdue.push(e.ticket_id);
                }
            }
            Event::DeadlineKindDefined(e) => {
                self.deadline_kinds.insert(
                    e.kind.clone(),
                    DeadlineKind {
                        kind: e.kind.clone(),
                        business_minutes: e.business_minutes,
                        calendar_id: e.calendar_id.clone(),
                        warn_before_minutes: e.warn_before_minutes,
                        on_breach: e.on_breach,
                    },
                );
            }
            // Scorecards weigh reports, never decisions: only the stream's version is kept.
            Event::ScorecardDefined(_) => {}
            // An erasure changes no reference data, but it is the customer stream's latest
            // version: the next append there (another erasure, a re-registration) expects it.
            Event::CustomerDataErased(_) => {}
            _ => return,
        }
        self.versions.insert(stream.to_owned(), version);
    }

    /// The customer's grade; `standard` for a customer never registered.
    pub fn grade_of(&self, customer_id: &str) -> Grade {
        self.customers
            .get(customer_id)
            .map_or(Grade::Standard, |c| c.grade)
    }

    /// Members of a team, the lead included.
    pub fn team_members<'a>(&'a self, team: &'a str) -> impl Iterator<Item = &'a Agent> + 'a {
        self.agents.values().filter(move |a| a.team == team)
    }

    /// The team lead of a team, if one is registered.
    pub fn team_lead<'a>(&'a self, team: &'a str) -> Option<&'a Agent> {
        self.team_members(team).find(|a| a.team_lead)
    }

    /// The policy for a ticket: the matching one with the most matched fields, the latest
    /// defined winning a tie; `None` when none matches (the ticket gets no targets).
    pub fn select_policy(
        &self,
        grade: Grade,
        priority: Priority,
        category: Category,
    ) -> Option<&Policy> {
        self.policies
            .values()
            .filter_map(|p| {
                let m = &p.matches;
                let fits = m.grade.is_none_or(|g| g == grade)
                    && m.priority.is_none_or(|x| x == priority)
                    && m.category.is_none_or(|c| c == category);
                let specificity = m.grade.is_some() as u8
                    + m.priority.is_some() as u8
                    + m.category.is_some() as u8;
                fits.then_some((specificity, p.defined_seq, p))
            })
            .max_by_key(|(specificity, seq, _)| (*specificity, *seq))
            .map(|(_, _, p)| p)
    }

    /// The retention policy for a closed ticket of `grade` and `category`: the matching one
    /// with the most matched fields, the latest defined winning a tie (as [`Self::select_policy`]);
    /// `None` when none matches (retention never erases that customer).
    pub fn select_retention_policy(
        &self,
        grade: Grade,
        category: Category,
    ) -> Option<&RetentionPolicy> {
        select_retention(self.retention_policies.values(), grade, category)
    }

    /// The targets a policy promises, as copied into ticket events.
    pub fn targets(
        &self,
        grade: Grade,
        priority: Priority,
        category: Category,
    ) -> Option<SlaTargets> {
        self.select_policy(grade, priority, category)
            .map(|p| SlaTargets {
                policy_id: p.policy_id.clone(),
                calendar_id: p.calendar_id.clone(),
                first_response_minutes: p.first_response_minutes,
                resolution_minutes: p.resolution_minutes,
                next_response_minutes: p.next_response_minutes,
                warn_at_percent: p.warn_at_percent,
                confirmation_wait_days: p.confirmation_wait_days,
            })
    }
}

/// The most specific of `policies` matching a closed ticket of `grade` and `category`, the
/// latest defined winning a tie: one rule for the domain and for the retention scheduler,
/// which reads the policies from the tables.
pub fn select_retention<'p>(
    policies: impl IntoIterator<Item = &'p RetentionPolicy>,
    grade: Grade,
    category: Category,
) -> Option<&'p RetentionPolicy> {
    policies
        .into_iter()
        .filter_map(|p| {
            let m = &p.matches;
            let fits =
                m.grade.is_none_or(|g| g == grade) && m.category.is_none_or(|c| c == category);
            let specificity = m.grade.is_some() as u8 + m.category.is_some() as u8;
            fits.then_some((specificity, p.defined_seq, p))
        })
        .max_by_key(|(specificity, seq, _)| (*specificity, *seq))
        .map(|(_, _, p)| p)
}
