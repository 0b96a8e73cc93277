//! Replay builds on PostgreSQL, in schemas beside the read-model schema `R` (`closeloop_read`,
//! or `S_read` for a log in schema S).
//!
//! - `R_rebuild` replaces the live tables; `R_until_SLUG` keeps the tables as of a point (a
//!   table `replay_complete` marks it complete). Each is an ordinary set of the tables with
//!   its own checkpoint, so an interrupted replay resumes.
//! - The swap is one transaction: it locks the live checkpoint table first (so a
//!   projector's commit in flight finishes before, and the next waits until after), moves
//!   every live table into `R_replaced` and every built one into `R` (`ALTER TABLE ... SET
//!   SCHEMA`: catalog updates, no row is copied, indexes move with their tables), then
//!   commits; the old tables are dropped afterwards, in a statement of their own, so a
//!   report still reading them finishes first. Readers see the old tables or the new.
//!   Tables are moved one by one rather than the schema renamed, so that anything else in
//!   `R` (the JSON report store while it exists) is left alone. A projector whose commit
//!   waited on the lock resolves the names again once it gets it (PostgreSQL retries a
//!   lookup whose target changed while it waited), so it meets the new checkpoint, whose
//!   generation is not its own: fenced.

use std::sync::Arc;

use tokio_postgres::Client;

use super::tables::PostgresTables;
use crate::tables::shadow::{Build, Shadows};
use crate::tables::store::{TableError, TableStore};

/// PostgreSQL's longest identifier, in bytes (longer ones are silently truncated, so two
/// builds could meet under one name: refused instead).
const IDENTIFIER_MAX: usize = 63;

/// Replay builds beside a PostgreSQL read-model schema.
pub struct PostgresShadows {
    /// The connection URL, without `schema=`.
    url: String,
    /// The live read-model schema.
    live: String,
}

impl PostgresShadows {
    /// The builds beside the read-model schema of `url` (which may carry `?schema=S`).
    pub async fn connect(url: &str) -> Result<PostgresShadows, TableError> {
        let (url, live) = super::url::split_url(url)?;
        Ok(PostgresShadows { url, live })
    }

    /// The schema `build` lives in.
    pub fn schema(&self, build: &Build) -> Result<String, TableError> {
        build.check()?;
        let schema = match build {
            Build::Live => format!("{}_rebuild", self.live),
            Build::AsOf(slug) => format!("{}_until_{slug}", self.live),
        };
        if schema.len() > IDENTIFIER_MAX {
            return Err(TableError::Invalid(format!(
                "schema name `{schema}` is longer than PostgreSQL's {IDENTIFIER_MAX} bytes"
            )));
        }
        Ok(schema)
    }

    /// The live read-model schema.
    pub fn live_schema(&self) -> &str {
        &self.live
    }

    async fn admin(&self) -> Result<Client, TableError> {
        let (client, connection) = closeloop_core::log::postgres::Endpoint::parse(&self.url)
            .map_err(|e| TableError::Invalid(e.to_string()))?
            .connect()
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "replay's PostgreSQL connection closed");
            }
        });
        Ok(client)
    }
}

/// The tables of `schema`.
async fn tables_of(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
) -> Result<Vec<String>, TableError> {
    let rows = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
            &[&schema],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[async_trait::async_trait]
impl Shadows for PostgresShadows {
    async fn open(&self, build: &Build) -> Result<Arc<dyn TableStore>, TableError> {
        let schema = self.schema(build)?;
        let tables = PostgresTables::in_schema(self.url.clone(), schema.clone()).await?;
        {
            let slot = tables.client().await?;
            let client = slot.as_ref().expect("connected");
            // Every index that backs no key: maintained row by row while the build fills,
            // they cost more than being built once at the end (`finish`).
            let rows = client
                .query(
                    "SELECT i.relname::text FROM pg_index x
                       JOIN pg_class i ON i.oid = x.indexrelid
                       JOIN pg_namespace n ON n.oid = i.relnamespace
                      WHERE n.nspname = $1 AND NOT x.indisprimary AND NOT x.indisunique",
                    &[&schema],
                )
                .await?;
            for row in rows {
                let index: String = row.get(0);
                client
                    .batch_execute(&format!("DROP INDEX IF EXISTS \"{schema}\".\"{index}\""))
                    .await?;
            }
        }
        Ok(Arc::new(tables))
    }

    async fn finish(&self, build: &Build) -> Result<(), TableError> {
        let schema = self.schema(build)?;
        // Its DDL, run again, creates the indexes `open` dropped.
        drop(PostgresTables::in_schema(self.url.clone(), schema.clone()).await?);
        let mut client = self.admin().await?;
        // Statistics for the planner, on the tables reports query (the projector's private
        // states are read by key only, and sampling their large JSON costs more than the
        // rest together), from a small sample: a tenth of the default's, enough for the
        // reports' range and key lookups, and autovacuum refines them later.
        client
            .batch_execute("SET default_statistics_target = 10")
            .await?;
        for table in tables_of(&client, &schema).await? {
            if table == "ticket_state" || table == "table_checkpoint" {
                continue;
            }
            client
                .batch_execute(&format!("ANALYZE \"{schema}\".\"{table}\""))
                .await?;
        }
        match build {
            Build::AsOf(_) => {
                client
                    .batch_execute(&format!(
                        "BEGIN;
                         CREATE TABLE IF NOT EXISTS \"{schema}\".replay_complete (position bigint NOT NULL);
                         DELETE FROM \"{schema}\".replay_complete;
                         INSERT INTO \"{schema}\".replay_complete
                              SELECT position FROM \"{schema}\".table_checkpoint;
                         COMMIT;"
                    ))
                    .await?;
            }
            Build::Live => {
                let live = &self.live;
                let old = format!("{live}_replaced");
                // The live tables exist (a first replay of a store no projector has opened).
                drop(PostgresTables::in_schema(self.url.clone(), live.clone()).await?);
                let tx = client.transaction().await?;
                tx.batch_execute(&format!(
                    "LOCK TABLE \"{live}\".table_checkpoint IN ACCESS EXCLUSIVE MODE;
                     DROP SCHEMA IF EXISTS \"{old}\" CASCADE;
                     CREATE SCHEMA \"{old}\";"
                ))
                .await?;
                let built = tables_of(&tx, &schema).await?;
                let current = tables_of(&tx, live).await?;
                for table in built.iter().filter(|t| current.contains(t)) {
                    tx.batch_execute(&format!(
                        "ALTER TABLE \"{live}\".\"{table}\" SET SCHEMA \"{old}\""
                    ))
                    .await?;
                }
                for table in &built {
                    tx.batch_execute(&format!(
                        "ALTER TABLE \"{schema}\".\"{table}\" SET SCHEMA \"{live}\""
                    ))
                    .await?;
                }
                tx.commit().await?;
                client
                    .batch_execute(&format!(
                        "DROP SCHEMA \"{old}\" CASCADE; DROP SCHEMA \"{schema}\" CASCADE;"
                    ))
                    .await?;
            }
        }
        Ok(())
    }

    async fn open_complete(&self, slug: &str) -> Result<Option<Arc<dyn TableStore>>, TableError> {
        let schema = self.schema(&Build::AsOf(slug.to_owned()))?;
        let client = self.admin().await?;
        let complete: bool = client
            .query_one(
                "SELECT to_regclass(format('%I.replay_complete', $1::text)) IS NOT NULL",
                &[&schema],
            )
            .await?
            .get(0);
        if !complete {
            return Ok(None);
        }
        let tables: Arc<dyn TableStore> =
            Arc::new(PostgresTables::in_schema(self.url.clone(), schema).await?);
        Ok(Some(tables))
    }

    fn describe(&self, build: &Build) -> String {
        self.schema(build)
            .map_or_else(|e| e.to_string(), |s| format!("schema {s}"))
    }
}
