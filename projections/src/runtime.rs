//! What every projector shares with whoever runs and shows it: [`ProjectorError`] (why it
//! stopped: an event it cannot fold, or a store or log failure worth retrying) and [`Status`]
//! (its position, the head it last saw, its lag and its error, shown in every report so
//! staleness is never silent).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use closeloop_core::log::Position;

/// Why a projector stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProjectorError {
    /// An event could not be decoded or folded. The projector stops at it (its saved state
    /// stays before it) until the cause is fixed; other projectors go on.
    #[error("projector {projector} stopped at position {position} ({event_type}): {message}")]
    Apply {
        projector: &'static str,
        position: Position,
        event_type: String,
        message: String,
    },
    /// The log or the checkpoint store failed; retrying later may help.
    #[error("projector {projector}: {message}")]
    Store {
        projector: &'static str,
        message: String,
    },
}

/// How far a projector is; shared with whoever displays it.
#[derive(Debug)]
pub struct Status {
    pub name: &'static str,
    pub version: u32,
    position: AtomicU64,
    head: AtomicU64,
    error: Mutex<Option<String>>,
}

impl Status {
    fn new(name: &'static str, version: u32) -> Status {
        Status {
            name,
            version,
            position: AtomicU64::new(0),
            head: AtomicU64::new(0),
            error: Mutex::new(None),
        }
    }

    /// The status of a model loaded as saved and not running (a replay target such as
    /// `sla@<until>`): fixed at `position`, which is also its head.
    pub fn fixed(name: &'static str, version: u32, position: Position) -> Status {
        let status = Status::new(name, version);
        status.position.store(position, Ordering::Release);
        status.head.store(position, Ordering::Release);
        status
    }

    /// The last position folded into the model.
    pub fn position(&self) -> Position {
        self.position.load(Ordering::Acquire)
    }

    /// The head of the log when the projector last looked.
    pub fn head(&self) -> Position {
        self.head.load(Ordering::Acquire)
    }

    /// Positions behind the head (as last seen).
    pub fn lag(&self) -> u64 {
        self.head().saturating_sub(self.position())
    }

    pub(crate) fn set_position(&self, position: Position) {
        self.position.store(position, Ordering::Release);
        self.head.fetch_max(position, Ordering::AcqRel);
    }

    pub(crate) fn raise_head(&self, head: Position) {
        self.head.fetch_max(head, Ordering::AcqRel);
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        *self.error.lock().expect("status lock") = error;
    }

    /// Why it stopped, if it did.
    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("status lock").clone()
    }
}
