//! A ticket as the process managers see it: what each manager decides on.

use closeloop_core::domain::Ticket;
use jiff::Timestamp;

/// A ticket as the process managers see it.
#[derive(Debug, Clone)]
pub struct TrackedTicket {
    pub ticket: Ticket,
    /// Set while the ticket sits with a backup: the away agent it was moved from.
    pub moved_from: Option<String>,
    /// Business time of its last event.
    pub last_at: Timestamp,
}
