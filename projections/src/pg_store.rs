//! Read models on PostgreSQL: the schema `closeloop_read` (`pg_store.sql`): the table
//! `projections` (state and checkpoint, saved in one statement) and views that flatten the
//! states for analysts (`satisfaction_daily`, `quality_callbacks_daily`,
//! `performance_daily`).
//!
//! The store URL may carry `?schema=S` (the log's schema); the read models then live in
//! `S_read`, so test schemas stay apart. One connection, reopened on the next call after it
//! failed.

use closeloop_core::log::Position;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::store::{Checkpoint, CheckpointStore, StoreError};

/// The read-model schema when the URL names none.
pub const READ_SCHEMA: &str = "closeloop_read";
/// Longest schema name PostgreSQL keeps (NAMEDATALEN - 1).
const SCHEMA_NAME_MAX: usize = 63;
/// Most bytes of a state sent in one statement: PostgreSQL holds at most 1 GB - 1 in one
/// value and refuses a protocol message beyond that, which also carries the other
/// parameters (1 MiB of room for them).
const POSTGRES_VALUE_MAX: usize = 0x3fff_ffff - (1 << 20);

/// Read models in a PostgreSQL schema.
pub struct PostgresStore {
    url: String,
    schema: String,
    client: Mutex<Option<Client>>,
}

/// Splits `?schema=S` off a URL: (URL for tokio-postgres, read-model schema).
pub(crate) fn split_url(url: &str) -> Result<(String, String), StoreError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) => schema = Some(value.to_owned()),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let schema = match schema.as_deref() {
        None | Some("closeloop") => READ_SCHEMA.to_owned(),
        Some(s) => format!("{s}_read"),
    };
    let mut chars = schema.chars();
    let valid = schema.len() <= SCHEMA_NAME_MAX
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(StoreError::Unsupported(format!(
            "read-model schema `{schema}`: lowercase letters, digits and _ only"
        )));
    }
    Ok((rest, schema))
}

impl PostgresStore {
    /// Connects and creates (or updates) the read-model schema.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let (url, schema) = split_url(url)?;
        let store = PostgresStore {
            url,
            schema,
            client: Mutex::new(None),
        };
        let sql = include_str!("pg_store.sql").replace("{schema}", &store.schema);
        let slot = store.client().await?;
        slot.as_ref()
            .expect("connected")
            .batch_execute(&sql)
            .await?;
        drop(slot);
        Ok(store)
    }

    /// The schema holding the read models.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection, reopened if it was lost.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, StoreError> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "read-model connection closed");
                }
            });
            *slot = Some(client);
        }
        Ok(slot)
    }
}

#[async_trait::async_trait]
impl CheckpointStore for PostgresStore {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let slot = self.client().await?;
        let client = slot.as_ref().expect("connected");
        let row = client
            .query_opt(
                &format!(
                    "SELECT version, position, state FROM {}.projections WHERE name = $1",
                    self.schema
                ),
                &[&name],
            )
            .await?;
        row.map(|r| {
            let (version, position, state): (i32, i64, String) = (r.get(0), r.get(1), r.get(2));
            Ok(Checkpoint {
                version: u32::try_from(version).map_err(|_| StoreError::Corrupt(name.into()))?,
                position: u64::try_from(position).map_err(|_| StoreError::Corrupt(name.into()))?,
                state,
            })
        })
        .transpose()
    }

    async fn save(
        &self,
        name: &str,
        version: u32,
        position: Position,
        state: String,
    ) -> Result<(), StoreError> {
        crate::store::check_size(name, &state, POSTGRES_VALUE_MAX, "PostgreSQL")?;
        let slot = self.client().await?;
        let client = slot.as_ref().expect("connected");
        let version = i32::try_from(version).map_err(|_| StoreError::Corrupt(name.into()))?;
        let position = i64::try_from(position).map_err(|_| StoreError::Corrupt(name.into()))?;
        let saved = client
            .execute(
                &format!(
                    "INSERT INTO {s}.projections AS p (name, version, position, state)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                         position = excluded.position, state = excluded.state
                     WHERE p.version <= excluded.version",
                    s = self.schema
                ),
                &[&name, &version, &position, &state],
            )
            .await?;
        if saved == 0 {
            drop(slot);
            let stored = self.load(name).await?.map_or(0, |c| c.version);
            return Err(crate::store::superseded(name, stored, version as u32));
        }
        Ok(())
    }

    async fn promote(&self, from: &str, to: &str) -> Result<bool, StoreError> {
        let mut slot = self.client().await?;
        let client = slot.as_mut().expect("connected");
        // The rebuilt row is renamed, not copied: an UPDATE that leaves `state` alone keeps
        // its TOAST data where it is, where copying it into a new row rewrote the whole
        // model (2.3 s for the 2 GB of a 10 M-event replay). One transaction: readers see
        // the old row or the new one.
        let tx = client.transaction().await?;
        let s = &self.schema;
        let exists = tx
            .query_opt(
                &format!("SELECT 1 FROM {s}.projections WHERE name = $1 FOR UPDATE"),
                &[&from],
            )
            .await?
            .is_some();
        if !exists {
            return Ok(false);
        }
        tx.execute(
            &format!("DELETE FROM {s}.projections WHERE name = $1"),
            &[&to],
        )
        .await?;
        tx.execute(
            &format!("UPDATE {s}.projections SET name = $2 WHERE name = $1"),
            &[&from, &to],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
