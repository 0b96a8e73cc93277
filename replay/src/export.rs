//! `closeloop export`: stored events as JSON lines, hashes included, for auditors' own tools.
//! Each line is the stored event (as the events stream carries it) plus `log_id`, the
//! identity of the log it came from, so that an exported line, once copied elsewhere, still
//! says which log it belongs to, and an export can be checked against that log's signed
//! checkpoints (README, Audit).

use std::io::Write;

use closeloop_core::log::{EventLog, Filter, StoredEvent, READ_BATCH_MAX};
use jiff::Timestamp;
use serde::Serialize;
use uuid::Uuid;

use crate::Error;

/// Writes the events of `stream` (or of the whole log) recorded at or after `since`
/// (business time), one JSON object per line; returns how many were written.
pub async fn export(
    log: &dyn EventLog,
    stream: Option<&str>,
    since: Option<Timestamp>,
    out: &mut dyn Write,
) -> Result<u64, Error> {
    let keep =
        |e: &closeloop_core::log::StoredEvent| since.is_none_or(|s| e.metadata.occurred_at >= s);
    let log_id = log.log_id().await?;
    let mut written = 0;
    let mut emit =
        |e: &closeloop_core::log::StoredEvent, out: &mut dyn Write| -> Result<(), Error> {
            let line = Exported { event: e, log_id };
            serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            written += 1;
            Ok(())
        };
    match stream {
        Some(stream) => {
            for e in log.read_stream(stream, 0).await?.iter().filter(|e| keep(e)) {
                emit(e, out)?;
            }
        }
        None => {
            let mut after = 0;
            loop {
                let batch = log.read_all(after, READ_BATCH_MAX, Filter::All).await?;
                let Some(last) = batch.last() else { break };
                after = last.position;
                for e in batch.iter().filter(|e| keep(e)) {
                    emit(e, out)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(written)
}

/// One exported line: the stored event's fields, then `log_id`.
#[derive(Serialize)]
struct Exported<'a> {
    #[serde(flatten)]
    event: &'a StoredEvent,
    log_id: Uuid,
}
