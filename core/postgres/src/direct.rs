//! Direct appends (see "Direct appends" in the crate doc): an append with nothing else in
//! flight takes the writer's state for itself and runs its batch of one on its own task.

use tokio::sync::oneshot;

use closeloop_log::*;

use crate::common::*;
use crate::writer::*;

/// Writes `pending` on the caller's own task (see "Direct appends" in the crate doc):
/// the batch of one goes through the writer's usual path, on the direct connection.
pub(crate) async fn append_direct(
    writer: tokio::sync::MutexGuard<'_, Writer>,
    pending: Pending,
    answer: oneshot::Receiver<Result<AppendOutcome, Error>>,
) -> Result<AppendOutcome, Error> {
    let mut turn = DirectTurn::begin(writer);
    Counters::bump(&turn.writer.shared.counters.direct_appends, 1);
    turn.writer.run_batch(vec![pending], None).await;
    turn.finished = true;
    drop(turn);
    match answer.await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::Unavailable(
            "a direct append was not answered; retry with the same command id".into(),
        )),
    }
}

/// A direct append's hold on the writer: the direct connection is swapped in for the turn
/// and back out when it ends. A turn abandoned midway (its caller's future was dropped, by
/// a timeout say) left its append in doubt: the connection is dropped, which rolls back
/// anything it had begun, and the cached heads are forgotten, so the next batch reads the
/// truth under the lock. (The append's `Pending`, dropped with the turn, uncounts it.)
pub(crate) struct DirectTurn<'a> {
    pub(crate) writer: tokio::sync::MutexGuard<'a, Writer>,
    pub(crate) finished: bool,
}

impl<'a> DirectTurn<'a> {
    pub(crate) fn begin(mut writer: tokio::sync::MutexGuard<'a, Writer>) -> DirectTurn<'a> {
        let w = &mut *writer;
        std::mem::swap(&mut w.conn, &mut w.direct);
        DirectTurn {
            writer,
            finished: false,
        }
    }
}

impl Drop for DirectTurn<'_> {
    fn drop(&mut self) {
        let w = &mut *self.writer;
        if !self.finished {
            w.conn = None;
            w.cache.invalidate();
            w.sent.clear();
        }
        std::mem::swap(&mut w.conn, &mut w.direct);
    }
}
