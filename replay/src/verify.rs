//! `closeloop verify`: proves the log complete and untouched, or names where it is not.

use closeloop_core::log::{
    verify_chain, ChainBreak, EventLog, Filter, LogVerifier, READ_BATCH_MAX,
};

use crate::Error;

/// What a verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: usize,
    pub breaks: Vec<ChainBreak>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Verifies one stream: contiguous versions from 1 and an unbroken hash chain.
pub async fn verify_stream(log: &dyn EventLog, stream: &str) -> Result<VerifyReport, Error> {
    let events = log.read_stream(stream, 0).await?;
    Ok(VerifyReport {
        events: events.len() as u64,
        streams: usize::from(!events.is_empty()),
        breaks: verify_chain(&events),
    })
}

/// Verifies the whole log in position order, in bounded batches; memory grows with the
/// number of streams, not events.
pub async fn verify_log(
    log: &dyn EventLog,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, Error> {
    let mut verifier = LogVerifier::new();
    let mut breaks = Vec::new();
    let mut after = 0;
    loop {
        let batch = log.read_all(after, READ_BATCH_MAX, Filter::All).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in &batch {
            breaks.extend(verifier.check(event));
        }
        progress(verifier.events);
    }
    let head = log.head().await?;
    if after != head {
        breaks.push(ChainBreak {
            stream: String::new(),
            version: 0,
            position: head,
            problem: format!(
                "the head is at position {head} but the last readable event is at {after}"
            ),
        });
    }
    Ok(VerifyReport {
        events: verifier.events,
        streams: verifier.streams(),
        breaks,
    })
}
