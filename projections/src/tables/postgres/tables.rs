//! [`PostgresTables`]: the tables in a PostgreSQL schema: connecting (and creating or
//! updating them), committing a batch, dumping, and each read handed to `read.rs`.

use std::sync::atomic::{AtomicBool, Ordering};

use closeloop_core::log::Position;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio_postgres::Client;
use uuid::Uuid;

use super::read::{self, stored};
use super::schema::*;
use super::{copy, url};
use crate::tables::fold::Changes;
use crate::tables::read::{AnyRow, Dated, Listed, SlaCounts, Span, TimerFilter, TimerPage};
use crate::tables::rows::*;
use crate::tables::store::{
    check_version, new_generation, Saved, TableError, TableStore, NAME, VERSION,
};

/// The tables in a PostgreSQL schema. One connection, reopened on the next call after it
/// was lost.
pub struct PostgresTables {
    url: String,
    schema: String,
    client: Mutex<Option<Client>>,
    /// Whether the connection in `client` has its staging tables (`copy.rs`): created by
    /// its first commit, gone with it.
    staged: AtomicBool,
}

impl PostgresTables {
    /// Connects and creates (or updates) the tables. `url` may carry `?schema=S`.
    pub async fn connect(url: &str) -> Result<PostgresTables, TableError> {
        let (url, schema) = url::split_url(url)?;
        PostgresTables::in_schema(url, schema).await
    }

    /// The tables in `schema` (a rebuild's shadow schema, say) of the database at `url`.
    pub async fn in_schema(url: String, schema: String) -> Result<PostgresTables, TableError> {
        let tables = PostgresTables {
            url,
            schema,
            client: Mutex::new(None),
            staged: AtomicBool::new(false),
        };
        let sql = include_str!("tables.sql").replace("{schema}", &tables.schema);
        let mut slot = tables.client().await?;
        let client = slot.as_mut().expect("connected");
        drop_outdated(client, &tables.schema).await?;
        // Concurrent first connects may race to create the schema: one wins, the others see
        // a unique violation and find everything there on a second run.
        if client.batch_execute(&sql).await.is_err() {
            client.batch_execute(&sql).await?;
        }
        drop(slot);
        Ok(tables)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub(super) async fn client(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, TableError> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = closeloop_core::log::postgres::Endpoint::parse(&self.url)
                .map_err(|e| TableError::Invalid(e.to_string()))?
                .connect()
                .await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "read-model tables connection closed");
                }
            });
            *slot = Some(client);
            self.staged.store(false, Ordering::Release);
        }
        Ok(slot)
    }
}

/// Drops the tables of an older [`VERSION`], whose shape may differ from `tables.sql`'s
/// (which only creates what is missing): they are then created anew, and `open` refolds
/// them from position zero.
async fn drop_outdated(client: &Client, s: &str) -> Result<(), TableError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{s}.table_checkpoint")],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(());
    }
    match stored(client, s, "").await? {
        Some(saved) if !check_version(saved.version)? => {
            for t in ALL {
                client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {s}.{}", t.name))
                    .await?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn dump_table<T: DeserializeOwned>(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
    table: &Table,
) -> Result<Vec<T>, TableError> {
    let text: String = client.query_one(&table.dump(schema), &[]).await?.get(0);
    serde_json::from_str(&text).map_err(|e| TableError::Corrupt(format!("{}: {e}", table.name)))
}

#[async_trait::async_trait]
impl TableStore for PostgresTables {
    async fn open(&self) -> Result<Saved, TableError> {
        let s = &self.schema;
        let mut slot = self.client().await?;
        let tx = slot.as_mut().expect("connected").transaction().await?;
        tx.execute(
            &format!(
                "INSERT INTO {s}.table_checkpoint (name, version, position, generation) VALUES ($1, $2, 0, $3)
                 ON CONFLICT (name) DO NOTHING"
            ),
            &[&NAME, &(VERSION as i32), &new_generation()],
        )
        .await?;
        let stored = stored(&tx, s, "FOR UPDATE")
            .await?
            .ok_or_else(|| TableError::Corrupt("the checkpoint row vanished".into()))?;
        let saved = if check_version(stored.version)? {
            let generation = if stored.generation.is_empty() {
                // Written by a build without generations: give it one now.
                let generation = new_generation();
                tx.execute(
                    &format!("UPDATE {s}.table_checkpoint SET generation = $2 WHERE name = $1"),
                    &[&NAME, &generation],
                )
                .await?;
                generation
            } else {
                stored.generation
            };
            Saved {
                generation,
                ..stored
            }
        } else {
            for t in ALL {
                tx.execute(&format!("TRUNCATE {s}.{}", t.name), &[]).await?;
            }
            let generation = new_generation();
            tx.execute(
                &format!(
                    "UPDATE {s}.table_checkpoint SET version = $2, position = 0, calendars = NULL, generation = $3 WHERE name = $1"
                ),
                &[&NAME, &(VERSION as i32), &generation],
            )
            .await?;
            Saved {
                version: VERSION,
                position: 0,
                calendars: None,
                generation,
            }
        };
        tx.commit().await?;
        Ok(saved)
    }

    async fn works(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, TableError> {
        let slot = self.client().await?;
        let rows = slot
            .as_ref()
            .expect("connected")
            .query(
                &format!(
                    "SELECT ticket_id, state FROM {}.ticket_state WHERE ticket_id = ANY($1)",
                    self.schema
                ),
                &[&ids],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn commit(
        &self,
        generation: &str,
        from: Position,
        to: Position,
        c: Changes,
    ) -> Result<(), TableError> {
        let s = &self.schema;
        let mut slot = self.client().await?;
        let client = slot.as_mut().expect("connected");
        if !self.staged.load(Ordering::Acquire) {
            client.batch_execute(&copy::create_stages(s, &ALL)).await?;
            self.staged.store(true, Ordering::Release);
        }
        let tx = client.transaction().await?;
        let moved = tx
            .execute(
                &format!(
                    "UPDATE {s}.table_checkpoint SET position = $2, calendars = coalesce($4, calendars)
                      WHERE name = $1 AND position = $3 AND generation = $5"
                ),
                &[&NAME, &(to as i64), &(from as i64), &c.calendars, &generation],
            )
            .await?;
        if moved != 1 {
            let found: i64 = tx
                .query_one(
                    &format!("SELECT position FROM {s}.table_checkpoint WHERE name = $1"),
                    &[&NAME],
                )
                .await?
                .get(0);
            return Err(TableError::Fenced {
                expected: from,
                found: found as u64,
            });
        }
        let new = |id: &Uuid| c.opened.contains(id);
        copy::write(
            &tx,
            s,
            &TICKETS,
            c.tickets.values().map(|r| (new(&r.ticket_id), r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &SLA_TIMERS,
            c.sla_timers.values().map(|r| (new(&r.ticket_id), r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &ASSIGNMENTS,
            c.assignments.values().map(|r| (new(&r.ticket_id), r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &RESOLUTIONS,
            c.resolutions.values().map(|r| (new(&r.ticket_id), r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &RATINGS,
            c.satisfaction_ratings
                .values()
                .map(|r| (new(&r.ticket_id), r)),
        )
        .await?;
        copy::write(&tx, s, &AGENTS, c.agents.values().map(|r| (false, r))).await?;
        copy::write(
            &tx,
            s,
            &RULINGS,
            c.complaint_rulings.values().map(|r| (new(&r.ticket_id), r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &CHARGES,
            c.complaint_charges.values().map(|r| (new(&r.ticket_id), r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &SCORECARDS,
            c.scorecards.values().map(|r| (false, r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &FOLLOW_UPS,
            c.follow_ups.values().map(|r| (new(&r.ticket_id), r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &SAMPLES,
            c.inspection_samples.values().map(|r| (false, r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &INSPECTIONS,
            c.inspections.values().map(|r| (false, r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &OVERDUE,
            c.reinspections_overdue.values().map(|r| (false, r)),
        )
        .await?;
        copy::write(&tx, s, &ABSENCES, c.absences.values().map(|r| (false, r))).await?;
        copy::write(&tx, s, &LINKS, c.ticket_links.values().map(|r| (false, r))).await?;
        copy::write(
            &tx,
            s,
            &DEADLINES,
            c.deadlines.values().map(|r| (new(&r.ticket_id), r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &RETENTION_POLICIES,
            c.retention_policies.values().map(|r| (false, r)),
        )
        .await?;
        copy::write(
            &tx,
            s,
            &ERASURES,
            c.customer_erasures.values().map(|r| (false, r)),
        )
        .await?;
        let states = c
            .work
            .iter()
            .map(|(id, state)| (new(id), copy::StateRow(*id, state)));
        copy::write(&tx, s, &TICKET_STATE, states).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn dump(&self) -> Result<Dump, TableError> {
        let s = &self.schema;
        let mut slot = self.client().await?;
        let tx = slot
            .as_mut()
            .expect("connected")
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let dump = Dump {
            tickets: dump_table::<TicketRow>(&tx, s, &TICKETS).await?,
            sla_timers: dump_table::<TimerRow>(&tx, s, &SLA_TIMERS).await?,
            assignments: dump_table::<AssignmentRow>(&tx, s, &ASSIGNMENTS).await?,
            resolutions: dump_table::<ResolutionRow>(&tx, s, &RESOLUTIONS).await?,
            satisfaction_ratings: dump_table::<RatingRow>(&tx, s, &RATINGS).await?,
            agents: dump_table::<AgentRow>(&tx, s, &AGENTS).await?,
            complaint_rulings: dump_table::<RulingRow>(&tx, s, &RULINGS).await?,
            complaint_charges: dump_table::<ChargeRow>(&tx, s, &CHARGES).await?,
            scorecards: dump_table::<ScorecardRow>(&tx, s, &SCORECARDS).await?,
            follow_ups: dump_table::<FollowUpRow>(&tx, s, &FOLLOW_UPS).await?,
            inspection_samples: dump_table::<SampleRow>(&tx, s, &SAMPLES).await?,
            absences: dump_table::<AbsenceRow>(&tx, s, &ABSENCES).await?,
            inspections: dump_table::<InspectionRow>(&tx, s, &INSPECTIONS).await?,
            reinspections_overdue: dump_table::<OverdueRow>(&tx, s, &OVERDUE).await?,
            ticket_links: dump_table::<LinkRow>(&tx, s, &LINKS).await?,
            deadlines: dump_table::<DeadlineRow>(&tx, s, &DEADLINES).await?,
            retention_policies: dump_table::<RetentionPolicyRow>(&tx, s, &RETENTION_POLICIES)
                .await?,
            customer_erasures: dump_table::<ErasureRow>(&tx, s, &ERASURES).await?,
        };
        tx.commit().await?;
        Ok(dump)
    }

    async fn checkpoint(&self) -> Result<Saved, TableError> {
        let slot = self.client().await?;
        read::checkpoint(slot.as_ref().expect("connected"), &self.schema).await
    }

    async fn scan(
        &self,
        dated: Dated,
        span: Span,
        sink: &mut (dyn FnMut(AnyRow) + Send),
    ) -> Result<(), TableError> {
        let slot = self.client().await?;
        read::scan(
            slot.as_ref().expect("connected"),
            &self.schema,
            dated,
            span,
            sink,
        )
        .await
    }

    async fn retention_policies(&self) -> Result<Vec<RetentionPolicyRow>, TableError> {
        let slot = self.client().await?;
        read::retention_policies(slot.as_ref().expect("connected"), &self.schema).await
    }

    async fn retention_candidates(
        &self,
        closed_before: i64,
    ) -> Result<Vec<ClosureRow>, TableError> {
        let slot = self.client().await?;
        read::retention_candidates(
            slot.as_ref().expect("connected"),
            &self.schema,
            closed_before,
        )
        .await
    }

    async fn erasures(&self, from: i64, until: i64) -> Result<Vec<ErasureRow>, TableError> {
        let slot = self.client().await?;
        read::erasures(slot.as_ref().expect("connected"), &self.schema, from, until).await
    }

    async fn due_absences(&self, now: i64, limit: u32) -> Result<Vec<AbsenceRow>, TableError> {
        let slot = self.client().await?;
        read::due_absences(slot.as_ref().expect("connected"), &self.schema, now, limit).await
    }

    async fn due_deadlines(&self, now: i64, limit: u32) -> Result<Vec<DeadlineRow>, TableError> {
        let slot = self.client().await?;
        read::due_deadlines(slot.as_ref().expect("connected"), &self.schema, now, limit).await
    }

    async fn due_follow_ups(&self, now: i64, limit: u32) -> Result<Vec<FollowUpRow>, TableError> {
        let slot = self.client().await?;
        read::due_follow_ups(slot.as_ref().expect("connected"), &self.schema, now, limit).await
    }

    async fn due_reinspections(
        &self,
        month: &str,
        limit: u32,
    ) -> Result<Vec<InspectionRow>, TableError> {
        let slot = self.client().await?;
        read::due_reinspections(
            slot.as_ref().expect("connected"),
            &self.schema,
            month,
            limit,
        )
        .await
    }

    async fn scorecards(&self) -> Result<Vec<ScorecardRow>, TableError> {
        let mut slot = self.client().await?;
        let client = slot.as_mut().expect("connected");
        let rows = client
            .query(
                &format!(
                    "SELECT to_jsonb(t)::text FROM {}.scorecards t ORDER BY {}",
                    self.schema, SCORECARDS.order
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| read::decode("scorecards", r.get(0)))
            .collect()
    }

    async fn agents(&self) -> Result<Vec<AgentRow>, TableError> {
        let slot = self.client().await?;
        read::agents(slot.as_ref().expect("connected"), &self.schema).await
    }

    async fn open_load(&self) -> Result<Vec<(String, i64)>, TableError> {
        let slot = self.client().await?;
        read::open_load(slot.as_ref().expect("connected"), &self.schema).await
    }

    async fn sla_counts(&self, filter: &TimerFilter, now: i64) -> Result<SlaCounts, TableError> {
        let slot = self.client().await?;
        read::sla_counts(slot.as_ref().expect("connected"), &self.schema, filter, now).await
    }

    async fn timers(&self, page: &TimerPage) -> Result<Vec<Listed>, TableError> {
        let slot = self.client().await?;
        read::timers(slot.as_ref().expect("connected"), &self.schema, page).await
    }

    async fn due_timers(&self, now: i64, limit: u32) -> Result<Vec<TimerRow>, TableError> {
        let slot = self.client().await?;
        read::due_timers(slot.as_ref().expect("connected"), &self.schema, now, limit).await
    }

    async fn due_answers(&self, now: i64, limit: u32) -> Result<Vec<ResolutionRow>, TableError> {
        let slot = self.client().await?;
        read::due_answers(slot.as_ref().expect("connected"), &self.schema, now, limit).await
    }
}
