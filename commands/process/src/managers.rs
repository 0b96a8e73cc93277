//! [`ProcessManagers`]: auto-assignment, backup coverage and breach escalation over one
//! handler, following the ticket events of the log through one
//! [`Subscription`](closeloop_core::log::Subscription).
//!
//! They are **state-based**: each step folds the log up to its head (tickets, and the
//! directory through the handler), then compares the state with what should be and submits
//! what is missing. Command ids are derived from the state (ticket and its stream version, or
//! the triggering event), so two instances, or one restarted from position zero, build the
//! same commands and the log's idempotency makes all but the first `duplicate`.
//!
//! A merged ticket is left alone ([`Ticket::in_work`](closeloop_core::domain::Ticket::in_work)): it accepts no more commands.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use closeloop_core::domain::{evolve, Event};
use closeloop_core::log::{Filter, Shutdown, Subscription, Waited, READ_BATCH_MAX};
use jiff::Timestamp;
use uuid::Uuid;

use closeloop_commands::{Handler, Reply};

use crate::assign::{self, AssignConfig};
use crate::coverage;
use crate::escalation;
use crate::ids::COVERAGE_ACTOR;
use crate::tracked::TrackedTicket;

/// Which managers run, and their settings.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub auto_assign: Option<AssignConfig>,
    pub backup_coverage: bool,
    pub breach_escalation: bool,
    /// How long one wait for new events lasts while tailing.
    pub tail_wait_ms: u64,
}

impl Default for ProcessConfig {
    fn default() -> ProcessConfig {
        ProcessConfig {
            auto_assign: Some(AssignConfig::default()),
            backup_coverage: true,
            breach_escalation: true,
            tail_wait_ms: 500,
        }
    }
}

/// The process managers over one handler.
pub struct ProcessManagers {
    handler: Arc<Handler>,
    config: ProcessConfig,
    /// The ticket events folded so far.
    subscription: Subscription,
    tickets: HashMap<Uuid, TrackedTicket>,
    /// `sla_breached` events folded and not yet acted on: (event id, ticket, reason).
    breaches: Vec<(Uuid, Uuid, String)>,
}

impl ProcessManagers {
    pub fn new(handler: Arc<Handler>, config: ProcessConfig) -> ProcessManagers {
        ProcessManagers {
            handler,
            config,
            subscription: Subscription::after(0, Filter::Categories(&["ticket"]), READ_BATCH_MAX),
            tickets: HashMap::new(),
            breaches: Vec::new(),
        }
    }

    /// Folds the log up to its head.
    async fn catch_up(&mut self) -> Result<(), closeloop_core::Error> {
        loop {
            let batch = self
                .subscription
                .next_batch(self.handler.log().as_ref())
                .await?;
            for stored in &batch.events {
                let event = stored.decode()?;
                self.fold(
                    stored.event_id,
                    stored.metadata.actor.id.as_str(),
                    stored.metadata.occurred_at,
                    &event,
                );
            }
            if !batch.full {
                break;
            }
        }
        Ok(())
    }

    fn fold(&mut self, event_id: Uuid, actor: &str, at: Timestamp, event: &Event) {
        let Some(id) = event.ticket_id() else { return };
        if let Event::SlaBreached(e) = event {
            self.breaches.push((
                event_id,
                e.ticket_id,
                format!(
                    "SLA breached: {} was due at {}",
                    serde_json::to_value(e.target)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    e.due_at
                ),
            ));
        }
        let previous = self.tickets.remove(&id);
        let moved_from = previous.as_ref().and_then(|t| t.moved_from.clone());
        let Some(ticket) = evolve(previous.map(|t| t.ticket), event) else {
            return;
        };
        let moved_from = match event {
            Event::TicketAssigned(e) if actor == COVERAGE_ACTOR && moved_from.is_none() => {
                e.previous_agent_id.clone()
            }
            Event::TicketAssigned(_) | Event::TicketEscalated(_) => None,
            _ => moved_from,
        };
        self.tickets.insert(
            id,
            TrackedTicket {
                ticket,
                moved_from,
                last_at: at,
            },
        );
    }

    /// One round: fold to the head, then submit what the state calls for. Returns the replies.
    pub async fn step(&mut self) -> Result<Vec<Reply>, closeloop_core::Error> {
        self.catch_up().await?;
        let directory = self.handler.directory().await?;
        let mut commands = Vec::new();
        if self.config.breach_escalation {
            commands.extend(escalation::commands(&self.tickets, &self.breaches));
        }
        self.breaches.clear();
        if self.config.backup_coverage {
            commands.extend(coverage::commands(&self.tickets, &directory));
        }
        if let Some(assign) = &self.config.auto_assign {
            commands.extend(assign::commands(&self.tickets, &directory, assign));
        }
        let mut replies = Vec::with_capacity(commands.len());
        for command in commands {
            let reply = self.handler.handle(command).await;
            if let Reply::Rejected { error, .. } = &reply {
                tracing::debug!(error = ?error, "a process manager's command was refused");
            }
            replies.push(reply);
        }
        Ok(replies)
    }

    /// Steps, then waits for new events, until `shutdown` fires.
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<(), closeloop_core::Error> {
        while !shutdown.is_set() {
            self.step().await?;
            let wait = Duration::from_millis(self.config.tail_wait_ms);
            let log = self.handler.log().clone();
            if self
                .subscription
                .wait(log.as_ref(), wait, &mut shutdown)
                .await?
                == Waited::Shutdown
            {
                break;
            }
        }
        Ok(())
    }
}
