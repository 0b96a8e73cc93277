//! Replies, exactly as the public contract (docs/contract.md, Replies) shows them.

use closeloop_core::domain::Rejection;
use closeloop_core::log::{Committed, Position};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    /// Appended now.
    Accepted {
        command_id: Uuid,
        stream: String,
        /// Version of the stream's last appended event.
        version: u64,
        /// Global position of the last appended event.
        position: Position,
        /// Appended event types, in order.
        events: Vec<String>,
    },
    /// The command id was seen before: the first reply's fields; nothing appended.
    Duplicate {
        command_id: Uuid,
        stream: String,
        version: u64,
        position: Position,
        events: Vec<String>,
    },
    /// Refused: nothing appended.
    Rejected {
        /// `null` when the command was too malformed to read its id.
        command_id: Option<Uuid>,
        error: Rejection,
    },
}

impl Reply {
    pub fn accepted(command_id: Uuid, c: Committed) -> Reply {
        Reply::Accepted {
            command_id,
            stream: c.stream,
            version: c.version,
            position: c.position,
            events: c.events,
        }
    }

    pub fn duplicate(command_id: Uuid, c: Committed) -> Reply {
        Reply::Duplicate {
            command_id,
            stream: c.stream,
            version: c.version,
            position: c.position,
            events: c.events,
        }
    }

    pub fn rejected(command_id: Option<Uuid>, error: Rejection) -> Reply {
        Reply::Rejected { command_id, error }
    }

    /// Whether the command's effect is in the log (now or from an earlier try).
    pub fn is_success(&self) -> bool {
        !matches!(self, Reply::Rejected { .. })
    }

    /// The rejection, if any.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Reply::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }

    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("replies always serialize")
    }
}
