//! [`SqliteTables`]: the tables on SQLite (`tables.sql`), in the log's own file, through a
//! connection of their own: opening, committing a batch, dumping, and each read handed to
//! `read.rs`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use closeloop_core::log::Position;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use uuid::Uuid;

use super::decode::{rows, to_text};
use super::read::{self, stored};
use crate::tables::fold::Changes;
use crate::tables::read::{AnyRow, Dated, Listed, SlaCounts, Span, TimerFilter, TimerPage};
use crate::tables::rows::*;
use crate::tables::store::{
    check_version, new_generation, Saved, TableError, TableStore, NAME, VERSION,
};

/// How long a commit waits for the log's writer to release the file.
pub const BUSY_TIMEOUT_MS: u64 = 10_000;

const TABLES: [&str; 19] = [
    "tickets",
    "sla_timers",
    "assignments",
    "resolutions",
    "satisfaction_ratings",
    "agents",
    "complaint_rulings",
    "complaint_charges",
    "scorecards",
    "follow_ups",
    "inspection_samples",
    "inspections",
    "reinspections_overdue",
    "absences",
    "ticket_links",
    "deadlines",
    "retention_policies",
    "customer_erasures",
    "ticket_state",
];

/// The tables in an SQLite file: one connection writes, another reads (WAL lets a report
/// read while a batch commits).
#[derive(Clone)]
pub struct SqliteTables {
    pub(super) conn: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteTables {
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteTables, TableError> {
        let conn = Connection::open(path.as_ref())?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
        drop_outdated(&conn)?;
        conn.execute_batch(include_str!("tables.sql"))?;
        add_generation(&conn)?;
        let reader = Connection::open(path.as_ref())?;
        reader.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
        reader.pragma_update(None, "query_only", true)?;
        Ok(SqliteTables {
            conn: Arc::new(Mutex::new(conn)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, TableError> + Send + 'static,
    ) -> Result<T, TableError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock().expect("sqlite tables lock")))
            .await
            .map_err(|e| TableError::Unavailable(e.to_string()))?
    }

    /// Runs `f` on the read connection, on a blocking thread.
    async fn reading<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, TableError> + Send + 'static,
    ) -> Result<T, TableError> {
        let conn = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock().expect("sqlite reader lock")))
            .await
            .map_err(|e| TableError::Unavailable(e.to_string()))?
    }
}

/// Drops the tables of an older [`VERSION`], whose shape may differ from `tables.sql`'s
/// (which only creates what is missing): `open` then creates them anew and refolds from
/// position zero.
fn drop_outdated(conn: &Connection) -> Result<(), TableError> {
    let has_checkpoint: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'table_checkpoint')",
        [],
        |r| r.get(0),
    )?;
    if !has_checkpoint {
        return Ok(());
    }
    match stored(conn)? {
        Some(saved) if !check_version(saved.version)? => {
            for table in TABLES {
                conn.execute_batch(&format!("DROP TABLE IF EXISTS {table}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The checkpoint row as stored, if there is one: what `open` starts from and what reports
/// read.
/// Adds `table_checkpoint.generation` to tables created before it existed (SQLite has no
/// `ADD COLUMN IF NOT EXISTS`).
pub(super) fn add_generation(conn: &Connection) -> Result<(), TableError> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('table_checkpoint') WHERE name = 'generation'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch(
            "ALTER TABLE table_checkpoint ADD COLUMN generation TEXT NOT NULL DEFAULT ''",
        )?;
    }
    Ok(())
}

fn open_blocking(conn: &mut Connection) -> Result<Saved, TableError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = stored(&tx)?;
    let saved = match found {
        Some(stored) => {
            if check_version(stored.version)? {
                let generation = if stored.generation.is_empty() {
                    // Written by a build without generations: give it one now.
                    let generation = new_generation();
                    tx.execute(
                        "UPDATE table_checkpoint SET generation = ?2 WHERE name = ?1",
                        params![NAME, generation],
                    )?;
                    generation
                } else {
                    stored.generation
                };
                Saved {
                    generation,
                    ..stored
                }
            } else {
                for table in TABLES {
                    tx.execute(&format!("DELETE FROM {table}"), [])?;
                }
                let generation = new_generation();
                tx.execute(
                    "UPDATE table_checkpoint SET version = ?2, position = 0, calendars = NULL, generation = ?3 WHERE name = ?1",
                    params![NAME, VERSION, generation],
                )?;
                Saved {
                    version: VERSION,
                    position: 0,
                    calendars: None,
                    generation,
                }
            }
        }
        None => {
            let generation = new_generation();
            tx.execute(
                "INSERT INTO table_checkpoint (name, version, position, generation) VALUES (?1, ?2, 0, ?3)",
                params![NAME, VERSION, generation],
            )?;
            Saved {
                version: VERSION,
                position: 0,
                calendars: None,
                generation,
            }
        }
    };
    tx.commit()?;
    Ok(saved)
}

fn commit_blocking(
    conn: &mut Connection,
    generation: &str,
    from: Position,
    to: Position,
    c: &Changes,
) -> Result<(), TableError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let moved = tx.execute(
        "UPDATE table_checkpoint SET position = ?2, calendars = coalesce(?4, calendars)
          WHERE name = ?1 AND position = ?3 AND generation = ?5",
        params![NAME, to as i64, from as i64, c.calendars, generation],
    )?;
    if moved != 1 {
        let found: i64 = tx
            .query_row(
                "SELECT position FROM table_checkpoint WHERE name = ?1",
                [NAME],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        return Err(TableError::Fenced {
            expected: from,
            found: found as u64,
        });
    }
    {
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO tickets VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
        )?;
        for r in c.tickets.values() {
            s.execute(params![
                r.ticket_id.to_string(),
                r.customer_id,
                r.grade,
                r.channel,
                r.category,
                r.priority,
                r.status,
                r.line,
                r.assignee,
                r.team,
                to_text(r.opened_at),
                r.first_response_at.map(to_text),
                r.resolved_at.map(to_text),
                r.closed_at.map(to_text),
                r.reopenings,
                r.escalations
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO sla_timers VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)",
        )?;
        for r in c.sla_timers.values() {
            s.execute(params![
                r.ticket_id.to_string(),
                r.target,
                r.cycle,
                r.status,
                to_text(r.started_at),
                r.due_at.map(to_text),
                r.warn_at.map(to_text),
                r.warned_at.map(to_text),
                r.breached_at.map(to_text),
                r.fulfilled_at.map(to_text),
                r.met,
                r.target_minutes,
                r.business_minutes_used,
                r.calendar_minutes_used,
                r.calendar_id,
                r.grade,
                r.priority,
                r.agent_id,
                r.team,
                r.latest
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO assignments VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
        )?;
        for r in c.assignments.values() {
            s.execute(params![
                r.ticket_id.to_string(),
                r.seq,
                r.agent_id,
                r.team,
                to_text(r.from_at),
                r.until_at.map(to_text),
                r.ended_by,
                r.started_by,
                r.category
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO resolutions VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
        )?;
        for r in c.resolutions.values() {
            s.execute(params![
                r.ticket_id.to_string(),
                r.resolution,
                r.resolved_by,
                r.team,
                to_text(r.resolved_at),
                r.first_response_business_minutes,
                r.resolution_business_minutes,
                r.one_touch,
                r.reopened_later,
                r.reopened_at.map(to_text),
                r.category,
                r.grade,
                r.channel,
                r.answer,
                r.answered_at.map(to_text),
                r.answer_due_at.map(to_text),
                r.closed_at.map(to_text),
                r.close_reason
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO satisfaction_ratings VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
        )?;
        for r in c.satisfaction_ratings.values() {
            s.execute(params![
                r.ticket_id.to_string(),
                r.resolution,
                r.source,
                to_text(r.rated_at),
                r.score,
                r.agent_id,
                r.team,
                r.category,
                r.grade,
                r.channel,
                r.recognition,
                r.efficiency,
                r.quality,
                r.overall
            ])?;
        }
        let mut s = tx.prepare_cached("INSERT OR REPLACE INTO agents VALUES (?1,?2,?3,?4,?5)")?;
        for r in c.agents.values() {
            s.execute(params![r.agent_id, r.team, r.line, r.level, r.team_lead])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO complaint_rulings VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
        )?;
        for r in c.complaint_rulings.values() {
            s.execute(params![
                r.ticket_id.to_string(),
                r.ruling,
                to_text(r.ruled_at),
                r.ruled_by,
                r.ruled_by_role,
                r.justified,
                r.cause,
                r.charged,
                r.assignee,
                r.team,
                to_text(r.complained_at),
                r.superseded_at.map(to_text)
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO complaint_charges VALUES (?1,?2,?3,?4,?5,?6)",
        )?;
        for r in c.complaint_charges.values() {
            s.execute(params![
                r.ticket_id.to_string(),
                r.ruling,
                r.agent_id,
                r.team,
                to_text(r.ruled_at),
                r.superseded_at.map(to_text)
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO scorecards VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
        )?;
        for r in c.scorecards.values() {
            s.execute(params![
                r.team,
                r.effective_from,
                r.results_percent,
                r.basic_percent,
                r.discipline_percent,
                r.bonus_per_excellent_rating,
                r.bonus_cap_points,
                r.deduction_per_justified_complaint,
                r.deduction_cap_points,
                to_text(r.defined_at)
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO follow_ups VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
        )?;
        for r in c.follow_ups.values() {
            s.execute(params![
                r.ticket_id.to_string(),
                r.follow_up,
                r.kind,
                r.owner,
                r.team,
                to_text(r.scheduled_at),
                to_text(r.due_by),
                to_text(r.warn_at),
                r.warned_at.map(to_text),
                r.overdue_at.map(to_text),
                r.recorded_at.map(to_text),
                r.recorded_by,
                r.outcome,
                r.visited_at.map(to_text),
                r.signed,
                r.entered_late,
                r.in_time
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO inspection_samples VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
        )?;
        for r in c.inspection_samples.values() {
            s.execute(params![
                r.sample_id.to_string(),
                r.period,
                r.agent_id,
                r.team,
                to_text(r.drawn_at),
                r.seed,
                r.candidates,
                r.items
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO inspections VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
        )?;
        for r in c.inspections.values() {
            s.execute(params![
                r.sample_id.to_string(),
                r.ticket_id.to_string(),
                r.period,
                r.agent_id,
                r.team,
                to_text(r.inspected_at),
                r.inspector,
                r.recognition,
                r.efficiency,
                r.quality,
                r.overall,
                r.log_complete,
                r.visit_verified,
                r.verdict,
                r.reinspect_in
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO deadlines VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
        )?;
        for r in c.deadlines.values() {
            s.execute(params![
                r.ticket_id.to_string(),
                r.deadline,
                r.kind,
                r.owner,
                r.team,
                r.calendar_id,
                to_text(r.set_at),
                r.due_at.map(to_text),
                r.warn_at.map(to_text),
                r.status,
                r.met_at.map(to_text),
                r.warned_at.map(to_text),
                r.breached_at.map(to_text),
                r.consequence
            ])?;
        }
        let mut s =
            tx.prepare_cached("INSERT OR REPLACE INTO ticket_links VALUES (?1,?2,?3,?4)")?;
        for r in c.ticket_links.values() {
            s.execute(params![
                r.ticket_id.to_string(),
                r.other_ticket_id.to_string(),
                r.relation,
                to_text(r.linked_at)
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO reinspections_overdue VALUES (?1,?2,?3,?4,?5,?6,?7)",
        )?;
        for r in c.reinspections_overdue.values() {
            s.execute(params![
                r.sample_id.to_string(),
                r.ticket_id.to_string(),
                r.period,
                r.due_in,
                r.agent_id,
                r.team,
                to_text(r.marked_at)
            ])?;
        }
        let mut s =
            tx.prepare_cached("INSERT OR REPLACE INTO absences VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?;
        for r in c.absences.values() {
            s.execute(params![
                r.absence_id.to_string(),
                r.agent_id,
                to_text(r.from_at),
                to_text(r.until_at),
                r.reason,
                r.backup_agent_id,
                r.state,
                to_text(r.changed_at)
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO retention_policies VALUES (?1,?2,?3,?4,?5,?6,?7)",
        )?;
        for r in c.retention_policies.values() {
            s.execute(params![
                r.policy_id,
                r.category,
                r.grade,
                r.keep_days,
                to_text(r.effective_from),
                to_text(r.defined_at),
                r.defined_position
            ])?;
        }
        let mut s = tx.prepare_cached(
            "INSERT OR REPLACE INTO customer_erasures VALUES (?1,?2,?3,?4,?5,?6)",
        )?;
        for r in c.customer_erasures.values() {
            s.execute(params![
                r.position,
                r.customer_id,
                to_text(r.erased_at),
                r.erased_by,
                r.reason,
                r.reference
            ])?;
        }
        let mut s = tx.prepare_cached("INSERT OR REPLACE INTO ticket_state VALUES (?1, ?2)")?;
        for (id, state) in &c.work {
            s.execute(params![id.to_string(), state])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn dump_blocking(conn: &mut Connection) -> Result<Dump, TableError> {
    let tx = conn.transaction()?;
    let all = "true";
    let dump = Dump {
        tickets: rows(&tx, all, (None, None))?,
        sla_timers: rows(&tx, all, (None, None))?,
        assignments: rows(&tx, all, (None, None))?,
        resolutions: rows(&tx, all, (None, None))?,
        satisfaction_ratings: rows(&tx, all, (None, None))?,
        agents: rows(&tx, all, (None, None))?,
        complaint_rulings: rows(&tx, all, (None, None))?,
        complaint_charges: rows(&tx, all, (None, None))?,
        scorecards: rows(&tx, all, (None, None))?,
        follow_ups: rows(&tx, all, (None, None))?,
        inspection_samples: rows(&tx, all, (None, None))?,
        inspections: rows(&tx, all, (None, None))?,
        reinspections_overdue: rows(&tx, all, (None, None))?,
        absences: rows(&tx, all, (None, None))?,
        ticket_links: rows(&tx, all, (None, None))?,
        deadlines: rows(&tx, all, (None, None))?,
        retention_policies: rows(&tx, all, (None, None))?,
        customer_erasures: rows(&tx, all, (None, None))?,
    };
    Ok(dump)
}

#[async_trait::async_trait]
impl TableStore for SqliteTables {
    async fn open(&self) -> Result<Saved, TableError> {
        self.blocking(open_blocking).await
    }

    async fn works(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, TableError> {
        let ids = ids.to_vec();
        self.blocking(move |conn| {
            let mut s =
                conn.prepare_cached("SELECT state FROM ticket_state WHERE ticket_id = ?1")?;
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(state) = s.query_row([id.to_string()], |r| r.get(0)).optional()? {
                    found.push((id, state));
                }
            }
            Ok(found)
        })
        .await
    }

    async fn commit(
        &self,
        generation: &str,
        from: Position,
        to: Position,
        changes: Changes,
    ) -> Result<(), TableError> {
        let generation = generation.to_owned();
        self.blocking(move |conn| commit_blocking(conn, &generation, from, to, &changes))
            .await
    }

    async fn dump(&self) -> Result<Dump, TableError> {
        self.blocking(dump_blocking).await
    }

    async fn checkpoint(&self) -> Result<Saved, TableError> {
        self.reading(read::checkpoint).await
    }

    async fn scan(
        &self,
        dated: Dated,
        span: Span,
        sink: &mut (dyn FnMut(AnyRow) + Send),
    ) -> Result<(), TableError> {
        read::scan(self.reader.clone(), dated, span, sink).await
    }

    async fn retention_policies(&self) -> Result<Vec<RetentionPolicyRow>, TableError> {
        self.reading(|c| rows(c, "true", (None, None))).await
    }

    async fn retention_candidates(
        &self,
        closed_before: i64,
    ) -> Result<Vec<ClosureRow>, TableError> {
        self.reading(move |c| read::retention_candidates(c, closed_before))
            .await
    }

    async fn erasures(&self, from: i64, until: i64) -> Result<Vec<ErasureRow>, TableError> {
        self.reading(move |c| {
            rows(
                c,
                "erased_at >= ?1 AND erased_at < ?2",
                (Some(rfc3339(from)), Some(rfc3339(until))),
            )
        })
        .await
    }

    async fn due_absences(&self, now: i64, limit: u32) -> Result<Vec<AbsenceRow>, TableError> {
        self.reading(move |c| read::due_absences(c, now, limit))
            .await
    }

    async fn due_deadlines(&self, now: i64, limit: u32) -> Result<Vec<DeadlineRow>, TableError> {
        self.reading(move |c| read::due_deadlines(c, now, limit))
            .await
    }

    async fn due_follow_ups(&self, now: i64, limit: u32) -> Result<Vec<FollowUpRow>, TableError> {
        self.reading(move |c| read::due_follow_ups(c, now, limit))
            .await
    }

    async fn due_reinspections(
        &self,
        month: &str,
        limit: u32,
    ) -> Result<Vec<InspectionRow>, TableError> {
        let month = month.to_owned();
        self.reading(move |c| read::due_reinspections(c, &month, limit))
            .await
    }

    async fn scorecards(&self) -> Result<Vec<ScorecardRow>, TableError> {
        self.reading(|c| rows(c, "true", (None, None))).await
    }

    async fn agents(&self) -> Result<Vec<AgentRow>, TableError> {
        self.reading(|c| rows(c, "true", (None, None))).await
    }

    async fn open_load(&self) -> Result<Vec<(String, i64)>, TableError> {
        self.reading(read::open_load).await
    }

    async fn sla_counts(&self, filter: &TimerFilter, now: i64) -> Result<SlaCounts, TableError> {
        let filter = filter.clone();
        self.reading(move |c| read::sla_counts(c, &filter, now))
            .await
    }

    async fn timers(&self, page: &TimerPage) -> Result<Vec<Listed>, TableError> {
        let page = page.clone();
        self.reading(move |c| read::timers(c, &page)).await
    }

    async fn due_timers(&self, now: i64, limit: u32) -> Result<Vec<TimerRow>, TableError> {
        self.reading(move |c| read::due_timers(c, now, limit)).await
    }

    async fn due_answers(&self, now: i64, limit: u32) -> Result<Vec<ResolutionRow>, TableError> {
        self.reading(move |c| read::due_answers(c, now, limit))
            .await
    }
}
