//! Backup coverage (docs/domain.md, People and tiers: A/B roles): while an agent is away, their open tickets move to
//! the agent covering them (the backup named when they left, or their registered backup),
//! each with a handover note listing what is open; when the agent is back, the tickets still
//! with the backup move back, with a note. "Away" is the directory's: the on/off switch
//! (`set_agent_availability`) or a planned absence under way (`absence_started` at its
//! `from`, `absence_ended` or `absence_cancelled` bringing the agent back), so the moves
//! happen as soon as the scheduler's start or end is in the log.

use std::collections::HashMap;

use closeloop_core::domain::{AddNote, AssignTicket, Command, CommandEnvelope, Directory};
use uuid::Uuid;

use super::ids::{derived_id, envelope, COVERAGE_ACTOR};
use super::tracked::TrackedTicket;

/// Most tickets a handover note lists by name (the rest are counted).
pub const NOTE_TICKETS_MAX: usize = 50;

fn listing(tickets: &[&TrackedTicket]) -> String {
    let mut lines: Vec<String> = tickets
        .iter()
        .take(NOTE_TICKETS_MAX)
        .map(|t| {
            format!(
                "{} ({}, {}, {})",
                t.ticket.ticket_id, t.ticket.subject, t.ticket.status, t.ticket.priority
            )
        })
        .collect();
    if tickets.len() > NOTE_TICKETS_MAX {
        lines.push(format!("and {} more", tickets.len() - NOTE_TICKETS_MAX));
    }
    lines.join("; ")
}

fn move_ticket(
    out: &mut Vec<CommandEnvelope>,
    t: &TrackedTicket,
    to: &str,
    kind: &str,
    note: String,
) {
    let key = format!("{kind}/{}/{}", t.ticket.ticket_id, t.ticket.version);
    out.push(envelope(
        COVERAGE_ACTOR,
        derived_id(&key),
        Command::AssignTicket(AssignTicket {
            ticket_id: t.ticket.ticket_id,
            agent_id: to.to_owned(),
        }),
    ));
    out.push(envelope(
        COVERAGE_ACTOR,
        derived_id(&format!("{key}/note")),
        Command::AddNote(AddNote {
            ticket_id: t.ticket.ticket_id,
            text: note,
            visible_to_customer: false,
        }),
    ));
}

pub(super) fn commands(
    tickets: &HashMap<Uuid, TrackedTicket>,
    directory: &Directory,
) -> Vec<CommandEnvelope> {
    let mut open_by_agent: HashMap<&str, Vec<&TrackedTicket>> = HashMap::new();
    for t in tickets.values().filter(|t| t.ticket.in_work()) {
        if let Some(a) = t.ticket.assignee.as_deref() {
            open_by_agent.entry(a).or_default().push(t);
        }
    }
    for list in open_by_agent.values_mut() {
        list.sort_by_key(|t| t.ticket.ticket_id);
    }
    let mut out = Vec::new();
    let mut away: Vec<_> = directory.agents.values().filter(|a| !a.available).collect();
    away.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    for agent in away {
        let Some(backup_id) = agent.covered_by.as_ref().or(agent.backup_agent_id.as_ref()) else {
            continue;
        };
        let Some(backup) = directory.agents.get(backup_id) else {
            continue;
        };
        if !backup.available || backup.line != agent.line {
            continue;
        }
        let Some(open) = open_by_agent.get(agent.agent_id.as_str()) else {
            continue;
        };
        // A planned absence says why and until when; the on/off switch knows neither.
        let away = match agent.absence_under_way() {
            Some(a) => format!("is away ({}) until {}", a.reason, a.until),
            None => "is away".to_owned(),
        };
        let note = format!(
            "Handover: {} {away}; {} takes over their open requests until they return. Open: {}",
            agent.agent_id,
            backup.agent_id,
            listing(open)
        );
        for t in open {
            move_ticket(&mut out, t, &backup.agent_id, "cover", note.clone());
        }
    }
    // Back: tickets still with the backup that were moved from an agent now available.
    let mut back: HashMap<&str, Vec<&TrackedTicket>> = HashMap::new();
    for t in tickets.values().filter(|t| t.ticket.in_work()) {
        if let Some(from) = t.moved_from.as_deref() {
            if directory.agents.get(from).is_some_and(|a| a.available) {
                back.entry(from).or_default().push(t);
            }
        }
    }
    let mut back: Vec<_> = back.into_iter().collect();
    back.sort_by(|a, b| a.0.cmp(b.0));
    for (agent, mut list) in back {
        list.sort_by_key(|t| t.ticket.ticket_id);
        let note = format!(
            "Handed back: {agent} is back and takes over again. Still open: {}",
            listing(&list)
        );
        for t in list {
            move_ticket(&mut out, t, agent, "return", note.clone());
        }
    }
    out
}
