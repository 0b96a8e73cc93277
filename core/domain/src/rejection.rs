//! Why a command was refused. A rejection is data (it becomes the `error` of a `rejected`
//! reply), always names the offending field when there is one, and means nothing was appended.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The error codes of the public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// The command is malformed or a value is out of range: fix the input.
    Validation,
    /// The ticket, agent, calendar or policy named does not exist.
    NotFound,
    /// `expected_version` did not match the stream: reload and decide again. Or, at
    /// `/command_id`, the id was already used for another command: use a new id.
    Conflict,
    /// The ticket's state does not allow this command now.
    InvalidTransition,
    /// The actor may not do this.
    Forbidden,
    /// Over NATS: no valid credential (a missing, malformed, unverifiable or expired token,
    /// or one asserting a role its key may not): nothing was decided.
    Unauthorized,
    /// The engine could not reach its store: retry later with the same `command_id`.
    Unavailable,
    /// The engine failed on this command in a way a retry would repeat (a bug, or data the
    /// store refused): nothing was appended; report it rather than retry.
    Internal,
}

/// What a caller can do about an error: the one thing every code says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Try again later with the same `command_id` (`unavailable`).
    Retryable,
    /// The command was decided against: change it before sending it again.
    #[default]
    Refused,
    /// The engine failed (`internal`): retrying repeats it.
    Bug,
}

impl RejectionCode {
    /// Its kind: whether a retry may help.
    pub fn kind(self) -> ErrorKind {
        match self {
            RejectionCode::Unavailable => ErrorKind::Retryable,
            RejectionCode::Internal => ErrorKind::Bug,
            RejectionCode::Validation
            | RejectionCode::NotFound
            | RejectionCode::Conflict
            | RejectionCode::InvalidTransition
            | RejectionCode::Forbidden
            | RejectionCode::Unauthorized => ErrorKind::Refused,
        }
    }
}

/// One offending field: a JSON Pointer into the command and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Detail {
    pub path: String,
    pub message: String,
}

/// A refused command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Rejection {
    pub code: RejectionCode,
    /// The code's kind (`RejectionCode::kind`), spelled out for callers.
    #[serde(default)]
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
}

impl Rejection {
    pub fn new(code: RejectionCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            kind: code.kind(),
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A rejection about one field; `path` is a JSON Pointer such as `/payload/score`.
    pub fn at(code: RejectionCode, path: &str, message: impl Into<String>) -> Rejection {
        let message = message.into();
        Rejection {
            code,
            kind: code.kind(),
            message: format!("{path}: {message}"),
            details: vec![Detail {
                path: path.to_owned(),
                message,
            }],
        }
    }

    pub fn validation(path: &str, message: impl Into<String>) -> Rejection {
        Rejection::at(RejectionCode::Validation, path, message)
    }

    pub fn invalid_transition(message: impl Into<String>) -> Rejection {
        Rejection::new(RejectionCode::InvalidTransition, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Rejection {
        Rejection::new(RejectionCode::Forbidden, message)
    }

    pub fn not_found(path: &str, message: impl Into<String>) -> Rejection {
        Rejection::at(RejectionCode::NotFound, path, message)
    }
}
