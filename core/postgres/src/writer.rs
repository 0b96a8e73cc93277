//! The writer: group commit (see "Group commit" in the crate doc). Appends queue as
//! [`Pending`]s; the [`Writer`] drains them in batches, plans each batch in memory
//! (`planner.rs`) and writes it in one transaction, on its own connection.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use postgres_types::ToSql;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use closeloop_log::*;

use crate::common::*;
use crate::planner::*;
use crate::statements::*;
use crate::url::*;

/// Why a batch attempt failed.
pub(crate) enum Failure {
    /// The connection is gone: the outcome of what was sent is unknown.
    Connection(tokio_postgres::Error),
    /// The server refused for now (serialization, lock, resources): nothing was written.
    Transient(String),
    /// The server rejected the batch: nothing was written; some request is at fault.
    Rejected(Error),
}

/// The writer connection and its prepared statements.
pub(crate) struct WriterConn {
    pub(crate) client: Client,
    pub(crate) append: WriteStatements,
    pub(crate) append_one: WriteStatements,
    pub(crate) lock_head: Statement,
    pub(crate) stream_heads: Statement,
    pub(crate) commands: Statement,
    pub(crate) category_heads: Statement,
}

impl WriterConn {
    pub(crate) fn failure(&self, error: tokio_postgres::Error) -> Failure {
        if is_connection_error(&error, self.client.is_closed()) {
            return Failure::Connection(error);
        }
        let code = error.code().cloned();
        match code {
            Some(code) if is_transient(&code) => Failure::Transient(describe(&error)),
            Some(code) if code.code().starts_with("22") => Failure::Rejected(Error::InvalidAppend(
                error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_owned()),
            )),
            _ => Failure::Rejected(pg(error)),
        }
    }
}

pub(crate) struct Writer {
    pub(crate) config: Endpoint,
    pub(crate) sql: Arc<Sql>,
    pub(crate) options: PostgresOptions,
    /// The connection of the batch being written: the writer thread's own, or during a
    /// direct append the caller's (the two are swapped for the turn).
    pub(crate) conn: Option<WriterConn>,
    /// The connection of direct appends while the writer thread has the turn; it lives on
    /// the runtime that opened it (`connect`'s caller's, or that of the direct append that
    /// had to reopen it).
    pub(crate) direct: Option<WriterConn>,
    pub(crate) cache: HeadCache,
    pub(crate) categories: CategoryHeads,
    /// Batches left to run on the slow path.
    pub(crate) contended: u32,
    pub(crate) shared: Arc<Shared>,
    /// The most appends outstanding when the last batch was answered.
    pub(crate) outstanding_seen: usize,
    /// For the write in flight: the last position it gives each append of the batch (None
    /// for those it does not write).
    pub(crate) sent: Vec<Option<Position>>,
}

impl Writer {
    pub(crate) async fn connect(&mut self) -> Result<(), tokio_postgres::Error> {
        self.conn = None;
        self.cache.invalidate();
        let (client, connection) = self.config.connect().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres writer connection ended: {}", describe(&e));
            }
        });
        // Everything the writer needs before its first batch goes out in one pipelined
        // round trip: a writer whose connections keep being cut must be able to get back
        // to work in the briefest window.
        //
        // The query learns the categories' last positions without the lock, so that the
        // scan under the lock (in `slow`) only covers what was appended since: at start,
        // the whole log.
        let through = to_i64(self.categories.through);
        let params: [&(dyn ToSql + Sync); 1] = [&through];
        let sql = &self.sql;
        let (
            append,
            append_guarded,
            append_one,
            append_one_guarded,
            lock_head,
            stream_heads,
            commands,
            category_heads,
            rows,
        ) = tokio::try_join!(
            client.prepare(&sql.append.plain),
            client.prepare(&sql.append.guarded),
            client.prepare(&sql.append_one.plain),
            client.prepare(&sql.append_one.guarded),
            client.prepare(&sql.lock_head),
            client.prepare(&sql.stream_heads),
            client.prepare(&sql.commands),
            client.prepare(&sql.category_heads),
            client.query(&sql.category_heads_to_head, &params),
        )?;
        for row in &rows {
            let head: i64 = row.get(0);
            self.categories.through = self.categories.through.max(head.max(0) as u64);
            if let (Some(category), Some(last)) = (
                row.get::<_, Option<String>>(1),
                row.get::<_, Option<i64>>(2),
            ) {
                self.categories.raise(category, last.max(0) as u64);
            }
        }
        self.conn = Some(WriterConn {
            client,
            append: WriteStatements {
                plain: append,
                guarded: append_guarded,
            },
            append_one: WriteStatements {
                plain: append_one,
                guarded: append_one_guarded,
            },
            lock_head,
            stream_heads,
            commands,
            category_heads,
        });
        Counters::bump(&self.shared.counters.connects, 1);
        Ok(())
    }

    /// Collects batches and commits them, until every `PostgresLog` handle is dropped and
    /// the queue is drained.
    pub(crate) async fn run(
        state: Arc<tokio::sync::Mutex<Writer>>,
        options: &PostgresOptions,
        mut queue: mpsc::Receiver<Pending>,
    ) {
        let appends_max = options.batch_appends_max.clamp(1, BATCH_APPENDS_MAX);
        let events_max = options.batch_events_max.clamp(1, BATCH_EVENTS_MAX);
        let wait = Duration::from_micros(options.batch_wait_us);
        let mut carried: Option<Pending> = None;
        // How many appends are expected per batch: a peak of the appends outstanding when
        // batches were answered, decaying when load drops.
        let mut expected: usize = 1;
        loop {
            let first = match carried.take() {
                Some(pending) => pending,
                None => match queue.recv().await {
                    Some(pending) => pending,
                    None => return,
                },
            };
            // A caller that stopped waiting before its append was written (its deadline
            // passed) was told nothing was appended: it is not written late.
            if first.reply.is_closed() {
                continue;
            }
            // A direct append may have the turn: it ends within one append's round trips.
            let mut this = state.lock().await;
            let deadline = tokio::time::Instant::now() + wait;
            let target = expected.clamp(1, appends_max);
            let mut events = first.request.events.len();
            // On the fast path, each append is decided as it arrives, while the next ones
            // are still on their way.
            let mut planner = this.fast_planner();
            this.preplan(&mut planner, &first);
            let mut batch = vec![first];
            while batch.len() < appends_max {
                let next = match queue.try_recv() {
                    Ok(pending) => pending,
                    Err(_) if wait.is_zero() || batch.len() >= target => break,
                    Err(_) => match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some(pending)) => pending,
                        _ => break,
                    },
                };
                if next.reply.is_closed() {
                    continue;
                }
                if events + next.request.events.len() > events_max {
                    carried = Some(next);
                    break;
                }
                events += next.request.events.len();
                this.preplan(&mut planner, &next);
                batch.push(next);
            }
            this.run_batch(batch, planner.map(Planner::finish)).await;
            expected = this.outstanding_seen.max(expected - expected / 8);
            this.outstanding_seen = 0;
        }
    }

    /// A planner for the fast path, if the writer is on it.
    pub(crate) fn fast_planner(&self) -> Option<Planner> {
        match self.cache.head {
            Some(head) if self.contended == 0 => {
                Some(Planner::new(head, &self.categories, Timestamp::now()))
            }
            _ => None,
        }
    }

    /// Decides `pending` on the fast path against the cached heads.
    pub(crate) fn preplan(&self, planner: &mut Option<Planner>, pending: &Pending) {
        if let Some(planner) = planner {
            planner.add(pending, |stream| self.cache.lookup(stream), &HashMap::new());
        }
    }

    /// Commits one batch and answers each of its appends. `planned` is the batch decided
    /// on the fast path while it was collected.
    pub(crate) async fn run_batch(&mut self, mut batch: Vec<Pending>, mut planned: Option<Plan>) {
        Counters::bump(&self.shared.counters.batches, 1);
        let mut reconnect_deadline: Option<Instant> = None;
        let mut transient_retries = 0;
        loop {
            if self.conn.is_none() {
                let deadline = *reconnect_deadline.get_or_insert_with(|| {
                    Instant::now() + Duration::from_millis(self.options.reconnect_timeout_ms)
                });
                if let Err(e) = self.reconnect(deadline).await {
                    let reason = format!("cannot reach PostgreSQL: {}", describe(&e));
                    self.fail_all(batch, &reason);
                    return;
                }
                Counters::bump(&self.shared.counters.reconnects, 1);
            }
            match self.attempt(&batch, planned.take()).await {
                Ok(outcomes) => {
                    self.answer(batch, outcomes);
                    return;
                }
                Err(Failure::Connection(e)) => {
                    tracing::warn!(
                        "postgres writer lost its connection during a batch of {} appends \
                         ({}); reconnecting and resolving them by command id",
                        batch.len(),
                        describe(&e)
                    );
                    self.conn = None;
                    self.cache.invalidate();
                    for (pending, sent) in batch.iter_mut().zip(self.sent.drain(..)) {
                        if sent.is_some() {
                            pending.lost_at = sent;
                        }
                    }
                }
                Err(Failure::Transient(e)) => {
                    self.rollback().await;
                    transient_retries += 1;
                    if transient_retries > TRANSIENT_RETRIES_MAX {
                        self.fail_all(batch, &format!("PostgreSQL keeps refusing: {e}"));
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5 << transient_retries)).await;
                }
                Err(Failure::Rejected(e)) => {
                    self.rollback().await;
                    self.cache.invalidate();
                    if batch.len() == 1 {
                        self.answer(batch, vec![Err(e)]);
                    } else {
                        // Find the guilty append: replay them one by one.
                        tracing::warn!(
                            "postgres rejected a batch ({e}); replaying it append by append"
                        );
                        for pending in batch {
                            Box::pin(self.run_batch(vec![pending], None)).await;
                        }
                    }
                    return;
                }
            }
        }
    }

    pub(crate) async fn reconnect(
        &mut self,
        deadline: Instant,
    ) -> Result<(), tokio_postgres::Error> {
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.connect().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() + backoff >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!("postgres writer reconnect failed: {}", describe(&e));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    pub(crate) async fn rollback(&mut self) {
        if let Some(conn) = &self.conn {
            if conn.client.batch_execute("ROLLBACK").await.is_err() {
                self.conn = None;
                self.cache.invalidate();
            }
        }
    }

    pub(crate) fn answer(
        &mut self,
        batch: Vec<Pending>,
        outcomes: Vec<Result<AppendOutcome, Error>>,
    ) {
        assert_eq!(batch.len(), outcomes.len());
        // This batch plus what queued up while it committed.
        let outstanding = self.shared.outstanding.load(Ordering::Relaxed);
        self.outstanding_seen = self.outstanding_seen.max(outstanding);
        self.shared
            .outstanding_at_answer
            .store(outstanding, Ordering::Relaxed);
        Counters::bump(&self.shared.counters.appends, batch.len() as u64);
        // Every append of the batch is uncounted before any caller hears: one that appends
        // again at once must not find its batch neighbours still in flight.
        let replies: Vec<_> = batch
            .into_iter()
            .map(|Pending { reply, counted, .. }| {
                drop(counted);
                reply
            })
            .collect();
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // The caller may have given up waiting; the outcome stands regardless.
            let _ = reply.send(outcome);
        }
    }

    pub(crate) fn fail_all(&mut self, batch: Vec<Pending>, reason: &str) {
        let outcomes = batch
            .iter()
            .map(|pending| {
                Err(Error::Unavailable(if pending.lost_at.is_some() {
                    format!(
                        "{reason}; the connection was lost during this append, so its \
                         outcome is unknown: retry with the same command id (it answers \
                         `duplicate` if the append was committed)"
                    )
                } else {
                    format!("{reason}; nothing was appended")
                }))
            })
            .collect();
        self.answer(batch, outcomes);
    }

    /// One try at a batch: the fast path if the cache is trusted, else the slow path.
    pub(crate) async fn attempt(
        &mut self,
        batch: &[Pending],
        planned: Option<Plan>,
    ) -> Result<Vec<Result<AppendOutcome, Error>>, Failure> {
        let recorded_at = Timestamp::now();
        self.sent.clear();
        if self.contended > 0 {
            self.contended -= 1;
        } else if let Some(head) = self.cache.head {
            let plan = match planned {
                Some(plan) if plan.first == head && plan.outcomes.len() == batch.len() => plan,
                _ => plan(
                    batch,
                    head,
                    &self.categories,
                    |stream| self.cache.lookup(stream),
                    &HashMap::new(),
                    recorded_at,
                ),
            };
            if !plan.rows.positions.is_empty() {
                self.sent = sent_positions(&plan);
                let conn = self.conn.as_ref().expect("connected before an attempt");
                let written = match self
                    .write(conn, &plan, &plan.unwritten_ids, &plan.assumed_new)
                    .await
                {
                    Ok(written) => written,
                    Err(e) => match conn.failure(e) {
                        Failure::Connection(e) => return Err(Failure::Connection(e)),
                        // The statement (its own transaction) wrote nothing. Most likely a
                        // command id or a stream taken as new exists (a unique index said
                        // so); whatever it was, the slow path decides exactly.
                        Failure::Transient(_) | Failure::Rejected(_) => false,
                    },
                };
                // Answered: whatever was sent is no longer in doubt.
                self.sent.clear();
                if written {
                    Counters::bump(&self.shared.counters.fast_commits, 1);
                    self.committed(&plan);
                    return Ok(plan.outcomes);
                }
                // Someone else wrote, a command id is a retry, or an uncached stream exists:
                // nothing was written; decide again from the database itself.
                Counters::bump(&self.shared.counters.guard_misses, 1);
                self.contended = CONTENDED_BATCHES;
            }
        }
        self.slow(batch, recorded_at).await
    }

    /// The batch under the lock: one round trip to lock and read, one to write and commit.
    pub(crate) async fn slow(
        &mut self,
        batch: &[Pending],
        recorded_at: Timestamp,
    ) -> Result<Vec<Result<AppendOutcome, Error>>, Failure> {
        let conn = self.conn.as_ref().expect("connected before an attempt");
        let mut seen = HashSet::new();
        let streams: Vec<&str> = batch
            .iter()
            .map(|p| p.request.stream.as_str())
            .filter(|s| seen.insert(*s))
            .collect();
        let ids: Vec<Uuid> = batch.iter().map(|p| p.request.command_id).collect();
        // Pipelined: the reads run after the lock is granted, each with a snapshot that
        // includes the previous lock holder's commit.
        let through = to_i64(self.categories.through);
        let heads_params: [&(dyn ToSql + Sync); 1] = [&streams];
        let commands_params: [&(dyn ToSql + Sync); 1] = [&ids];
        let categories_params: [&(dyn ToSql + Sync); 1] = [&through];
        let (begin, locked, heads, commands, categories) = tokio::join!(
            conn.client.batch_execute("BEGIN"),
            conn.client.query_one(&conn.lock_head, &[]),
            conn.client.query(&conn.stream_heads, &heads_params),
            conn.client.query(&conn.commands, &commands_params),
            conn.client.query(&conn.category_heads, &categories_params),
        );
        let failure = |e| conn.failure(e);
        begin.map_err(failure)?;
        let locked = locked.map_err(failure)?;
        let heads = heads.map_err(failure)?;
        let commands = commands.map_err(failure)?;
        let categories = categories.map_err(failure)?;
        let locked = to_u64(locked.get::<_, i64>(0), "log head").map_err(Failure::Rejected)?;
        for row in &categories {
            let last = to_u64(row.get::<_, i64>(1), "position").map_err(Failure::Rejected)?;
            self.categories.raise(row.get(0), last);
        }
        self.categories.through = self.categories.through.max(locked);
        let mut read = HashMap::with_capacity(heads.len());
        for row in &heads {
            let stream: String = row.get(0);
            let version = to_u64(row.get::<_, i64>(1), "version").map_err(Failure::Rejected)?;
            read.insert(stream, (version, row.get::<_, String>(2)));
        }
        let known = decode_commands(&commands).map_err(Failure::Rejected)?;

        if self.cache.head == Some(locked) {
            // Nobody else wrote since our last commit: the fast path will do.
            self.contended = 0;
        } else {
            self.cache.streams.clear();
        }
        self.cache.head = Some(locked);
        let plan = plan(
            batch,
            locked,
            &self.categories,
            |stream| match read.get(stream) {
                Some((version, hash)) => Known::Head(*version, hash.clone()),
                None => Known::New,
            },
            &known,
            recorded_at,
        );
        for (stream, head) in read {
            self.cache.remember(stream, head);
        }
        let conn = self.conn.as_ref().expect("connected before an attempt");
        if plan.rows.positions.is_empty() {
            conn.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| conn.failure(e))?;
            return Ok(plan.outcomes);
        }
        self.sent = sent_positions(&plan);
        let (written, commit) = tokio::join!(
            self.write(conn, &plan, &[], &[]),
            conn.client.batch_execute("COMMIT"),
        );
        let written = written.map_err(|e| conn.failure(e))?;
        commit.map_err(|e| conn.failure(e))?;
        if !written {
            // Impossible while we hold the lock; nothing was written, so retrying is safe.
            tracing::error!("postgres log head moved under the writer's lock; retrying");
            self.cache.invalidate();
            return Err(Failure::Transient(
                "the log head moved under the writer's lock".into(),
            ));
        }
        Counters::bump(&self.shared.counters.slow_commits, 1);
        self.committed(&plan);
        Ok(plan.outcomes)
    }

    /// The guarded write of a planned batch; false when the guard failed (nothing written).
    pub(crate) async fn write(
        &self,
        conn: &WriterConn,
        plan: &Plan,
        guard_ids: &[Uuid],
        assumed_new: &[String],
    ) -> Result<bool, tokio_postgres::Error> {
        let r = &plan.rows;
        let first = to_i64(plan.first);
        let last = to_i64(plan.last);
        let guarded = !guard_ids.is_empty() || !assumed_new.is_empty();
        let guards = guarded.then_some([&guard_ids as &(dyn ToSql + Sync), &assumed_new]);
        let rows = if r.positions.len() == 1 {
            let params: [&(dyn ToSql + Sync); 12] = [
                &first,
                &last,
                &r.streams[0],
                &r.versions[0],
                &r.event_ids[0],
                &r.types[0],
                &r.schema_versions[0],
                &r.data[0],
                &r.metadata[0],
                &r.hashes[0],
                &r.command_ids[0],
                &self.sql.channel,
            ];
            conn.append_one.run(&conn.client, &params, guards).await?
        } else {
            let params: [&(dyn ToSql + Sync); 15] = [
                &first,
                &last,
                &r.positions,
                &r.streams,
                &r.versions,
                &r.event_ids,
                &r.types,
                &r.schema_versions,
                &r.data,
                &r.metadata,
                &r.hashes,
                &r.command_ids,
                &r.command_first,
                &r.command_last,
                &self.sql.channel,
            ];
            conn.append.run(&conn.client, &params, guards).await?
        };
        Ok(!rows.is_empty())
    }

    pub(crate) fn committed(&mut self, plan: &Plan) {
        self.cache.apply(plan);
        self.categories = plan.categories.clone();
        self.shared.publish_head(plan.last);
    }
}
