//! A ticket's history: every stored event in version order with who, when and why, and the
//! state they fold to. It can be cut on two time axes ([`Cut`]): business time (what had
//! happened by then, `occurred_at`) and recorded time (what the log held then,
//! `recorded_at`). Either cut is a prefix of the stream, so a history never skips a version,
//! even over events written before business time was kept monotonic.

use std::borrow::Cow;
use std::fmt::Write as _;

use closeloop_core::domain::{evolve, Event, Ticket, TicketState};
use closeloop_core::log::{shred, EventLog, StoredEvent};
use jiff::Timestamp;
use serde::Serialize;
use uuid::Uuid;

use crate::Error;

/// The JSON of `closeloop history TICKET_ID --json` and the `ticket_history` query.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub stream: String,
    pub state: Ticket,
    pub events: Vec<StoredEvent>,
    /// Always `null` here (the whole history); the query's pages name the next one.
    pub next_after_version: Option<u64>,
}

/// Where a history stops: at a business time, a recorded time, both, or not at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cut {
    /// Business time: events that occurred at or before it (`--as-of`).
    pub as_of: Option<Timestamp>,
    /// Recorded time: events the log held at it (`--as-known-at`).
    pub as_known_at: Option<Timestamp>,
}

impl Cut {
    /// Whether `event` is inside the cut.
    fn holds(&self, event: &StoredEvent) -> bool {
        self.as_of.is_none_or(|t| event.metadata.occurred_at <= t)
            && self
                .as_known_at
                .is_none_or(|t| event.metadata.recorded_at <= t)
    }

    /// " as of T, as known at U", or nothing.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(t) = self.as_of {
            let _ = write!(out, " as of {t}");
        }
        if let Some(t) = self.as_known_at {
            let _ = write!(
                out,
                "{} as known at {t}",
                if out.is_empty() { "" } else { "," }
            );
        }
        out
    }
}

/// Loads the ticket's history, cut at `cut`: the longest prefix of the stream whose events
/// are all inside it.
pub async fn ticket_history(
    log: &dyn EventLog,
    ticket_id: Uuid,
    cut: Cut,
) -> Result<History, Error> {
    let stream = format!("ticket-{ticket_id}");
    let mut events = log.read_stream(&stream, 0).await?;
    let inside = events.iter().take_while(|e| cut.holds(e)).count();
    events.truncate(inside);
    // The read boundary: customer texts open here, or read `[erased]` (see `shred`).
    shred::unseal(log.keys().as_ref(), &mut events).await?;
    let mut state: TicketState = None;
    for stored in &events {
        state = evolve(state, &stored.decode()?);
    }
    let state = state.ok_or(Error::TicketNotFound(ticket_id))?;
    Ok(History {
        stream,
        state,
        events,
        next_after_version: None,
    })
}

/// Most events of one page of a history.
pub const PAGE_EVENTS_MAX: usize = 1_000;

/// One page of a ticket's history (the `ticket_history` query), with what a reader's
/// visibility needs of the whole: memory holds one page of the log, whatever the ticket's
/// length.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPage {
    pub stream: String,
    /// The ticket as of the cut: every event inside it folded, page by page.
    pub state: Ticket,
    /// The events of this page: versions after `after_version`, at most `limit`.
    pub events: Vec<StoredEvent>,
    /// The `after_version` of the next page; `null` on the last.
    pub next_after_version: Option<u64>,
    /// Who opened the ticket.
    #[serde(skip)]
    pub opened_by: Option<closeloop_core::domain::Actor>,
    /// Its assignments and escalations, the events visibility asks about.
    #[serde(skip)]
    pub handovers: Vec<Event>,
}

/// Reads the page of the ticket's history cut at `cut` that follows `after_version`, at
/// most `limit` events (clamped to 1..=[`PAGE_EVENTS_MAX`]), folding the whole cut for its
/// state.
pub async fn ticket_history_page(
    log: &dyn EventLog,
    ticket_id: Uuid,
    cut: Cut,
    after_version: u64,
    limit: usize,
) -> Result<HistoryPage, Error> {
    let stream = format!("ticket-{ticket_id}");
    let limit = limit.clamp(1, PAGE_EVENTS_MAX);
    let (mut state, mut events, mut next_after_version) = (None, Vec::new(), None);
    let (mut opened_by, mut handovers) = (None, Vec::new());
    let mut read = 0;
    'pages: loop {
        let mut page = log
            .read_stream_page(&stream, read, closeloop_core::log::READ_BATCH_MAX)
            .await?;
        // The read boundary: customer texts open here, or read `[erased]` (see `shred`).
        shred::unseal(log.keys().as_ref(), &mut page).await?;
        let Some(last) = page.last() else { break };
        read = last.version;
        for stored in page {
            if !cut.holds(&stored) {
                break 'pages;
            }
            let event = stored.decode()?;
            state = evolve(state, &event);
            if opened_by.is_none() {
                opened_by = Some(stored.metadata.actor.clone());
            }
            if matches!(event, Event::TicketAssigned(_) | Event::TicketEscalated(_)) {
                handovers.push(event);
            }
            if stored.version > after_version {
                if events.len() < limit {
                    events.push(stored);
                } else if next_after_version.is_none() {
                    next_after_version = events.last().map(|e: &StoredEvent| e.version);
                }
            }
        }
    }
    let state = state.ok_or(Error::TicketNotFound(ticket_id))?;
    Ok(HistoryPage {
        stream,
        state,
        events,
        next_after_version,
        opened_by,
        handovers,
    })
}

impl HistoryPage {
    /// Drops events from the end of the page until its JSON is at most `bytes_max` (one
    /// event always stays), moving `next_after_version` back to match.
    pub fn fit(&mut self, bytes_max: usize) {
        let size = |page: &HistoryPage| serde_json::to_vec(page).map_or(usize::MAX, |b| b.len());
        while self.events.len() > 1 && size(self) > bytes_max {
            // Halve rather than pop one at a time: a page of 1,000 fits in a few tries.
            let keep = self.events.len() / 2;
            self.events.truncate(keep);
            self.next_after_version = self.events.last().map(|e| e.version);
        }
    }
}

/// `text` safe to print on a terminal line: control characters (newlines, carriage returns,
/// the escape that starts ANSI colour and cursor sequences, C1 controls) and the bidirectional
/// overrides that reorder what a reader sees are shown as `\u{..}` escapes. Texts in events
/// come from outside (notes, subjects, resolutions, actor ids); printed as they are, a note
/// holding a newline and a fake event line would forge a row of the history.
pub fn printable(text: &str) -> Cow<'_, str> {
    fn hostile(c: char) -> bool {
        c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(hostile) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hostile(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// How much later than it occurred an event was recorded, as `+34d2h`, `+1h30m` or `+5m`;
/// `-` under a minute either way. The gap is what backdating and late imports leave, shown
/// so an auditor sees it beside the business time.
pub fn recorded_gap(metadata: &closeloop_core::log::Metadata) -> String {
    let gap = metadata
        .recorded_at
        .duration_since(metadata.occurred_at)
        .as_secs();
    if gap.abs() < 60 {
        return "-".to_owned();
    }
    let sign = if gap < 0 { '-' } else { '+' };
    let secs = gap.unsigned_abs();
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, m) => format!("{sign}{m}m"),
        (0, h, 0) => format!("{sign}{h}h"),
        (0, h, m) => format!("{sign}{h}h{m}m"),
        (d, 0, _) => format!("{sign}{d}d"),
        (d, h, _) => format!("{sign}{d}d{h}h"),
    }
}

/// One line of the human-readable history: what changed, and why when a reason was given.
pub fn describe(stored: &StoredEvent) -> String {
    let Ok(event) = stored.decode() else {
        return format!("{} (unreadable: {})", stored.event_type, stored.data);
    };
    match event {
        Event::TicketOpened(e) => format!(
            "opened for {} ({}), {} via {}, priority {}: {}{}",
            e.customer_id,
            e.grade,
            e.category,
            e.channel,
            e.priority,
            e.subject,
            e.sla.map_or(" [no SLA policy]".to_owned(), |s| format!(
                " [policy {}: first response {} min, resolution {} min]",
                s.policy_id, s.first_response_minutes, s.resolution_minutes
            ))
        ),
        Event::TicketAssigned(e) => match e.previous_agent_id {
            Some(previous) => format!(
                "reassigned from {previous} to {} (team {})",
                e.agent_id, e.team
            ),
            None => format!("assigned to {} (team {})", e.agent_id, e.team),
        },
        Event::TicketEscalated(e) => format!(
            "escalated from line {} to line {}{}; reason: {}",
            e.from_line,
            e.to_line,
            e.to_agent_id.map_or(String::new(), |a| format!(" to {a}")),
            e.reason
        ),
        Event::CustomerRespondedTo(e) => format!("answered the customer: {}", e.message),
        Event::CustomerInfoRequested(e) => format!("asked the customer: {}", e.question),
        Event::CustomerReplied(e) => format!("customer replied: {}", e.message),
        Event::PriorityChanged(e) => {
            format!("priority {} -> {}; reason: {}", e.from, e.to, e.reason)
        }
        Event::NoteAdded(e) => format!(
            "{} note: {}",
            if e.visible_to_customer {
                "customer-visible"
            } else {
                "internal"
            },
            e.text
        ),
        Event::TicketResolved(e) => format!("resolved by {}: {}", e.agent_id, e.resolution),
        Event::TicketReopened(e) => format!("reopened; reason: {}", e.reason),
        Event::TicketClosed(_) => "closed".to_owned(),
        Event::SatisfactionRecorded(e) => format!(
            "{} rating {}/5{}{}",
            e.source,
            e.score,
            e.agent_id.map_or(String::new(), |a| format!(" for {a}")),
            e.comment.map_or(String::new(), |c| format!(": {c}"))
        ),
        Event::SlaWarningRaised(e) => format!("SLA warning: {:?} due at {}", e.target, e.due_at),
        Event::SlaBreached(e) => format!("SLA breached: {:?} was due at {}", e.target, e.due_at),
        other => other.event_type().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_escapes_what_could_forge_or_colour_a_line() {
        let forged = "ok\n  9  2026-11-02 12:00:00  agent-1 (agent)  ticket_resolved  fixed";
        assert_eq!(
            printable(forged),
            "ok\\u{a}  9  2026-11-02 12:00:00  agent-1 (agent)  ticket_resolved  fixed"
        );
        assert_eq!(printable("\u{1b}[31mred\r"), "\\u{1b}[31mred\\u{d}");
        assert_eq!(printable("a\u{202E}b\u{85}"), "a\\u{202e}b\\u{85}");
    }

    #[test]
    fn printable_leaves_ordinary_text_alone() {
        for text in ["Router down", "Müller: 東京 ✓", ""] {
            assert!(matches!(printable(text), std::borrow::Cow::Borrowed(t) if t == text));
        }
    }
}
