//! The generator: a seeded random walk through the operations, producing commands only (it
//! never touches the log). Every random draw, command ids included, comes from ChaCha8
//! generators seeded by `WorkloadConfig::seed`, so the same config always gives the same
//! commands: stream 0 draws the setup, the leave and each ticket's opening day; ticket `n`
//! draws its whole life from stream `n + 1`. A ticket needs no draw of any other ticket, so
//! the days can be generated one at a time ([`generate_lazy`]) without keeping the days
//! before: only the commands that tickets already opened will send on later days are
//! carried over.

use std::collections::BTreeMap;

use closeloop_core::domain::*;
use jiff::{SignedDuration, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::error::Error;

/// Minutes in a simulated day.
pub(crate) const MINUTES_PER_DAY: i64 = 24 * 60;

/// A default SLA policy: id, match (grade, priority, category), first response, resolution
/// and next response minutes, calendar.
type PolicyRow = (
    &'static str,
    Option<Grade>,
    Option<Priority>,
    Option<Category>,
    u32,
    u32,
    Option<u32>,
    &'static str,
);

/// What to generate.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub tickets: usize,
    pub days: u32,
    pub customers: usize,
    /// Midnight (UTC) of the first simulated day.
    pub start: Timestamp,
}

impl Default for WorkloadConfig {
    fn default() -> WorkloadConfig {
        WorkloadConfig {
            seed: 7,
            tickets: 3_000,
            days: 28,
            customers: 800,
            start: "2026-10-26T00:00:00Z".parse().expect("valid timestamp"),
        }
    }
}

/// One simulated day's commands.
#[derive(Debug, Clone, Default)]
pub struct Day {
    /// Run first, in order (leave starting or ending).
    pub directory: Vec<CommandEnvelope>,
    /// One list per ticket, each in time order; lists are independent of each other.
    pub tickets: Vec<Vec<CommandEnvelope>>,
}

/// A generated workload, held whole (tests and benches that replay it several times).
#[derive(Debug, Clone)]
pub struct Workload {
    /// Midnight (UTC) of the first day; day `n` starts `n` times 24 hours later.
    pub start: Timestamp,
    /// Calendars, policies, agents and customers, in order.
    pub setup: Vec<CommandEnvelope>,
    pub days: Vec<Day>,
}

impl Workload {
    /// Number of commands in the workload.
    pub fn len(&self) -> usize {
        self.setup.len()
            + self
                .days
                .iter()
                .map(|d| d.directory.len() + d.tickets.iter().map(Vec::len).sum::<usize>())
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every command in a valid sequential order (setup, then day by day).
    pub fn sequential(&self) -> impl Iterator<Item = &CommandEnvelope> {
        self.setup.iter().chain(
            self.days
                .iter()
                .flat_map(|d| d.directory.iter().chain(d.tickets.iter().flatten())),
        )
    }
}

#[derive(Debug, Clone)]
struct Staff {
    id: String,
    team: String,
    line: u8,
    lead: bool,
    backup: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Away {
    agent: usize,
    from_day: i64,
    to_day: i64,
    backup: usize,
}

/// A planned absence's `plan_absence`, and its minute.
struct Planned {
    minute: i64,
    envelope: CommandEnvelope,
}

/// A workload generated day by day: the setup up front, then each [`Day`] made when
/// `days` yields it. What `closeloop demo` runs, so that its memory holds about one simulated
/// day of commands whatever the number of tickets.
#[derive(Debug)]
pub struct LazyWorkload {
    /// Midnight (UTC) of the first day; day `n` starts `n` times 24 hours later.
    pub start: Timestamp,
    /// Calendars, policies, agents and customers, in order.
    pub setup: Vec<CommandEnvelope>,
    pub days: Days,
}

/// The days of a [`LazyWorkload`], generated as they are iterated.
#[derive(Debug)]
pub struct Days {
    generator: Generator,
    /// The next day to yield.
    next: i64,
    /// How many tickets open on each day; ticket numbers run on from one day to the next.
    opening: Vec<usize>,
    next_ticket: usize,
    /// Leave starting or ending, by day (a handful of commands, made up front).
    directory: BTreeMap<i64, Vec<CommandEnvelope>>,
    /// The day the batch problem's lane runs ([`Generator::batch_problem`]); `None` when
    /// the workload is too small to hold one.
    batch_day: Option<i64>,
    /// Commands of tickets already opened, by (day, ticket), for the days not yet yielded:
    /// the only state carried from one day to the next (tickets still in flight).
    pending: BTreeMap<(i64, usize), Vec<CommandEnvelope>>,
}

impl Iterator for Days {
    type Item = Day;

    fn next(&mut self) -> Option<Day> {
        let day = self.next;
        let opening = *self.opening.get(usize::try_from(day).ok()?)?;
        self.next += 1;
        for _ in 0..opening {
            let n = self.next_ticket;
            self.next_ticket += 1;
            for (minute, envelope) in self.generator.ticket(n, day) {
                self.pending
                    .entry((minute / MINUTES_PER_DAY, n))
                    .or_default()
                    .push(envelope);
            }
        }
        let later = self.pending.split_off(&(day + 1, 0));
        let today = std::mem::replace(&mut self.pending, later);
        let mut tickets: Vec<Vec<CommandEnvelope>> = today.into_values().collect();
        if self.batch_day == Some(day) {
            tickets.push(self.generator.batch_problem(day));
        }
        Some(Day {
            directory: self.directory.remove(&day).unwrap_or_default(),
            tickets,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.opening.len() - self.next as usize;
        (left, Some(left))
    }
}

#[derive(Debug)]
struct Generator {
    seed: u64,
    /// The stream being drawn from: stream 0 while setting up, then each ticket's own.
    rng: ChaCha8Rng,
    start: Timestamp,
    end_minute: i64,
    staff: Vec<Staff>,
    away: Vec<Away>,
    /// Planned absences (`plan_absence`): started and ended by the scheduler, so the lanes
    /// only keep new work off the agent, never act as the backup.
    planned: Vec<Away>,
    customers: Vec<(String, Grade)>,
    /// The current ticket's commands, with their minute.
    timed: Vec<(i64, CommandEnvelope)>,
}

/// Generates the workload for `config`, held whole; the same config always gives the same
/// commands, those of [`generate_lazy`].
pub fn generate(config: &WorkloadConfig) -> Result<Workload, Error> {
    let lazy = generate_lazy(config)?;
    Ok(Workload {
        start: lazy.start,
        setup: lazy.setup,
        days: lazy.days.collect(),
    })
}

/// Generates the setup for `config` now and its days as they are iterated; the same config
/// always gives the same commands.
pub fn generate_lazy(config: &WorkloadConfig) -> Result<LazyWorkload, Error> {
    if config.days == 0 || config.customers == 0 {
        return Err(Error::Invalid(
            "needs at least one day and one customer".into(),
        ));
    }
    let mut g = Generator {
        seed: config.seed,
        rng: ChaCha8Rng::seed_from_u64(config.seed),
        start: config.start,
        end_minute: i64::from(config.days) * MINUTES_PER_DAY,
        staff: Vec::new(),
        away: Vec::new(),
        planned: Vec::new(),
        customers: Vec::new(),
        timed: Vec::new(),
    };
    let setup = g.setup(config.customers);
    g.plan_leave(config.days);
    let mut directory_days: BTreeMap<i64, Vec<CommandEnvelope>> = BTreeMap::new();
    for a in g.away.clone() {
        let agent = g.staff[a.agent].id.clone();
        let backup = g.staff[a.backup].id.clone();
        let leave = g.envelope(
            a.from_day * MINUTES_PER_DAY,
            Actor {
                id: agent.clone(),
                role: Role::Agent,
            },
            Command::SetAgentAvailability(SetAgentAvailability {
                agent_id: agent.clone(),
                available: false,
                backup_agent_id: Some(backup),
            }),
        );
        directory_days.entry(a.from_day).or_default().push(leave);
        if a.to_day < i64::from(config.days) {
            let back = g.envelope(
                a.to_day * MINUTES_PER_DAY,
                Actor {
                    id: agent.clone(),
                    role: Role::Agent,
                },
                Command::SetAgentAvailability(SetAgentAvailability {
                    agent_id: agent,
                    available: true,
                    backup_agent_id: None,
                }),
            );
            directory_days.entry(a.to_day).or_default().push(back);
        }
    }
    for planned in g.plan_absences(config.days) {
        let day = planned.minute / MINUTES_PER_DAY;
        directory_days
            .entry(day)
            .or_default()
            .push(planned.envelope);
    }
    // A workload of a few dozen tickets or more holds one batch problem, on the second day
    // (the first of a one-day workload), counted in its tickets.
    let batch_day =
        (config.tickets >= 4 * BATCH_TICKETS).then(|| i64::from(config.days.min(2)) - 1);
    let regular = config.tickets - batch_day.map_or(0, |_| BATCH_TICKETS);
    let opening = g.opening_days(regular, config.days);
    Ok(LazyWorkload {
        start: config.start,
        setup,
        days: Days {
            generator: g,
            next: 0,
            opening,
            next_ticket: 0,
            directory: directory_days,
            batch_day,
            pending: BTreeMap::new(),
        },
    })
}

/// Tickets of the batch problem: the problem ticket, three incidents it caused and one
/// duplicate report.
const BATCH_TICKETS: usize = 5;

/// The random stream of the batch problem: one no ticket draws from (ticket `n` draws from
/// stream `n + 1`).
const BATCH_STREAM: u64 = u64::MAX;

/// Salt of the generator of the step deadlines (kinds and each ticket's deadlines).
const DEADLINE_SALT: u64 = 0xdead_11e5_dead_11e5;

/// The manuals' step deadlines (kind, business hours on the 24x7 calendar, warning minutes
/// before, consequence of a breach): a repair the service point cannot do at once within
/// three days (else the product is exchanged), an on-site response to a batch quality
/// problem within two, returned goods checked within three days of arrival, missing
/// paperwork completed within 24 hours, a customer visit entered within a week.
pub const DEADLINE_KINDS: &[(&str, u32, u32, Option<DeadlineConsequence>)] = &[
    ("repair", 72, 240, Some(DeadlineConsequence::FlagExchange)),
    ("onsite_response", 48, 240, None),
    ("return_inspection", 72, 240, None),
    ("paperwork", 24, 120, None),
    ("visit_record", 168, 1_440, None),
];

fn pick<T: Copy>(rng: &mut ChaCha8Rng, weighted: &[(T, u32)]) -> T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (item, weight) in weighted {
        if x < *weight {
            return *item;
        }
        x -= weight;
    }
    weighted[weighted.len() - 1].0
}

/// An exponentially distributed delay in minutes with the given mean (at least 1).
fn exp_minutes(rng: &mut ChaCha8Rng, mean: f64) -> i64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    ((-mean * u.ln()).round() as i64).max(1)
}

fn system() -> Actor {
    Actor::system("provisioning")
}

/// The quality inspector of the demo organisation.
fn inspector() -> Actor {
    Actor {
        id: INSPECTOR.into(),
        role: Role::Inspector,
    }
}

/// The inspector's id.
pub const INSPECTOR: &str = "qa-1";

/// The complaint causes of the demo organisation: (code, label, whether staff caused it).
pub const COMPLAINT_CAUSES: &[(&str, &str, bool)] = &[
    ("rude_staff", "Staff were impolite", true),
    ("slow_service", "The answer or the fix came too late", true),
    ("wrong_information", "Staff gave wrong information", true),
    (
        "broken_promise",
        "A promised call or visit did not happen",
        true,
    ),
    ("product_defect", "The product itself failed", false),
    ("policy", "The customer disagrees with a policy", false),
    ("unfounded", "Nothing was wrong", false),
];

fn service() -> Actor {
    Actor {
        id: "crm".into(),
        role: Role::Service,
    }
}

impl Generator {
    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }

    fn at(&self, minute: i64) -> Timestamp {
        self.start + SignedDuration::from_mins(minute)
    }

    fn envelope(&mut self, minute: i64, actor: Actor, command: Command) -> CommandEnvelope {
        CommandEnvelope {
            command_id: self.uuid(),
            actor,
            occurred_at: Some(self.at(minute)),
            expected_version: None,
            command,
        }
    }

    fn setup(&mut self, customers: usize) -> Vec<CommandEnvelope> {
        let mut out = Vec::new();
        let office: Vec<WorkingHours> = [
            WorkingHours::on(&Weekday::MON_TO_FRI, "08:00", "18:00"),
            WorkingHours::on(&[Weekday::Sat], "09:00", "13:00"),
        ]
        .concat();
        let always = WorkingHours::on(Weekday::ALL, "00:00", "24:00");
        let date = |d: &str| -> jiff::civil::Date { d.parse().expect("date") };
        let holidays = [
            "2026-10-30",
            "2026-12-24",
            "2026-12-25",
            "2026-12-26",
            "2027-01-01",
        ]
        .map(date);
        let span = |start: &str, end: &str| HoursSpan {
            start: start.into(),
            end: end.into(),
        };
        // Days moved around holidays, as organisations in China do: Friday 2026-10-30 is a
        // bridge holiday made up by working Sunday 2026-11-01, with a half day on the Thursday
        // before (in the first week, so even a few days' workload has deadlines across
        // them); Christmas Eve is made up on Sunday 2026-12-20, the day before it a half day.
        let working_days = ["2026-11-01", "2026-12-20"]
            .map(|d| WorkingDay {
                date: date(d),
                hours: vec![span("09:00", "12:00"), span("13:00", "17:00")],
            })
            .to_vec();
        let hours_overrides = ["2026-10-29", "2026-12-23"]
            .map(|d| HoursOverride {
                date: date(d),
                hours: vec![span("08:00", "12:00")],
            })
            .to_vec();
        for (id, tz, hours, holidays, working_days, hours_overrides) in [
            (
                "office",
                "Europe/Berlin",
                office,
                holidays.to_vec(),
                working_days,
                hours_overrides,
            ),
            ("always", "UTC", always, Vec::new(), Vec::new(), Vec::new()),
        ] {
            let c = Command::DefineCalendar(DefineCalendar {
                calendar_id: id.into(),
                time_zone: tz.into(),
                weekly_hours: hours,
                holidays,
                working_days,
                hours_overrides,
            });
            out.push(self.envelope(0, system(), c));
        }
        // (id, grade, priority, category, first response, resolution, next response, calendar)
        let policies: [PolicyRow; 7] = [
            (
                "standard",
                None,
                None,
                None,
                240,
                2_400,
                Some(480),
                "office",
            ),
            (
                "urgent",
                None,
                Some(Priority::Urgent),
                None,
                60,
                600,
                Some(120),
                "office",
            ),
            (
                "complaint",
                None,
                None,
                Some(Category::Complaint),
                60,
                1_440,
                Some(240),
                "office",
            ),
            (
                "group-a",
                Some(Grade::GroupA),
                None,
                None,
                60,
                1_200,
                Some(240),
                "office",
            ),
            (
                "vip-gold",
                Some(Grade::VipGold),
                None,
                None,
                30,
                960,
                Some(120),
                "always",
            ),
            (
                "vip-diamond",
                Some(Grade::VipDiamond),
                None,
                None,
                15,
                480,
                Some(60),
                "always",
            ),
            (
                "vip-diamond-urgent",
                Some(Grade::VipDiamond),
                Some(Priority::Urgent),
                None,
                10,
                240,
                Some(30),
                "always",
            ),
        ];
        for (id, grade, priority, category, first, resolution, next, calendar) in policies {
            let c = Command::DefineSlaPolicy(DefineSlaPolicy {
                policy_id: id.into(),
                matches: PolicyMatch {
                    grade,
                    priority,
                    category,
                },
                first_response_minutes: first,
                resolution_minutes: resolution,
                next_response_minutes: next,
                calendar_id: calendar.into(),
                warn_at_percent: 80,
                // Ten working days for the customer's answer: the simulated staff close a
                // resolved ticket within a few days, and a customer reports a problem back
                // within about one (so the engine closes few tickets unconfirmed).
                confirmation_wait_days: Some(10),
            });
            out.push(self.envelope(0, system(), c));
        }
        // Teams of at most eight, one lead each; backups pair up inside the team.
        for (team, line, size) in [
            ("front-a", 1u8, 8usize),
            ("front-b", 1, 8),
            ("front-c", 1, 8),
            ("specialists", 2, 6),
            ("management", 3, 3),
        ] {
            let first = self.staff.len();
            for i in 0..size {
                let lead = i == 0;
                let backup = first + if i + 1 < size { i + 1 } else { 1.min(size - 1) };
                self.staff.push(Staff {
                    id: format!(
                        "{team}-{}",
                        if lead {
                            "lead".to_owned()
                        } else {
                            i.to_string()
                        }
                    ),
                    team: team.into(),
                    line,
                    lead,
                    backup: (backup != first + i).then_some(backup),
                });
            }
        }
        for i in 0..self.staff.len() {
            let s = self.staff[i].clone();
            let level = if s.lead || s.line == 3 {
                Level::Senior
            } else {
                pick(
                    &mut self.rng,
                    &[
                        (Level::Junior, 3),
                        (Level::Intermediate, 4),
                        (Level::Senior, 2),
                    ],
                )
            };
            let c = Command::RegisterAgent(RegisterAgent {
                agent_id: s.id.clone(),
                name: format!("Agent {}", s.id),
                team: s.team.clone(),
                line: s.line,
                level,
                team_lead: s.lead,
                backup_agent_id: s.backup.map(|b| self.staff[b].id.clone()),
            });
            out.push(self.envelope(0, system(), c));
        }
        out.push(self.envelope(
            0,
            system(),
            Command::RegisterInspector(RegisterInspector {
                inspector_id: INSPECTOR.into(),
                name: "Quality inspector".into(),
            }),
        ));
        out.push(
            self.envelope(
                0,
                system(),
                Command::DefineComplaintCauses(DefineComplaintCauses {
                    causes: COMPLAINT_CAUSES
                        .iter()
                        .map(|(code, label, _)| ComplaintCause {
                            code: (*code).into(),
                            label: (*label).into(),
                        })
                        .collect(),
                }),
            ),
        );
        // The organisation's scorecard from the first day (the manual's weights), and team
        // front-a's own from the third week, weighing results more.
        let first_day = self.start.to_zoned(jiff::tz::TimeZone::UTC).date();
        for (team, from, results, basic, discipline) in [
            (None, first_day, 60, 30, 10),
            (
                Some("front-a"),
                first_day.saturating_add(jiff::Span::new().days(14)),
                65,
                30,
                5,
            ),
        ] {
            out.push(self.envelope(
                0,
                system(),
                Command::DefineScorecard(DefineScorecard {
                    team: team.map(str::to_owned),
                    effective_from: from,
                    results_percent: results,
                    basic_percent: basic,
                    discipline_percent: discipline,
                    bonus_per_excellent_rating: 0.5,
                    bonus_cap_points: 10.0,
                    deduction_per_justified_complaint: 2.0,
                    deduction_cap_points: 10.0,
                }),
            ));
        }
        for i in 0..customers {
            let grade = pick(
                &mut self.rng,
                &[
                    (Grade::VipDiamond, 2),
                    (Grade::VipGold, 6),
                    (Grade::GroupA, 4),
                    (Grade::GroupB, 6),
                    (Grade::GroupC, 8),
                    (Grade::Standard, 74),
                ],
            );
            let id = format!("cust-{i:05}");
            self.customers.push((id.clone(), grade));
            let manager = (grade != Grade::Standard).then(|| format!("am-{}", i % 12));
            let c = Command::RegisterCustomer(RegisterCustomer {
                customer_id: id,
                name: format!("Customer {i}"),
                grade,
                account_manager_id: manager,
            });
            // Grades and account managers are provisioning's (role system).
            out.push(self.envelope(0, system(), c));
        }
        // The manuals' step deadlines, as configuration: ids from a generator of their own,
        // so the rest of the workload is the same with or without them.
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ DEADLINE_SALT);
        for (kind, hours, warn_before_minutes, on_breach) in DEADLINE_KINDS {
            out.push(CommandEnvelope {
                command_id: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
                actor: system(),
                occurred_at: Some(self.at(0)),
                expected_version: None,
                command: Command::DefineDeadlineKind(DefineDeadlineKind {
                    kind: (*kind).into(),
                    business_minutes: None,
                    business_hours: Some(*hours),
                    calendar_id: Some("always".into()),
                    warn_before_minutes: *warn_before_minutes,
                    on_breach: *on_breach,
                }),
            });
        }
        out
    }

    /// Leave: a few non-lead first-line agents away for 1..=7 days; their backup covers.
    fn plan_leave(&mut self, days: u32) {
        if days < 3 {
            return;
        }
        let candidates: Vec<usize> = (0..self.staff.len())
            .filter(|&i| !self.staff[i].lead && self.staff[i].line == 1)
            .collect();
        for _ in 0..3 {
            let agent = candidates[self.rng.random_range(0..candidates.len())];
            let Some(backup) = self.staff[agent].backup else {
                continue;
            };
            let busy = |i: usize| self.away.iter().any(|a| a.agent == i || a.backup == i);
            if busy(agent) || busy(backup) {
                continue;
            }
            let from_day = self.rng.random_range(1..i64::from(days) - 1);
            let to_day = (from_day + self.rng.random_range(1..=7)).min(i64::from(days));
            self.away.push(Away {
                agent,
                from_day,
                to_day,
                backup,
            });
        }
    }

    /// One planned absence (when the agents allow): a line-1 agent neither on leave nor
    /// covering one plans training a day ahead, their registered backup to cover, one to
    /// three days long. Drawn from a generator of its own, so the rest of the workload is
    /// the same with or without it.
    fn plan_absences(&mut self, days: u32) -> Vec<Planned> {
        if days < 3 {
            return Vec::new();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0xab5e_ab5e_ab5e_ab5e);
        let busy = |g: &Generator, i: usize| g.away.iter().any(|a| a.agent == i || a.backup == i);
        let candidates: Vec<usize> = (0..self.staff.len())
            .filter(|&i| {
                !self.staff[i].lead
                    && self.staff[i].line == 1
                    && !busy(self, i)
                    && self.staff[i].backup.is_some_and(|b| !busy(self, b))
            })
            .collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        let agent = candidates[rng.random_range(0..candidates.len())];
        let backup = self.staff[agent].backup.expect("a candidate has a backup");
        let from_day = rng.random_range(1..i64::from(days) - 1);
        let to_day = (from_day + rng.random_range(1..=3)).min(i64::from(days));
        self.planned.push(Away {
            agent,
            from_day,
            to_day,
            backup,
        });
        let minute = (from_day - 1) * MINUTES_PER_DAY + 10 * 60;
        let agent_id = self.staff[agent].id.clone();
        let envelope = CommandEnvelope {
            command_id: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
            actor: Actor {
                id: agent_id.clone(),
                role: Role::Agent,
            },
            occurred_at: Some(self.at(minute)),
            expected_version: None,
            command: Command::PlanAbsence(PlanAbsence {
                absence_id: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
                agent_id,
                from: self.at(from_day * MINUTES_PER_DAY),
                until: self.at(to_day * MINUTES_PER_DAY),
                reason: AbsenceReason::Training,
                backup_agent_id: None,
            }),
        };
        vec![Planned { minute, envelope }]
    }

    fn is_away(&self, agent: usize, minute: i64) -> bool {
        let day = minute / MINUTES_PER_DAY;
        self.away
            .iter()
            .chain(&self.planned)
            .any(|a| a.agent == agent && a.from_day <= day && day < a.to_day)
    }

    /// The actor doing `agent`'s work at `minute`: the agent, or their backup while away.
    fn hands(&self, agent: usize, minute: i64) -> Actor {
        let covering = self
            .away
            .iter()
            .find(|a| {
                a.agent == agent
                    && a.from_day <= minute / MINUTES_PER_DAY
                    && minute / MINUTES_PER_DAY < a.to_day
            })
            .map(|a| a.backup);
        Actor {
            id: self.staff[covering.unwrap_or(agent)].id.clone(),
            role: Role::Agent,
        }
    }

    fn lead_of(&self, team: &str) -> Actor {
        let lead = self
            .staff
            .iter()
            .find(|s| s.team == team && s.lead)
            .expect("every team has a lead");
        Actor {
            id: lead.id.clone(),
            role: Role::Supervisor,
        }
    }

    /// An available, non-lead agent of the line at `minute` (a lead when nobody else is).
    fn pick_agent(&mut self, line: u8, minute: i64) -> usize {
        let pool: Vec<usize> = (0..self.staff.len())
            .filter(|&i| {
                self.staff[i].line == line && !self.staff[i].lead && !self.is_away(i, minute)
            })
            .collect();
        if pool.is_empty() {
            return (0..self.staff.len())
                .find(|&i| self.staff[i].line == line)
                .expect("every line has staff");
        }
        pool[self.rng.random_range(0..pool.len())]
    }

    /// How many of `tickets` open on each of `days` days (fewer at the weekend), drawn from
    /// stream 0: the only draw made for a ticket outside its own stream.
    fn opening_days(&mut self, tickets: usize, days: u32) -> Vec<usize> {
        let weights: Vec<(usize, u32)> = (0..days as usize)
            .map(|d| {
                let weight = match d % 7 {
                    5 => 40,
                    6 => 25,
                    _ => 100,
                };
                (d, weight)
            })
            .collect();
        let mut opening = vec![0; days as usize];
        for _ in 0..tickets {
            opening[pick(&mut self.rng, &weights)] += 1;
        }
        opening
    }

    /// Ticket `n`'s commands in time order, with their minute, for a ticket opening on `day`.
    /// Drawn from the ticket's own stream, so no other ticket's draws are needed.
    fn ticket(&mut self, n: usize, day: i64) -> Vec<(i64, CommandEnvelope)> {
        self.rng = ChaCha8Rng::seed_from_u64(self.seed);
        self.rng.set_stream(n as u64 + 1);
        self.ticket_life(n, day);
        let mut commands = std::mem::take(&mut self.timed);
        // Stable: a survey answered after the closing stays after it.
        commands.sort_by_key(|(minute, _)| *minute);
        commands
    }

    /// The batch problem (many reports, one cause), one lane in time order on `day`: a
    /// problem ticket for a faulty production lot, three customers' incidents linked
    /// `caused_by` it, and a fourth report of the first customer's, sent again by email,
    /// merged into the problem ticket; the team's lead links and merges, an agent fixes the
    /// problem and closes the incidents with it.
    fn batch_problem(&mut self, day: i64) -> Vec<CommandEnvelope> {
        self.rng = ChaCha8Rng::seed_from_u64(self.seed);
        self.rng.set_stream(BATCH_STREAM);
        let mut t = day * MINUTES_PER_DAY + 9 * 60;
        let agent = self.pick_agent(1, t);
        let lead = self.lead_of(&self.staff[agent].team.clone());
        let open = |g: &mut Generator, t: i64, customer: usize, channel, subject: &str| {
            let ticket_id = g.uuid();
            let customer_id = g.customers[customer].0.clone();
            g.push(
                t,
                service(),
                Command::OpenTicket(OpenTicket {
                    ticket_id,
                    customer_id,
                    channel,
                    category: Category::Repair,
                    priority: Priority::High,
                    subject: subject.into(),
                    description: None,
                }),
            );
            ticket_id
        };
        let first = self.rng.random_range(0..self.customers.len());
        let problem = open(
            self,
            t,
            first,
            Channel::Phone,
            "Batch fault: lot 24-117 units fail",
        );
        let mut incidents = Vec::new();
        for _ in 0..3 {
            t += 5;
            let customer = self.rng.random_range(0..self.customers.len());
            incidents.push(open(
                self,
                t,
                customer,
                Channel::Phone,
                "Unit stopped working",
            ));
        }
        t += 5;
        let duplicate = open(
            self,
            t,
            first,
            Channel::Email,
            "Unit failed (sent by email too)",
        );
        t += 15;
        let agent_id = self.staff[agent].id.clone();
        let assign = |ticket_id| {
            Command::AssignTicket(AssignTicket {
                ticket_id,
                agent_id: agent_id.clone(),
            })
        };
        self.push(t, lead.clone(), assign(problem));
        for &incident in &incidents {
            t += 2;
            self.push(
                t,
                lead.clone(),
                Command::LinkTickets(LinkTickets {
                    ticket_id: incident,
                    other_ticket_id: problem,
                    relation: LinkRelation::CausedBy,
                }),
            );
            self.push(t, lead.clone(), assign(incident));
        }
        t += 2;
        self.push(
            t,
            lead.clone(),
            Command::MergeTicket(MergeTicket {
                ticket_id: duplicate,
                into_ticket_id: problem,
                reason: "the same failed unit, reported again by email".into(),
            }),
        );
        // The manuals: an on-site response to a batch quality problem within two days. The
        // lead sets it for the agent, who is on site two hours later (ids from the step
        // deadlines' own generator, so the lane is otherwise the same).
        let mut ids = ChaCha8Rng::seed_from_u64(self.seed ^ DEADLINE_SALT);
        ids.set_stream(BATCH_STREAM);
        let mut id = || uuid::Builder::from_random_bytes(ids.random()).into_uuid();
        let set = Command::SetDeadline(SetDeadline {
            ticket_id: problem,
            kind: "onsite_response".into(),
            business_minutes: None,
            due_at: None,
            owner: self.staff[agent].id.clone(),
        });
        self.push_as(t, lead, set, id());
        t += 120;
        let hands = self.hands(agent, t);
        let done = Command::CompleteDeadline(CompleteDeadline {
            ticket_id: problem,
            deadline: 1,
        });
        self.push_as(t, hands.clone(), done, id());
        for ticket_id in std::iter::once(problem).chain(incidents) {
            t += 5;
            self.push(
                t,
                hands.clone(),
                Command::ResolveTicket(ResolveTicket {
                    ticket_id,
                    resolution: "Lot 24-117 recalled; the unit is replaced.".into(),
                    outcome: Some(ResolutionOutcome::Exchanged),
                }),
            );
        }
        let mut commands = std::mem::take(&mut self.timed);
        commands.sort_by_key(|(minute, _)| *minute);
        commands.into_iter().map(|(_, envelope)| envelope).collect()
    }

    /// As [`Generator::push`], with a command id drawn elsewhere (from a generator of its
    /// own), so the lane's other draws stay as they were.
    fn push_as(&mut self, minute: i64, actor: Actor, command: Command, command_id: Uuid) {
        if minute < self.end_minute {
            let envelope = CommandEnvelope {
                command_id,
                actor,
                occurred_at: Some(self.at(minute)),
                expected_version: None,
                command,
            };
            self.timed.push((minute, envelope));
        }
    }

    fn push(&mut self, minute: i64, actor: Actor, command: Command) {
        if minute < self.end_minute {
            let envelope = self.envelope(minute, actor, command);
            self.timed.push((minute, envelope));
        }
    }

    fn ticket_life(&mut self, n: usize, day: i64) {
        let rng = &mut self.rng;
        const HOURLY: [u32; 24] = [
            2, 1, 1, 1, 1, 2, 4, 8, 14, 18, 20, 18, 12, 14, 18, 19, 17, 14, 10, 8, 6, 5, 4, 3,
        ];
        let hour = pick(
            rng,
            &HOURLY
                .iter()
                .enumerate()
                .map(|(h, w)| (h as i64, *w))
                .collect::<Vec<_>>(),
        );
        let mut t = day * MINUTES_PER_DAY + hour * 60 + rng.random_range(0..60);
        let (customer_id, grade) =
            self.customers[self.rng.random_range(0..self.customers.len())].clone();
        let rng = &mut self.rng;
        let channel = pick(
            rng,
            &[
                (Channel::Phone, 35),
                (Channel::Email, 20),
                (Channel::Chat, 20),
                (Channel::Web, 15),
                (Channel::Visit, 5),
                (Channel::Callback, 5),
            ],
        );
        let category = pick(
            rng,
            &[
                (Category::Inquiry, 35),
                (Category::Incident, 20),
                (Category::Complaint, 10),
                (Category::Repair, 15),
                (Category::Return, 8),
                (Category::ServiceRequest, 12),
            ],
        );
        let vip = matches!(grade, Grade::VipDiamond | Grade::VipGold);
        let priority = if vip {
            pick(
                rng,
                &[
                    (Priority::Normal, 40),
                    (Priority::High, 40),
                    (Priority::Urgent, 20),
                ],
            )
        } else {
            pick(
                rng,
                &[
                    (Priority::Low, 15),
                    (Priority::Normal, 60),
                    (Priority::High, 20),
                    (Priority::Urgent, 5),
                ],
            )
        };
        // How fast people answer this customer: VIPs first.
        let speed = match grade {
            Grade::VipDiamond => 0.2,
            Grade::VipGold => 0.35,
            Grade::GroupA => 0.6,
            Grade::GroupB | Grade::GroupC => 0.85,
            Grade::Standard => 1.0,
        };
        let ticket_id = self.uuid();
        let opener = match channel {
            Channel::Phone | Channel::Visit | Channel::Callback => {
                let agent = self.pick_agent(1, t);
                self.hands(agent, t)
            }
            _ => service(),
        };
        let subject = format!(
            "{} about {}",
            category.as_str().replace('_', " "),
            [
                "billing",
                "delivery",
                "installation",
                "account",
                "device",
                "contract"
            ][n % 6]
        );
        self.push(
            t,
            opener,
            Command::OpenTicket(OpenTicket {
                ticket_id,
                customer_id,
                channel,
                category,
                priority,
                subject,
                description: Some(format!("Generated request #{n}")),
            }),
        );
        // Assignment: a lead dispatches, or an agent claims it.
        t += exp_minutes(&mut self.rng, 25.0 * speed);
        let mut agent = self.pick_agent(1, t);
        let claim = self.rng.random_bool(0.3);
        let assigner = if claim {
            self.hands(agent, t)
        } else {
            self.lead_of(&self.staff[agent].team.clone())
        };
        if claim && assigner.id != self.staff[agent].id {
            // The agent is away; their lead dispatches instead.
            let lead = self.lead_of(&self.staff[agent].team.clone());
            self.push(
                t,
                lead,
                Command::AssignTicket(AssignTicket {
                    ticket_id,
                    agent_id: self.staff[agent].id.clone(),
                }),
            );
        } else {
            self.push(
                t,
                assigner,
                Command::AssignTicket(AssignTicket {
                    ticket_id,
                    agent_id: self.staff[agent].id.clone(),
                }),
            );
        }
        t += exp_minutes(&mut self.rng, 90.0 * speed);
        let hands = self.hands(agent, t);
        self.push(
            t,
            hands,
            Command::RespondToCustomer(RespondToCustomer {
                ticket_id,
                message: "Thank you, we are on it.".into(),
            }),
        );
        if self.rng.random_bool(0.25) {
            t += exp_minutes(&mut self.rng, 30.0);
            let hands = self.hands(agent, t);
            self.push(
                t,
                hands,
                Command::AddNote(AddNote {
                    ticket_id,
                    text: "Checked the customer's records.".into(),
                    visible_to_customer: false,
                }),
            );
        }
        if self.rng.random_bool(0.30) {
            t += exp_minutes(&mut self.rng, 60.0 * speed);
            let hands = self.hands(agent, t);
            self.push(
                t,
                hands,
                Command::RequestCustomerInfo(RequestCustomerInfo {
                    ticket_id,
                    question: "Could you send the serial number?".into(),
                }),
            );
            t += exp_minutes(&mut self.rng, 600.0);
            self.push(
                t,
                service(),
                Command::RecordCustomerReply(RecordCustomerReply {
                    ticket_id,
                    message: "Here it is.".into(),
                }),
            );
            t += exp_minutes(&mut self.rng, 120.0 * speed);
            let hands = self.hands(agent, t);
            self.push(
                t,
                hands,
                Command::RespondToCustomer(RespondToCustomer {
                    ticket_id,
                    message: "Thanks, checking now.".into(),
                }),
            );
        }
        if self.rng.random_bool(0.05) {
            t += exp_minutes(&mut self.rng, 60.0);
            let to = if priority == Priority::Urgent {
                Priority::High
            } else {
                Priority::Urgent
            };
            let lead = self.lead_of(&self.staff[agent].team.clone());
            self.push(
                t,
                lead,
                Command::ChangePriority(ChangePriority {
                    ticket_id,
                    priority: to,
                    reason: "customer impact changed".into(),
                }),
            );
        }
        // Escalation up the lines, with the reason recorded.
        let escalate_p = if category == Category::Complaint {
            0.25
        } else {
            0.10
        };
        let mut line = 1;
        while line < LINE_MAX
            && self
                .rng
                .random_bool(if line == 1 { escalate_p } else { 0.2 })
        {
            t += exp_minutes(&mut self.rng, 120.0 * speed);
            let hands = self.hands(agent, t);
            let reason = if line == 1 {
                "needs specialist analysis"
            } else {
                "serious case for management"
            };
            self.push(
                t,
                hands,
                Command::EscalateTicket(EscalateTicket {
                    ticket_id,
                    reason: reason.into(),
                    to_agent_id: None,
                }),
            );
            line += 1;
            t += exp_minutes(&mut self.rng, 45.0 * speed);
            agent = self.pick_agent(line, t);
            let lead = self.lead_of(&self.staff[agent].team.clone());
            self.push(
                t,
                lead,
                Command::AssignTicket(AssignTicket {
                    ticket_id,
                    agent_id: self.staff[agent].id.clone(),
                }),
            );
            t += exp_minutes(&mut self.rng, 60.0 * speed);
            let hands = self.hands(agent, t);
            self.push(
                t,
                hands,
                Command::RespondToCustomer(RespondToCustomer {
                    ticket_id,
                    message: "A specialist has taken over.".into(),
                }),
            );
        }
        let work_mean = match category {
            Category::Inquiry => 240.0,
            Category::Incident => 900.0,
            Category::Complaint => 1_200.0,
            Category::Repair => 2_400.0,
            Category::Return => 1_800.0,
            Category::ServiceRequest => 1_000.0,
        } * speed;
        let mut resolutions = 0;
        let mut last_score = None;
        loop {
            t += exp_minutes(&mut self.rng, work_mean);
            let hands = self.hands(agent, t);
            self.push(
                t,
                hands,
                Command::ResolveTicket(ResolveTicket {
                    ticket_id,
                    resolution: "Fixed and confirmed with the customer.".into(),
                    outcome: None,
                }),
            );
            resolutions += 1;
            let fast = (t - day * MINUTES_PER_DAY) < 2 * MINUTES_PER_DAY;
            let mut settled = t;
            let mut rated = None;
            if self.rng.random_bool(0.65) {
                let mut score = pick(
                    &mut self.rng,
                    &[(1u8, 4), (2, 6), (3, 15), (4, 40), (5, 35)],
                );
                if !fast || category == Category::Complaint {
                    score = score.saturating_sub(self.rng.random_range(0..=1)).max(1);
                }
                let rt = t + exp_minutes(&mut self.rng, 300.0);
                settled = rt;
                rated = Some(score);
                last_score = Some(score);
                self.push(
                    rt,
                    service(),
                    Command::RecordSatisfaction(RecordSatisfaction {
                        ticket_id,
                        score,
                        source: RatingSource::Survey,
                        comment: None,
                        dimensions: None,
                    }),
                );
            }
            if resolutions < 3 && self.rng.random_bool(0.05) {
                // The customer answers the survey, then reports the problem is back: a
                // customer who answered surveys rejects the resolution (through the CRM),
                // otherwise the agent hears of it and reopens.
                t = settled + exp_minutes(&mut self.rng, 1_440.0);
                if rated.is_some() {
                    self.push(
                        t,
                        service(),
                        Command::RejectResolution(RejectResolution {
                            ticket_id,
                            reason: "The problem came back.".into(),
                        }),
                    );
                } else {
                    let hands = self.hands(agent, t);
                    self.push(
                        t,
                        hands,
                        Command::ReopenTicket(ReopenTicket {
                            ticket_id,
                            reason: "The problem came back.".into(),
                        }),
                    );
                }
                continue;
            }
            // A customer content enough to rate 3 or more confirms the resolution two hours
            // later (before staff close it, at least ten hours after resolving); the others
            // never answer, and staff close the ticket unconfirmed.
            if rated.is_some_and(|score| score >= 3) {
                self.push(
                    t + 120,
                    service(),
                    Command::ConfirmResolution(ConfirmResolution {
                        ticket_id,
                        comment: None,
                    }),
                );
            }
            break;
        }
        t += 600 + exp_minutes(&mut self.rng, 1_440.0);
        let hands = self.hands(agent, t);
        self.push(t, hands, Command::CloseTicket(CloseTicket { ticket_id }));
        if self.rng.random_bool(0.05) {
            t += exp_minutes(&mut self.rng, 2_880.0);
            let lead = self.lead_of(&self.staff[agent].team.clone());
            let mut d = || self.rng.random_range(3..=5u8);
            let dimensions = Dimensions {
                recognition: d(),
                efficiency: d(),
                quality: d(),
                overall: d(),
            };
            self.push(
                t,
                lead,
                Command::RecordSatisfaction(RecordSatisfaction {
                    ticket_id,
                    score: dimensions.overall,
                    source: RatingSource::Callback,
                    comment: Some("Quality-inspection callback".into()),
                    dimensions: Some(dimensions),
                }),
            );
        }
        if category == Category::Complaint && self.rng.random_bool(0.8) {
            self.rule_complaint(ticket_id, agent, last_score, t);
        }
        let visit = matches!(category, Category::Repair | Category::Return) || vip;
        if self.rng.random_bool(if visit { 0.3 } else { 0.1 }) {
            self.follow_up(ticket_id, agent, visit, t);
        }
        self.step_deadlines(n, ticket_id, category, channel);
    }

    /// A ticket's step deadlines, from its commands already laid out and a generator of their
    /// own (so nothing else of the workload changes): a repair or a return gets its
    /// `repair` / `return_inspection` deadline from whoever first answers the customer, met
    /// when the ticket is first resolved (a repair resolved after its three days was an
    /// exchange: the resolution says so); a walk-in visit needs its paperwork completed
    /// within 24 hours, done in about ten hours, now and then a day late. A repair's
    /// deadline stays open one time in ten: the scheduler breaches it and the ticket is
    /// flagged for exchange.
    fn step_deadlines(&mut self, n: usize, ticket_id: Uuid, category: Category, channel: Channel) {
        let kind = match (category, channel) {
            (Category::Repair, _) => "repair",
            (Category::Return, _) => "return_inspection",
            (_, Channel::Visit) => "paperwork",
            _ => return,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ DEADLINE_SALT);
        rng.set_stream(n as u64 + 1);
        let first = |want: &dyn Fn(&Command) -> bool| {
            self.timed
                .iter()
                .filter(|(_, e)| want(&e.command))
                .min_by_key(|(minute, _)| *minute)
                .map(|(minute, e)| (*minute, e.actor.clone()))
        };
        let Some((set_at, setter)) = first(&|c| matches!(c, Command::RespondToCustomer(_))) else {
            return;
        };
        let resolved = first(&|c| matches!(c, Command::ResolveTicket(_)));
        if setter.role != Role::Agent {
            return;
        }
        let minutes = i64::from(
            DEADLINE_KINDS
                .iter()
                .find(|(k, ..)| *k == kind)
                .map_or(24, |(_, hours, ..)| *hours),
        ) * 60;
        let done = match kind {
            "paperwork" => Some(set_at + 1 + exp_minutes(&mut rng, 600.0)),
            _ if rng.random_bool(0.1) => None,
            _ => resolved.as_ref().map(|(minute, _)| *minute),
        };
        // The resolution of a repair says how it was settled.
        if kind == "repair" {
            let late = done.is_none_or(|d| d - set_at >= minutes);
            for (_, e) in self.timed.iter_mut() {
                if let Command::ResolveTicket(r) = &mut e.command {
                    r.outcome = Some(if late {
                        ResolutionOutcome::Exchanged
                    } else {
                        ResolutionOutcome::Repaired
                    });
                }
            }
        }
        let mut push = |g: &mut Generator, minute: i64, actor: Actor, command: Command| {
            if minute < g.end_minute {
                let envelope = CommandEnvelope {
                    command_id: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
                    actor,
                    occurred_at: Some(g.at(minute)),
                    expected_version: None,
                    command,
                };
                g.timed.push((minute, envelope));
            }
        };
        push(
            self,
            set_at,
            setter.clone(),
            Command::SetDeadline(SetDeadline {
                ticket_id,
                kind: kind.into(),
                business_minutes: None,
                due_at: None,
                owner: setter.id.clone(),
            }),
        );
        if let Some(done) = done {
            // Whoever holds the ticket then completes it (the resolver for a repair or a
            // return; the owner for paperwork).
            let actor = match (kind, resolved) {
                ("paperwork", _) | (_, None) => setter,
                (_, Some((_, resolver))) => resolver,
            };
            push(
                self,
                done,
                actor,
                Command::CompleteDeadline(CompleteDeadline {
                    ticket_id,
                    deadline: 1,
                }),
            );
        }
    }

    /// After the service, the team lead plans a follow-up by the agent: a visit for repairs,
    /// returns and VIP customers (due in a week), a call otherwise (due in three days). Most
    /// are made and entered in time; some late, a few visits entered after the week rule.
    fn follow_up(&mut self, ticket_id: Uuid, agent: usize, visit: bool, mut t: i64) {
        t += 60 + exp_minutes(&mut self.rng, 600.0);
        let lead = self.lead_of(&self.staff[agent].team.clone());
        let (kind, days) = if visit {
            (FollowUpKind::Visit, 7)
        } else {
            (FollowUpKind::Call, 3)
        };
        let due_by = t + days * MINUTES_PER_DAY;
        let due = self.at(due_by);
        self.push(
            t,
            lead,
            Command::ScheduleFollowUp(ScheduleFollowUp {
                ticket_id,
                kind,
                due_by: due,
                owner: self.staff[agent].id.clone(),
            }),
        );
        let late = self.rng.random_bool(0.1);
        let made = if late {
            due_by + exp_minutes(&mut self.rng, 1_440.0)
        } else {
            t + self.rng.random_range(60..days * MINUTES_PER_DAY - 60)
        };
        let (visited_at, signed, recorded) = if visit {
            // Entered the same day, or (one in ten) after the week rule.
            let entered = if self.rng.random_bool(0.1) {
                made + 8 * MINUTES_PER_DAY
            } else {
                made + self.rng.random_range(30..600)
            };
            let visited = self.at(made);
            (Some(visited), Some(self.rng.random_bool(0.9)), entered)
        } else {
            (None, None, made)
        };
        let outcome = pick(
            &mut self.rng,
            &[
                (FollowUpOutcome::Satisfied, 80),
                (FollowUpOutcome::IssueFound, 10),
                (FollowUpOutcome::NotReached, 10),
            ],
        );
        let hands = self.hands(agent, recorded);
        self.push(
            recorded,
            hands,
            Command::RecordFollowUp(RecordFollowUp {
                ticket_id,
                follow_up: 1,
                outcome,
                summary: "Followed up with the customer.".into(),
                visited_at,
                signed,
            }),
        );
    }

    /// A complaint is ruled on after it is closed, by the inspector or the team's lead; a
    /// customer who rated the work low is more often right. A tenth of the rulings are
    /// reviewed by the inspector and overturned (the later ruling supersedes).
    fn rule_complaint(&mut self, ticket_id: Uuid, agent: usize, score: Option<u8>, mut t: i64) {
        let low = score.is_some_and(|s| s <= 2);
        let justified = self.rng.random_bool(if low { 0.7 } else { 0.3 });
        // A justified complaint has any cause but `unfounded`; an unjustified one a cause
        // staff did not cause.
        let causes: Vec<(usize, u32)> = COMPLAINT_CAUSES
            .iter()
            .enumerate()
            .filter(|(_, (code, _, staff))| {
                if justified {
                    *code != "unfounded"
                } else {
                    !staff
                }
            })
            .map(|(i, (_, _, staff))| (i, if *staff { 3 } else { 2 }))
            .collect();
        let (cause, _, staff_caused) = COMPLAINT_CAUSES[pick(&mut self.rng, &causes)];
        let assignee = self.staff[agent].id.clone();
        let charged = if staff_caused {
            vec![assignee.clone()]
        } else {
            Vec::new()
        };
        let ruler = if self.rng.random_bool(0.5) {
            inspector()
        } else {
            self.lead_of(&self.staff[agent].team.clone())
        };
        t += exp_minutes(&mut self.rng, 1_440.0);
        self.push(
            t,
            ruler,
            Command::RuleComplaint(RuleComplaint {
                ticket_id,
                justified,
                cause: cause.into(),
                charged,
                note: "Heard the customer and the agent.".into(),
            }),
        );
        if self.rng.random_bool(0.1) {
            t += exp_minutes(&mut self.rng, 2_880.0);
            let (cause, charged) = if justified {
                ("unfounded", Vec::new())
            } else {
                ("slow_service", vec![assignee])
            };
            self.push(
                t,
                inspector(),
                Command::RuleComplaint(RuleComplaint {
                    ticket_id,
                    justified: !justified,
                    cause: cause.into(),
                    charged,
                    note: "Reviewed on appeal and overturned.".into(),
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> WorkloadConfig {
        WorkloadConfig {
            tickets: 300,
            days: 6,
            customers: 40,
            ..WorkloadConfig::default()
        }
    }

    #[test]
    fn the_same_config_gives_the_same_commands() {
        let (a, b) = (generate(&small()).unwrap(), generate(&small()).unwrap());
        assert!(a.sequential().eq(b.sequential()));
        let other = generate(&WorkloadConfig { seed: 8, ..small() }).unwrap();
        assert!(!a.sequential().eq(other.sequential()));
    }

    /// Each day holds its own commands only, each ticket's lane in time order, and every
    /// ticket is opened once, on the day it starts.
    #[test]
    fn days_hold_their_own_commands_in_order() {
        let config = small();
        let work = generate(&config).unwrap();
        assert_eq!(work.days.len(), config.days as usize);
        let mut opened = 0;
        for (n, day) in work.days.iter().enumerate() {
            let day_start = config.start + SignedDuration::from_mins(MINUTES_PER_DAY) * n as i32;
            let day_end = day_start + SignedDuration::from_mins(MINUTES_PER_DAY);
            for lane in &day.tickets {
                let times: Vec<Timestamp> = lane.iter().map(|e| e.occurred_at.unwrap()).collect();
                assert!(times.is_sorted(), "{times:?}");
                assert!(times.iter().all(|t| (day_start..day_end).contains(t)));
                opened += lane
                    .iter()
                    .filter(|e| matches!(e.command, Command::OpenTicket(_)))
                    .count();
            }
        }
        assert_eq!(opened, config.tickets);
    }
}
