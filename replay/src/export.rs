//! `closeloop export`: stored events as JSON lines, hashes included, for auditors' own tools.

use std::io::Write;

use closeloop_core::log::{EventLog, Filter, READ_BATCH_MAX};
use jiff::Timestamp;

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
    let mut written = 0;
    let mut emit =
        |e: &closeloop_core::log::StoredEvent, out: &mut dyn Write| -> Result<(), Error> {
            serde_json::to_writer(&mut *out, e).map_err(std::io::Error::from)?;
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
