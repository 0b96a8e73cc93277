//! The tables on SQLite (`tables.sql`), in the log's own file, through a connection of their
//! own. A commit is one `IMMEDIATE` transaction: the checkpoint moves only if it is still
//! where the batch began, then every changed row is upserted with cached statements.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use closeloop_core::log::Position;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use super::rows::*;
use super::{
    check_version, new_generation, AnyRow, Changes, Dated, Dump, Listed, Saved, SlaCounts, Span,
    TableError, TableStore, TimerFilter, TimerPage, NAME, VERSION,
};

mod shadow;
pub use shadow::SqliteShadows;

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

mod read;

/// The tables in an SQLite file: one connection writes, another reads (WAL lets a report
/// read while a batch commits).
#[derive(Clone)]
pub struct SqliteTables {
    conn: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

use super::rows::rfc3339 as to_text;

fn from_text(text: &str) -> rusqlite::Result<i64> {
    parse_time(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

fn time(row: &Row, i: usize) -> rusqlite::Result<i64> {
    from_text(&row.get::<_, String>(i)?)
}

fn time_opt(row: &Row, i: usize) -> rusqlite::Result<Option<i64>> {
    row.get::<_, Option<String>>(i)?
        .map(|t| from_text(&t))
        .transpose()
}

fn uuid(row: &Row, i: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(i)?;
    text.parse().map_err(|e: uuid::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

impl SqliteTables {
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteTables, TableError> {
        let conn = Connection::open(path.as_ref())?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
        drop_outdated(&conn)?;
        conn.execute_batch(include_str!("tables.sql"))?;
        shadow::add_generation(&conn)?;
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
fn stored(conn: &Connection) -> Result<Option<Saved>, TableError> {
    let found = conn
        .query_row(
            "SELECT version, position, calendars, generation FROM table_checkpoint WHERE name = ?1",
            [NAME],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )
        .optional()?;
    found
        .map(|(version, position, calendars, generation)| {
            Ok(Saved {
                version: u32::try_from(version)
                    .map_err(|_| TableError::Corrupt("version".into()))?,
                position: u64::try_from(position)
                    .map_err(|_| TableError::Corrupt("position".into()))?,
                calendars,
                generation,
            })
        })
        .transpose()
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

/// A row type read back from its table.
trait SqlRow: Sized {
    const TABLE: &'static str;
    const ORDER: &'static str;
    fn from_row(r: &Row) -> rusqlite::Result<Self>;
}

impl SqlRow for TicketRow {
    const TABLE: &'static str = "tickets";
    const ORDER: &'static str = "ticket_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(TicketRow {
            ticket_id: uuid(r, 0)?,
            customer_id: r.get(1)?,
            grade: r.get(2)?,
            channel: r.get(3)?,
            category: r.get(4)?,
            priority: r.get(5)?,
            status: r.get(6)?,
            line: r.get(7)?,
            assignee: r.get(8)?,
            team: r.get(9)?,
            opened_at: time(r, 10)?,
            first_response_at: time_opt(r, 11)?,
            resolved_at: time_opt(r, 12)?,
            closed_at: time_opt(r, 13)?,
            reopenings: r.get(14)?,
            escalations: r.get(15)?,
        })
    }
}

impl SqlRow for TimerRow {
    const TABLE: &'static str = "sla_timers";
    const ORDER: &'static str = "ticket_id, target, cycle";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(TimerRow {
            ticket_id: uuid(r, 0)?,
            target: r.get(1)?,
            cycle: r.get(2)?,
            status: r.get(3)?,
            started_at: time(r, 4)?,
            due_at: time_opt(r, 5)?,
            warn_at: time_opt(r, 6)?,
            warned_at: time_opt(r, 7)?,
            breached_at: time_opt(r, 8)?,
            fulfilled_at: time_opt(r, 9)?,
            met: r.get(10)?,
            target_minutes: r.get(11)?,
            business_minutes_used: r.get(12)?,
            calendar_minutes_used: r.get(13)?,
            calendar_id: r.get(14)?,
            grade: r.get(15)?,
            priority: r.get(16)?,
            agent_id: r.get(17)?,
            team: r.get(18)?,
            latest: r.get(19)?,
        })
    }
}

impl SqlRow for AssignmentRow {
    const TABLE: &'static str = "assignments";
    const ORDER: &'static str = "ticket_id, seq";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(AssignmentRow {
            ticket_id: uuid(r, 0)?,
            seq: r.get(1)?,
            agent_id: r.get(2)?,
            team: r.get(3)?,
            from_at: time(r, 4)?,
            until_at: time_opt(r, 5)?,
            ended_by: r.get(6)?,
            started_by: r.get(7)?,
            category: r.get(8)?,
        })
    }
}

impl SqlRow for ResolutionRow {
    const TABLE: &'static str = "resolutions";
    const ORDER: &'static str = "ticket_id, resolution";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(ResolutionRow {
            ticket_id: uuid(r, 0)?,
            resolution: r.get(1)?,
            resolved_by: r.get(2)?,
            team: r.get(3)?,
            resolved_at: time(r, 4)?,
            first_response_business_minutes: r.get(5)?,
            resolution_business_minutes: r.get(6)?,
            one_touch: r.get(7)?,
            reopened_later: r.get(8)?,
            reopened_at: time_opt(r, 9)?,
            category: r.get(10)?,
            grade: r.get(11)?,
            channel: r.get(12)?,
            answer: r.get(13)?,
            answered_at: time_opt(r, 14)?,
            answer_due_at: time_opt(r, 15)?,
            closed_at: time_opt(r, 16)?,
            close_reason: r.get(17)?,
        })
    }
}

impl SqlRow for RatingRow {
    const TABLE: &'static str = "satisfaction_ratings";
    const ORDER: &'static str = "ticket_id, resolution, source";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(RatingRow {
            ticket_id: uuid(r, 0)?,
            resolution: r.get(1)?,
            source: r.get(2)?,
            rated_at: time(r, 3)?,
            score: r.get(4)?,
            agent_id: r.get(5)?,
            team: r.get(6)?,
            category: r.get(7)?,
            grade: r.get(8)?,
            channel: r.get(9)?,
            recognition: r.get(10)?,
            efficiency: r.get(11)?,
            quality: r.get(12)?,
            overall: r.get(13)?,
        })
    }
}

impl SqlRow for AgentRow {
    const TABLE: &'static str = "agents";
    const ORDER: &'static str = "agent_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(AgentRow {
            agent_id: r.get(0)?,
            team: r.get(1)?,
            line: r.get(2)?,
            level: r.get(3)?,
            team_lead: r.get(4)?,
        })
    }
}

impl SqlRow for RulingRow {
    const TABLE: &'static str = "complaint_rulings";
    const ORDER: &'static str = "ticket_id, ruling";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(RulingRow {
            ticket_id: uuid(r, 0)?,
            ruling: r.get(1)?,
            ruled_at: time(r, 2)?,
            ruled_by: r.get(3)?,
            ruled_by_role: r.get(4)?,
            justified: r.get(5)?,
            cause: r.get(6)?,
            charged: r.get(7)?,
            assignee: r.get(8)?,
            team: r.get(9)?,
            complained_at: time(r, 10)?,
            superseded_at: time_opt(r, 11)?,
        })
    }
}

impl SqlRow for ChargeRow {
    const TABLE: &'static str = "complaint_charges";
    const ORDER: &'static str = "ticket_id, ruling, agent_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(ChargeRow {
            ticket_id: uuid(r, 0)?,
            ruling: r.get(1)?,
            agent_id: r.get(2)?,
            team: r.get(3)?,
            ruled_at: time(r, 4)?,
            superseded_at: time_opt(r, 5)?,
        })
    }
}

impl SqlRow for FollowUpRow {
    const TABLE: &'static str = "follow_ups";
    const ORDER: &'static str = "ticket_id, follow_up";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(FollowUpRow {
            ticket_id: uuid(r, 0)?,
            follow_up: r.get(1)?,
            kind: r.get(2)?,
            owner: r.get(3)?,
            team: r.get(4)?,
            scheduled_at: time(r, 5)?,
            due_by: time(r, 6)?,
            warn_at: time(r, 7)?,
            warned_at: time_opt(r, 8)?,
            overdue_at: time_opt(r, 9)?,
            recorded_at: time_opt(r, 10)?,
            recorded_by: r.get(11)?,
            outcome: r.get(12)?,
            visited_at: time_opt(r, 13)?,
            signed: r.get(14)?,
            entered_late: r.get(15)?,
            in_time: r.get(16)?,
        })
    }
}

impl SqlRow for SampleRow {
    const TABLE: &'static str = "inspection_samples";
    const ORDER: &'static str = "sample_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(SampleRow {
            sample_id: uuid(r, 0)?,
            period: r.get(1)?,
            agent_id: r.get(2)?,
            team: r.get(3)?,
            drawn_at: time(r, 4)?,
            seed: r.get(5)?,
            candidates: r.get(6)?,
            items: r.get(7)?,
        })
    }
}

impl SqlRow for InspectionRow {
    const TABLE: &'static str = "inspections";
    const ORDER: &'static str = "sample_id, ticket_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(InspectionRow {
            sample_id: uuid(r, 0)?,
            ticket_id: uuid(r, 1)?,
            period: r.get(2)?,
            agent_id: r.get(3)?,
            team: r.get(4)?,
            inspected_at: time(r, 5)?,
            inspector: r.get(6)?,
            recognition: r.get(7)?,
            efficiency: r.get(8)?,
            quality: r.get(9)?,
            overall: r.get(10)?,
            log_complete: r.get(11)?,
            visit_verified: r.get(12)?,
            verdict: r.get(13)?,
            reinspect_in: r.get(14)?,
        })
    }
}

impl SqlRow for DeadlineRow {
    const TABLE: &'static str = "deadlines";
    const ORDER: &'static str = "ticket_id, deadline";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(DeadlineRow {
            ticket_id: uuid(r, 0)?,
            deadline: r.get(1)?,
            kind: r.get(2)?,
            owner: r.get(3)?,
            team: r.get(4)?,
            calendar_id: r.get(5)?,
            set_at: time(r, 6)?,
            due_at: time_opt(r, 7)?,
            warn_at: time_opt(r, 8)?,
            status: r.get(9)?,
            met_at: time_opt(r, 10)?,
            warned_at: time_opt(r, 11)?,
            breached_at: time_opt(r, 12)?,
            consequence: r.get(13)?,
        })
    }
}

impl SqlRow for LinkRow {
    const TABLE: &'static str = "ticket_links";
    const ORDER: &'static str = "ticket_id, other_ticket_id, relation";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(LinkRow {
            ticket_id: uuid(r, 0)?,
            other_ticket_id: uuid(r, 1)?,
            relation: r.get(2)?,
            linked_at: time(r, 3)?,
        })
    }
}

impl SqlRow for RetentionPolicyRow {
    const TABLE: &'static str = "retention_policies";
    const ORDER: &'static str = "policy_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(RetentionPolicyRow {
            policy_id: r.get(0)?,
            category: r.get(1)?,
            grade: r.get(2)?,
            keep_days: r.get(3)?,
            effective_from: time(r, 4)?,
            defined_at: time(r, 5)?,
            defined_position: r.get(6)?,
        })
    }
}

impl SqlRow for ErasureRow {
    const TABLE: &'static str = "customer_erasures";
    const ORDER: &'static str = "position";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(ErasureRow {
            position: r.get(0)?,
            customer_id: r.get(1)?,
            erased_at: time(r, 2)?,
            erased_by: r.get(3)?,
            reason: r.get(4)?,
            reference: r.get(5)?,
        })
    }
}

impl SqlRow for OverdueRow {
    const TABLE: &'static str = "reinspections_overdue";
    const ORDER: &'static str = "sample_id, ticket_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(OverdueRow {
            sample_id: uuid(r, 0)?,
            ticket_id: uuid(r, 1)?,
            period: r.get(2)?,
            due_in: r.get(3)?,
            agent_id: r.get(4)?,
            team: r.get(5)?,
            marked_at: time(r, 6)?,
        })
    }
}

impl SqlRow for AbsenceRow {
    const TABLE: &'static str = "absences";
    const ORDER: &'static str = "absence_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(AbsenceRow {
            absence_id: uuid(r, 0)?,
            agent_id: r.get(1)?,
            from_at: time(r, 2)?,
            until_at: time(r, 3)?,
            reason: r.get(4)?,
            backup_agent_id: r.get(5)?,
            state: r.get(6)?,
            changed_at: time(r, 7)?,
        })
    }
}

impl SqlRow for ScorecardRow {
    const TABLE: &'static str = "scorecards";
    const ORDER: &'static str = "team, effective_from";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(ScorecardRow {
            team: r.get(0)?,
            effective_from: r.get(1)?,
            results_percent: r.get(2)?,
            basic_percent: r.get(3)?,
            discipline_percent: r.get(4)?,
            bonus_per_excellent_rating: r.get(5)?,
            bonus_cap_points: r.get(6)?,
            deduction_per_justified_complaint: r.get(7)?,
            deduction_cap_points: r.get(8)?,
            defined_at: time(r, 9)?,
        })
    }
}

/// The rows of `T`'s table passing `filter` (SQL over the table's columns, with `?1` and
/// `?2` the bounds of a time range as RFC 3339 text), in primary-key order.
fn rows<T: SqlRow>(
    conn: &Connection,
    filter: &str,
    bounds: (Option<String>, Option<String>),
) -> Result<Vec<T>, TableError> {
    let sql = format!(
        "SELECT * FROM {} WHERE {filter} ORDER BY {}",
        T::TABLE,
        T::ORDER
    );
    let mut s = conn.prepare_cached(&sql)?;
    let found = if filter.contains("?1") {
        s.query_map(params![bounds.0, bounds.1], T::from_row)?
            .collect::<rusqlite::Result<Vec<T>>>()?
    } else {
        s.query_map([], T::from_row)?
            .collect::<rusqlite::Result<Vec<T>>>()?
    };
    Ok(found)
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
