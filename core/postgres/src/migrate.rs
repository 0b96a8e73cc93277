//! Migrations: creating or upgrading the schema (`closeloop migrate`), under an advisory
//! lock so that several processes may run it at once.

use closeloop_log::*;

use crate::common::*;
use crate::url::*;

pub(crate) fn latest_migration() -> u32 {
    closeloop_schemas::POSTGRES_MIGRATIONS
        .last()
        .map_or(0, |(version, _, _)| *version)
}

/// The schema's applied version; 0 when it does not exist. Read-only.
pub(crate) async fn schema_version(config: &Endpoint, schema: &str) -> Result<u32, Error> {
    let client = connect_once(config).await?;
    let table = format!("\"{schema}\".schema_migrations");
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(pg)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let version: i32 = client
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {table}"),
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    Ok(version.max(0) as u32)
}

pub(crate) async fn migrate_config(config: &Endpoint, schema: &str) -> Result<Migrated, Error> {
    let mut client = connect_once(config).await?;
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&MIGRATE_LOCK_KEY, &schema],
    )
    .await
    .map_err(pg)?;
    let s = format!("\"{schema}\"");
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());"
    ))
    .await
    .map_err(pg)?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {s}.schema_migrations"),
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    tx.execute("SELECT set_config('search_path', $1, true)", &[&s])
        .await
        .map_err(pg)?;
    let mut applied = Vec::new();
    for &(version, name, sql) in closeloop_schemas::POSTGRES_MIGRATIONS {
        if version as i64 <= current as i64 {
            continue;
        }
        tx.batch_execute(sql).await.map_err(pg)?;
        tx.execute(
            &format!("INSERT INTO {s}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[&(version as i32), &name],
        )
        .await
        .map_err(pg)?;
        applied.push((version, name));
    }
    tx.commit().await.map_err(pg)?;
    for (version, name) in &applied {
        tracing::info!("postgres schema {schema}: applied migration {version} {name}");
    }
    Ok(Migrated {
        schema: schema.to_owned(),
        version: applied
            .last()
            .map_or(current.max(0) as u32, |(version, _)| *version),
        applied,
    })
}
