//! The SLA tests' fixture: the tables' fold over a memory store, with the "office",
//! "always" and "shanghai" calendars defined, and one ticket's events applied one at a time.
//! Shared by this crate's `tests/sla.rs` and by the scheduler's tests
//! (`commands/process/tests/scheduler.rs`), which include this file by path.
//!
//! The "office" calendar is Europe/Berlin (UTC+1 in November), Mon-Fri 08:00-18:00 and
//! Sat 09:00-13:00. 2026-11-23 is a Monday. The "shanghai" calendar (UTC+8) has make-up
//! working days and a half day around a week of holidays (see `Fold::new`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use closeloop_core::domain::*;
use closeloop_projections::clock::status_at;
use closeloop_projections::record::Record;
use closeloop_projections::tables::memory::MemoryTables;
use closeloop_projections::tables::{Changes, Folder, TableStore, TicketWork};
use uuid::Uuid;

pub fn ts(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_second()
}

pub fn iso(s: i64) -> String {
    jiff::Timestamp::from_second(s).unwrap().to_string()
}

pub const TICKET: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

/// The fold, and the tables it commits to after every event.
pub struct Fold {
    pub folder: Folder,
    pub works: HashMap<Uuid, TicketWork>,
    pub tables: Arc<MemoryTables>,
    pub generation: String,
    pub position: u64,
    pub runtime: tokio::runtime::Runtime,
}

impl Fold {
    pub fn new() -> Fold {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let tables = Arc::new(MemoryTables::new());
        let generation = runtime.block_on(tables.open()).unwrap().generation;
        let mut f = Fold {
            generation,
            folder: Folder::default(),
            works: HashMap::new(),
            tables,
            position: 0,
            runtime,
        };
        let office: Vec<WorkingHours> = [
            WorkingHours::on(&Weekday::MON_TO_FRI, "08:00", "18:00"),
            WorkingHours::on(&[Weekday::Sat], "09:00", "13:00"),
        ]
        .concat();
        f.apply(
            "calendar-office",
            "2026-01-01T00:00:00Z",
            Event::CalendarDefined(CalendarDefined {
                calendar_id: "office".into(),
                time_zone: "Europe/Berlin".into(),
                weekly_hours: office,
                holidays: vec!["2026-12-24".parse().unwrap(), "2026-12-25".parse().unwrap()],
                working_days: vec![],
                hours_overrides: vec![],
            }),
        );
        f.apply(
            "calendar-always",
            "2026-01-01T00:00:00Z",
            Event::CalendarDefined(CalendarDefined {
                calendar_id: "always".into(),
                time_zone: "UTC".into(),
                weekly_hours: WorkingHours::on(Weekday::ALL, "00:00", "24:00"),
                holidays: vec![],
                working_days: vec![],
                hours_overrides: vec![],
            }),
        );
        // Shanghai (UTC+8): Mon-Fri 09:00-12:00 and 13:00-18:00; the holidays Mon 2026-02-16
        // to Sun 2026-02-22, a half day (09:00-12:00) on Fri 2026-02-13, and the weekend
        // days Sun 2026-02-08 and Sat 2026-02-28 worked as weekdays.
        let day = |start: &str, end: &str| HoursSpan {
            start: start.into(),
            end: end.into(),
        };
        let weekdays = [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ];
        f.apply(
            "calendar-shanghai",
            "2026-01-01T00:00:00Z",
            Event::CalendarDefined(CalendarDefined {
                calendar_id: "shanghai".into(),
                time_zone: "Asia/Shanghai".into(),
                weekly_hours: weekdays
                    .into_iter()
                    .flat_map(|day| {
                        [("09:00", "12:00"), ("13:00", "18:00")].map(|(start, end)| WorkingHours {
                            day,
                            start: start.into(),
                            end: end.into(),
                        })
                    })
                    .collect(),
                holidays: (16..=22).map(|d| jiff::civil::date(2026, 2, d)).collect(),
                working_days: [8, 28]
                    .map(|d| WorkingDay {
                        date: jiff::civil::date(2026, 2, d),
                        hours: vec![day("09:00", "12:00"), day("13:00", "18:00")],
                    })
                    .to_vec(),
                hours_overrides: vec![HoursOverride {
                    date: jiff::civil::date(2026, 2, 13),
                    hours: vec![day("09:00", "12:00")],
                }],
            }),
        );
        f
    }

    pub fn apply(&mut self, stream: &str, at: &str, event: Event) {
        self.position += 1;
        let record = Record {
            position: self.position,
            stream: stream.into(),
            at: ts(at),
            event,
        };
        let mut changes = Changes::default();
        self.folder
            .fold(&record, &mut self.works, &mut changes)
            .unwrap();
        self.folder.finish(&mut changes, &self.works);
        self.runtime
            .block_on(self.tables.commit(
                &self.generation,
                self.position - 1,
                self.position,
                changes,
            ))
            .unwrap();
    }

    pub fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    pub fn ticket(&mut self, at: &str, event: Event) {
        self.apply(&format!("ticket-{TICKET}"), at, event);
    }

    pub fn open(&mut self, at: &str, grade: Grade, sla: SlaTargets) {
        self.ticket(
            at,
            Event::TicketOpened(TicketOpened {
                ticket_id: TICKET,
                customer_id: "c1".into(),
                grade,
                channel: Channel::Email,
                category: Category::Incident,
                priority: Priority::Normal,
                subject: "s".into(),
                description: None,
                sla: Some(sla),
            }),
        );
    }

    /// (status at `now`, due_at, warn_at, business minutes, calendar minutes) of a target.
    pub fn timer(
        &self,
        target: SlaTarget,
        now: &str,
    ) -> (&'static str, Option<String>, Option<String>, i64, i64) {
        let t = &self.works[&TICKET];
        let timer = t.clock.timers.iter().find(|x| x.target == target).unwrap();
        let (b, c) = t.clock.used_at(timer, ts(now), &self.folder.calendars);
        (
            status_at(&t.clock, timer, ts(now)),
            timer.due_at.map(iso),
            timer.warn_at.map(iso),
            b / 60,
            c / 60,
        )
    }
}

pub fn office_targets() -> SlaTargets {
    SlaTargets {
        policy_id: "standard".into(),
        calendar_id: "office".into(),
        first_response_minutes: 240,
        resolution_minutes: 2_400,
        next_response_minutes: Some(480),
        warn_at_percent: 80,
        confirmation_wait_days: None,
    }
}

pub fn info_requested() -> Event {
    Event::CustomerInfoRequested(CustomerInfoRequested {
        ticket_id: TICKET,
        question: "q".into(),
    })
}

pub fn replied() -> Event {
    Event::CustomerReplied(CustomerReplied {
        ticket_id: TICKET,
        message: "m".into(),
    })
}

pub fn shanghai_targets() -> SlaTargets {
    SlaTargets {
        policy_id: "cn".into(),
        calendar_id: "shanghai".into(),
        first_response_minutes: 480,
        resolution_minutes: 1_320,
        next_response_minutes: Some(480),
        warn_at_percent: 75,
        confirmation_wait_days: None,
    }
}
