//! The command handler: the only way events enter the log.
//!
//! For each command: parse strictly; take the ticket's turn (the commands of one ticket run
//! one at a time in a handler, so a hot ticket's writers queue rather than conflict); catch
//! the directory up with the log if it is known to lag; load the ticket (from a cache,
//! caught up from its cached version on conflict; a ticket being opened is not read: the
//! append's expected version 0 checks that it is new); check its business time
//! (`closeloop_domain::business_time`); decide (pure); append with
//! the stream's expected version, the command id, and the condition that the directory has
//! not changed since the position it was decided on ([`Unchanged`]). On a version conflict
//! with no caller-given `expected_version`, decide again against the fresh stream, at most
//! `conflict_retries_max` times. Nothing is appended for a rejected command. A retried `command_id` gets its first reply: the append
//! detects it atomically, and a refusal is checked against the log's record of the id.
//! A refusal is decided once more against the directory and the ticket read afresh from
//! the log before it is returned: nothing guards a refusal the way the expected version
//! and the `Unchanged` condition guard an append, and the caches may be behind the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use closeloop_core::domain::{
    self, parse_command, Actor, CommandEnvelope, Context, Directory, Event, Rejection,
    RejectionCode, Rules, Ticket, DIRECTORY_CATEGORIES,
};
use closeloop_core::log::{
    shred, AppendOutcome, AppendRequest, Committed, DataKey, EventLog, ExpectedVersion, Filter,
    Metadata, NewEvent, Position, Subscription, Unchanged, READ_BATCH_MAX,
};
use dashmap::DashMap;
use jiff::Timestamp;
use tokio::sync::{Mutex, RwLock};

use crate::idempotency;
use crate::metrics;
use crate::reply::Reply;
use crate::stripes::Stripes;

/// Where "now" comes from: the wall clock in production, a fixed or simulated one in tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Tunables, each with a unit or a bound in its name.
#[derive(Clone)]
pub struct HandlerConfig {
    /// Decisions retried after a version conflict before giving up with `conflict`.
    pub conflict_retries_max: u32,
    /// Tickets whose state is kept in memory; beyond this the cache is cleared (it refills
    /// from the log on demand).
    pub ticket_cache_entries_max: usize,
    pub rules: Rules,
    pub clock: Clock,
}

impl Default for HandlerConfig {
    fn default() -> HandlerConfig {
        HandlerConfig {
            conflict_retries_max: 8,
            ticket_cache_entries_max: 200_000,
            rules: Rules::default(),
            clock: Arc::new(Timestamp::now),
        }
    }
}

impl HandlerConfig {
    /// The defaults, but any past business time is accepted from anyone (still monotonic per
    /// stream and not in the future): for importing a history written elsewhere (`closeloop
    /// submit`) and for tests that tell a dated story.
    pub fn trusting() -> HandlerConfig {
        let mut config = HandlerConfig::default();
        config.rules.time = closeloop_core::domain::TimeRules::trusting();
        config
    }
}

/// The directory and the log position it reflects.
#[derive(Default)]
struct DirectoryView {
    directory: Arc<Directory>,
    position: Position,
    /// Business time of each directory stream's last event (the time rule's lower bound).
    last_at: Arc<HashMap<String, Timestamp>>,
}

/// A cached ticket and the business time of its stream's last event.
#[derive(Clone)]
struct CachedTicket {
    ticket: Ticket,
    last_at: Timestamp,
    /// Who opened it (its first event's actor).
    opened_by: Actor,
}

/// Handles commands against one event log. Cheap to share (`Arc<Handler>`); safe to call
/// from many tasks at once.
pub struct Handler {
    log: Arc<dyn EventLog>,
    config: HandlerConfig,
    directory: RwLock<DirectoryView>,
    /// Serialises directory catch-ups so concurrent commands read the log once.
    catch_up: Mutex<()>,
    /// Catch-ups begun, and the number of the last one finished (see `catch_up_directory`).
    catch_ups_begun: AtomicU64,
    catch_up_finished: AtomicU64,
    /// Set when the directory is known to lag the log (at start, after this handler appended
    /// to it, after an append was refused because it moved): the next command catches up
    /// first. Otherwise commands do not read the log for it: each append carries an
    /// [`Unchanged`] condition on the directory's categories, so one decided against a
    /// directory that another process has since changed is refused, and decided again.
    directory_stale: AtomicBool,
    tickets: DashMap<String, CachedTicket>,
    /// Lock stripes serializing the commands of one ticket within this handler: concurrent
    /// writers of a hot ticket queue instead of conflicting and deciding again.
    ticket_turns: Stripes,
    /// Customers' data keys already fetched from the log's key store, so sealing costs no
    /// round trip per event. An entry is dropped when this handler erases the customer, and
    /// when a directory catch-up meets a `customer_data_erased` another process appended
    /// (an append after an erasure elsewhere is refused by its `Unchanged` condition on the
    /// customer category, and decided again after that catch-up).
    data_keys: DashMap<String, DataKey>,
}

/// Stripes of [`Handler::ticket_turns`]; a stream always maps to the same one.
const TICKET_TURN_STRIPES: usize = 1024;

impl Handler {
    pub fn new(log: Arc<dyn EventLog>, config: HandlerConfig) -> Handler {
        Handler {
            log,
            config,
            directory: RwLock::new(DirectoryView::default()),
            catch_up: Mutex::new(()),
            catch_ups_begun: AtomicU64::new(0),
            catch_up_finished: AtomicU64::new(0),
            directory_stale: AtomicBool::new(true),
            tickets: DashMap::new(),
            ticket_turns: Stripes::new(TICKET_TURN_STRIPES),
            data_keys: DashMap::new(),
        }
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// "Now" by the handler's clock: the receipt time of a command handled now.
    pub fn now(&self) -> Timestamp {
        (self.config.clock)()
    }

    /// Handles one command given as bytes (JSON).
    pub async fn handle_bytes(&self, bytes: &[u8]) -> Reply {
        match parse_command(bytes) {
            Ok(envelope) => self.handle(envelope).await,
            Err(failure) => {
                let reply = Reply::rejected(failure.command_id, failure.rejection);
                metrics::answered("unknown", &reply);
                reply
            }
        }
    }

    /// Handles one parsed command, received now (the handler's clock).
    pub async fn handle(&self, envelope: CommandEnvelope) -> Reply {
        self.handle_at(envelope, self.now()).await
    }

    /// Handles one parsed command received at `received`: the bound its business time is
    /// checked against (`closeloop_domain::business_time`). Durable intake passes the time
    /// the broker stored the command, so a backlog does not turn a timely command into a
    /// backdated one; the demo passes its simulated time.
    pub async fn handle_at(&self, envelope: CommandEnvelope, received: Timestamp) -> Reply {
        self.handle_until(envelope, received, None).await
    }

    /// Like [`Handler::handle_at`], giving up at `deadline`: a command whose deadline passes
    /// before its append is answered `unavailable` and is not appended later (a backend
    /// drops a queued append whose caller stopped waiting). Over request/reply the caller
    /// has stopped waiting by then, so appending it late would act on a command whose
    /// sender was already told it timed out.
    pub async fn handle_until(
        &self,
        envelope: CommandEnvelope,
        received: Timestamp,
        deadline: Option<tokio::time::Instant>,
    ) -> Reply {
        let command_type = envelope.command.command_type();
        let started = std::time::Instant::now();
        let reply = self.decide_and_append(envelope, received, deadline).await;
        metrics::handled_in(command_type, started.elapsed());
        metrics::answered(command_type, &reply);
        reply
    }

    /// [`Handler::handle_until`] without its measurements.
    async fn decide_and_append(
        &self,
        envelope: CommandEnvelope,
        received: Timestamp,
        deadline: Option<tokio::time::Instant>,
    ) -> Reply {
        let id = envelope.command_id;
        let turn = async {
            // One command of a ticket at a time in this process (across processes the
            // expected version still decides).
            let _turn = match envelope.command.ticket_id() {
                Some(_) => Some(
                    self.ticket_turns
                        .of(&envelope.command.stream())
                        .lock()
                        .await,
                ),
                None => None,
            };
            self.try_handle(&envelope, received).await
        };
        let reply = match within(deadline, turn).await {
            Some(Ok(reply)) => reply,
            Some(Err(e)) => Reply::rejected(Some(id), store_failure(&e)),
            None => return deadline_passed(id),
        };
        if !matches!(reply, Reply::Rejected { .. }) {
            return reply;
        }
        // A retry of a command that already took effect may now be refused by the state it
        // created (closing twice): the log's record of the id wins, so the caller gets the
        // first reply. Checked only on this path, so accepted commands cost no extra read;
        // an accepted retry is caught atomically by the append itself.
        let key = idempotency::log_key(&envelope);
        match within(deadline, self.log.find_command(key)).await {
            Some(Ok(Some(first))) => self.duplicate(&envelope, first).await,
            _ => reply,
        }
    }

    /// The answer to a command whose key the log already holds: the first append's reply
    /// if it was this command, `conflict` at `/command_id` if the id was used for other
    /// content (see [`idempotency`]).
    async fn duplicate(&self, envelope: &CommandEnvelope, first: Committed) -> Reply {
        let id = envelope.command_id;
        let recorded = match self
            .log
            .read_all(first.position.saturating_sub(1), 1, Filter::All)
            .await
        {
            Ok(events) => events
                .into_iter()
                .next()
                .and_then(|e| e.metadata.command_hash),
            Err(e) => return Reply::rejected(Some(id), store_failure(&e)),
        };
        match recorded {
            // Appended before hashes were recorded (nothing to compare), or this command.
            None => self.completed(envelope, first).await,
            Some(hash) if hash == idempotency::content_hash(envelope) => {
                self.completed(envelope, first).await
            }
            Some(_) => Reply::rejected(
                Some(id),
                Rejection::at(
                    RejectionCode::Conflict,
                    "/command_id",
                    format!(
                        "command_id {id} was already used for another command (appended at position {}): use a new id for a new command",
                        first.position
                    ),
                ),
            ),
        }
    }

    /// The `duplicate` reply to a command already appended, once its counterparts are
    /// there too.
    async fn completed(&self, envelope: &CommandEnvelope, first: Committed) -> Reply {
        // An erasure whose key destruction a crash cut short is completed by its retry.
        if let domain::Command::EraseCustomerData(c) = &envelope.command {
            if let Err(e) = self.destroy_key(&c.customer_id).await {
                return Reply::rejected(Some(envelope.command_id), store_failure(&e));
            }
        }
        match self.complete_counterparts(envelope, &first).await {
            Ok(()) => Reply::duplicate(envelope.command_id, first),
            Err(e) => Reply::rejected(Some(envelope.command_id), store_failure(&e)),
        }
    }

    /// Counterparts: a link or a merge records an event on a second ticket as well
    /// ([`Event::counterpart`]). The log appends to one stream at a time, so that event is a
    /// second append, made as soon as the first commits, with no expected version (it
    /// records a decision already taken, whatever the other ticket did since) and under a
    /// command id derived from the first's key (UUID v5 of the key and the event's index), so
    /// it is appended once however often it is attempted. Its business time is the
    /// command's, or the other ticket's last event's when that is later (the time rule:
    /// monotonic per stream). A crash between the two appends leaves the first alone; the
    /// command's retry (same `command_id`, answered `duplicate`) appends the counterpart then
    /// ([`Handler::complete_counterparts`]).
    async fn append_counterparts(
        &self,
        envelope: &CommandEnvelope,
        key: uuid::Uuid,
        events: &[Event],
        occurred_at: Timestamp,
    ) -> Result<(), closeloop_core::Error> {
        for (i, event) in events.iter().enumerate() {
            let Some(counterpart) = event.counterpart() else {
                continue;
            };
            let Some(ticket_id) = counterpart.ticket_id() else {
                continue;
            };
            let stream = format!("ticket-{ticket_id}");
            let other = self.ticket(&stream, true, false).await?;
            let last_at = other.as_ref().map(|t| t.last_at);
            let at = last_at.map_or(occurred_at, |last| last.max(occurred_at));
            let command_id = uuid::Uuid::new_v5(&key, format!("counterpart/{i}").as_bytes());
            let mut new = new_event(&counterpart, envelope, at, "");
            // Under the other ticket's customer's key: a ticket's events use its customer's.
            let customer = other.as_ref().map(|t| t.ticket.customer_id.as_str());
            self.seal(
                std::slice::from_mut(&mut new),
                std::slice::from_ref(&counterpart),
                customer,
                None,
            )
            .await?;
            new.metadata.command_id = command_id;
            new.metadata.command_hash = None;
            self.log
                .append(AppendRequest {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Any,
                    command_id,
                    events: vec![new],
                    unchanged: None,
                })
                .await?;
            // The cached state lacks the counterpart: read it afresh when next needed.
            self.tickets.remove(&stream);
        }
        Ok(())
    }

    /// The counterparts of a command already appended (`first`), appended if a crash left
    /// them out (a duplicate of each when they are there).
    async fn complete_counterparts(
        &self,
        envelope: &CommandEnvelope,
        first: &Committed,
    ) -> Result<(), closeloop_core::Error> {
        if envelope.command.other_ticket_id().is_none() {
            return Ok(());
        }
        let count = first.events.len();
        let after = first.position.saturating_sub(count as u64);
        let mut stored = self.log.read_all(after, count, Filter::All).await?;
        // The counterpart copies the stored event's texts: open them (they are sealed again
        // under the other ticket's customer's key, bound to the counterpart's own id).
        shred::unseal(self.log.keys().as_ref(), &mut stored).await?;
        let mut events = Vec::with_capacity(stored.len());
        let mut occurred_at = None;
        for e in stored.iter().filter(|e| e.stream == first.stream) {
            events.push(e.decode()?);
            occurred_at = Some(e.metadata.occurred_at);
        }
        match occurred_at {
            Some(at) => {
                self.append_counterparts(envelope, idempotency::log_key(envelope), &events, at)
                    .await
            }
            None => Ok(()),
        }
    }

    /// The directory as of the last catch-up, after catching up now.
    pub async fn directory(&self) -> Result<Arc<Directory>, closeloop_core::Error> {
        self.catch_up_directory().await?;
        Ok(self.directory.read().await.directory.clone())
    }

    async fn try_handle(
        &self,
        envelope: &CommandEnvelope,
        received: Timestamp,
    ) -> Result<Reply, closeloop_core::Error> {
        let id = envelope.command_id;
        let stream = envelope.command.stream();
        let is_ticket = envelope.command.ticket_id().is_some();
        let opens = matches!(envelope.command, domain::Command::OpenTicket(_));
        let key = idempotency::log_key(envelope);
        let hash = idempotency::content_hash(envelope);
        let mut fresh = false;
        let mut refusal_rechecked = false;
        // One attempt more than the retries on conflict, for the recheck of a refusal.
        for _ in 0..=self.config.conflict_retries_max + 1 {
            if self.directory_stale.load(Ordering::Acquire) {
                self.catch_up_directory().await?;
            }
            let (directory, directory_position, directory_last_at) = {
                let view = self.directory.read().await;
                (view.directory.clone(), view.position, view.last_at.clone())
            };
            let (state, last_at, opened_by) = if is_ticket {
                match self.ticket(&stream, fresh, opens && !fresh).await? {
                    Some(c) => (Some(c.ticket), Some(c.last_at), Some(c.opened_by)),
                    None => (None, None, None),
                }
            } else {
                (None, directory_last_at.get(&stream).copied(), None)
            };
            // The second ticket a link or a merge names, read as the ticket is (cached, or
            // afresh once a conflict or a refusal asked for it).
            let other = match envelope.command.other_ticket_id() {
                Some(other_id) if is_ticket && format!("ticket-{other_id}") != stream => {
                    self.ticket(&format!("ticket-{other_id}"), fresh, false)
                        .await?
                }
                _ => None,
            };
            let current = match &state {
                Some(t) => t.version,
                None if is_ticket => 0,
                None => directory.versions.get(&stream).copied().unwrap_or(0),
            };
            if let Some(expected) = envelope.expected_version {
                if expected != current && !fresh {
                    // Our cache may be behind the caller: look again before refusing.
                    fresh = true;
                    continue;
                }
                if expected != current {
                    return Ok(Reply::rejected(
                        Some(id),
                        Rejection::at(
                            RejectionCode::Conflict,
                            "/expected_version",
                            format!("stream {stream} is at version {current}, not {expected}"),
                        ),
                    ));
                }
            }
            // Checked against the same stream version the append expects: a stale cache only
            // knows an earlier last event, and its append then fails and is decided again.
            let decided = domain::business_time(
                envelope.occurred_at,
                envelope.actor.role,
                received,
                last_at,
                &self.config.rules.time,
            )
            .and_then(|at| {
                let ctx = Context {
                    actor: &envelope.actor,
                    directory: &directory,
                    rules: &self.config.rules,
                    opened_by: opened_by.as_ref(),
                    at: Some(at),
                    other: other.as_ref().map(|o| &o.ticket),
                };
                Ok((domain::decide(&state, &envelope.command, &ctx)?, at))
            });
            let (events, occurred_at) = match decided {
                Ok(decided) => decided,
                // A refusal appends nothing, so no `Unchanged` condition or expected version
                // guards it: the directory or the cached ticket it was decided against may be
                // behind the log (changed by another process, or by a directory append here
                // whose catch-up another task is still reading). Before refusing, decide once
                // more against both read afresh from the log.
                Err(_) if !refusal_rechecked => {
                    refusal_rechecked = true;
                    fresh = is_ticket;
                    self.directory_stale.store(true, Ordering::Release);
                    continue;
                }
                Err(rejection) => return Ok(Reply::rejected(Some(id), rejection)),
            };
            let mut sealed: Vec<NewEvent> = events
                .iter()
                .map(|e| new_event(e, envelope, occurred_at, &hash))
                .collect();
            let customer = state.as_ref().map(|t| t.customer_id.as_str());
            let mut new_keys = Vec::new();
            self.seal(&mut sealed, &events, customer, Some(&mut new_keys))
                .await?;
            let request = AppendRequest {
                stream: stream.clone(),
                expected: ExpectedVersion::Exact(current),
                command_id: key,
                events: sealed,
                unchanged: Some(Unchanged {
                    categories: DIRECTORY_CATEGORIES,
                    after: directory_position,
                }),
            };
            let outcome = self.log.append_with_keys(request, new_keys.clone()).await;
            if outcome.is_ok() {
                // Stored with the append (or found stored by its duplicate).
                for (customer_id, key) in new_keys {
                    self.remember_key(customer_id, key);
                }
            }
            match outcome {
                Ok(AppendOutcome::Committed(committed)) => {
                    if let domain::Command::EraseCustomerData(c) = &envelope.command {
                        self.destroy_key(&c.customer_id).await?;
                    }
                    self.append_counterparts(envelope, key, &events, occurred_at)
                        .await?;
                    if is_ticket {
                        if let Some(ticket) = events.iter().fold(state, domain::evolve) {
                            self.remember(
                                &stream,
                                CachedTicket {
                                    ticket,
                                    last_at: occurred_at,
                                    // None when this command opened the ticket.
                                    opened_by: opened_by.unwrap_or_else(|| envelope.actor.clone()),
                                },
                            );
                        }
                    } else {
                        self.directory_stale.store(true, Ordering::Release);
                    }
                    return Ok(Reply::accepted(id, committed));
                }
                Err(closeloop_core::Error::Changed { .. }) => {
                    self.directory_stale.store(true, Ordering::Release);
                }
                // Another command stored a key for a customer new to this one: the next
                // attempt finds it and seals under it.
                Err(closeloop_core::Error::KeyTaken { .. }) => {}
                Ok(AppendOutcome::Duplicate(first)) => {
                    return Ok(self.duplicate(envelope, first).await)
                }
                Err(closeloop_core::Error::WrongExpectedVersion { actual, .. }) => {
                    if envelope.expected_version.is_some() {
                        return Ok(Reply::rejected(
                            Some(id),
                            Rejection::at(
                                RejectionCode::Conflict,
                                "/expected_version",
                                format!("stream {stream} moved to version {actual} while deciding"),
                            ),
                        ));
                    }
                    // The cached state is right up to its version: catch up from there (on
                    // a long ticket, re-reading the whole stream would cost more than the
                    // command).
                    if !is_ticket {
                        self.directory_stale.store(true, Ordering::Release);
                    }
                    fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Reply::rejected(
            Some(id),
            Rejection::new(
                RejectionCode::Conflict,
                format!(
                    "stream {stream} kept changing: gave up after {} attempts; retry with the same command_id",
                    self.config.conflict_retries_max + 2
                ),
            ),
        ))
    }

    /// The ticket's state: from the cache, or (when `fresh` or missing) brought up to date
    /// from the log. With `assume_new`, a ticket not in the cache is taken to be new without
    /// reading: for `open_ticket`, whose append then expects version 0, so an existing one
    /// is found by the append and read on the retry.
    async fn ticket(
        &self,
        stream: &str,
        fresh: bool,
        assume_new: bool,
    ) -> Result<Option<CachedTicket>, closeloop_core::Error> {
        let cached = self.tickets.get(stream).map(|t| t.clone());
        if !fresh {
            if cached.is_some() {
                return Ok(cached);
            }
            if assume_new {
                return Ok(None);
            }
        }
        let after = cached.as_ref().map_or(0, |t| t.ticket.version);
        let mut last_at = cached.as_ref().map(|t| t.last_at);
        let mut opened_by = cached.as_ref().map(|t| t.opened_by.clone());
        let mut state = cached.map(|t| t.ticket);
        for stored in self.log.read_stream(stream, after).await? {
            state = domain::evolve(state, &stored.decode()?);
            last_at = Some(stored.metadata.occurred_at);
            opened_by.get_or_insert_with(|| stored.metadata.actor.clone());
        }
        let cached = match (state, last_at, opened_by) {
            (Some(ticket), Some(last_at), Some(opened_by)) => Some(CachedTicket {
                ticket,
                last_at,
                opened_by,
            }),
            _ => None,
        };
        if let Some(c) = &cached {
            self.remember(stream, c.clone());
        }
        Ok(cached)
    }

    /// Encrypts the customer fields of `events` (decided as `decided`, one for one) under
    /// their customer's data key, at the log boundary: the domain decides in the clear, the
    /// log stores ciphertext (`closeloop_core::log::shred`). Whose key: the customer a
    /// `customer_registered` or `ticket_opened` names; for the other ticket events
    /// `ticket_customer`, the customer of the ticket they are appended to; for an
    /// `inspection_recorded` (whose note is about a ticket of a sample), the inspected
    /// ticket's customer.
    ///
    /// With `new_keys`, a customer with no stored key gets a fresh one, added there for the
    /// append to store ([`EventLog::append_with_keys`]); without, it is stored first.
    async fn seal(
        &self,
        events: &mut [NewEvent],
        decided: &[Event],
        ticket_customer: Option<&str>,
        mut new_keys: Option<&mut Vec<(String, DataKey)>>,
    ) -> Result<(), closeloop_core::Error> {
        for (new, event) in events.iter_mut().zip(decided) {
            if closeloop_core::domain::customer_fields(&new.event_type).is_empty() {
                continue;
            }
            let inspected;
            let customer = match event {
                Event::CustomerRegistered(e) => Some(e.customer_id.as_str()),
                Event::TicketOpened(e) => Some(e.customer_id.as_str()),
                Event::InspectionRecorded(e) => {
                    inspected = self
                        .ticket(&format!("ticket-{}", e.ticket_id), false, false)
                        .await?
                        .map(|t| t.ticket.customer_id);
                    inspected.as_deref()
                }
                _ => ticket_customer,
            };
            let Some(customer) = customer else {
                return Err(closeloop_core::Error::InvalidAppend(format!(
                    "{} holds customer data but names no customer to encrypt it for",
                    new.event_type
                )));
            };
            let key = self.data_key(customer, new_keys.as_deref_mut()).await?;
            shred::seal_data(&new.event_type, new.event_id, customer, &key, &mut new.data);
        }
        Ok(())
    }

    /// The customer's data key: cached, or fetched from the key store; when it has none, a
    /// fresh one, added to `new_keys` for the append to store, or (without `new_keys`)
    /// stored now.
    async fn data_key(
        &self,
        customer_id: &str,
        new_keys: Option<&mut Vec<(String, DataKey)>>,
    ) -> Result<DataKey, closeloop_core::Error> {
        if let Some(key) = self.data_keys.get(customer_id) {
            return Ok(key.clone());
        }
        let key = match new_keys {
            None => self.log.keys().get_or_create(customer_id).await?,
            Some(new_keys) => {
                if let Some((_, key)) = new_keys.iter().find(|(c, _)| c == customer_id) {
                    return Ok(key.clone());
                }
                match self.log.keys().get(customer_id).await? {
                    Some(key) => key,
                    None => {
                        let key = DataKey::generate();
                        new_keys.push((customer_id.to_owned(), key.clone()));
                        return Ok(key);
                    }
                }
            }
        };
        self.remember_key(customer_id.to_owned(), key.clone());
        Ok(key)
    }

    /// Caches a customer's stored key.
    fn remember_key(&self, customer_id: String, key: DataKey) {
        if self.data_keys.len() >= self.config.ticket_cache_entries_max {
            self.data_keys.clear();
        }
        self.data_keys.insert(customer_id, key);
    }

    /// Crypto-shredding: destroys the customer's data key (after `customer_data_erased` is
    /// in the log, so the record of the erasure never goes missing; a crash in between is
    /// completed by the command's retry, answered `duplicate`).
    async fn destroy_key(&self, customer_id: &str) -> Result<(), closeloop_core::Error> {
        self.data_keys.remove(customer_id);
        self.log.keys().destroy(customer_id).await?;
        self.data_keys.remove(customer_id);
        Ok(())
    }

    fn remember(&self, stream: &str, cached: CachedTicket) {
        if self.tickets.len() >= self.config.ticket_cache_entries_max {
            self.tickets.clear();
        }
        self.tickets.insert(stream.to_owned(), cached);
    }

    /// Folds directory events appended since the last catch-up (by any process).
    ///
    /// Catch-ups are coalesced: a caller that finds a catch-up begun after it arrived and
    /// already finished uses that one instead of reading the log again, so a burst of
    /// concurrent commands costs one read, not one each.
    async fn catch_up_directory(&self) -> Result<(), closeloop_core::Error> {
        let arrived = self.catch_ups_begun.load(Ordering::Acquire);
        let _one_at_a_time = self.catch_up.lock().await;
        if self.catch_up_finished.load(Ordering::Acquire) > arrived {
            return Ok(());
        }
        let begun = self.catch_ups_begun.fetch_add(1, Ordering::AcqRel) + 1;
        // Cleared before reading: a directory append committed from now on sets it again.
        self.directory_stale.store(false, Ordering::Release);
        let read = self.read_directory().await;
        if read.is_err() {
            self.directory_stale.store(true, Ordering::Release);
        }
        self.catch_up_finished.store(begun, Ordering::Release);
        read
    }

    /// Reads the directory events appended since the directory's position and folds them.
    async fn read_directory(&self) -> Result<(), closeloop_core::Error> {
        // A short read moves the position to the head (the subscription's rule), so the next
        // catch-up starts there instead of scanning the same ticket events again.
        let mut subscription = Subscription::after(
            self.directory.read().await.position,
            Filter::Categories(DIRECTORY_CATEGORIES),
            READ_BATCH_MAX,
        );
        let mut directory: Option<(Directory, HashMap<String, Timestamp>)> = None;
        loop {
            let batch = subscription.next_batch(self.log.as_ref()).await?;
            if batch.events.is_empty() {
                break;
            }
            let (dir, last_at) = match &mut directory {
                Some(d) => d,
                None => {
                    let view = self.directory.read().await;
                    directory.insert(((*view.directory).clone(), (*view.last_at).clone()))
                }
            };
            for stored in &batch.events {
                let event = stored.decode()?;
                if let Event::CustomerDataErased(e) = &event {
                    self.data_keys.remove(&e.customer_id);
                }
                dir.apply(&stored.stream, stored.version, &event);
                last_at.insert(stored.stream.clone(), stored.metadata.occurred_at);
            }
            if !batch.full {
                break;
            }
        }
        let mut view = self.directory.write().await;
        if let Some((directory, last_at)) = directory {
            view.directory = Arc::new(directory);
            view.last_at = Arc::new(last_at);
        }
        view.position = view.position.max(subscription.position());
        Ok(())
    }
}

/// `work`'s output, or `None` if `deadline` passed first (the work is dropped).
async fn within<T>(
    deadline: Option<tokio::time::Instant>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, work).await.ok(),
        None => Some(work.await),
    }
}

/// The answer to a command whose deadline passed before it was done.
fn deadline_passed(id: uuid::Uuid) -> Reply {
    Reply::rejected(
        Some(id),
        Rejection::new(
            RejectionCode::Unavailable,
            "the command's deadline passed before its append was confirmed; nothing more \
             is done with it: retry with the same command_id (answered `duplicate` if it \
             was appended)",
        ),
    )
}

/// A failure of the store as a rejection: `unavailable` (retry) when the backend knows it to
/// be transient, `internal` (a retry repeats it) otherwise.
pub fn store_failure(e: &closeloop_core::Error) -> Rejection {
    let code = if e.is_transient() {
        RejectionCode::Unavailable
    } else {
        RejectionCode::Internal
    };
    Rejection::new(code, e.to_string())
}

fn new_event(
    event: &Event,
    envelope: &CommandEnvelope,
    occurred_at: Timestamp,
    command_hash: &str,
) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        data: event.data(),
        metadata: Metadata {
            command_id: envelope.command_id,
            correlation_id: envelope.command_id,
            causation_id: envelope.command_id,
            actor: envelope.actor.clone(),
            occurred_at,
            recorded_at: occurred_at,
            command_hash: Some(command_hash.to_owned()),
        },
    }
}
