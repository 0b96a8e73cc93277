//! The analysts' tables: built live (one command at a time, the projector crashed and
//! reopened at random points, batches of random sizes, a tiny state cache) they equal the
//! tables built in one pass; the SQLite and PostgreSQL stores end with exactly the rows of
//! the in-memory reference; two writers on one store never apply an event twice.

use std::sync::Arc;

use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::EventLog;
use closeloop_projections::tables::memory::MemoryTables;
use closeloop_projections::tables::postgres::PostgresTables;
use closeloop_projections::tables::runner::{TableConfig, TableProjector};
use closeloop_projections::tables::sqlite::SqliteTables;
use closeloop_projections::tables::{Dump, TableStore};
use closeloop_workload::{self as workload, WorkloadConfig};
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
    let handler = Handler::new(log.clone(), HandlerConfig::trusting());
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

/// Compares two dumps table by table, naming the first row that differs.
pub(crate) fn assert_same(found: &Dump, expected: &Dump) {
    fn table<T: PartialEq + std::fmt::Debug>(name: &str, a: &[T], b: &[T]) {
        if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            panic!(
                "{name} differs at row {i} ({} rows against {}):\n  found    {:?}\n  expected {:?}",
                a.len(),
                b.len(),
                a.get(i),
                b.get(i)
            );
        }
    }
    macro_rules! every_table {
        ($($name:ident),+ $(,)?) => {
            // No `..`: a table added to `Dump` and not listed here does not compile.
            let Dump { $($name: _),+ } = expected;
            $(table(stringify!($name), &found.$name, &expected.$name);)+
        };
    }
    every_table!(
        tickets,
        sla_timers,
        assignments,
        resolutions,
        satisfaction_ratings,
        agents,
        complaint_rulings,
        complaint_charges,
        scorecards,
        follow_ups,
        inspection_samples,
        inspections,
        reinspections_overdue,
        absences,
        ticket_links,
        deadlines,
        retention_policies,
        customer_erasures,
    );
}

fn assert_filled(d: &Dump) {
    assert!(!d.tickets.is_empty(), "no tickets");
    assert!(!d.sla_timers.is_empty(), "no timers");
    assert!(!d.assignments.is_empty(), "no assignments");
    assert!(!d.resolutions.is_empty(), "no resolutions");
    assert!(!d.satisfaction_ratings.is_empty(), "no ratings");
    assert!(!d.agents.is_empty(), "no agents");
    assert!(!d.deadlines.is_empty(), "no step deadlines");
    assert!(
        d.deadlines.iter().any(|r| r.met_at.is_some()),
        "no step deadline met"
    );
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
            let handler = Handler::new(log.clone(), HandlerConfig::trusting());
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

/// The demo's "office" calendar (Europe/Berlin, UTC+1 then) moves days around a bridge
/// holiday: Thu 2026-10-29 is a half day (08:00-12:00), Fri 10-30 a holiday, Sun 11-01 a
/// make-up day (09:00-12:00, 13:00-17:00). The SQL stores keep deadlines that honour them.
fn assert_deadlines_honour_the_moved_days(d: &Dump) {
    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_second();
    let office: Vec<i64> = d
        .sla_timers
        .iter()
        .filter(|t| t.calendar_id == "office")
        .flat_map(|t| [t.due_at, t.warn_at])
        .flatten()
        .collect();
    assert!(
        office
            .iter()
            .any(|&t| (at("2026-11-01T08:00:00Z")..=at("2026-11-01T16:00:00Z")).contains(&t)),
        "no deadline on the make-up Sunday"
    );
    // Nothing falls due after the half day's close (instants at a close belong to the day
    // that closes) until Saturday's opening, 09:00 local.
    assert!(
        !office
            .iter()
            .any(|&t| (at("2026-10-29T11:00:01Z")..at("2026-10-31T08:00:01Z")).contains(&t)),
        "a deadline in the half day's afternoon or on the holiday"
    );
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
        assert_deadlines_honour_the_moved_days(&sqlite);
        assert_same(&sqlite, &reference);
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
        // Connecting again to existing tables (a restarted serve) runs the DDL again.
        assert_same(&schema.tables().await.dump().await.unwrap(), &postgres);
        let reference = one_pass(log).await;
        assert_filled(&reference);
        assert_deadlines_honour_the_moved_days(&postgres);
        assert_same(&postgres, &reference);
    });
}

#[test]
fn a_planned_absence_hands_over_and_back_at_its_moments_on_postgres() {
    runtime().block_on(async {
        let schema = Schema::new();
        crate::projections::absences::run(Arc::new(schema.tables().await)).await;
    });
}

#[test]
fn step_deadlines_are_warned_of_and_breached_once_on_postgres() {
    runtime().block_on(async {
        let schema = Schema::new();
        crate::projections::step_deadlines::run(Arc::new(schema.tables().await)).await;
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
    assert_same(&store.dump().await.unwrap(), &one_pass(log).await);
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

/// The analysts' queries exactly as the README writes them: (title, SQL).
fn readme_queries() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    readme
        .split("```sql\n")
        .skip(1)
        .filter_map(|block| {
            let sql = block.split("```").next()?;
            let title = sql.lines().next()?.strip_prefix("-- analyst: ")?;
            Some((title.to_owned(), sql.to_owned()))
        })
        .collect()
}

fn query(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[(&str, &str)],
) -> Vec<Vec<rusqlite::types::Value>> {
    let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
    let columns = statement.column_count();
    let params: Vec<(&str, &dyn rusqlite::ToSql)> = params
        .iter()
        .map(|(k, v)| (*k, v as &dyn rusqlite::ToSql))
        .collect();
    statement
        .query_map(params.as_slice(), |r| {
            (0..columns)
                .map(|i| r.get::<_, rusqlite::types::Value>(i))
                .collect()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn text(v: &rusqlite::types::Value) -> String {
    match v {
        rusqlite::types::Value::Text(t) => t.clone(),
        other => panic!("not text: {other:?}"),
    }
}

fn int(v: &rusqlite::types::Value) -> i64 {
    match v {
        rusqlite::types::Value::Integer(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

fn real(v: &rusqlite::types::Value) -> f64 {
    match v {
        rusqlite::types::Value::Real(x) => *x,
        rusqlite::types::Value::Integer(i) => *i as f64,
        other => panic!("not a number: {other:?}"),
    }
}

#[test]
fn the_readme_analyst_queries_agree_with_the_reports() {
    use closeloop_core::log::sqlite::SqliteLog;
    use closeloop_projections::models::ReadModels;
    use closeloop_projections::period::Granularity;
    use closeloop_projections::report::ReportQuery;

    let queries = readme_queries();
    assert_eq!(queries.len(), 4, "the README's four analyst queries");
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.db");
        let log: Arc<dyn EventLog> =
            Arc::new(SqliteLog::open(path.to_str().unwrap()).await.unwrap());
        let work = workload::generate(&WorkloadConfig {
            seed: 5,
            tickets: 150,
            days: 10,
            customers: 40,
            ..WorkloadConfig::default()
        })
        .unwrap();
        let handler = Handler::new(log.clone(), HandlerConfig::trusting());
        for envelope in work.sequential() {
            handler.handle(envelope.clone()).await;
        }
        let tables = Arc::new(SqliteTables::open(&path).unwrap());
        fold_into(log.clone(), tables.clone()).await;
        let models = ReadModels::new(tables, vec![]);
        let conn = rusqlite::Connection::open(&path).unwrap();
        // A report time inside the workload, so that some timers are still running.
        let now = jiff::Timestamp::from_second(
            query(&conn, "SELECT max(started_at) FROM sla_timers", &[])[0]
                .first()
                .map(|v| closeloop_projections::tables::parse_time(&text(v)).unwrap())
                .unwrap(),
        )
        .unwrap();
        let now_text = closeloop_projections::tables::rfc3339(now.as_second());

        // 1. Mean satisfaction per team per ISO week.
        let weekly = ReportQuery { period: Granularity::Week, ..Default::default() };
        let report = models.report("satisfaction", &weekly, now).await.unwrap().unwrap();
        let mut expected: Vec<(String, String, i64, f64)> = report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["by"] == "team" && g["ratings"].as_i64() > Some(0))
            .map(|g| {
                (
                    g["key"].as_str().unwrap().to_owned(),
                    g["period"].as_str().unwrap().to_owned(),
                    g["ratings"].as_i64().unwrap(),
                    g["mean"].as_f64().unwrap(),
                )
            })
            .collect();
        let mut found: Vec<(String, String, i64, f64)> = query(&conn, &queries[0].1, &[])
            .iter()
            .map(|r| (text(&r[0]), text(&r[1]), int(&r[2]), real(&r[3])))
            .collect();
        expected.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        assert!(!found.is_empty());
        assert_eq!(found, expected, "{}", queries[0].0);

        // 2. SLA compliance per grade and target, as of `now`.
        let all = ReportQuery { limit: ReportQuery::LIMIT_MAX, ..Default::default() };
        let report = models.report("sla", &all, now).await.unwrap().unwrap();
        let expected: Vec<(String, String, i64, i64, f64)> = report["compliance"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["grade"].as_str().unwrap().to_owned(),
                    c["target"].as_str().unwrap().to_owned(),
                    c["met"].as_i64().unwrap(),
                    c["breached"].as_i64().unwrap(),
                    c["percent"].as_f64().unwrap(),
                )
            })
            .collect();
        let mut found: Vec<(String, String, i64, i64, f64)> =
            query(&conn, &queries[1].1, &[(":now", &now_text)])
                .iter()
                .map(|r| (text(&r[0]), text(&r[1]), int(&r[2]), int(&r[3]), real(&r[4])))
                .collect();
        let mut expected = expected;
        expected.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        assert!(found.iter().any(|c| c.3 > 0), "some target breached");
        assert_eq!(found, expected, "{}", queries[1].0);

        // 3. The 10 slowest first responses of the busiest month: the report's fulfilled
        // first-response timers started that month, slowest first.
        let month = query(
            &conn,
            "SELECT strftime('%Y-%m', started_at) AS m FROM sla_timers GROUP BY m ORDER BY count(*) DESC LIMIT 1",
            &[],
        )[0][0]
            .clone();
        let month = text(&month);
        let mut expected: Vec<i64> = report["timers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| {
                t["target"] == "first_response"
                    && !t["fulfilled_at"].is_null()
                    && t["started_at"].as_str().unwrap().starts_with(&month)
            })
            .map(|t| t["business_minutes_used"].as_i64().unwrap())
            .collect();
        expected.sort_unstable_by(|a, b| b.cmp(a));
        expected.truncate(10);
        let found: Vec<i64> = query(&conn, &queries[2].1, &[(":month", &month)])
            .iter()
            .map(|r| int(&r[2]))
            .collect();
        assert_eq!(found.len(), 10);
        assert_eq!(found, expected, "{}", queries[2].0);

        // 4. The open backlog per agent: the performance report's `open_now`.
        let total = ReportQuery { period: Granularity::Total, ..Default::default() };
        let report = models.report("performance", &total, now).await.unwrap().unwrap();
        let mut expected: Vec<(String, i64)> = report["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["open_now"].as_i64().unwrap() > 0)
            .map(|a| (a["agent_id"].as_str().unwrap().to_owned(), a["open_now"].as_i64().unwrap()))
            .collect();
        let mut found: Vec<(String, i64)> = query(&conn, &queries[3].1, &[])
            .iter()
            .map(|r| (text(&r[0]), int(&r[1])))
            .collect();
        expected.sort();
        found.sort();
        assert!(!found.is_empty());
        assert_eq!(found, expected, "{}", queries[3].0);
    });
}

/// The reads of every store agree with the in-memory reference: every report (filters,
/// periods, report times inside and after the workload, the SLA list paged) and the
/// scheduler's due timers.
#[test]
fn reports_from_sql_tables_equal_the_memory_reference() {
    use closeloop_projections::models::ReadModels;
    use closeloop_projections::period::Granularity;
    use closeloop_projections::report::ReportQuery;
    use closeloop_projections::tables::Cursor;

    runtime().block_on(async {
        let log = memory_log_with(5, 150).await;
        let dir = tempfile::tempdir().unwrap();
        let schema = Schema::new();
        let reference: Arc<dyn TableStore> = Arc::new(MemoryTables::new());
        let stores: Vec<(&str, Arc<dyn TableStore>)> = vec![
            (
                "sqlite",
                Arc::new(SqliteTables::open(dir.path().join("t.db")).unwrap()),
            ),
            ("postgres", Arc::new(schema.tables().await)),
        ];
        fold_into(log.clone(), reference.clone()).await;
        for (_, s) in &stores {
            fold_into(log.clone(), s.clone()).await;
        }
        let dump = reference.dump().await.unwrap();
        let started: Vec<i64> = dump.sla_timers.iter().map(|t| t.started_at).collect();
        let (first, last) = (
            *started.iter().min().unwrap(),
            *started.iter().max().unwrap(),
        );
        let agent = dump.assignments[0].agent_id.clone();
        let team = dump.assignments[0].team.clone();
        let day = |at: i64| {
            closeloop_projections::period::date_of(closeloop_projections::period::day_of(at))
        };
        let queries = vec![
            ReportQuery::default(),
            ReportQuery {
                period: Granularity::Week,
                limit: 7,
                ..Default::default()
            },
            ReportQuery {
                period: Granularity::Day,
                agent: Some(agent.clone()),
                ..Default::default()
            },
            ReportQuery {
                period: Granularity::Total,
                team: Some(team.clone()),
                at_risk: true,
                ..Default::default()
            },
            ReportQuery {
                period: Granularity::Day,
                from: Some(day(first + 86_400)),
                to: Some(day(first + 3 * 86_400)),
                ..Default::default()
            },
        ];
        let expected_models = ReadModels::new(reference.clone(), vec![]);
        for now in [first + (last - first) / 2, last, last + 30 * 86_400] {
            let due = reference.due_timers(now, 50).await.unwrap();
            for (name, tables) in &stores {
                assert_eq!(
                    tables.due_timers(now, 50).await.unwrap(),
                    due,
                    "{name}: due timers at {now}"
                );
            }
            let now = jiff::Timestamp::from_second(now).unwrap();
            for q in &queries {
                for report in ["sla", "satisfaction", "performance"] {
                    // The SLA list page by page, following the cursors.
                    let mut query = q.clone();
                    loop {
                        let expected = expected_models
                            .report(report, &query, now)
                            .await
                            .unwrap()
                            .unwrap();
                        for (name, tables) in &stores {
                            let found = ReadModels::new(tables.clone(), vec![])
                                .report(report, &query, now)
                                .await
                                .unwrap()
                                .unwrap();
                            assert_eq!(
                                found, expected,
                                "{report} from {name} tables for {query:?} at {now}"
                            );
                        }
                        match expected["timers_next_page"].as_str() {
                            Some(next) if report == "sla" => {
                                query.page = Some(Cursor::decode(next).unwrap())
                            }
                            _ => break,
                        }
                    }
                }
            }
        }
    });
}
