//! The analysts' tables: built live (one command at a time, the projector crashed and
//! reopened at random points, batches of random sizes, a tiny state cache) they equal the
//! tables built in one pass; the SQLite and PostgreSQL stores end with exactly the rows of
//! the in-memory reference; two writers on one store never apply an event twice.

use std::sync::Arc;

use closeloop_commands::workload::{self, WorkloadConfig};
use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::EventLog;
use closeloop_projections::tables::memory::MemoryTables;
use closeloop_projections::tables::postgres::PostgresTables;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::sqlite::SqliteTables;
use closeloop_projections::tables::{Dump, TableStore};
use proptest::prelude::*;

fn workload(seed: u64, tickets: usize) -> workload::Workload {
    workload::generate(&WorkloadConfig {
        seed,
        tickets,
        days: 4,
        customers: 30,
        ..WorkloadConfig::default()
    })
    .expect("workload")
}

async fn memory_log_with(seed: u64, tickets: usize) -> Arc<dyn EventLog> {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let handler = Handler::new(log.clone(), HandlerConfig::default());
    for envelope in workload(seed, tickets).sequential() {
        handler.handle(envelope.clone()).await;
    }
    log
}

fn config(batch: usize, cached: usize) -> TableConfig {
    TableConfig {
        batch_events_max: batch,
        cached_tickets_max: cached,
        tail_wait_ms: 10,
    }
}

/// The tables folded from the whole log in one pass, in memory.
async fn one_pass(log: Arc<dyn EventLog>) -> Dump {
    let store = Arc::new(MemoryTables::new());
    let mut p = TableProjector::open(log, store.clone(), TableConfig::default())
        .await
        .unwrap();
    p.catch_up().await.unwrap();
    store.dump().await.unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn assert_filled(d: &Dump) {
    assert!(!d.tickets.is_empty(), "no tickets");
    assert!(!d.sla_timers.is_empty(), "no timers");
    assert!(!d.assignments.is_empty(), "no assignments");
    assert!(!d.resolutions.is_empty(), "no resolutions");
    assert!(!d.satisfaction_ratings.is_empty(), "no ratings");
    assert!(!d.agents.is_empty(), "no agents");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn tables_built_live_with_crashes_equal_one_pass(
        seed in 0u64..1_000,
        tickets in 3usize..25,
        batch in 1usize..12,
        cached in 1usize..6,
        actions in proptest::collection::vec(0u8..3, 1..40),
    ) {
        runtime().block_on(async {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let handler = Handler::new(log.clone(), HandlerConfig::default());
            let store = Arc::new(MemoryTables::new());
            let mut live = TableProjector::open(log.clone(), store.clone(), config(batch, cached)).await.unwrap();
            let work = workload(seed, tickets);
            for (i, envelope) in work.sequential().enumerate() {
                handler.handle(envelope.clone()).await;
                match actions[i % actions.len()] {
                    1 => { live.step().await.unwrap(); }
                    2 => {
                        live = TableProjector::open(log.clone(), store.clone(), config(batch, cached)).await.unwrap();
                    }
                    _ => {}
                }
            }
            live.catch_up().await.unwrap();
            let built = store.dump().await.unwrap();
            let once = one_pass(log).await;
            prop_assert_eq!(&built, &once);
            Ok(())
        })?;
    }
}

/// Folds `log` into `store` in batches of 5 with a cache of 3 tickets.
async fn fold_into(log: Arc<dyn EventLog>, store: Arc<dyn TableStore>) -> Dump {
    let mut p = TableProjector::open(log, store.clone(), config(5, 3))
        .await
        .unwrap();
    p.catch_up().await.unwrap();
    store.dump().await.unwrap()
}

#[test]
fn sqlite_tables_equal_the_memory_reference() {
    runtime().block_on(async {
        let log = memory_log_with(7, 40).await;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn TableStore> =
            Arc::new(SqliteTables::open(dir.path().join("read.db")).unwrap());
        let sqlite = fold_into(log.clone(), store).await;
        let reference = one_pass(log).await;
        assert_filled(&reference);
        assert_eq!(sqlite, reference);
    });
}

fn postgres_base() -> String {
    std::env::var("CLOSELOOP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh schema for one test, dropped when the test ends (even on panic).
struct Schema {
    name: String,
}

impl Schema {
    fn new() -> Schema {
        Schema {
            name: format!("cl_tab_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    async fn tables(&self) -> PostgresTables {
        PostgresTables::in_schema(postgres_base(), self.name.clone())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL at {} ({e}); start it with scripts/services.sh",
                    postgres_base()
                )
            })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let base = postgres_base();
        std::thread::spawn(move || {
            runtime().block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&base, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&sql).await;
                }
            })
        })
        .join()
        .ok();
    }
}

#[test]
fn postgres_tables_equal_the_memory_reference() {
    runtime().block_on(async {
        let schema = Schema::new();
        let log = memory_log_with(11, 40).await;
        let store: Arc<dyn TableStore> = Arc::new(schema.tables().await);
        let postgres = fold_into(log.clone(), store).await;
        let reference = one_pass(log).await;
        assert_filled(&reference);
        assert_eq!(postgres, reference);
    });
}

/// Two projectors on one store take turns one small batch at a time; each commit of the
/// slower one is fenced and it goes on from the other's checkpoint.
async fn two_writers(store: Arc<dyn TableStore>) {
    let log = memory_log_with(3, 30).await;
    let mut a = TableProjector::open(log.clone(), store.clone(), config(4, 5))
        .await
        .unwrap();
    let mut b = TableProjector::open(log.clone(), store.clone(), config(7, 5))
        .await
        .unwrap();
    loop {
        let folded_a = a.step().await.unwrap();
        let folded_b = b.step().await.unwrap();
        if folded_a == 0 && folded_b == 0 {
            break;
        }
    }
    assert_eq!(store.dump().await.unwrap(), one_pass(log).await);
}

#[test]
fn two_writers_on_sqlite_never_apply_an_event_twice() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        two_writers(Arc::new(
            SqliteTables::open(dir.path().join("read.db")).unwrap(),
        ))
        .await;
    });
}

#[test]
fn two_writers_on_postgres_never_apply_an_event_twice() {
    runtime().block_on(async {
        let schema = Schema::new();
        two_writers(Arc::new(schema.tables().await)).await;
    });
}

#[test]
fn two_writers_in_memory_never_apply_an_event_twice() {
    runtime().block_on(two_writers(Arc::new(MemoryTables::new())));
}
