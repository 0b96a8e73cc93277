//! The NATS front door (`closeloop serve`) over a real nats-server with JetStream.
//!
//! Needs nats-server at `CLOSELOOP_TEST_NATS` (default `nats://127.0.0.1:4222`) with
//! JetStream; a test that cannot connect fails and says how to start it. Every test has its
//! own subject prefix, streams, consumer and lease bucket (`ServeConfig::isolated`), deleted
//! when it ends, so tests run in parallel on one server. Nothing waits on a sleep: tests wait
//! for observable conditions (a reply, a consumer, a stream's message count) with deadlines.
//!
//! Callers authenticate (`Authorization: Bearer <jwt>`): the tests' own Ed25519 key
//! ([`test_auth`]) signs a token for the actor of every command and query they send, and
//! `system`, never accepted over NATS, is provisioned in process ([`provision`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use base64::Engine as _;
use closeloop_commands::nats::{self, Auth, Lease, LeaseConfig, Queries, ServeConfig, Verifier};
use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::{EventLog, Filter, StoredEvent};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use uuid::Uuid;

/// The binary's `serve` wiring (read side, report queries), compiled into the tests so
/// several instances can run in this process on one log.
#[allow(dead_code)]
#[path = "../src/serve.rs"]
pub(crate) mod serve;

const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";
/// Longest wait for any one observable condition.
const DEADLINE: Duration = Duration::from_secs(30);

pub fn nats_url() -> String {
    std::env::var("CLOSELOOP_TEST_NATS").unwrap_or_else(|_| DEFAULT_NATS.to_owned())
}

fn unreachable(error: impl std::fmt::Display) -> ! {
    panic!(
        "cannot reach nats-server with JetStream at {} ({error}). Start it with \
         `scripts/test.sh`, or `start-stop-daemon --start --oknodo --background --exec \
         /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l \
         /var/log/nats-server.log`; set CLOSELOOP_TEST_NATS to use another server.",
        nats_url()
    )
}

pub async fn connect() -> async_nats::Client {
    let connecting = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats_url());
    match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => unreachable(e),
        Err(_) => unreachable("no connection within 5 s"),
    }
}

// ---- authentication ---------------------------------------------------------------------

/// An Ed25519 key pair of a calling service: `kid`, the signing key, the public key's PEM.
pub struct TestKey {
    pub kid: String,
    signing: jsonwebtoken::EncodingKey,
    pub pem: String,
    /// The private key, PKCS#8 in PEM, for a signer outside this process.
    pub private_pem: String,
}

impl TestKey {
    pub fn generate(kid: &str) -> TestKey {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        // SubjectPublicKeyInfo of an Ed25519 key: a fixed prefix, then the 32 key bytes.
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
        // PKCS#8 v1 (OpenSSL's and most libraries' form): a fixed prefix, then the 32-byte
        // seed, which ring's v2 document holds at bytes 16..48.
        let mut v1 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        v1.extend_from_slice(&pkcs8.as_ref()[16..48]);
        let private = base64::engine::general_purpose::STANDARD.encode(v1);
        // PEM lines are at most 64 characters.
        let private = private
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        TestKey {
            kid: kid.to_owned(),
            signing: jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
            pem: format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"),
            private_pem: format!(
                "-----BEGIN PRIVATE KEY-----\n{private}\n-----END PRIVATE KEY-----\n"
            ),
        }
    }

    /// This key's entry in a keys file.
    pub fn entry(&self, roles: &[&str]) -> Value {
        json!({"kid": self.kid, "alg": "EdDSA", "pem": self.pem, "roles": roles})
    }

    /// A token for `actor` (`{"id", "role"}`) expiring at `exp` (Unix seconds).
    pub fn token_until(&self, actor: &Value, exp: i64) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let claims = json!({"sub": actor["id"], "role": actor["role"], "exp": exp});
        jsonwebtoken::encode(&header, &claims, &self.signing).expect("a token")
    }

    /// A token for `actor` valid for five minutes.
    pub fn token(&self, actor: &Value) -> String {
        self.token_until(actor, jiff::Timestamp::now().as_second() + 300)
    }
}

/// The keys file of `entries`.
pub fn keys_file(entries: &[Value]) -> String {
    json!({ "keys": entries }).to_string()
}

/// The tests' key (kid `tests`, every role but `system`), its keys file and [`Auth`].
pub struct TestAuth {
    pub key: TestKey,
    pub path: PathBuf,
    pub auth: Auth,
}

/// One key for the whole test process.
pub fn test_auth() -> &'static TestAuth {
    static AUTH: OnceLock<TestAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let key = TestKey::generate("tests");
        let text = keys_file(&[key.entry(&["agent", "supervisor", "auditor", "service"])]);
        let path =
            std::env::temp_dir().join(format!("closeloop-test-keys-{}.json", std::process::id()));
        std::fs::write(&path, &text).expect("writing the test keys file");
        let auth = Auth::Tokens(Arc::new(Verifier::from_json(&text).expect("test keys")));
        TestAuth { key, path, auth }
    })
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {token}").as_str());
    headers
}

/// Headers authenticating `actor` with the tests' key.
pub fn headers_for(actor: &Value) -> async_nats::HeaderMap {
    bearer(&test_auth().key.token(actor))
}

/// The actor a body claims, or `crm` (service) when it names none.
fn body_actor(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("actor").filter(|a| a.is_object()).cloned())
        .unwrap_or_else(|| json!({"id": "crm", "role": "service"}))
}

/// Appends the engine's own `system` commands (agents, calendars, policies) in process, as
/// `closeloop submit` does: `system` is never accepted over NATS.
pub async fn provision(log: &Arc<dyn EventLog>, commands: &[Value]) {
    let handler = Handler::new(log.clone(), HandlerConfig::trusting());
    for command in commands {
        let envelope = closeloop_core::domain::parse_command(&serde_json::to_vec(command).unwrap())
            .unwrap_or_else(|f| panic!("a command: {:?}", f.rejection));
        let reply = handler.handle(envelope).await;
        assert!(
            matches!(reply, Reply::Accepted { .. }),
            "provisioning: {}",
            reply.to_json()
        );
    }
}

/// [`provision`] into a store no `serve` has open yet.
pub async fn provision_store(store: &str, commands: &[Value]) {
    let log = closeloop_core::log::open(store)
        .await
        .expect("open the store");
    provision(&log, commands).await;
}

/// A test's own names on the shared server, deleted when the test ends (even by a panic).
pub struct Scope {
    pub config: ServeConfig,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Scope {
    pub async fn new() -> Scope {
        let client = connect().await;
        let js = jetstream::new(client.clone());
        let info = client
            .request("$JS.API.INFO", "".into())
            .await
            .unwrap_or_else(|e| unreachable(format!("JetStream is not enabled: {e}")));
        if String::from_utf8_lossy(&info.payload).contains("\"error\"") {
            unreachable("JetStream is not enabled (start nats-server with -js)");
        }
        let mut config = ServeConfig::isolated(&Uuid::new_v4().simple().to_string()[..12]);
        config.auth = test_auth().auth.clone();
        config.ack_wait = Duration::from_secs(2);
        config.lease.ttl = Duration::from_secs(2);
        Scope { config, client, js }
    }

    /// `closeloop serve` flags naming this scope.
    pub fn serve_args(&self) -> Vec<String> {
        let c = &self.config;
        [
            ("--subject-prefix", c.subject_prefix.clone()),
            ("--commands-stream", c.commands_stream.clone()),
            ("--events-stream", c.events_stream.clone()),
            ("--dead-letter-stream", c.dead_letter_stream.clone()),
            ("--lease-bucket", c.lease.bucket.clone()),
            ("--lease-ttl-ms", c.lease.ttl.as_millis().to_string()),
            ("--ack-wait-ms", c.ack_wait.as_millis().to_string()),
            ("--auth-keys", test_auth().path.display().to_string()),
            // The tests tell dated stories: any past business time is accepted.
            ("--backdate-staff-max-s", u32::MAX.to_string()),
            ("--backdate-service-max-s", u32::MAX.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }

    /// Sends a command by request/reply, with a token for the actor its body names (`crm`
    /// when it names none), and decodes the reply.
    pub async fn request(&self, command_type: &str, body: Vec<u8>) -> Reply {
        let headers = headers_for(&body_actor(&body));
        self.request_with(command_type, body, Some(headers)).await
    }

    /// Sends a command by request/reply with `headers` (none: no credential).
    pub async fn request_with(
        &self,
        command_type: &str,
        body: Vec<u8>,
        headers: Option<async_nats::HeaderMap>,
    ) -> Reply {
        let subject = self.config.command_subject(command_type);
        let asked = async {
            match headers {
                Some(headers) => {
                    self.client
                        .request_with_headers(subject, headers, body.into())
                        .await
                }
                None => self.client.request(subject, body.into()).await,
            }
        };
        let reply = tokio::time::timeout(DEADLINE, asked)
            .await
            .expect("a reply in time")
            .expect("a reply");
        serde_json::from_slice(&reply.payload).unwrap_or_else(|e| {
            panic!(
                "reply is not a Reply ({e}): {}",
                String::from_utf8_lossy(&reply.payload)
            )
        })
    }

    pub async fn command(&self, command: &Value) -> Reply {
        let command_type = command["type"].as_str().expect("type");
        self.request(command_type, serde_json::to_vec(command).unwrap())
            .await
    }

    /// Sends a query with a token for the actor its body names.
    pub async fn query(&self, name: &str, body: &Value) -> Value {
        let bytes = serde_json::to_vec(body).unwrap();
        let headers = headers_for(&body_actor(&bytes));
        self.query_with(name, body, Some(headers)).await
    }

    /// Sends a query with `headers` (none: no credential).
    pub async fn query_with(
        &self,
        name: &str,
        body: &Value,
        headers: Option<async_nats::HeaderMap>,
    ) -> Value {
        let subject = self.config.query_subject(name);
        let payload = serde_json::to_vec(body).unwrap().into();
        let asked = async {
            match headers {
                Some(headers) => {
                    self.client
                        .request_with_headers(subject, headers, payload)
                        .await
                }
                None => self.client.request(subject, payload).await,
            }
        };
        let reply = tokio::time::timeout(DEADLINE, asked)
            .await
            .expect("a query reply in time")
            .expect("a query reply");
        serde_json::from_slice(&reply.payload).expect("query reply is JSON")
    }

    /// Publishes a command to durable intake, with a token for its actor; returns once
    /// JetStream has stored it.
    pub async fn publish_durable(&self, command: &Value) -> jetstream::publish::PublishAck {
        let headers = headers_for(&command["actor"]);
        self.publish_durable_with(command, headers).await
    }

    /// Publishes a command to durable intake with `headers` (and `Nats-Msg-Id`).
    pub async fn publish_durable_with(
        &self,
        command: &Value,
        mut headers: async_nats::HeaderMap,
    ) -> jetstream::publish::PublishAck {
        headers.insert(
            "Nats-Msg-Id",
            command["command_id"].as_str().expect("command_id"),
        );
        self.js
            .publish_with_headers(
                self.config
                    .durable_subject(command["type"].as_str().expect("type")),
                headers,
                serde_json::to_vec(command).unwrap().into(),
            )
            .await
            .expect("publish to durable intake")
            .await
            .expect("JetStream stored the command")
    }

    /// Waits until request/reply answers: a serve is subscribed.
    pub async fn wait_serving(&self) {
        let started = Instant::now();
        loop {
            let probe = self
                .client
                .request(self.config.command_subject("open_ticket"), "{}".into());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), probe).await {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "serve did not start answering"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval, not a sync
        }
    }

    /// Waits until the events stream holds `count` messages.
    pub async fn wait_events(&self, count: u64) -> Vec<StoredEvent> {
        let started = Instant::now();
        loop {
            if let Ok(mut stream) = self.js.get_stream(&self.config.events_stream).await {
                let messages = stream.info().await.expect("stream info").state.messages;
                assert!(
                    messages <= count,
                    "{messages} events published, expected {count}"
                );
                if messages == count {
                    return self.read_events(count).await;
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "events stream did not reach {count} messages"
            );
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    }

    /// Every message of the events stream, decoded, checking its headers and subject.
    async fn read_events(&self, count: u64) -> Vec<StoredEvent> {
        let stream = self
            .js
            .get_stream(&self.config.events_stream)
            .await
            .expect("events stream");
        let mut events = Vec::new();
        for sequence in 1..=count {
            let message = stream.get_raw_message(sequence).await.expect("message");
            let event: StoredEvent = serde_json::from_slice(&message.payload).expect("event");
            let id = message.headers.get("Nats-Msg-Id").expect("Nats-Msg-Id");
            assert_eq!(id.as_str(), event.event_id.to_string());
            assert_eq!(
                message.subject.as_str(),
                self.config
                    .event_subject(event.category(), &event.event_type)
            );
            events.push(event);
        }
        events
    }

    /// A subscription to every durable reply of this scope.
    pub async fn replies(&self) -> async_nats::Subscriber {
        let subscriber = self
            .client
            .subscribe(self.config.reply_subject("*"))
            .await
            .expect("subscribe to replies");
        self.client.flush().await.expect("flush");
        subscriber
    }

    async fn delete(js: &jetstream::Context, config: &ServeConfig) {
        let _ = js.delete_stream(&config.commands_stream).await;
        let _ = js.delete_stream(&config.dead_letter_stream).await;
        let _ = js.delete_stream(&config.events_stream).await;
        let _ = js.delete_key_value(&config.lease.bucket).await;
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let config = self.config.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    let client = connect().await;
                    Scope::delete(&jetstream::new(client), &config).await;
                });
        })
        .join();
    }
}

/// Collects durable replies until every id in `ids` has one; the replies by id.
pub async fn collect_replies(
    subscriber: &mut async_nats::Subscriber,
    ids: &HashSet<Uuid>,
    replies: &mut HashMap<Uuid, Reply>,
) {
    let started = Instant::now();
    while !ids.iter().all(|id| replies.contains_key(id)) {
        let left = DEADLINE.saturating_sub(started.elapsed());
        let message = tokio::time::timeout(left, subscriber.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {} durable replies arrived",
                    ids.iter().filter(|id| replies.contains_key(id)).count(),
                    ids.len()
                )
            })
            .expect("reply subscription open");
        let reply: Reply = serde_json::from_slice(&message.payload).expect("a Reply");
        let id = match &reply {
            Reply::Accepted { command_id, .. } | Reply::Duplicate { command_id, .. } => *command_id,
            Reply::Rejected { command_id, .. } => command_id.expect("replies name their id"),
        };
        // The first reply is the one that counts; a redelivery may add a `duplicate`.
        replies.entry(id).or_insert(reply);
    }
}

/// `serve` running in this process on `log`; stopped by [`InProcess::stop`].
pub struct InProcess {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<Result<(), nats::ServeError>>,
}

impl InProcess {
    pub async fn start(scope: &Scope, log: Arc<dyn EventLog>, queries: Queries) -> InProcess {
        let handler = Arc::new(Handler::new(log, HandlerConfig::trusting()));
        InProcess::start_with(scope, scope.config.clone(), handler, queries, Vec::new()).await
    }

    /// With its own configuration (instance id), handler and background jobs.
    pub async fn start_with(
        scope: &Scope,
        config: ServeConfig,
        handler: Arc<Handler>,
        queries: Queries,
        jobs: Vec<nats::Job>,
    ) -> InProcess {
        let serving = InProcess::spawn(config, handler, scope.client.clone(), queries, jobs);
        scope.wait_serving().await;
        serving
    }

    /// Starts serving on `client`, without waiting until it answers.
    pub fn spawn(
        config: ServeConfig,
        handler: Arc<Handler>,
        client: async_nats::Client,
        queries: Queries,
        jobs: Vec<nats::Job>,
    ) -> InProcess {
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(nats::run(
            config,
            handler,
            client,
            queries,
            jobs,
            async move {
                let _ = stopped.await;
            },
        ));
        InProcess { stop, done }
    }

    /// True once serve has returned (on its own, unless stopped).
    pub fn is_finished(&self) -> bool {
        self.done.is_finished()
    }

    /// What serve returned; waits for it.
    pub async fn outcome(self) -> Result<Result<(), nats::ServeError>, tokio::task::JoinError> {
        self.done.await
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.done)
            .await
            .expect("serve drains in time")
            .expect("serve task")
            .expect("serve ends cleanly");
    }
}

/// `closeloop serve` as a child process.
pub struct Binary {
    child: Child,
}

impl Binary {
    pub fn start(scope: &Scope, store: &str, extra: &[&str]) -> Binary {
        Binary::spawn(scope, store, extra, "warn", Stdio::inherit())
    }

    /// As [`Binary::start`], logging JSON at `info` to a pipe, and the address serve logs
    /// for `field` (`metrics_addr`, `http_addr`: an endpoint bound to port 0).
    pub fn start_logged(
        scope: &Scope,
        store: &str,
        extra: &[&str],
        field: &'static str,
    ) -> (Binary, std::net::SocketAddr) {
        let extra: Vec<&str> = extra
            .iter()
            .copied()
            .chain(["--log-format", "json"])
            .collect();
        let mut binary = Binary::spawn(scope, store, &extra, "info", Stdio::piped());
        let address = crate::scrape::logged_address(&mut binary.child, field, DEADLINE);
        (binary, address)
    }

    fn spawn(scope: &Scope, store: &str, extra: &[&str], log: &str, stderr: Stdio) -> Binary {
        let child = Process::new(env!("CARGO_BIN_EXE_closeloop"))
            .arg("--store")
            .arg(store)
            .arg("--nats")
            .arg(nats_url())
            .arg("serve")
            .args(scope.serve_args())
            .args(extra)
            .env("CLOSELOOP_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start closeloop serve");
        Binary { child }
    }

    fn signal(&self, signal: &str) {
        let status = Process::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "serve did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20)); // poll interval
        }
    }

    /// SIGKILL: no draining, no acks.
    pub fn kill(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- commands --------------------------------------------------------------------------

pub fn system() -> Value {
    json!({"id": "ops", "role": "system"})
}

pub fn envelope(command_type: &str, actor: Value, payload: Value) -> Value {
    json!({
        "command_id": Uuid::new_v4(),
        "type": command_type,
        "actor": actor,
        "occurred_at": "2026-11-23T09:00:00Z",
        "payload": payload,
    })
}

pub fn register_agent(agent_id: &str, team: &str) -> Value {
    envelope(
        "register_agent",
        system(),
        json!({"agent_id": agent_id, "name": agent_id, "team": team, "line": 1, "level": "senior"}),
    )
}

pub fn open_ticket(ticket_id: Uuid) -> Value {
    envelope(
        "open_ticket",
        json!({"id": "crm", "role": "service"}),
        json!({"ticket_id": ticket_id, "customer_id": "cust-1", "channel": "email",
               "category": "incident", "priority": "high", "subject": "Printer on fire"}),
    )
}

fn accepted(reply: &Reply) -> (&str, u64, &[String]) {
    match reply {
        Reply::Accepted {
            stream,
            version,
            events,
            ..
        } => (stream, *version, events),
        other => panic!("expected accepted, got {}", other.to_json()),
    }
}

fn rejected(reply: &Reply) -> (Value, Option<Uuid>) {
    match reply {
        Reply::Rejected { command_id, error } => {
            (serde_json::to_value(error).unwrap(), *command_id)
        }
        other => panic!("expected rejected, got {}", other.to_json()),
    }
}

// ---- tests -----------------------------------------------------------------------------

#[tokio::test]
async fn nats_full_ticket_life_over_request_reply() {
    let scope = Scope::new().await;
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    provision(&log, &[register_agent("agent-1", "blue")]).await;
    let serve = InProcess::start(&scope, log.clone(), Queries::new()).await;
    let agent = json!({"id": "agent-1", "role": "agent"});
    let ticket = Uuid::new_v4();
    let t = json!(ticket);

    let opened = scope.command(&open_ticket(ticket)).await;
    let (stream, version, events) = accepted(&opened);
    assert_eq!(stream, format!("ticket-{ticket}"));
    assert_eq!((version, events), (1, &["ticket_opened".to_owned()][..]));
    let steps = [
        (
            "assign_ticket",
            agent.clone(),
            json!({"ticket_id": t, "agent_id": "agent-1"}),
            "ticket_assigned",
        ),
        (
            "respond_to_customer",
            agent.clone(),
            json!({"ticket_id": t, "message": "Unplug it."}),
            "customer_responded_to",
        ),
        (
            "request_customer_info",
            agent.clone(),
            json!({"ticket_id": t, "question": "Model?"}),
            "customer_info_requested",
        ),
        (
            "record_customer_reply",
            json!({"id": "crm", "role": "service"}),
            json!({"ticket_id": t, "message": "LX-9"}),
            "customer_replied",
        ),
        (
            "add_note",
            agent.clone(),
            json!({"ticket_id": t, "text": "Known fault"}),
            "note_added",
        ),
        (
            "resolve_ticket",
            agent.clone(),
            json!({"ticket_id": t, "resolution": "Replaced fuser"}),
            "ticket_resolved",
        ),
        (
            "close_ticket",
            agent.clone(),
            json!({"ticket_id": t}),
            "ticket_closed",
        ),
        (
            "record_satisfaction",
            json!({"id": "crm", "role": "service"}),
            json!({"ticket_id": t, "score": 5, "source": "survey"}),
            "satisfaction_recorded",
        ),
    ];
    for (i, (command_type, actor, payload, event)) in steps.into_iter().enumerate() {
        let reply = scope.command(&envelope(command_type, actor, payload)).await;
        let (_, version, events) = accepted(&reply);
        assert_eq!(version, i as u64 + 2, "{command_type}");
        assert_eq!(events, [event.to_owned()], "{command_type}");
    }
    let stored = log
        .read_stream(&format!("ticket-{ticket}"), 0)
        .await
        .unwrap();
    assert_eq!(stored.len(), 9);

    // The relay publishes the whole log, in position order, each event once.
    let head = log.head().await.unwrap();
    let published = scope.wait_events(head).await;
    let all = log.read_all(0, 100, Filter::All).await.unwrap();
    assert_eq!(published, all);
    serve.stop().await;
}

#[tokio::test]
async fn nats_duplicate_command_id_gets_the_first_reply_and_appends_once() {
    let scope = Scope::new().await;
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let serve = InProcess::start(&scope, log.clone(), Queries::new()).await;
    let command = open_ticket(Uuid::new_v4());
    let first = scope.command(&command).await;
    let again = scope.command(&command).await;
    let (stream, version, events) = accepted(&first);
    match &again {
        Reply::Duplicate {
            command_id,
            stream: s,
            version: v,
            events: e,
            ..
        } => {
            assert_eq!(
                command_id.to_string(),
                command["command_id"].as_str().unwrap()
            );
            assert_eq!((s.as_str(), *v, &e[..]), (stream, version, events));
        }
        other => panic!("expected duplicate, got {}", other.to_json()),
    }
    // Durable intake with the same id: JetStream removes the second publish, the log the
    // first one's effect.
    let mut replies = scope.replies().await;
    let durable = open_ticket(Uuid::new_v4());
    let first_ack = scope.publish_durable(&durable).await;
    let second_ack = scope.publish_durable(&durable).await;
    assert!(!first_ack.duplicate && second_ack.duplicate);
    let id: Uuid = durable["command_id"].as_str().unwrap().parse().unwrap();
    let mut got = HashMap::new();
    collect_replies(&mut replies, &HashSet::from([id]), &mut got).await;
    accepted(&got[&id]);
    assert_eq!(log.head().await.unwrap(), 2);
    serve.stop().await;
}

/// A command id belongs to its actor and its content (issue 14, item 2): over NATS, the same
/// service's other command under a used id is `conflict` at `/command_id` and appends
/// nothing; another service's command under the same id is its own.
#[tokio::test]
async fn nats_a_used_command_id_is_bound_to_its_actor_and_content() {
    let scope = Scope::new().await;
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let serve = InProcess::start(&scope, log.clone(), Queries::new()).await;
    let command = open_ticket(Uuid::new_v4());
    accepted(&scope.command(&command).await);

    let mut other = open_ticket(Uuid::new_v4());
    other["command_id"] = command["command_id"].clone();
    let (error, id) = rejected(&scope.command(&other).await);
    assert_eq!(error["code"], "conflict", "{error}");
    assert_eq!(error["details"][0]["path"], "/command_id", "{error}");
    assert_eq!(
        id.map(|id| id.to_string()).as_deref(),
        command["command_id"].as_str()
    );
    assert_eq!(
        log.head().await.unwrap(),
        1,
        "a refused reuse appends nothing"
    );

    other["actor"] = json!({"id": "billing", "role": "service"});
    accepted(&scope.command(&other).await);
    assert_eq!(log.head().await.unwrap(), 2);
    serve.stop().await;
}

#[tokio::test]
async fn nats_bad_input_is_rejected_with_a_path_and_appends_nothing() {
    let scope = Scope::new().await;
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let serve = InProcess::start(&scope, log.clone(), Queries::new()).await;
    let ticket = Uuid::new_v4();

    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("open_ticket", b"not json".to_vec(), "validation", ""),
        (
            "open_ticket",
            vec![0xff, 0xfe, b'{', b'}'],
            "validation",
            "",
        ),
        ("open_ticket", vec![b' '; 70 * 1024], "validation", ""),
        ("open_ticket", b"[1, 2]".to_vec(), "validation", ""),
        (
            "assign_ticket",
            serde_json::to_vec(&open_ticket(ticket)).unwrap(),
            "validation",
            "/type",
        ),
        (
            "open_ticket",
            serde_json::to_vec(&{
                let mut c = open_ticket(ticket);
                c["payload"]["priority"] = json!("whenever");
                c
            })
            .unwrap(),
            "validation",
            "/payload/priority",
        ),
        (
            "open_ticket",
            serde_json::to_vec(&{
                let mut c = open_ticket(ticket);
                c["payload"]["colour"] = json!("red");
                c
            })
            .unwrap(),
            "validation",
            "/payload/colour",
        ),
        (
            "open_ticket",
            serde_json::to_vec(&{
                let mut c = open_ticket(ticket);
                c.as_object_mut().unwrap().remove("actor");
                c
            })
            .unwrap(),
            "validation",
            "/actor",
        ),
        (
            "record_customer_reply",
            serde_json::to_vec(&envelope(
                "record_customer_reply",
                json!({"id": "crm", "role": "service"}),
                json!({"ticket_id": Uuid::new_v4(), "message": "hello?"}),
            ))
            .unwrap(),
            "not_found",
            "",
        ),
        (
            "open_ticket",
            serde_json::to_vec(&{
                let mut c = open_ticket(ticket);
                c["actor"] = json!({"id": "eve", "role": "auditor"});
                c
            })
            .unwrap(),
            "forbidden",
            "",
        ),
        (
            "no_such_command",
            b"{}".to_vec(),
            "validation",
            "/command_id",
        ),
    ];
    for (command_type, body, code, path) in cases {
        let reply = scope.request(command_type, body.clone()).await;
        let (error, _) = rejected(&reply);
        assert_eq!(error["code"], code, "{command_type}: {}", reply.to_json());
        if !path.is_empty() {
            assert_eq!(
                error["details"][0]["path"],
                path,
                "{command_type}: {}",
                reply.to_json()
            );
        }
    }
    // Durable intake answers bad input the same way, on the reply subject of its id.
    let mut replies = scope.replies().await;
    let mut mismatch = open_ticket(ticket);
    mismatch["type"] = json!("close_ticket");
    let id: Uuid = mismatch["command_id"].as_str().unwrap().parse().unwrap();
    let mut headers = headers_for(&mismatch["actor"]);
    headers.insert("Nats-Msg-Id", id.to_string().as_str());
    scope
        .js
        .publish_with_headers(
            scope.config.durable_subject("open_ticket"),
            headers,
            serde_json::to_vec(&mismatch).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let mut got = HashMap::new();
    collect_replies(&mut replies, &HashSet::from([id]), &mut got).await;
    let (error, _) = rejected(&got[&id]);
    assert_eq!(error["code"], "validation");

    assert_eq!(log.head().await.unwrap(), 0, "a rejected command appended");
    // Still serving after all of that.
    accepted(&scope.command(&open_ticket(ticket)).await);
    serve.stop().await;
}

/// A deployment made by a version without today's limits: the commands stream unbounded
/// and its consumer redelivering for ever. `serve` brings both up to date in place, and
/// refuses a commands stream whose retention JetStream cannot change, naming the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_serve_brings_existing_streams_and_consumers_up_to_date() {
    let scope = Scope::new().await;
    let config = &scope.config;
    let old_stream = |retention| jetstream::stream::Config {
        name: config.commands_stream.clone(),
        subjects: vec![config.durable_wildcard()],
        retention,
        ..Default::default()
    };
    let stream = scope
        .js
        .create_stream(old_stream(jetstream::stream::RetentionPolicy::WorkQueue))
        .await
        .expect("an old commands stream");
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(config.consumer_name.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_deliver: -1,
            ..Default::default()
        })
        .await
        .expect("an old consumer");

    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let serve = InProcess::start(&scope, log.clone(), Queries::new()).await;
    let mut stream = scope.js.get_stream(&config.commands_stream).await.unwrap();
    let limits = stream.info().await.unwrap().config.clone();
    assert_eq!(limits.max_bytes, config.commands_stream_bytes_max);
    assert!(limits.max_message_size > 0, "{limits:?}");
    assert_eq!(limits.discard, jetstream::stream::DiscardPolicy::New);
    let consumer = stream
        .consumer_info(&config.consumer_name)
        .await
        .unwrap()
        .config
        .clone();
    assert_eq!(
        consumer.max_deliver,
        i64::from(config.durable_attempts_max) * 2
    );
    assert_eq!(consumer.max_ack_pending, config.in_flight_max as i64);
    // The durable intake works on the updated consumer.
    let mut replies = scope.replies().await;
    let command = open_ticket(Uuid::new_v4());
    let ack = scope.publish_durable(&command).await;
    assert!(!ack.duplicate);
    let id = command["command_id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    let mut answered = HashMap::new();
    collect_replies(&mut replies, &HashSet::from([id]), &mut answered).await;
    assert!(
        matches!(answered[&id], Reply::Accepted { .. }),
        "{:?}",
        answered[&id]
    );
    serve.stop().await;

    // Retention cannot change in place: serve refuses to start and says what to do.
    scope
        .js
        .delete_stream(&config.commands_stream)
        .await
        .unwrap();
    scope
        .js
        .create_stream(old_stream(jetstream::stream::RetentionPolicy::Limits))
        .await
        .unwrap();
    let handler = Arc::new(Handler::new(log, HandlerConfig::trusting()));
    let refused = InProcess::spawn(
        config.clone(),
        handler,
        scope.client.clone(),
        Queries::new(),
        Vec::new(),
    );
    let outcome = tokio::time::timeout(DEADLINE, refused.outcome())
        .await
        .expect("serve gives up at once")
        .expect("serve task");
    let error = outcome.expect_err("serve refuses the stream").to_string();
    assert!(
        error.contains(&config.commands_stream)
            && error.contains("retention")
            && error.contains("nats stream rm"),
        "{error}"
    );
}

#[tokio::test]
async fn nats_durable_intake_keeps_commands_while_no_serve_runs() {
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());

    // The agent is provisioned in the store (`system` is not accepted over NATS).
    provision_store(&store, &[register_agent("agent-7", "green")]).await;

    // A first run creates the stream and the consumer; SIGTERM drains it and exits 0.
    let serve = Binary::start(&scope, &store, &["--no-process-managers"]);
    scope.wait_serving().await;
    assert!(serve.terminate().success(), "serve exits 0 on SIGTERM");

    // Nobody serves now: JetStream alone takes the commands.
    let mut replies = scope.replies().await;
    let mut ids = HashSet::new();
    let mut commands = Vec::new();
    for _ in 0..20 {
        let ticket = Uuid::new_v4();
        commands.push(open_ticket(ticket));
        // The agent takes it: agents may assign to themselves.
        commands.push(envelope(
            "assign_ticket",
            json!({"id": "agent-7", "role": "agent"}),
            json!({"ticket_id": ticket, "agent_id": "agent-7"}),
        ));
    }
    for command in &commands {
        scope.publish_durable(command).await;
        ids.insert(command["command_id"].as_str().unwrap().parse().unwrap());
    }
    let stream = scope
        .js
        .get_stream(&scope.config.commands_stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(stream, commands.len() as u64);

    // Without auto-assignment, which would race the test's own assignments.
    let serve = Binary::start(&scope, &store, &["--no-process-managers"]);
    let mut got = HashMap::new();
    collect_replies(&mut replies, &ids, &mut got).await;
    for reply in got.values() {
        assert!(
            matches!(reply, Reply::Accepted { .. }),
            "in publication order, every command is accepted: {}",
            reply.to_json()
        );
    }
    // And the provisioned agent's event.
    scope.wait_events(commands.len() as u64 + 1).await;
    assert!(serve.terminate().success());
}

/// Durable load on `instances` serve processes sharing `store`; the first is killed with
/// SIGKILL mid-load and restarted. Every command JetStream acknowledged ends up in the log
/// exactly once, and every event in the events stream exactly once, in position order.
async fn killed_mid_load(scope: &Scope, store: &str, instances: usize) {
    const COMMANDS: usize = 400;
    let commands: Vec<Value> = (0..COMMANDS).map(|_| open_ticket(Uuid::new_v4())).collect();
    let ids: HashSet<Uuid> = commands
        .iter()
        .map(|c| c["command_id"].as_str().unwrap().parse().unwrap())
        .collect();
    let mut replies = scope.replies().await;

    // A first run creates the stream and consumer; a backlog then waits in JetStream so the
    // kill lands mid-load.
    let first = Binary::start(scope, store, &[]);
    scope.wait_serving().await;
    assert!(first.terminate().success());
    for command in &commands[..COMMANDS / 2] {
        scope.publish_durable(command).await;
    }
    let mut serves: Vec<Binary> = (0..instances)
        .map(|_| Binary::start(scope, store, &[]))
        .collect();
    let mut got = HashMap::new();
    let started = Instant::now();
    while got.len() < 20 {
        let message = tokio::time::timeout(DEADLINE, replies.next())
            .await
            .expect("replies during load")
            .unwrap();
        let reply: Reply = serde_json::from_slice(&message.payload).unwrap();
        if let Reply::Accepted { command_id, .. } = reply {
            got.insert(command_id, reply);
        }
        assert!(started.elapsed() < DEADLINE);
    }
    serves.remove(0).kill();
    eprintln!(
        "killed a serve with {} of {} backlogged commands answered",
        got.len(),
        COMMANDS / 2
    );
    for command in &commands[COMMANDS / 2..] {
        scope.publish_durable(command).await;
    }
    serves.push(Binary::start(scope, store, &[]));
    collect_replies(&mut replies, &ids, &mut got).await;
    scope.wait_events(COMMANDS as u64).await;
    for serve in serves {
        assert!(serve.terminate().success(), "serve exits 0 on SIGTERM");
    }

    let log = closeloop_core::log::open(store).await.unwrap();
    let all = log.read_all(0, 10_000, Filter::All).await.unwrap();
    assert_eq!(all.len(), COMMANDS, "each command appended exactly once");
    let logged: HashSet<Uuid> = all.iter().map(|e| e.metadata.command_id).collect();
    assert_eq!(logged, ids);
    let published = scope.read_events(COMMANDS as u64).await;
    assert_eq!(published, all);
}

#[tokio::test]
async fn nats_serve_killed_mid_load_loses_and_doubles_nothing() {
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    killed_mid_load(&scope, &store, 1).await;
}

/// PostgreSQL at `CLOSELOOP_TEST_POSTGRES` in a schema of its own, dropped at the end.
struct PgSchema {
    url: String,
    admin_url: String,
    schema: String,
}

impl PgSchema {
    async fn new() -> PgSchema {
        let admin_url = std::env::var("CLOSELOOP_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        if let Err(e) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await {
            panic!(
                "cannot reach PostgreSQL at {admin_url} ({e}). Start it with `scripts/test.sh`, \
                 or `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`; \
                 set CLOSELOOP_TEST_POSTGRES to use another server."
            );
        }
        let schema = format!("cl_nats_{}", Uuid::new_v4().simple());
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        PgSchema {
            url: format!("{admin_url}{separator}schema={schema}"),
            admin_url,
            schema,
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.admin_url.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    if let Ok((client, connection)) =
                        tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(connection);
                        // The log's schema and the read models' (`<schema>_read`).
                        let _ = client
                            .batch_execute(&format!(
                                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; \
                                 DROP SCHEMA IF EXISTS \"{schema}_read\" CASCADE"
                            ))
                            .await;
                    }
                });
        })
        .join();
    }
}

#[tokio::test]
async fn nats_two_serves_on_postgres_share_the_work_through_a_kill() {
    let pg = PgSchema::new().await;
    let scope = Scope::new().await;
    killed_mid_load(&scope, &pg.url, 2).await;
}

#[tokio::test]
async fn nats_queries_answer_history_with_confidentiality() {
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    provision_store(
        &store,
        &[
            register_agent("agent-1", "blue"),
            register_agent("agent-2", "blue"),
        ],
    )
    .await;
    // Without auto-assignment, which would take the ticket before the test assigns it.
    let serve = Binary::start(&scope, &store, &["--no-process-managers"]);
    scope.wait_serving().await;
    let ticket = Uuid::new_v4();
    accepted(&scope.command(&open_ticket(ticket)).await);
    let mut assign = envelope(
        "assign_ticket",
        json!({"id": "agent-1", "role": "agent"}),
        json!({"ticket_id": ticket, "agent_id": "agent-1"}),
    );
    assign["occurred_at"] = json!("2026-11-23T09:05:00Z");
    accepted(&scope.command(&assign).await);

    let ask =
        |role: &str, id: &str| json!({"actor": {"id": id, "role": role}, "ticket_id": ticket});
    let history = scope
        .query("ticket_history", &ask("auditor", "audit-1"))
        .await;
    assert_eq!(history["stream"], format!("ticket-{ticket}"));
    assert_eq!(history["state"]["assignee"], "agent-1");
    assert_eq!(history["events"].as_array().unwrap().len(), 2);
    assert_eq!(
        scope
            .query("ticket_history", &ask("agent", "agent-1"))
            .await,
        history
    );
    // Cut on either time axis at the opening: version 1 alone, unassigned.
    let events = history["events"].as_array().unwrap();
    for (param, at) in [
        ("as_of", &events[0]["metadata"]["occurred_at"]),
        ("as_known_at", &events[0]["metadata"]["recorded_at"]),
    ] {
        let mut request = ask("auditor", "audit-1");
        request[param] = at.clone();
        let cut = scope.query("ticket_history", &request).await;
        assert_eq!(cut["events"].as_array().unwrap().len(), 1, "{param}: {cut}");
        assert_eq!(cut["state"]["assignee"], Value::Null, "{param}");
        request[param] = json!("2001-01-01T00:00:00Z");
        let before = scope.query("ticket_history", &request).await;
        assert_eq!(before["error"]["code"], "not_found", "{param}");
        assert_eq!(before["error"]["details"][0]["path"], format!("/{param}"));
    }
    let state = scope.query("ticket_state", &ask("agent", "agent-1")).await;
    assert_eq!(state["state"]["status"], "assigned");
    assert_eq!(state["version"], 2);

    let denied = scope
        .query("ticket_history", &ask("agent", "agent-2"))
        .await;
    assert_eq!(denied["status"], "rejected");
    // Indistinguishable from a ticket that does not exist: the same code, path and words.
    assert_eq!(denied["error"]["code"], "not_found");
    assert_eq!(denied["error"]["details"][0]["path"], "/ticket_id");
    let other = Uuid::new_v4();
    let missing = scope
        .query(
            "ticket_history",
            &json!({"actor": {"id": "agent-2", "role": "agent"}, "ticket_id": other}),
        )
        .await;
    assert_eq!(missing["error"]["code"], "not_found");
    assert_eq!(
        denied.to_string().replace(&ticket.to_string(), "ID"),
        missing.to_string().replace(&other.to_string(), "ID")
    );
    let bad = scope
        .query(
            "ticket_history",
            &json!({"actor": {"id": "a", "role": "auditor"}, "ticket_id": "x"}),
        )
        .await;
    assert_eq!(bad["error"]["details"][0]["path"], "/ticket_id");
    let unknown = scope.query("no_such_query", &ask("auditor", "a")).await;
    assert_eq!(unknown["error"]["code"], "not_found");
    // The token says who asks: `actor` may be left out, and must not differ.
    let token_only = scope
        .query_with(
            "ticket_state",
            &json!({"ticket_id": ticket}),
            Some(headers_for(&json!({"id": "agent-1", "role": "agent"}))),
        )
        .await;
    assert_eq!(token_only, state);
    let token_only = scope
        .query_with(
            "ticket_state",
            &json!({"ticket_id": ticket}),
            Some(headers_for(&json!({"id": "agent-2", "role": "agent"}))),
        )
        .await;
    assert_eq!(token_only["error"]["code"], "not_found");
    let impostor = scope
        .query_with(
            "ticket_history",
            &ask("agent", "agent-1"),
            Some(headers_for(&json!({"id": "agent-2", "role": "agent"}))),
        )
        .await;
    assert_eq!(impostor["error"]["code"], "forbidden");
    assert_eq!(impostor["error"]["details"][0]["path"], "/actor");
    let anonymous = scope
        .query_with("ticket_history", &ask("auditor", "a"), None)
        .await;
    assert_eq!(anonymous["error"]["code"], "unauthorized");
    assert!(serve.terminate().success());

    // The same JSON as `closeloop history --json`.
    let output = Process::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", &store, "history", &ticket.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let cli: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(cli, history);
}

#[tokio::test]
async fn nats_lease_is_held_by_one_instance_at_a_time() {
    let scope = Scope::new().await;
    let config = LeaseConfig {
        bucket: scope.config.lease.bucket.clone(),
        ttl: Duration::from_secs(2),
        replicas: 1,
    };
    let lease = Lease::bucket(&scope.js, &config).await.unwrap();
    let a = lease
        .try_acquire("relay", "a")
        .await
        .expect("a takes the free lease");
    assert!(
        lease.try_acquire("relay", "b").await.is_none(),
        "b must wait"
    );
    let a = lease.renew("relay", "a", a).await.expect("a renews");
    assert_eq!(lease.holder("relay").await.as_deref(), Some("a"));
    assert!(
        lease.renew("relay", "b", a - 1).await.is_none(),
        "stale revision"
    );
    lease.release("relay", a).await;
    let b = lease
        .try_acquire("relay", "b")
        .await
        .expect("b takes the released lease");
    assert!(lease.renew("relay", "a", a).await.is_none(), "a lost it");
    // Unrenewed, it expires by itself.
    let started = Instant::now();
    while lease.holder("relay").await.is_some() {
        assert!(started.elapsed() < DEADLINE, "lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    }
    assert!(lease.try_acquire("relay", "c").await.is_some());
    let _ = b;
}

#[tokio::test]
async fn nats_two_instances_share_the_work_and_relay_once() {
    let scope = Scope::new().await;
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let one = InProcess::start(&scope, log.clone(), Queries::new()).await;
    let two = InProcess::start(&scope, log.clone(), Queries::new()).await;
    let mut replies = scope.replies().await;
    let mut ids = HashSet::new();
    for _ in 0..100 {
        let command = open_ticket(Uuid::new_v4());
        ids.insert(command["command_id"].as_str().unwrap().parse().unwrap());
        scope.publish_durable(&command).await;
    }
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let command = open_ticket(Uuid::new_v4());
            let scope = &scope;
            async move { scope.command(&command).await }
        })
        .collect();
    for reply in futures::future::join_all(requests).await {
        accepted(&reply);
    }
    let mut got = HashMap::new();
    collect_replies(&mut replies, &ids, &mut got).await;
    assert_eq!(log.head().await.unwrap(), 200);
    let published = scope.wait_events(200).await;
    let ids: HashSet<Uuid> = published.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 200);
    one.stop().await;
    two.stop().await;
}

/// Overload is shed, not buffered: with the store stalled and `in_flight_max` commands
/// waiting on it, every further request is answered `unavailable` at once; a command whose
/// deadline (`Closeloop-Timeout-Ms`) passes is answered `unavailable` and never appended,
/// even once the store recovers; after it, the shed commands retried are each appended once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_overload_is_shed_and_deadlines_are_honoured() {
    let mut scope = Scope::new().await;
    scope.config.in_flight_max = 2;
    scope.config.command_bytes_max = 1024;
    let inner: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let (faulty, gate) = FaultyLog::new(inner.clone());
    let log: Arc<dyn EventLog> = Arc::new(faulty);
    let serve = InProcess::start(&scope, log, Queries::new()).await;

    // The store stalls. One command with a short deadline takes a slot and times out.
    gate.send_replace(false);
    let late = open_ticket(Uuid::new_v4());
    let mut headers = headers_for(&late["actor"]);
    headers.insert("Closeloop-Timeout-Ms", "300");
    let reply = scope
        .request_with(
            "open_ticket",
            serde_json::to_vec(&late).unwrap(),
            Some(headers),
        )
        .await;
    let (error, _) = rejected(&reply);
    assert_eq!(error["code"], "unavailable");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("deadline passed"),
        "{error}"
    );

    // Two commands wait on the store; the others are shed at once, while it is stalled.
    let commands: Vec<Value> = (0..64).map(|_| open_ticket(Uuid::new_v4())).collect();
    let mut pending: futures::stream::FuturesUnordered<_> = commands
        .iter()
        .map(|command| {
            let scope = &scope;
            async move { (command, scope.command(command).await) }
        })
        .collect();
    let mut shed = Vec::new();
    while let Some((command, reply)) = pending.next().await {
        if reply.is_success() {
            continue;
        }
        let (error, _) = rejected(&reply);
        assert_eq!(error["code"], "unavailable", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains("overloaded"),
            "{error}"
        );
        shed.push(command);
        // (The slot of the timed-out command may be freed a moment after its reply.)
        if shed.len() == 62 {
            gate.send_replace(true);
        }
    }
    assert!((62..=63).contains(&shed.len()), "{} shed", shed.len());
    // Retried once the store is back: each appended once, and the late one never.
    for command in shed {
        accepted(&scope.command(command).await);
    }
    let mut opened = HashSet::new();
    for event in inner.read_all(0, 1000, Filter::All).await.unwrap() {
        assert!(
            opened.insert(event.stream.clone()),
            "{} twice",
            event.stream
        );
    }
    let expected: HashSet<String> = commands
        .iter()
        .map(|c| format!("ticket-{}", c["payload"]["ticket_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        opened, expected,
        "every command once, the timed-out one never"
    );

    // A bad time limit is refused; so is a body over the configured size.
    let mut headers = headers_for(&late["actor"]);
    headers.insert("Closeloop-Timeout-Ms", "0");
    let other = open_ticket(Uuid::new_v4());
    let reply = scope
        .request_with(
            "open_ticket",
            serde_json::to_vec(&other).unwrap(),
            Some(headers),
        )
        .await;
    let (error, _) = rejected(&reply);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Closeloop-Timeout-Ms"),
        "{error}"
    );
    let mut big = open_ticket(Uuid::new_v4());
    big["payload"]["description"] = json!("x".repeat(2048));
    let (error, _) = rejected(&scope.command(&big).await);
    assert_eq!(error["code"], "validation");
    assert!(error["message"].as_str().unwrap().contains("at most 1024"));
    serve.stop().await;
}

#[tokio::test]
async fn nats_serve_exits_0_on_sigint() {
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    let mut serve = Binary::start(&scope, &store, &[]);
    scope.wait_serving().await;
    accepted(&scope.command(&open_ticket(Uuid::new_v4())).await);
    serve.signal("INT");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "serve did not exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    };
    assert!(status.success(), "{status}");
}

// ---- authentication ---------------------------------------------------------------------

fn unauthorized(reply: &Reply) -> String {
    let (error, command_id) = rejected(reply);
    assert_eq!(error["code"], "unauthorized", "{}", reply.to_json());
    assert_eq!(command_id, None, "nothing of the body is read");
    error["message"].as_str().unwrap().to_owned()
}

/// A query answering who asks, as `serve` sees it.
fn whoami() -> Queries {
    let mut queries = Queries::new();
    queries.register(
        "whoami",
        Arc::new(|request: nats::QueryRequest| {
            Box::pin(async move { Ok(serde_json::to_value(&request.actor).unwrap()) })
        }),
    );
    queries
}

/// Two calling services with keys of their own: the CRM may assert `service` only, the help
/// desk `agent` and `supervisor`. Each acts as itself; a body actor other than the token's,
/// no token, an unknown key, a bad signature, an expired token, `system`, and a role the key
/// may not assert are all refused and append nothing; durable intake verifies the token in the
/// stored message's headers.
#[tokio::test]
async fn nats_actors_come_from_verified_tokens() {
    let mut scope = Scope::new().await;
    let (crm_key, desk_key) = (TestKey::generate("crm"), TestKey::generate("desk"));
    let keys = keys_file(&[
        crm_key.entry(&["service"]),
        desk_key.entry(&["agent", "supervisor"]),
    ]);
    scope.config.auth = Auth::Tokens(Arc::new(Verifier::from_json(&keys).unwrap()));
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    provision(&log, &[register_agent("agent-1", "blue")]).await;
    let serve = InProcess::start(&scope, log.clone(), whoami()).await;
    let crm = json!({"id": "crm", "role": "service"});
    let agent1 = json!({"id": "agent-1", "role": "agent"});
    let send = |command: &Value, headers: Option<async_nats::HeaderMap>| {
        let command_type = command["type"].as_str().unwrap().to_owned();
        let body = serde_json::to_vec(command).unwrap();
        let scope = &scope;
        async move { scope.request_with(&command_type, body, headers).await }
    };

    // Each service acts as itself.
    let ticket = Uuid::new_v4();
    accepted(&send(&open_ticket(ticket), Some(bearer(&crm_key.token(&crm)))).await);
    let assign = envelope(
        "assign_ticket",
        agent1.clone(),
        json!({"ticket_id": ticket, "agent_id": "agent-1"}),
    );
    accepted(&send(&assign, Some(bearer(&desk_key.token(&agent1)))).await);
    let stored = log
        .read_stream(&format!("ticket-{ticket}"), 0)
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&stored[0].metadata.actor).unwrap(),
        crm
    );
    assert_eq!(
        serde_json::to_value(&stored[1].metadata.actor).unwrap(),
        agent1
    );
    let head = log.head().await.unwrap();

    // A body actor other than the token's is forbidden at /actor.
    let note = envelope(
        "add_note",
        agent1.clone(),
        json!({"ticket_id": ticket, "text": "the CRM speaking"}),
    );
    for token in [
        crm_key.token(&crm),
        desk_key.token(&json!({"id": "agent-2", "role": "agent"})),
        desk_key.token(&json!({"id": "agent-1", "role": "supervisor"})),
    ] {
        let (error, _) = rejected(&send(&note, Some(bearer(&token))).await);
        assert_eq!(error["code"], "forbidden");
        assert_eq!(error["details"][0]["path"], "/actor");
    }

    // Credentials that do not hold.
    let now = jiff::Timestamp::now().as_second();
    let system = json!({"id": "ops", "role": "system"});
    let lead = json!({"id": "lead-1", "role": "supervisor"});
    let with_actor = |actor: &Value| {
        let mut c = note.clone();
        c["actor"] = actor.clone();
        c
    };
    let cases: Vec<(&str, Value, Option<async_nats::HeaderMap>, &str)> = vec![
        ("no token", note.clone(), None, "no credential"),
        (
            "not a bearer token",
            note.clone(),
            Some({
                let mut h = async_nats::HeaderMap::new();
                h.insert("Authorization", "Basic YWdlbnQtMTpwdw==");
                h
            }),
            "Bearer",
        ),
        (
            "garbage",
            note.clone(),
            Some(bearer("not.a.token")),
            "malformed",
        ),
        (
            "an unknown key",
            note.clone(),
            Some(bearer(&TestKey::generate("eve").token(&agent1))),
            "`eve` is not configured",
        ),
        (
            "a key not the one its kid names",
            note.clone(),
            Some(bearer(&TestKey::generate("desk").token(&agent1))),
            "signature",
        ),
        (
            "expired",
            note.clone(),
            Some(bearer(&desk_key.token_until(&agent1, now - 3_600))),
            "expired",
        ),
        (
            "system",
            register_agent("agent-9", "blue"),
            Some(bearer(&desk_key.token(&system))),
            "system",
        ),
        (
            "a role the key may not assert",
            with_actor(&lead),
            Some(bearer(&crm_key.token(&lead))),
            "may not assert role `supervisor`",
        ),
    ];
    for (case, command, headers, says) in cases {
        let message = unauthorized(&send(&command, headers).await);
        assert!(message.contains(says), "{case}: {message}");
    }
    assert_eq!(
        log.head().await.unwrap(),
        head,
        "a refused command appended"
    );

    // Queries: the token says who asks.
    let me = scope
        .query_with("whoami", &json!({}), Some(bearer(&crm_key.token(&crm))))
        .await;
    assert_eq!(me, crm);
    let me = scope
        .query_with(
            "whoami",
            &json!({"actor": agent1}),
            Some(bearer(&desk_key.token(&agent1))),
        )
        .await;
    assert_eq!(me, agent1);
    let impostor = scope
        .query_with(
            "whoami",
            &json!({"actor": agent1}),
            Some(bearer(&crm_key.token(&crm))),
        )
        .await;
    assert_eq!(impostor["error"]["code"], "forbidden");
    let anonymous = scope.query_with("whoami", &json!({}), None).await;
    assert_eq!(anonymous["error"]["code"], "unauthorized");

    // Durable intake: the token travels in the stored message's headers.
    let mut replies = scope.replies().await;
    let durable = open_ticket(Uuid::new_v4());
    scope
        .publish_durable_with(&durable, bearer(&crm_key.token(&crm)))
        .await;
    let unsigned = open_ticket(Uuid::new_v4());
    scope
        .publish_durable_with(&unsigned, async_nats::HeaderMap::new())
        .await;
    let mut got: HashMap<String, Reply> = HashMap::new();
    let started = Instant::now();
    while got.len() < 2 {
        let message = tokio::time::timeout(DEADLINE, replies.next())
            .await
            .expect("durable replies")
            .unwrap();
        let id = last_token_of(message.subject.as_str());
        got.insert(id, serde_json::from_slice(&message.payload).unwrap());
        assert!(started.elapsed() < DEADLINE);
    }
    accepted(&got[durable["command_id"].as_str().unwrap()]);
    unauthorized(&got[unsigned["command_id"].as_str().unwrap()]);
    assert_eq!(log.head().await.unwrap(), head + 1);
    serve.stop().await;
}

fn last_token_of(subject: &str) -> String {
    subject.rsplit('.').next().unwrap().to_owned()
}

/// A durable command is judged by its token as of when JetStream stored it: one stored while
/// no `serve` ran, whose token has expired since, is still taken; the same token sent now by
/// request/reply is refused.
#[tokio::test]
async fn nats_durable_token_is_judged_as_of_when_jetstream_stored_it() {
    let mut scope = Scope::new().await;
    let key = TestKey::generate("crm");
    let keys = keys_file(&[key.entry(&["service"])]);
    // No clock leeway, so the token expires within the test.
    scope.config.auth = Auth::Tokens(Arc::new(Verifier::from_json(&keys).unwrap().with_leeway(0)));
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    // A first run creates the commands stream.
    InProcess::start(&scope, log.clone(), Queries::new())
        .await
        .stop()
        .await;

    let crm = json!({"id": "crm", "role": "service"});
    let exp = jiff::Timestamp::now().as_second() + 2;
    let token = key.token_until(&crm, exp);
    let mut replies = scope.replies().await;
    let command = open_ticket(Uuid::new_v4());
    scope.publish_durable_with(&command, bearer(&token)).await;
    // The condition waited for is the clock passing the token's expiry.
    while jiff::Timestamp::now().as_second() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let serve = InProcess::start(&scope, log.clone(), Queries::new()).await;
    let id: Uuid = command["command_id"].as_str().unwrap().parse().unwrap();
    let mut got = HashMap::new();
    collect_replies(&mut replies, &HashSet::from([id]), &mut got).await;
    accepted(&got[&id]);
    let now = scope
        .request_with(
            "open_ticket",
            serde_json::to_vec(&open_ticket(Uuid::new_v4())).unwrap(),
            Some(bearer(&token)),
        )
        .await;
    assert!(unauthorized(&now).contains("expired"));
    assert_eq!(log.head().await.unwrap(), 1);
    serve.stop().await;
}

/// `serve` without keys refuses to start and says how to configure them; with
/// `--insecure-no-auth` it trusts the body and says so loudly.
#[tokio::test]
async fn nats_serve_needs_keys_or_an_explicit_insecure_flag() {
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    let mut args = scope.serve_args();
    let at = args.iter().position(|a| a == "--auth-keys").unwrap();
    args.drain(at..at + 2);
    let refused = Process::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", &store, "--nats", &nats_url(), "serve"])
        .args(&args)
        .env_remove("CLOSELOOP_AUTH_KEYS")
        .env_remove("CLOSELOOP_INSECURE_NO_AUTH")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--auth-keys FILE") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );

    let log_file = dir.path().join("serve.log");
    let child = Process::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", &store, "--nats", &nats_url(), "serve"])
        .args(&args)
        .arg("--insecure-no-auth")
        .env("CLOSELOOP_LOG", "warn")
        .env_remove("CLOSELOOP_AUTH_KEYS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_file).unwrap())
        .spawn()
        .unwrap();
    let serve = Binary { child };
    scope.wait_serving().await;
    let reply = scope
        .request_with(
            "open_ticket",
            serde_json::to_vec(&open_ticket(Uuid::new_v4())).unwrap(),
            None,
        )
        .await;
    accepted(&reply);
    // `system` is refused even so.
    let (error, _) = rejected(
        &scope
            .request_with(
                "register_agent",
                serde_json::to_vec(&register_agent("agent-1", "blue")).unwrap(),
                None,
            )
            .await,
    );
    assert_eq!(error["code"], "forbidden");
    assert_eq!(error["details"][0]["path"], "/actor/role");
    assert!(serve.terminate().success());
    let logged = std::fs::read_to_string(&log_file).unwrap();
    assert!(logged.contains("INSECURE"), "{logged}");
}

// ---- read side: report queries, SLA scheduler ------------------------------------------

/// A command with an explicit actor and business time.
fn at_command(command_type: &str, actor: (&str, &str), at: &str, payload: Value) -> Value {
    json!({
        "command_id": Uuid::new_v4(),
        "type": command_type,
        "actor": {"id": actor.0, "role": actor.1},
        "occurred_at": at,
        "payload": payload,
    })
}

const ADMIN: (&str, &str) = ("provisioning", "system");
const CRM: (&str, &str) = ("crm", "service");

pub fn calendar_and_policy(at: &str, first_response_minutes: u32) -> Vec<Value> {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    vec![
        at_command(
            "define_calendar",
            ADMIN,
            at,
            json!({"calendar_id": "always", "time_zone": "UTC",
                   "weekly_hours": days.iter().map(|d| json!({"day": d, "start": "00:00", "end": "24:00"})).collect::<Vec<_>>()}),
        ),
        at_command(
            "define_sla_policy",
            ADMIN,
            at,
            json!({"policy_id": "all", "match": {}, "first_response_minutes": first_response_minutes,
                   "resolution_minutes": 100_000, "calendar_id": "always", "warn_at_percent": 50}),
        ),
    ]
}

fn position(reply: &Reply) -> u64 {
    match reply {
        Reply::Accepted { position, .. } => *position,
        other => panic!("expected accepted, got {}", other.to_json()),
    }
}

fn rows<'a>(report: &'a Value, key: &str) -> &'a Vec<Value> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("no `{key}` rows in {report:#}"))
}

fn report_cli(store: &str, name: &str, flags: &[&str]) -> Value {
    let output = Process::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", store, "report", name, "--json"])
        .args(flags)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "report {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("report JSON")
}

#[tokio::test]
async fn nats_report_queries_equal_the_cli_and_follow_confidentiality() {
    const AT: &str = "2026-11-03T00:00:00Z";
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    let agent = |id: &str, team: &str, lead: bool| {
        at_command(
            "register_agent",
            ADMIN,
            "2026-11-02T07:00:00Z",
            json!({"agent_id": id, "name": id, "team": team, "line": 1, "level": "senior", "team_lead": lead}),
        )
    };
    // The directory is provisioned in the store (`system` is not accepted over NATS).
    let mut directory = calendar_and_policy("2026-11-02T07:00:00Z", 60);
    directory.extend([
        agent("lead-1", "blue", true),
        agent("agent-1", "blue", false),
        agent("lead-2", "red", true),
        agent("agent-2", "red", false),
    ]);
    provision_store(&store, &directory).await;
    // Nothing appends on its own: the log's head is the test's last command.
    let serve = Binary::start(&scope, &store, &["--no-process-managers", "--no-scheduler"]);
    scope.wait_serving().await;
    let mut commands = Vec::new();
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let ticket = |id: Uuid, payload: Value| {
        let mut p = payload;
        p["ticket_id"] = json!(id);
        p
    };
    for (id, who, lead, answered, resolved, score) in [
        (a, "agent-1", "lead-1", "09:10", "10:00", 5),
        (b, "agent-2", "lead-2", "11:00", "12:00", 2),
    ] {
        let at = |time: &str| format!("2026-11-02T{time}:00Z");
        commands.extend([
            at_command("open_ticket", CRM, &at("09:00"), ticket(id, json!({"customer_id": "c-1", "channel": "email", "category": "incident", "priority": "high", "subject": "Router down"}))),
            at_command("assign_ticket", (lead, "supervisor"), &at("09:05"), ticket(id, json!({"agent_id": who}))),
            at_command("respond_to_customer", (who, "agent"), &at(answered), ticket(id, json!({"message": "On it"}))),
            at_command("resolve_ticket", (who, "agent"), &at(resolved), ticket(id, json!({"resolution": "fixed"}))),
            at_command("record_satisfaction", CRM, &at("13:00"), ticket(id, json!({"score": score, "source": "survey"}))),
            at_command("close_ticket", (who, "agent"), &at("14:00"), ticket(id, json!({})))
        ]);
    }
    commands.extend([
        at_command("open_ticket", CRM, "2026-11-02T15:00:00Z", ticket(c, json!({"customer_id": "c-2", "channel": "chat", "category": "complaint", "priority": "normal", "subject": "Late"}))),
        at_command("assign_ticket", ("lead-1", "supervisor"), "2026-11-02T15:01:00Z", ticket(c, json!({"agent_id": "agent-1"}))),
    ]);
    let mut head = 0;
    for command in &commands {
        head = position(&scope.command(command).await);
    }

    // Wait until serve's projectors have folded the whole log (and show no error: one the
    // store gave them for a moment under load is shown until their next catch-up).
    let auditor = json!({"id": "audit-1", "role": "auditor"});
    let started = Instant::now();
    loop {
        let report = scope
            .query("report_sla", &json!({"actor": auditor, "at": AT}))
            .await;
        let projectors = rows(&report, "projectors");
        if projectors
            .iter()
            .all(|p| p["position"] == head && p["lag"] == 0 && p["error"].is_null())
        {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "projectors did not reach {head}: {projectors:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }

    let ask = |actor: &Value, params: Value| {
        let mut request = params;
        request["actor"] = actor.clone();
        request["at"] = json!(AT);
        request
    };
    let mut over_nats = Vec::new();
    for (name, params, flags) in [
        ("sla", json!({}), vec![]),
        ("satisfaction", json!({}), vec![]),
        ("performance", json!({}), vec![]),
        (
            "performance",
            json!({"team": "blue", "period": "day"}),
            vec!["--team", "blue", "--period", "day"],
        ),
        (
            "sla",
            json!({"from": "2026-11-02", "to": "2026-11-02"}),
            vec!["--from", "2026-11-02", "--to", "2026-11-02"],
        ),
    ] {
        let reply = scope
            .query(&format!("report_{name}"), &ask(&auditor, params))
            .await;
        assert!(reply.get("status").is_none(), "{reply:#}");
        over_nats.push((name, flags, reply));
    }
    let sla = &over_nats[0].2;
    assert_eq!(rows(sla, "timers").len(), 6, "{sla:#}");
    assert!(rows(&over_nats[1].2, "groups")
        .iter()
        .any(|g| g["by"] == "agent" && g["key"] == "agent-2"));

    // An agent sees their own rows only, whatever they ask for.
    let agent1 = json!({"id": "agent-1", "role": "agent"});
    let mine = scope.query("report_sla", &ask(&agent1, json!({}))).await;
    let timers = rows(&mine, "timers");
    assert_eq!(timers.len(), 4, "tickets a and c: {mine:#}");
    assert!(timers.iter().all(|t| t["assignee"] == "agent-1"));
    let mine = scope
        .query("report_satisfaction", &ask(&agent1, json!({})))
        .await;
    let groups = rows(&mine, "groups");
    assert!(!groups.is_empty());
    assert!(groups
        .iter()
        .all(|g| g["by"] == "agent" && g["key"] == "agent-1"));
    let my_performance = scope
        .query("report_performance", &ask(&agent1, json!({})))
        .await;
    let agents = rows(&my_performance, "agents");
    assert!(!agents.is_empty());
    assert!(agents.iter().all(|r| r["agent_id"] == "agent-1"));
    assert!(rows(&my_performance, "teams").is_empty());
    let denied = scope
        .query(
            "report_performance",
            &ask(&agent1, json!({"agent": "agent-2"})),
        )
        .await;
    assert_eq!(denied["status"], "rejected");
    assert_eq!(denied["error"]["code"], "forbidden");
    assert_eq!(denied["error"]["details"][0]["path"], "/agent");

    // A team lead sees their team; another team is refused; a supervisor who leads no
    // team, and a service, see nothing.
    let lead1 = json!({"id": "lead-1", "role": "supervisor"});
    let team = scope
        .query("report_performance", &ask(&lead1, json!({})))
        .await;
    assert!(!rows(&team, "agents").is_empty());
    assert!(rows(&team, "agents").iter().all(|r| r["team"] == "blue"));
    assert!(rows(&team, "teams").iter().all(|r| r["team"] == "blue"));
    let denied = scope
        .query("report_sla", &ask(&lead1, json!({"team": "red"})))
        .await;
    assert_eq!(denied["error"]["code"], "forbidden");
    assert_eq!(denied["error"]["details"][0]["path"], "/team");
    for actor in [
        json!({"id": "agent-2", "role": "supervisor"}),
        json!({"id": "crm", "role": "service"}),
    ] {
        let denied = scope.query("report_sla", &ask(&actor, json!({}))).await;
        assert_eq!(denied["error"]["code"], "forbidden", "{actor}");
    }

    // A bad parameter is rejected naming its path.
    for (params, path) in [
        (json!({"from": "yesterday"}), "/from"),
        (json!({"period": "fortnight"}), "/period"),
        (json!({"colour": "red"}), "/colour"),
    ] {
        let bad = scope.query("report_sla", &ask(&auditor, params)).await;
        assert_eq!(bad["status"], "rejected");
        assert_eq!(bad["error"]["code"], "validation");
        assert_eq!(bad["error"]["details"][0]["path"], path, "{bad:#}");
    }
    let bad = scope
        .query("report_sla", &json!({"actor": auditor, "at": "noon"}))
        .await;
    assert_eq!(bad["error"]["details"][0]["path"], "/at");
    assert!(serve.terminate().success());

    // The same JSON as `closeloop report NAME --json` on the same store at the same time.
    for (name, flags, reply) in &over_nats {
        let mut flags = flags.clone();
        flags.extend(["--at", AT]);
        assert_eq!(
            &report_cli(&store, name, &flags),
            reply,
            "report {name} {flags:?}"
        );
    }
    assert_eq!(
        report_cli(&store, "performance", &["--agent", "agent-1", "--at", AT]),
        my_performance
    );
}

/// Two instances run the read side on one log; a ticket's first-response deadline is already
/// past when it is opened. The breach is recorded once, escalated once, and afterwards no
/// instance's scheduler has anything left to submit for it.
#[tokio::test]
async fn nats_two_instances_record_a_past_deadline_breach_once() {
    use closeloop_core::domain::SlaTarget;
    use closeloop_process::scheduler;

    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    let log = closeloop_core::log::open(&store).await.unwrap();
    let read_side = serve::ReadSideConfig {
        store: store.clone(),
        scheduler_interval: Some(Duration::from_millis(200)),
        process_managers: true,
    };
    // Whole seconds: deadlines are kept to the second.
    let opened = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 3_600).unwrap();
    let ticket = Uuid::new_v4();
    let calendar = calendar_and_policy(
        &(opened - jiff::SignedDuration::from_mins(1)).to_string(),
        5,
    );
    provision(&log, &calendar).await;
    let mut instances = Vec::new();
    let mut models = Vec::new();
    let mut handlers = Vec::new();
    for i in 0..2 {
        let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::trusting()));
        let (jobs, read_models) = serve::read_side(&log, &handler, &read_side).await.unwrap();
        let queries = serve::queries(log.clone(), handler.clone(), read_models.clone());
        let mut config = scope.config.clone();
        config.instance_id = format!("instance-{i}");
        instances.push(InProcess::start_with(&scope, config, handler.clone(), queries, jobs).await);
        models.push(read_models);
        handlers.push(handler);
    }

    let opening = at_command(
        "open_ticket",
        CRM,
        &opened.to_string(),
        json!({"ticket_id": ticket, "customer_id": "c-1", "channel": "phone",
               "category": "incident", "priority": "urgent", "subject": "Outage"}),
    );
    accepted(&scope.command(&opening).await);

    // Wait on the log: the breach, then its escalation by the process managers.
    let count = |events: &[StoredEvent], event_type: &str| {
        events.iter().filter(|e| e.event_type == event_type).count()
    };
    let started = Instant::now();
    let events = loop {
        let events = log.read_all(0, 1_000, Filter::All).await.unwrap();
        if count(&events, "sla_breached") >= 1 && count(&events, "ticket_escalated") >= 1 {
            break events;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no breach and escalation in the log: {:?}",
            events.iter().map(|e| &e.event_type).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    };
    let breach = events
        .iter()
        .find(|e| e.event_type == "sla_breached")
        .unwrap();
    assert_eq!(breach.metadata.actor.id, scheduler::ACTOR_ID);
    let due_at: jiff::Timestamp = serde_json::from_value(breach.data["due_at"].clone()).unwrap();
    assert_eq!(due_at, opened + jiff::SignedDuration::from_mins(5));
    let command_id = scheduler::command_id(ticket, SlaTarget::FirstResponse, due_at, true);
    assert_eq!(breach.metadata.command_id, command_id);
    // The lease: one instance runs the scheduler, one the process managers.
    let leases = Lease::bucket(&scope.js, &scope.config.lease).await.unwrap();
    for job in ["sla-scheduler", "process-managers"] {
        let holder = leases.holder(job).await;
        assert!(
            matches!(holder.as_deref(), Some("instance-0" | "instance-1")),
            "{job} held by {holder:?}"
        );
    }

    // The shared tables fold the breach; from then on neither instance's scheduler has anything
    // due for this deadline, and a repeat of the command (as a second scheduler would send
    // it) appends nothing.
    let last = events.last().unwrap().position;
    let started = Instant::now();
    for model in &models {
        loop {
            let caught_up = model.tables.checkpoint().await.unwrap().position >= last;
            let due = scheduler::due_commands(model.tables.as_ref(), jiff::Timestamp::now())
                .await
                .unwrap();
            if caught_up && due.iter().all(|c| c.command_id != command_id) {
                break;
            }
            assert!(started.elapsed() < DEADLINE, "the tables lag");
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    }
    let again = closeloop_core::domain::CommandEnvelope {
        command_id,
        actor: closeloop_core::domain::Actor::system(scheduler::ACTOR_ID),
        occurred_at: None,
        expected_version: None,
        command: closeloop_core::domain::Command::RecordSlaBreach(
            closeloop_core::domain::RecordSlaBreach {
                ticket_id: ticket,
                target: SlaTarget::FirstResponse,
                due_at,
            },
        ),
    };
    assert!(matches!(
        handlers[1].handle(again).await,
        Reply::Duplicate { .. }
    ));

    for instance in instances {
        instance.stop().await;
    }
    let events = log.read_all(0, 1_000, Filter::All).await.unwrap();
    assert_eq!(count(&events, "sla_breached"), 1, "one breach per deadline");
    assert!(count(&events, "sla_warning_raised") <= 1);
    let escalations: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.event_type == "ticket_escalated")
        .collect();
    assert_eq!(escalations.len(), 1, "the breach is escalated once");
    assert_eq!(
        escalations[0].metadata.actor.id,
        closeloop_process::ESCALATION_ACTOR
    );
}

/// `closeloop schedule` runs the SLA scheduler alone (no NATS): it records a past deadline's
/// breach once and exits 0 on SIGTERM.
#[tokio::test]
async fn schedule_subcommand_records_a_breach_once_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    let opened = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 3_600).unwrap();
    let ticket = Uuid::new_v4();
    let mut commands = calendar_and_policy(
        &(opened - jiff::SignedDuration::from_mins(1)).to_string(),
        5,
    );
    commands.push(at_command(
        "open_ticket",
        CRM,
        &opened.to_string(),
        json!({"ticket_id": ticket, "customer_id": "c-1", "channel": "phone",
               "category": "incident", "priority": "urgent", "subject": "Outage"}),
    ));
    let file = dir.path().join("commands.jsonl");
    let lines: Vec<String> = commands.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let submitted = Process::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", &store, "submit"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stdout)
    );

    let child = Process::new(env!("CARGO_BIN_EXE_closeloop"))
        .args(["--store", &store, "schedule", "--interval-ms", "100"])
        .env("CLOSELOOP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start closeloop schedule");
    let schedule = Binary { child };
    // Reads go to the file, so this process sees the scheduler's appends.
    let log = closeloop_core::log::open(&store).await.unwrap();
    let started = Instant::now();
    loop {
        let events = log.read_all(0, 1_000, Filter::All).await.unwrap();
        if events.iter().any(|e| e.event_type == "sla_breached") {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no breach recorded");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
    assert!(
        schedule.terminate().success(),
        "schedule exits 0 on SIGTERM"
    );
    let events = log.read_all(0, 1_000, Filter::All).await.unwrap();
    let breaches: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.event_type == "sla_breached")
        .collect();
    assert_eq!(breaches.len(), 1);
    assert_eq!(breaches[0].stream, format!("ticket-{ticket}"));
    assert_eq!(breaches[0].metadata.actor.role.to_string(), "system");
}

/// A log with faults: reading a "poisoned" ticket fails as a corrupt store would (a bug: a
/// retry fails the same way), reading a "flaky" one as an unreachable store would
/// (retryable), for ever; appends wait while the gate is shut (a stalled store).
struct FaultyLog {
    inner: Arc<dyn EventLog>,
    poisoned: HashSet<String>,
    flaky: HashSet<String>,
    gate: tokio::sync::watch::Receiver<bool>,
    /// Appends that have reached the gate.
    appends_begun: Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultyLog {
    /// No faults, the gate open; and the gate's sender (`true`: open).
    fn new(inner: Arc<dyn EventLog>) -> (FaultyLog, tokio::sync::watch::Sender<bool>) {
        let (open, gate) = tokio::sync::watch::channel(true);
        let log = FaultyLog {
            inner,
            poisoned: HashSet::new(),
            flaky: HashSet::new(),
            gate,
            appends_begun: Arc::default(),
        };
        (log, open)
    }
}

#[async_trait::async_trait]
impl EventLog for FaultyLog {
    fn keys(&self) -> Arc<dyn closeloop_core::log::KeyStore> {
        self.inner.keys()
    }

    async fn append(
        &self,
        request: closeloop_core::log::AppendRequest,
    ) -> Result<closeloop_core::log::AppendOutcome, closeloop_core::Error> {
        self.appends_begun
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
    ) -> Result<Vec<StoredEvent>, closeloop_core::Error> {
        if self.poisoned.contains(stream) {
            return Err(closeloop_core::Error::Corrupt(format!(
                "{stream}: unreadable row"
            )));
        }
        if self.flaky.contains(stream) {
            return Err(closeloop_core::Error::Unavailable(
                "connection refused".into(),
            ));
        }
        self.inner.read_stream(stream, after_version).await
    }

    async fn read_all(
        &self,
        after: closeloop_core::log::Position,
        limit: usize,
        filter: Filter<'_>,
    ) -> Result<Vec<StoredEvent>, closeloop_core::Error> {
        self.inner.read_all(after, limit, filter).await
    }

    async fn head(&self) -> Result<closeloop_core::log::Position, closeloop_core::Error> {
        self.inner.head().await
    }

    async fn wait_beyond(
        &self,
        after: closeloop_core::log::Position,
        max_wait: Duration,
    ) -> Result<closeloop_core::log::Position, closeloop_core::Error> {
        self.inner.wait_beyond(after, max_wait).await
    }

    async fn log_id(&self) -> Result<Uuid, closeloop_core::Error> {
        self.inner.log_id().await
    }

    async fn find_command(
        &self,
        command_id: Uuid,
    ) -> Result<Option<closeloop_core::log::Committed>, closeloop_core::Error> {
        self.inner.find_command(command_id).await
    }

    async fn command_records(
        &self,
        after: closeloop_core::log::Position,
        limit: usize,
    ) -> Result<Vec<closeloop_core::log::CommandRecord>, closeloop_core::Error> {
        self.inner.command_records(after, limit).await
    }
}

/// No poison: over durable intake, commands on a ticket the store cannot read (a bug) are
/// dead-lettered at once, those whose store stays unavailable after a bounded number of
/// deliveries; each gets a `rejected` reply with its kind, the dead-letter stream keeps it
/// (without the bearer token), and valid commands published behind them are all handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_poison_is_dead_lettered_and_never_stalls_durable_intake() {
    let scope = Scope::new().await;
    let inner: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let (poisoned, flaky) = (Uuid::new_v4(), Uuid::new_v4());
    // Open both tickets while the store still reads them.
    let handler = Handler::new(inner.clone(), HandlerConfig::trusting());
    for ticket in [poisoned, flaky] {
        let open = open_ticket(ticket);
        let envelope =
            closeloop_core::domain::parse_command(&serde_json::to_vec(&open).unwrap()).unwrap();
        assert!(handler.handle(envelope).await.is_success());
    }
    let (mut faulty, _gate) = FaultyLog::new(inner);
    faulty.poisoned.insert(format!("ticket-{poisoned}"));
    faulty.flaky.insert(format!("ticket-{flaky}"));
    let log: Arc<dyn EventLog> = Arc::new(faulty);
    let mut config = scope.config.clone();
    config.durable_attempts_max = 3;
    config.unavailable_retry_delay = Duration::from_millis(20);
    config.unavailable_retry_delay_max = Duration::from_millis(80);
    let handler = Arc::new(Handler::new(log, HandlerConfig::trusting()));
    let serve =
        InProcess::start_with(&scope, config.clone(), handler, Queries::new(), Vec::new()).await;
    let mut subscriber = scope.replies().await;

    let reply_to = |ticket: Uuid| {
        envelope(
            "record_customer_reply",
            json!({"id": "crm", "role": "service"}),
            json!({"ticket_id": ticket, "message": "still broken"}),
        )
    };
    // Poison first (more of it than commands handled at once), then valid commands.
    let mut bad = HashSet::new();
    let mut flaky_ids = HashSet::new();
    for i in 0..300 {
        let command = reply_to(if i % 30 == 0 { flaky } else { poisoned });
        let id: Uuid = command["command_id"].as_str().unwrap().parse().unwrap();
        if i % 30 == 0 {
            flaky_ids.insert(id);
        }
        bad.insert(id);
        scope.publish_durable(&command).await;
    }
    let mut good = HashSet::new();
    for _ in 0..20 {
        let command = open_ticket(Uuid::new_v4());
        good.insert(command["command_id"].as_str().unwrap().parse().unwrap());
        scope.publish_durable(&command).await;
    }
    let all: HashSet<Uuid> = bad.union(&good).copied().collect();
    let mut replies = HashMap::new();
    collect_replies(&mut subscriber, &all, &mut replies).await;

    for id in &good {
        assert!(replies[id].is_success(), "{}", replies[id].to_json());
    }
    for id in &bad {
        let json: Value = serde_json::from_str(&replies[id].to_json()).unwrap();
        let (code, kind) = if flaky_ids.contains(id) {
            ("unavailable", "retryable")
        } else {
            ("internal", "bug")
        };
        assert_eq!(json["error"]["code"], code, "{json}");
        assert_eq!(json["error"]["kind"], kind, "{json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(&config.dead_letter_stream), "{message}");
    }
    // Every bad command is in the dead-letter stream once, with why and after how many
    // deliveries, and without its credential. The commands stream is empty: a work queue.
    let mut dead = scope
        .js
        .get_stream(&config.dead_letter_stream)
        .await
        .unwrap();
    let count = dead.info().await.unwrap().state.messages;
    assert_eq!(count, bad.len() as u64);
    let mut seen = HashSet::new();
    for sequence in 1..=count {
        let message = dead.get_raw_message(sequence).await.unwrap();
        let command: Value = serde_json::from_slice(&message.payload).unwrap();
        let id: Uuid = command["command_id"].as_str().unwrap().parse().unwrap();
        assert!(bad.contains(&id) && seen.insert(id));
        assert!(message.headers.get("Authorization").is_none());
        let deliveries: i64 = message
            .headers
            .get(nats::DEAD_DELIVERIES_HEADER)
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        let reason = message
            .headers
            .get(nats::DEAD_REASON_HEADER)
            .unwrap()
            .as_str()
            .to_owned();
        if flaky_ids.contains(&id) {
            assert_eq!(deliveries, 3, "bounded redelivery");
            assert!(reason.contains("connection refused"), "{reason}");
        } else {
            assert_eq!(deliveries, 1, "a bug is not retried");
            assert!(reason.contains("unreadable row"), "{reason}");
        }
    }
    // A work queue: each command leaves the stream once acked (just after its reply).
    let mut commands = scope.js.get_stream(&config.commands_stream).await.unwrap();
    let started = Instant::now();
    loop {
        let state = commands.info().await.unwrap().state.clone();
        assert_eq!(state.last_sequence, all.len() as u64, "each stored once");
        if state.messages == 0 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{} commands never acked",
            state.messages
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
    serve.stop().await;
}

/// Shutdown is bounded: with the store stalled under a durable command in flight, `serve`
/// stops within its drain timeout; the command, never acked, is handled by the next
/// instance once the store is back, and appended once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_shutdown_drains_within_its_timeout_and_loses_nothing() {
    let mut scope = Scope::new().await;
    scope.config.drain_timeout = Duration::from_millis(300);
    scope.config.ack_wait = Duration::from_millis(500);
    let inner: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let (faulty, gate) = FaultyLog::new(inner.clone());
    let begun = faulty.appends_begun.clone();
    let log: Arc<dyn EventLog> = Arc::new(faulty);
    let serve = InProcess::start(&scope, log.clone(), Queries::new()).await;
    gate.send_replace(false);
    let mut replies = scope.replies().await;
    let command = open_ticket(Uuid::new_v4());
    scope.publish_durable(&command).await;
    let started = Instant::now();
    while begun.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < DEADLINE,
            "the command never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval
    }
    let stopping = Instant::now();
    serve.stop().await;
    eprintln!("stopped in {:?} with the store stalled", stopping.elapsed());

    gate.send_replace(true);
    let serve = InProcess::start(&scope, log, Queries::new()).await;
    let id: Uuid = command["command_id"].as_str().unwrap().parse().unwrap();
    let mut got = HashMap::new();
    collect_replies(&mut replies, &HashSet::from([id]), &mut got).await;
    assert!(got[&id].is_success(), "{}", got[&id].to_json());
    let stream = format!(
        "ticket-{}",
        command["payload"]["ticket_id"].as_str().unwrap()
    );
    assert_eq!(inner.read_stream(&stream, 0).await.unwrap().len(), 1);
    serve.stop().await;
}

/// A ticket whose history is over the server's payload limit (80 notes of 16 KB, the server
/// carrying 1 MiB) is read in pages: each reply fits, and the pages together are the whole
/// history in order; `limit` cuts a page, a bad one is refused at `/limit`.
#[tokio::test]
async fn nats_a_long_history_is_paged_within_the_servers_payload() {
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    let ticket = Uuid::new_v4();
    let mut commands = vec![open_ticket(ticket)];
    for n in 0..80 {
        let text = format!("{n:02}{}", "x".repeat(15_990));
        commands.push(envelope(
            "add_note",
            system(),
            json!({"ticket_id": ticket, "text": text}),
        ));
    }
    provision_store(&store, &commands).await;
    let serve = Binary::start(&scope, &store, &["--no-process-managers"]);
    scope.wait_serving().await;
    let max_payload = scope.client.server_info().max_payload;
    let ask = |extra: Value| {
        let mut request =
            json!({"actor": {"id": "audit-1", "role": "auditor"}, "ticket_id": ticket});
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        request
    };
    let (mut after, mut versions, mut pages) = (0u64, Vec::new(), 0);
    loop {
        let page = scope
            .query("ticket_history", &ask(json!({"after_version": after})))
            .await;
        assert!(page.to_string().len() < max_payload, "a page fits a reply");
        assert_eq!(
            page["state"]["version"], 81,
            "the state is the whole ticket's"
        );
        versions.extend(
            page["events"]
                .as_array()
                .unwrap_or_else(|| panic!("{page}"))
                .iter()
                .map(|e| e["version"].as_u64().unwrap()),
        );
        pages += 1;
        match page["next_after_version"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert!(pages > 1, "over 1 MiB of history takes more than one page");
    assert_eq!(versions, (1..=81).collect::<Vec<_>>());
    let page = scope
        .query(
            "ticket_history",
            &ask(json!({"after_version": 10, "limit": 5})),
        )
        .await;
    let got: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(got, [11, 12, 13, 14, 15]);
    assert_eq!(page["next_after_version"], 15);
    let bad = scope
        .query("ticket_history", &ask(json!({"limit": 0})))
        .await;
    assert_eq!(bad["error"]["details"][0]["path"], "/limit");
    drop(serve);
}

/// The hostile corpus (`corpus.rs`, over 300 commands) over request/reply: each refused,
/// nothing appended, and `serve` still answers afterwards.
#[tokio::test]
async fn nats_the_bad_input_corpus_is_refused_and_appends_nothing() {
    let scope = Scope::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("closeloop.db").display());
    let serve = Binary::start(&scope, &store, &["--no-process-managers", "--no-scheduler"]);
    scope.wait_serving().await;
    let corpus = crate::corpus::bad_commands();
    for (kind, bytes, how) in &corpus {
        let reply = scope.request(kind, bytes.clone()).await;
        assert!(
            matches!(reply, Reply::Rejected { .. }),
            "{kind}, {how}: {}",
            reply.to_json()
        );
    }
    let log = closeloop_core::log::open(&store).await.unwrap();
    assert_eq!(log.head().await.unwrap(), 0, "nothing appended");
    accepted(&scope.command(&open_ticket(Uuid::new_v4())).await);
    drop(serve);
}
