//! Signed checkpoints (`closeloop keygen`, `closeloop checkpoint`, `closeloop verify
//! --checkpoints`): the hash chains prove each stream consistent with itself, but anyone who
//! can write the database can rewrite a stream and recompute its hashes, or cut the log's
//! tail, and the chains still hold. A checkpoint anchors the log outside the database: the
//! log's identity, its head, every stream's head hash as of that head and a root hash over
//! them, signed with an Ed25519 key the operator keeps away from the database. Verification
//! compares the log with every checkpoint and names what no longer matches.
//!
//! The format is defined in the README ("Audit"), precisely enough for another language
//! (`docs/verify.py` is such a verifier); in short:
//! - `root` = lowercase hex SHA-256 over, for every stream in ascending byte order of its
//!   name, the UTF-8 bytes of `<stream>\n<version>\n<head hash>\n` (version in decimal, the
//!   hash as stored: 64 lowercase hex digits). A stream name with a newline cannot be
//!   checkpointed (the handler never makes one: ids have no white space).
//! - the signed bytes are the UTF-8 text
//!   `closeloop-checkpoint-v1\n<log_id>\n<head>\n<created_at>\n<stream_count>\n<root>\n`,
//!   `created_at` exactly as written in the checkpoint;
//! - `signature` = lowercase hex of the 64-byte Ed25519 signature (RFC 8032) of those bytes.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use closeloop_core::log::{EventLog, Filter, LogVerifier, Position, READ_BATCH_MAX};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::verify::VerifyReport;

/// The `format` of every checkpoint this code writes, first line of its signed bytes.
pub const FORMAT: &str = "closeloop-checkpoint-v1";

/// A key file that cannot be used: its path and what is wrong, in words an operator can act
/// on. Key files are read as hostile input (wrong length, wrong digits, readable by others).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct KeyError {
    pub path: PathBuf,
    pub problem: String,
}

fn key_error(path: &Path, problem: impl Into<String>) -> KeyError {
    KeyError {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The public key file beside a secret key file: `<KEYFILE>.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// `closeloop keygen`: a new Ed25519 key from the operating system's random source. The
/// secret file holds the 32-byte seed as 64 lowercase hex digits and a newline, created with
/// mode 0600 and never over an existing file; `<out>.pub` holds the public key the same way.
/// Returns the public key's hex.
pub fn keygen(out: &Path) -> Result<String, KeyError> {
    use rand::TryRngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| key_error(out, format!("no randomness from the operating system: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let public = hex::encode(key.verifying_key().as_bytes());
    let public_path = public_key_path(out);
    for path in [out, public_path.as_path()] {
        if path.exists() {
            return Err(key_error(
                path,
                "already exists; keygen never overwrites a key (move it away first)",
            ));
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(out)
        .map_err(|e| key_error(out, format!("cannot create: {e}")))?;
    file.write_all(format!("{}\n", hex::encode(key.to_bytes())).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_error(out, format!("cannot write: {e}")))?;
    std::fs::write(&public_path, format!("{public}\n"))
        .map_err(|e| key_error(&public_path, format!("cannot write: {e}")))?;
    Ok(public)
}

/// 32 bytes written as 64 hex digits (surrounding white space ignored).
fn read_key_bytes(path: &Path, what: &str) -> Result<[u8; 32], KeyError> {
    let text = std::fs::read(path).map_err(|e| key_error(path, format!("cannot read: {e}")))?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| key_error(path, format!("not text: a {what} file holds 64 hex digits")))?
        .trim();
    if text.len() != 64 {
        return Err(key_error(
            path,
            format!(
                "expected 64 hex digits (a 32-byte Ed25519 {what}), found {} characters",
                text.chars().count()
            ),
        ));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|e| {
        key_error(
            path,
            format!("expected 64 hex digits (a 32-byte Ed25519 {what}): {e}"),
        )
    })?;
    Ok(bytes)
}

/// Reads a secret key written by [`keygen`]. Refuses a file that others may read, as ssh
/// does: whoever reads it can sign checkpoints for a rewritten log.
pub fn read_secret_key(path: &Path) -> Result<SigningKey, KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| key_error(path, format!("cannot read: {e}")))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(key_error(
                path,
                format!(
                    "the secret key is accessible to others (mode {:04o}); `chmod 600` it",
                    mode & 0o7777
                ),
            ));
        }
    }
    let mut seed = read_key_bytes(path, "secret key")?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(key)
}

/// Reads a public key (`<KEYFILE>.pub`, or the 64 hex digits keygen printed).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let bytes = read_key_bytes(path, "public key")?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|e| key_error(path, format!("not an Ed25519 public key: {e}")))
}

/// One stream's head as of a checkpoint's head: `[stream, version, hash]` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead(pub String, pub u64, pub String);

/// A signed checkpoint: one line of a checkpoints file, one message of
/// `CLOSELOOP_CHECKPOINTS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// [`FORMAT`].
    pub format: String,
    pub log_id: Uuid,
    /// The log's head when the checkpoint was taken: it covers positions 1..=head.
    pub head: Position,
    /// When it was taken (RFC 3339, UTC); signed as written.
    pub created_at: String,
    /// How many streams `streams` lists (signed, so a list cut short is caught even before
    /// the root is recomputed).
    pub stream_count: u64,
    /// Hex SHA-256 over the stream heads (module doc).
    pub root: String,
    /// Every stream with an event at or below `head`, ascending by name, with its version
    /// and hash as of `head`: what lets verification name the stream that changed.
    pub streams: Vec<StreamHead>,
    /// The signer's public key (hex), for information: verification uses the key the
    /// auditor holds, never this one.
    pub public_key: String,
    /// Hex Ed25519 signature over [`Checkpoint::signed_bytes`].
    pub signature: String,
}

impl Checkpoint {
    /// The bytes the signature covers (module doc).
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n",
            self.format, self.log_id, self.head, self.created_at, self.stream_count, self.root
        )
        .into_bytes()
    }
}

/// The root hash over stream heads given in ascending order of name (module doc).
pub fn root_of(streams: &[StreamHead]) -> String {
    let mut hasher = Sha256::new();
    for StreamHead(stream, version, hash) in streams {
        hasher.update(stream.as_bytes());
        hasher.update(b"\n");
        hasher.update(version.to_string().as_bytes());
        hasher.update(b"\n");
        hasher.update(hash.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// What stops a checkpoint from being taken.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Log(#[from] closeloop_core::Error),
    /// A stream name the root's text form cannot carry unambiguously.
    #[error("stream {0:?} has a newline in its name: it cannot be checkpointed")]
    StreamName(String),
    /// The log's own chains or positions are broken: signing it would vouch for damage.
    #[error(
        "the log does not verify ({0}); run `closeloop verify` and repair before checkpointing"
    )]
    Broken(String),
}

/// Takes a checkpoint of `log` as of its current head, signed with `key`. Reads the log up
/// to the head once, checking the chains on the way: a log that does not verify is not
/// signed.
pub async fn take(log: &dyn EventLog, key: &SigningKey) -> Result<Checkpoint, CheckpointError> {
    let log_id = log.log_id().await?;
    let head = log.head().await?;
    let mut verifier = LogVerifier::new();
    let mut heads: HashMap<String, (u64, String)> = HashMap::new();
    let mut after = 0;
    while after < head {
        let batch = log.read_all(after, READ_BATCH_MAX, Filter::All).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in batch.iter().take_while(|e| e.position <= head) {
            if let Some(first) = verifier.check(event).first() {
                return Err(CheckpointError::Broken(first.to_string()));
            }
            heads.insert(event.stream.clone(), (event.version, event.hash.clone()));
        }
    }
    if after < head {
        return Err(CheckpointError::Broken(format!(
            "the head is at position {head} but the last readable event is at {after}"
        )));
    }
    let mut streams: Vec<StreamHead> = heads
        .into_iter()
        .map(|(stream, (version, hash))| StreamHead(stream, version, hash))
        .collect();
    if let Some(bad) = streams.iter().find(|s| s.0.contains('\n')) {
        return Err(CheckpointError::StreamName(bad.0.clone()));
    }
    streams.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut checkpoint = Checkpoint {
        format: FORMAT.to_owned(),
        log_id,
        head,
        created_at: jiff::Timestamp::now().to_string(),
        stream_count: streams.len() as u64,
        root: root_of(&streams),
        streams,
        public_key: hex::encode(key.verifying_key().as_bytes()),
        signature: String::new(),
    };
    checkpoint.signature = hex::encode(key.sign(&checkpoint.signed_bytes()).to_bytes());
    Ok(checkpoint)
}

/// Appends `checkpoint` as one line to the JSON-lines file at `path` (created if missing)
/// and syncs it to disk.
pub fn append_to_file(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(checkpoint).map_err(std::io::Error::from)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    file.write_all(&line)?;
    file.sync_all()
}

/// Whether a checkpoint is authentic: signed by `public` over its own fields, its stream
/// list the one its root and count were signed for, and of this log. `Err` says why not.
pub fn authenticate(
    checkpoint: &Checkpoint,
    public: &VerifyingKey,
    log_id: Uuid,
) -> Result<(), String> {
    if checkpoint.format != FORMAT {
        return Err(format!(
            "forged or foreign: format `{}`, expected `{FORMAT}`",
            checkpoint.format
        ));
    }
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&checkpoint.signature, &mut signature)
        .map_err(|e| format!("forged: the signature is not 128 hex digits ({e})"))?;
    let signature = Signature::from_bytes(&signature);
    if public
        .verify_strict(&checkpoint.signed_bytes(), &signature)
        .is_err()
    {
        let given = hex::encode(public.as_bytes());
        let by = if checkpoint.public_key != given {
            format!(
                " (it names key {}, not the given key {given})",
                checkpoint.public_key
            )
        } else {
            String::new()
        };
        return Err(format!(
            "forged: the signature does not verify with the given public key{by}"
        ));
    }
    if checkpoint.stream_count != checkpoint.streams.len() as u64 {
        return Err(format!(
            "forged: it lists {} streams but signed {}",
            checkpoint.streams.len(),
            checkpoint.stream_count
        ));
    }
    let sorted = checkpoint
        .streams
        .windows(2)
        .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes());
    if !sorted {
        return Err("forged: its streams are not in ascending order of name".into());
    }
    let root = root_of(&checkpoint.streams);
    if root != checkpoint.root {
        return Err(format!(
            "forged: its stream heads hash to {root}, not to the signed root {}",
            checkpoint.root
        ));
    }
    if checkpoint.log_id != log_id {
        return Err(format!(
            "a checkpoint of log {}, and this is log {log_id}",
            checkpoint.log_id
        ));
    }
    Ok(())
}

/// One finding of [`verify`] about one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The checkpoint's line in the file (from 1).
    pub line: usize,
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "checkpoint line {}: {}", self.line, self.problem)
    }
}

/// The newest checkpoint the log agrees with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    pub line: usize,
    pub head: Position,
    pub created_at: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct CheckpointReport {
    /// The whole-log verification (chains, versions, positions), done in the same pass.
    pub log: VerifyReport,
    pub log_id: Uuid,
    /// The log's head.
    pub head: Position,
    /// Checkpoints read.
    pub checkpoints: usize,
    pub findings: Vec<Finding>,
    /// The newest authentic checkpoint the log agrees with: positions 1..=head are proven.
    pub covered: Option<Covered>,
}

impl CheckpointReport {
    pub fn ok(&self) -> bool {
        self.log.ok() && self.findings.is_empty()
    }
}

/// Verifies the log and compares it with every checkpoint in `checkpoints` (JSON lines):
/// forged checkpoints (bad signature, a list that is not the signed one, another log's) are
/// named and set aside; each authentic one is compared with the log as of its head, naming
/// every stream rewritten, cut short, removed or added, and a tail cut below its head.
pub async fn verify(
    log: &dyn EventLog,
    checkpoints: &str,
    public: &VerifyingKey,
) -> Result<CheckpointReport, crate::Error> {
    let log_id = log.log_id().await?;
    let mut findings = Vec::new();
    let mut authentic: Vec<(usize, Checkpoint)> = Vec::new();
    let mut read = 0;
    for (i, text) in checkpoints.lines().enumerate() {
        let line = i + 1;
        if text.trim().is_empty() {
            continue;
        }
        read += 1;
        let checkpoint: Checkpoint = match serde_json::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                findings.push(Finding {
                    line,
                    problem: format!("not a checkpoint ({e}): damaged or forged"),
                });
                continue;
            }
        };
        match authenticate(&checkpoint, public, log_id) {
            Ok(()) => authentic.push((line, checkpoint)),
            Err(problem) => findings.push(Finding { line, problem }),
        }
    }
    authentic.sort_by_key(|(line, c)| (c.head, *line));

    // One pass in position order: the chains, and each stream's head as of every
    // checkpoint's head.
    let mut verifier = LogVerifier::new();
    let mut breaks = Vec::new();
    let mut state: HashMap<String, (u64, String)> = HashMap::new();
    let mut agreed: Vec<(usize, bool)> = Vec::new();
    let mut next = 0;
    let compare = |at: Position,
                   state: &HashMap<String, (u64, String)>,
                   next: &mut usize,
                   findings: &mut Vec<Finding>,
                   agreed: &mut Vec<(usize, bool)>| {
        while *next < authentic.len() && authentic[*next].1.head <= at {
            let (line, checkpoint) = &authentic[*next];
            let problems = compare_heads(checkpoint, state);
            agreed.push((*next, problems.is_empty()));
            findings.extend(problems.into_iter().map(|problem| Finding {
                line: *line,
                problem,
            }));
            *next += 1;
        }
    };
    compare(0, &state, &mut next, &mut findings, &mut agreed);
    let mut after = 0;
    loop {
        let batch = log.read_all(after, READ_BATCH_MAX, Filter::All).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in &batch {
            breaks.extend(verifier.check(event));
            state.insert(event.stream.clone(), (event.version, event.hash.clone()));
            compare(
                event.position,
                &state,
                &mut next,
                &mut findings,
                &mut agreed,
            );
        }
    }
    let head = log.head().await?;
    if after != head {
        breaks.push(closeloop_core::log::ChainBreak {
            stream: String::new(),
            version: 0,
            position: head,
            problem: format!(
                "the head is at position {head} but the last readable event is at {after}"
            ),
        });
    }
    // Checkpoints beyond the end of the log: its tail was cut.
    while next < authentic.len() {
        let (line, checkpoint) = &authentic[next];
        findings.push(Finding {
            line: *line,
            problem: format!(
                "truncated tail: the log ends at position {after} (head {head}), but this \
                 checkpoint of {} covered positions 1..={}: positions {}..={} were removed",
                checkpoint.created_at,
                checkpoint.head,
                after + 1,
                checkpoint.head
            ),
        });
        findings.extend(
            compare_heads(checkpoint, &state)
                .into_iter()
                .map(|problem| Finding {
                    line: *line,
                    problem,
                }),
        );
        agreed.push((next, false));
        next += 1;
    }
    let covered = agreed
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(i, _)| &authentic[*i])
        .max_by_key(|(line, c)| (c.head, *line))
        .map(|(line, c)| Covered {
            line: *line,
            head: c.head,
            created_at: c.created_at.clone(),
        });
    findings.sort_by_key(|f| f.line);
    Ok(CheckpointReport {
        log: VerifyReport {
            events: verifier.events,
            streams: verifier.streams(),
            breaks,
        },
        log_id,
        head,
        checkpoints: read,
        findings,
        covered,
    })
}

/// The differences between the log's stream heads as of a checkpoint's head and the
/// checkpoint's, each naming its stream and what it means.
fn compare_heads(checkpoint: &Checkpoint, state: &HashMap<String, (u64, String)>) -> Vec<String> {
    let at = checkpoint.head;
    let mut problems = Vec::new();
    for StreamHead(stream, version, hash) in &checkpoint.streams {
        match state.get(stream) {
            None => problems.push(format!(
                "removed stream: {stream} (version {version} at the checkpoint) is not in the \
                 log at or below position {at}"
            )),
            Some((found, _)) if found < version => problems.push(format!(
                "truncated stream: {stream} ends at version {found} at or below position \
                 {at}, the checkpoint signed version {version}: its later events were removed"
            )),
            Some((found, _)) if found > version => problems.push(format!(
                "inserted events: {stream} is at version {found} at or below position {at}, \
                 the checkpoint signed version {version}"
            )),
            Some((_, found)) if found != hash => problems.push(format!(
                "rewritten stream: {stream} version {version} has hash {found}, the checkpoint \
                 signed {hash}: the stream was rewritten and its hashes recomputed"
            )),
            Some(_) => {}
        }
    }
    if state.len() > checkpoint.streams.len() || !problems.is_empty() {
        let listed: std::collections::HashSet<&str> =
            checkpoint.streams.iter().map(|s| s.0.as_str()).collect();
        let mut extra: Vec<_> = state
            .iter()
            .filter(|(name, _)| !listed.contains(name.as_str()))
            .collect();
        extra.sort_by(|a, b| a.0.cmp(b.0));
        for (stream, (version, _)) in extra {
            problems.push(format!(
                "inserted stream: {stream} (version {version}) is in the log at or below \
                 position {at} but not in the checkpoint"
            ));
        }
    }
    problems
}
