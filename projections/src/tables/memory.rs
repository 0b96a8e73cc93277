//! The reference table store: every table a `BTreeMap` by primary key, in memory. The SQL
//! stores must end with exactly its rows (`tests/tables.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use closeloop_core::log::Position;
use uuid::Uuid;

use super::fold::Changes;
use super::read::{
    self, AnyRow, Compliance, Dated, Listed, SlaCounts, Span, TimerFilter, TimerPage,
};
use super::rows::{
    AbsenceRow, AgentRow, ClosureRow, DeadlineRow, Dump, ErasureRow, FollowUpRow, InspectionRow,
    ResolutionRow, RetentionPolicyRow, ScorecardRow, TicketRow, TimerRow,
};
use super::store::{new_generation, Saved, TableError, TableStore, VERSION};

#[derive(Debug, Default)]
struct Tables {
    position: Position,
    generation: String,
    calendars: Option<String>,
    work: HashMap<Uuid, String>,
    rows: Changes,
}

/// Tables in memory (`--store memory:`); nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryTables {
    tables: Mutex<Tables>,
}

impl MemoryTables {
    pub fn new() -> MemoryTables {
        MemoryTables::default()
    }
}

fn merge<K: Ord + Clone, V: Clone>(into: &mut BTreeMap<K, V>, from: &BTreeMap<K, V>) {
    for (k, v) in from {
        into.insert(k.clone(), v.clone());
    }
}

#[async_trait::async_trait]
impl TableStore for MemoryTables {
    async fn open(&self) -> Result<Saved, TableError> {
        let mut t = self.tables.lock().expect("tables lock");
        if t.generation.is_empty() {
            t.generation = new_generation();
        }
        Ok(Saved {
            version: VERSION,
            position: t.position,
            calendars: t.calendars.clone(),
            generation: t.generation.clone(),
        })
    }

    async fn works(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        Ok(ids
            .iter()
            .filter_map(|id| t.work.get(id).map(|w| (*id, w.clone())))
            .collect())
    }

    async fn commit(
        &self,
        generation: &str,
        from: Position,
        to: Position,
        changes: Changes,
    ) -> Result<(), TableError> {
        let mut t = self.tables.lock().expect("tables lock");
        if t.position != from || t.generation != generation {
            return Err(TableError::Fenced {
                expected: from,
                found: t.position,
            });
        }
        t.position = to;
        if let Some(c) = &changes.calendars {
            t.calendars = Some(c.clone());
        }
        for (id, w) in &changes.work {
            t.work.insert(*id, w.clone());
        }
        let rows = &mut t.rows;
        merge(&mut rows.tickets, &changes.tickets);
        merge(&mut rows.sla_timers, &changes.sla_timers);
        merge(&mut rows.assignments, &changes.assignments);
        merge(&mut rows.resolutions, &changes.resolutions);
        merge(
            &mut rows.satisfaction_ratings,
            &changes.satisfaction_ratings,
        );
        merge(&mut rows.agents, &changes.agents);
        merge(&mut rows.complaint_rulings, &changes.complaint_rulings);
        merge(&mut rows.complaint_charges, &changes.complaint_charges);
        merge(&mut rows.scorecards, &changes.scorecards);
        merge(&mut rows.follow_ups, &changes.follow_ups);
        merge(&mut rows.inspection_samples, &changes.inspection_samples);
        merge(&mut rows.inspections, &changes.inspections);
        merge(
            &mut rows.reinspections_overdue,
            &changes.reinspections_overdue,
        );
        merge(&mut rows.absences, &changes.absences);
        merge(&mut rows.ticket_links, &changes.ticket_links);
        merge(&mut rows.deadlines, &changes.deadlines);
        merge(&mut rows.retention_policies, &changes.retention_policies);
        merge(&mut rows.customer_erasures, &changes.customer_erasures);
        Ok(())
    }

    async fn dump(&self) -> Result<Dump, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let r = &t.rows;
        Ok(Dump {
            tickets: r.tickets.values().cloned().collect(),
            sla_timers: r.sla_timers.values().cloned().collect(),
            assignments: r.assignments.values().cloned().collect(),
            resolutions: r.resolutions.values().cloned().collect(),
            satisfaction_ratings: r.satisfaction_ratings.values().cloned().collect(),
            agents: r.agents.values().cloned().collect(),
            complaint_rulings: r.complaint_rulings.values().cloned().collect(),
            complaint_charges: r.complaint_charges.values().cloned().collect(),
            scorecards: r.scorecards.values().cloned().collect(),
            follow_ups: r.follow_ups.values().cloned().collect(),
            inspection_samples: r.inspection_samples.values().cloned().collect(),
            inspections: r.inspections.values().cloned().collect(),
            absences: r.absences.values().cloned().collect(),
            reinspections_overdue: r.reinspections_overdue.values().cloned().collect(),
            ticket_links: r.ticket_links.values().cloned().collect(),
            deadlines: r.deadlines.values().cloned().collect(),
            retention_policies: r.retention_policies.values().cloned().collect(),
            customer_erasures: r.customer_erasures.values().cloned().collect(),
        })
    }

    async fn checkpoint(&self) -> Result<Saved, TableError> {
        self.open().await
    }

    async fn scan(
        &self,
        dated: Dated,
        span: Span,
        sink: &mut (dyn FnMut(AnyRow) + Send),
    ) -> Result<(), TableError> {
        let rows: Vec<AnyRow> = {
            let t = self.tables.lock().expect("tables lock");
            let r = &t.rows;
            match dated.table_column().0 {
                "tickets" => r.tickets.values().cloned().map(AnyRow::Ticket).collect(),
                "assignments" => r
                    .assignments
                    .values()
                    .cloned()
                    .map(AnyRow::Assignment)
                    .collect(),
                "resolutions" => r
                    .resolutions
                    .values()
                    .cloned()
                    .map(AnyRow::Resolution)
                    .collect(),
                "satisfaction_ratings" => r
                    .satisfaction_ratings
                    .values()
                    .cloned()
                    .map(AnyRow::Rating)
                    .collect(),
                "complaint_rulings" => r
                    .complaint_rulings
                    .values()
                    .cloned()
                    .map(AnyRow::Ruling)
                    .collect(),
                "complaint_charges" => r
                    .complaint_charges
                    .values()
                    .cloned()
                    .map(AnyRow::Charge)
                    .collect(),
                "follow_ups" => r
                    .follow_ups
                    .values()
                    .cloned()
                    .map(AnyRow::FollowUp)
                    .collect(),
                "inspection_samples" => r
                    .inspection_samples
                    .values()
                    .cloned()
                    .map(AnyRow::Sample)
                    .collect(),
                "inspections" => r
                    .inspections
                    .values()
                    .cloned()
                    .map(AnyRow::Inspection)
                    .collect(),
                "deadlines" => r
                    .deadlines
                    .values()
                    .cloned()
                    .map(AnyRow::Deadline)
                    .collect(),
                "reinspections_overdue" => r
                    .reinspections_overdue
                    .values()
                    .cloned()
                    .map(AnyRow::Overdue)
                    .collect(),
                _ => r.sla_timers.values().cloned().map(AnyRow::Timer).collect(),
            }
        };
        for row in rows {
            if dated.of(&row).is_some_and(|at| span.contains(at)) {
                sink(row);
            }
        }
        Ok(())
    }

    async fn retention_policies(&self) -> Result<Vec<RetentionPolicyRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        Ok(t.rows.retention_policies.values().cloned().collect())
    }

    async fn retention_candidates(
        &self,
        closed_before: i64,
    ) -> Result<Vec<ClosureRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        // Per customer: whether every ticket is closed, the latest closure, and the latest
        // closure per (category, grade).
        type Groups = BTreeMap<(String, String), i64>;
        let mut customers: BTreeMap<&str, (bool, i64, Groups)> = BTreeMap::new();
        for r in t.rows.tickets.values() {
            let c = customers.entry(r.customer_id.as_str()).or_insert((
                true,
                i64::MIN,
                BTreeMap::new(),
            ));
            match r.closed_at.filter(|_| r.status == "closed") {
                Some(closed) => {
                    c.1 = c.1.max(closed);
                    let g =
                        c.2.entry((r.category.clone(), r.grade.clone()))
                            .or_insert(closed);
                    *g = (*g).max(closed);
                }
                None => c.0 = false,
            }
        }
        let mut erased: HashMap<&str, i64> = HashMap::new();
        for e in t.rows.customer_erasures.values() {
            let at = erased.entry(e.customer_id.as_str()).or_insert(e.erased_at);
            *at = (*at).max(e.erased_at);
        }
        Ok(customers
            .into_iter()
            .filter(|(id, (all_closed, last, _))| {
                *all_closed && *last <= closed_before && erased.get(id).is_none_or(|at| at < last)
            })
            .flat_map(|(id, (_, _, groups))| {
                groups
                    .into_iter()
                    .map(move |((category, grade), last_closed_at)| ClosureRow {
                        customer_id: id.to_owned(),
                        category,
                        grade,
                        last_closed_at,
                    })
            })
            .collect())
    }

    async fn erasures(&self, from: i64, until: i64) -> Result<Vec<ErasureRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let mut rows: Vec<ErasureRow> = t
            .rows
            .customer_erasures
            .values()
            .filter(|e| from <= e.erased_at && e.erased_at < until)
            .cloned()
            .collect();
        rows.sort_by_key(|e| (e.erased_at, e.position));
        Ok(rows)
    }

    async fn due_absences(&self, now: i64, limit: u32) -> Result<Vec<AbsenceRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let mut due: Vec<AbsenceRow> = t
            .rows
            .absences
            .values()
            .filter(|r| r.absence_due(now))
            .cloned()
            .collect();
        due.sort_by_key(|r| {
            let moment = if r.state == "planned" {
                r.from_at
            } else {
                r.until_at
            };
            (moment, r.absence_id)
        });
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn due_deadlines(&self, now: i64, limit: u32) -> Result<Vec<DeadlineRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let mut due: Vec<DeadlineRow> = t
            .rows
            .deadlines
            .values()
            .filter(|r| r.deadline_due(now))
            .cloned()
            .collect();
        due.sort_by_key(read::deadline_order);
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn due_follow_ups(&self, now: i64, limit: u32) -> Result<Vec<FollowUpRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let mut due: Vec<FollowUpRow> = t
            .rows
            .follow_ups
            .values()
            .filter(|r| r.follow_up_due(now))
            .cloned()
            .collect();
        due.sort_by_key(|r| (r.warn_at, r.ticket_id, r.follow_up));
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn due_reinspections(
        &self,
        month: &str,
        limit: u32,
    ) -> Result<Vec<InspectionRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let rows = &t.rows;
        let due = rows
            .inspections
            .values()
            .filter(|i| {
                i.verdict == "fail"
                    && i.reinspect_in.as_deref().is_some_and(|m| m < month)
                    && !rows
                        .reinspections_overdue
                        .contains_key(&(i.sample_id, i.ticket_id))
                    && !rows.inspections.values().any(|j| {
                        j.ticket_id == i.ticket_id
                            && j.agent_id == i.agent_id
                            && Some(&j.period) == i.reinspect_in.as_ref()
                    })
            })
            .take(limit as usize)
            .cloned()
            .collect();
        Ok(due)
    }

    async fn scorecards(&self) -> Result<Vec<ScorecardRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        Ok(t.rows.scorecards.values().cloned().collect())
    }

    async fn agents(&self) -> Result<Vec<AgentRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        Ok(t.rows.agents.values().cloned().collect())
    }

    async fn open_load(&self) -> Result<Vec<(String, i64)>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let mut load: BTreeMap<String, i64> = BTreeMap::new();
        for ticket in t.rows.tickets.values() {
            if let (Some(a), true) = (&ticket.assignee, ticket.is_open()) {
                *load.entry(a.clone()).or_default() += 1;
            }
        }
        Ok(load.into_iter().collect())
    }

    async fn sla_counts(&self, filter: &TimerFilter, now: i64) -> Result<SlaCounts, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let mut counts = SlaCounts::default();
        let mut by: BTreeMap<(String, String, Option<String>), (u64, u64)> = BTreeMap::new();
        for timer in t.rows.sla_timers.values() {
            let passes = t
                .rows
                .tickets
                .get(&timer.ticket_id)
                .is_some_and(|k| read::ticket_passes(filter, k));
            if !passes {
                continue;
            }
            let team = t
                .rows
                .tickets
                .get(&timer.ticket_id)
                .and_then(|k| k.team.clone());
            let c = by
                .entry((timer.grade.clone(), timer.target.clone(), team))
                .or_default();
            match timer.met {
                Some(true) => c.0 += 1,
                Some(false) => c.1 += 1,
                None if timer.latest => {
                    c.1 += u64::from(read::breached_at_now(timer, now));
                    counts.open += 1;
                    counts.at_risk += u64::from(read::at_risk_at_now(timer, now));
                }
                None => {}
            }
        }
        counts.compliance = by
            .into_iter()
            .map(|((grade, target, team), (met, breached))| Compliance {
                grade,
                target,
                team,
                met,
                breached,
            })
            .collect();
        Ok(counts)
    }

    async fn timers(&self, page: &TimerPage) -> Result<Vec<Listed>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let mut listed: Vec<Listed> = t
            .rows
            .sla_timers
            .values()
            .filter(|timer| timer.latest)
            .filter(|timer| !page.at_risk_only || read::at_risk_at_now(timer, page.now))
            .filter_map(|timer| {
                let k = t.rows.tickets.get(&timer.ticket_id)?;
                read::ticket_passes(&page.filter, k).then(|| Listed {
                    timer: timer.clone(),
                    assignee: k.assignee.clone(),
                    team: k.team.clone(),
                })
            })
            .collect();
        let key = |l: &Listed| {
            (
                l.timer.due_at.unwrap_or(i64::MAX),
                l.timer.ticket_id,
                l.timer.target.clone(),
            )
        };
        listed.sort_by_key(key);
        if let Some(after) = &page.after {
            let (due, id, target) = after.key();
            listed.retain(|l| key(l) > (due, id, target.to_owned()));
        }
        listed.truncate(page.limit as usize);
        Ok(listed)
    }

    async fn due_answers(&self, now: i64, limit: u32) -> Result<Vec<ResolutionRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let mut due: Vec<ResolutionRow> = t
            .rows
            .resolutions
            .values()
            .filter(|r| r.awaits_answer() && r.answer_due_at.is_some_and(|d| d < now))
            .cloned()
            .collect();
        due.sort_by_key(|r| (r.answer_due_at, r.ticket_id));
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn due_timers(&self, now: i64, limit: u32) -> Result<Vec<TimerRow>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let mut due: Vec<TimerRow> = t
            .rows
            .sla_timers
            .values()
            .filter(|timer| read::scheduler_due(timer, now))
            .filter(|timer| {
                t.rows
                    .tickets
                    .get(&timer.ticket_id)
                    .is_some_and(TicketRow::is_open)
            })
            .cloned()
            .collect();
        due.sort_by_key(|r| (r.due_at.unwrap_or(i64::MAX), r.ticket_id, r.target.clone()));
        due.truncate(limit as usize);
        Ok(due)
    }
}
