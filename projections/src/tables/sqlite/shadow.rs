//! Replay builds on SQLite, where the live tables sit in the log's own file (`PATH`).
//!
//! - A build is a sibling file: `PATH.rebuild` replaces the live tables, `PATH.until-SLUG`
//!   keeps the tables as of a point. A file of its own, not more tables in the log's file,
//!   so that filling it (the whole log's rows) never holds the log's write lock, which the
//!   log's appends need; WAL mode, so a crash mid-batch loses at most that batch.
//! - The swap copies the build into the live tables in one `IMMEDIATE` transaction on the
//!   log's file (`ATTACH`, then per table `DELETE` and `INSERT ... SELECT`), checkpoint
//!   included: readers (WAL) see the old rows or the new, and a projector holding the old
//!   generation is fenced. The price: the copy holds the file's write lock for its duration
//!   (about a second per few hundred thousand rows), and appends to the log wait for it
//!   (up to their busy timeout). SQLite has no cheaper atomic replacement of tables inside
//!   a file that other connections have open.
//! - A complete as-of file holds a table `replay_complete` (the position it reflects).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection};

use super::tables::{add_generation, SqliteTables, BUSY_TIMEOUT_MS};
use crate::tables::shadow::{Build, Shadows};
use crate::tables::store::{TableError, TableStore, NAME};

/// Replay builds beside an SQLite log file.
pub struct SqliteShadows {
    path: PathBuf,
}

impl SqliteShadows {
    /// The builds beside the log file at `path` (which must exist: there is nothing to
    /// replay otherwise).
    pub fn new(path: impl AsRef<Path>) -> Result<SqliteShadows, TableError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(TableError::Invalid(format!(
                "no SQLite log at {}",
                path.display()
            )));
        }
        Ok(SqliteShadows { path })
    }

    /// The file `build` lives in.
    pub fn file(&self, build: &Build) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        match build {
            Build::Live => name.push(".rebuild"),
            Build::AsOf(slug) => name.push(format!(".until-{slug}")),
        }
        PathBuf::from(name)
    }
}

/// The tables of schema `schema` (`main`, or an attached file).
fn tables_of(conn: &Connection, schema: &str) -> Result<Vec<String>, TableError> {
    let mut s = conn.prepare(&format!(
        "SELECT name FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ))?;
    let names = s
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

fn drop_secondary_indexes(conn: &Connection) -> Result<(), TableError> {
    // Indexes behind keys have no SQL (`sqlite_autoindex_...`): only the others go.
    let mut s =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")?;
    let names = s
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    for name in names {
        conn.execute_batch(&format!("DROP INDEX IF EXISTS \"{name}\""))?;
    }
    Ok(())
}

fn open_build(file: &Path) -> Result<SqliteTables, TableError> {
    let conn = Connection::open(file)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    drop(conn);
    let tables = SqliteTables::open(file)?;
    {
        let conn = tables.conn.lock().expect("sqlite tables lock");
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        drop_secondary_indexes(&conn)?;
    }
    Ok(tables)
}

/// The build's secondary indexes (`tables.sql` run again) and statistics.
fn complete_build(file: &Path) -> Result<(), TableError> {
    let tables = SqliteTables::open(file)?;
    let conn = tables.conn.lock().expect("sqlite tables lock");
    conn.execute_batch("ANALYZE")?;
    Ok(())
}

fn swap(live: &Path, build: &Path) -> Result<(), TableError> {
    let mut conn = Connection::open(live)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    conn.execute_batch(include_str!("tables.sql"))?;
    add_generation(&conn)?;
    let file = build
        .to_str()
        .ok_or_else(|| TableError::Invalid(format!("{} is not UTF-8", build.display())))?;
    conn.execute("ATTACH DATABASE ?1 AS build", [file])?;
    let swapped = (|| {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let has_checkpoint: bool = tx.query_row(
            "SELECT count(*) = 1 FROM build.table_checkpoint WHERE name = ?1",
            params![NAME],
            |r| r.get(0),
        )?;
        if !has_checkpoint {
            return Err(TableError::Corrupt(format!(
                "{file} has no checkpoint: nothing to swap in"
            )));
        }
        for table in tables_of(&tx, "build")? {
            let columns = {
                let mut s = tx.prepare(&format!(
                    "SELECT name FROM pragma_table_info('{table}', 'build') ORDER BY cid"
                ))?;
                let names = s
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                names
                    .iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            tx.execute_batch(&format!(
                "DELETE FROM main.\"{table}\";
                 INSERT INTO main.\"{table}\" ({columns}) SELECT {columns} FROM build.\"{table}\";"
            ))?;
        }
        tx.commit()?;
        Ok(())
    })();
    conn.execute_batch("DETACH DATABASE build")?;
    swapped
}

fn remove(file: &Path) -> Result<(), TableError> {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(TableError::Unavailable(format!(
                    "removing {}: {e}",
                    Path::new(&name).display()
                )))
            }
        }
    }
    Ok(())
}

fn is_complete(file: &Path) -> Result<bool, TableError> {
    if !file.is_file() {
        return Ok(false);
    }
    let conn = Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let complete: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'replay_complete'",
        [],
        |r| r.get(0),
    )?;
    Ok(complete)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TableError> + Send + 'static,
) -> Result<T, TableError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TableError::Unavailable(e.to_string()))?
}

#[async_trait::async_trait]
impl Shadows for SqliteShadows {
    async fn open(&self, build: &Build) -> Result<Arc<dyn TableStore>, TableError> {
        build.check()?;
        let file = self.file(build);
        let tables = blocking(move || open_build(&file)).await?;
        Ok(Arc::new(tables))
    }

    async fn finish(&self, build: &Build) -> Result<(), TableError> {
        build.check()?;
        let (live, file) = (self.path.clone(), self.file(build));
        let build = build.clone();
        blocking(move || {
            complete_build(&file)?;
            match build {
                Build::Live => {
                    swap(&live, &file)?;
                    remove(&file)
                }
                Build::AsOf(_) => {
                    let conn = Connection::open(&file)?;
                    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
                    conn.execute_batch(
                        "BEGIN IMMEDIATE;
                         CREATE TABLE IF NOT EXISTS replay_complete (position INTEGER NOT NULL);
                         DELETE FROM replay_complete;
                         INSERT INTO replay_complete SELECT position FROM table_checkpoint;
                         COMMIT;",
                    )?;
                    Ok(())
                }
            }
        })
        .await
    }

    async fn open_complete(&self, slug: &str) -> Result<Option<Arc<dyn TableStore>>, TableError> {
        let build = Build::AsOf(slug.to_owned());
        build.check()?;
        let file = self.file(&build);
        blocking(move || {
            if !is_complete(&file)? {
                return Ok(None);
            }
            let tables: Arc<dyn TableStore> = Arc::new(SqliteTables::open(&file)?);
            Ok(Some(tables))
        })
        .await
    }

    fn describe(&self, build: &Build) -> String {
        self.file(build).display().to_string()
    }
}
