//! The customers' data keys of a PostgreSQL log: table `customer_keys` in the log's schema
//! (migration 0005). Plain pooled queries, apart from the writer: a key is created once per
//! customer and destroyed rarely.
//!
//! A deleted row's bytes stay in the table's heap until vacuumed, so `destroy` vacuums the
//! table after deleting; the server's WAL and any base backup keep what they recorded until
//! they are recycled, which is the operator's retention to set (README, "Personal data").

use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio_postgres::Row;

use closeloop_log::*;

use crate::common::*;

/// The key store of one PostgreSQL schema.
pub struct PostgresKeys {
    pool: Pool,
    get: String,
    insert: String,
    delete: String,
    vacuum: String,
}

impl PostgresKeys {
    pub(crate) fn new(pool: Pool, schema: &str) -> PostgresKeys {
        let s = format!("\"{schema}\"");
        PostgresKeys {
            pool,
            get: format!("SELECT key FROM {s}.customer_keys WHERE customer_id = $1"),
            insert: format!(
                "INSERT INTO {s}.customer_keys (customer_id, key) VALUES ($1, $2)
                 ON CONFLICT (customer_id) DO NOTHING"
            ),
            delete: format!("DELETE FROM {s}.customer_keys WHERE customer_id = $1"),
            vacuum: format!("VACUUM {s}.customer_keys"),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool
            .get()
            .await
            .map_err(|e| Error::Unavailable(format!("no connection for the key store: {e}")))
    }
}

fn key_of(row: &Row) -> Result<DataKey, Error> {
    let bytes: Vec<u8> = row.try_get(0).map_err(pg)?;
    DataKey::from_slice(&bytes)
        .ok_or_else(|| Error::Corrupt(format!("a customer key of {} bytes, not 32", bytes.len())))
}

#[async_trait]
impl KeyStore for PostgresKeys {
    async fn store(&self, customer_id: &str, key: &DataKey) -> Result<DataKey, Error> {
        let client = self.client().await?;
        client
            .execute(&self.insert, &[&customer_id, &&key.0[..]])
            .await
            .map_err(pg)?;
        key_of(
            &client
                .query_one(&self.get, &[&customer_id])
                .await
                .map_err(pg)?,
        )
    }

    async fn get(&self, customer_id: &str) -> Result<Option<DataKey>, Error> {
        let client = self.client().await?;
        let row = client
            .query_opt(&self.get, &[&customer_id])
            .await
            .map_err(pg)?;
        row.as_ref().map(key_of).transpose()
    }

    async fn destroy(&self, customer_id: &str) -> Result<bool, Error> {
        let client = self.client().await?;
        let deleted = client
            .execute(&self.delete, &[&customer_id])
            .await
            .map_err(pg)?
            > 0;
        if deleted {
            client.batch_execute(&self.vacuum).await.map_err(pg)?;
        }
        Ok(deleted)
    }
}
