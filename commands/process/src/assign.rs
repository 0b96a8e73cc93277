//! Auto-assignment: every open, unassigned ticket goes to an available agent of the ticket's
//! line whose level suits the customer's grade, with the least open load (ties: non-leads
//! first, then by agent id). When nobody of the right level is available, any available
//! agent of the line takes it; when nobody is, the ticket waits.

use std::collections::{BTreeMap, HashMap};

use closeloop_core::domain::{AssignTicket, Command, CommandEnvelope, Directory, Grade, Level};

use super::ids::{derived_id, envelope, ASSIGN_ACTOR};
use super::tracked::TrackedTicket;

/// The lowest level that serves each grade. Configuration: these are the defaults.
#[derive(Debug, Clone)]
pub struct AssignConfig {
    pub levels: BTreeMap<Grade, Level>,
}

impl Default for AssignConfig {
    fn default() -> AssignConfig {
        AssignConfig {
            levels: [
                (Grade::VipDiamond, Level::Senior),
                (Grade::VipGold, Level::Senior),
                (Grade::GroupA, Level::Senior),
                (Grade::GroupB, Level::Intermediate),
                (Grade::GroupC, Level::Intermediate),
                (Grade::Standard, Level::Junior),
            ]
            .into_iter()
            .collect(),
        }
    }
}

/// The lowest level that serves a grade.
pub fn required_level(config: &AssignConfig, grade: Grade) -> Level {
    config.levels.get(&grade).copied().unwrap_or(Level::Junior)
}

pub(super) fn commands(
    tickets: &HashMap<uuid::Uuid, TrackedTicket>,
    directory: &Directory,
    config: &AssignConfig,
) -> Vec<CommandEnvelope> {
    let mut load: HashMap<&str, u32> = HashMap::new();
    for t in tickets.values() {
        if let (true, Some(a)) = (t.ticket.in_work(), t.ticket.assignee.as_deref()) {
            *load.entry(a).or_default() += 1;
        }
    }
    let mut waiting: Vec<&TrackedTicket> = tickets
        .values()
        .filter(|t| t.ticket.in_work() && t.ticket.assignee.is_none())
        .collect();
    // Oldest first, so the order (and so every instance's choices) is the same.
    waiting.sort_by_key(|t| (t.last_at, t.ticket.ticket_id));
    let mut out = Vec::new();
    for t in waiting {
        let needed = required_level(config, t.ticket.grade);
        let pick = |strict: bool| {
            directory
                .agents
                .values()
                .filter(|a| a.available && a.line == t.ticket.line)
                .filter(|a| !strict || a.level >= needed)
                .min_by_key(|a| {
                    (
                        load.get(a.agent_id.as_str()).copied().unwrap_or(0),
                        a.team_lead,
                        a.agent_id.clone(),
                    )
                })
        };
        let Some(agent) = pick(true).or_else(|| pick(false)) else {
            continue;
        };
        *load.entry(agent.agent_id.as_str()).or_default() += 1;
        out.push(envelope(
            ASSIGN_ACTOR,
            derived_id(&format!(
                "auto-assign/{}/{}",
                t.ticket.ticket_id, t.ticket.version
            )),
            Command::AssignTicket(AssignTicket {
                ticket_id: t.ticket.ticket_id,
                agent_id: agent.agent_id.clone(),
            }),
        ));
    }
    out
}
