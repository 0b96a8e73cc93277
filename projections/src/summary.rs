//! The ticket summary read model: counts by state and grade, escalations, reopenings and the
//! mean survey score. It folds events only (never the clock or configuration), so the same log
//! always gives the same summary.

use std::collections::{BTreeMap, HashMap};

use closeloop_core::domain::{
    evolve, CloseReason, Event, Grade, RatingSource, TicketState, TicketStatus,
};
use closeloop_core::log::StoredEvent;
use serde::Serialize;

/// Counts over every ticket in the log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TicketSummary {
    /// Ticket count by state, then by customer grade.
    pub by_status: BTreeMap<TicketStatus, BTreeMap<Grade, u64>>,
    pub tickets: u64,
    pub escalations: u64,
    pub reopenings: u64,
    pub survey_ratings: u64,
    survey_score_sum: u64,
    pub callback_ratings: u64,
    /// The customers' answers to resolutions, and tickets the engine closed for want of one.
    pub confirmations: u64,
    pub rejections: u64,
    pub auto_closed_unconfirmed: u64,
    /// Rulings on complaints (a later one supersedes an earlier), and of those, the
    /// justified and the superseding.
    pub rulings: u64,
    pub rulings_justified: u64,
    pub rulings_superseding: u64,
    /// Follow-ups planned, recorded, marked overdue by the scheduler, and visits entered
    /// after the week rule.
    pub follow_ups: u64,
    pub follow_ups_recorded: u64,
    pub follow_ups_overdue: u64,
    pub visits_entered_late: u64,
    /// Step deadlines set, met by their due time, breached by the scheduler (and of those,
    /// the breaches that flagged the ticket for exchange), and completed after their breach.
    pub deadlines: u64,
    pub deadlines_met: u64,
    pub deadlines_breached: u64,
    pub exchanges_flagged: u64,
    pub deadlines_met_late: u64,
    pub events: u64,
    #[serde(skip)]
    states: HashMap<String, TicketState>,
}

impl TicketSummary {
    /// Folds one stored event; events of other categories only count towards `events`.
    pub fn apply(&mut self, stored: &StoredEvent, event: &Event) {
        self.events += 1;
        if stored.category() != "ticket" {
            return;
        }
        match event {
            Event::TicketOpened(_) => self.tickets += 1,
            Event::TicketEscalated(_) => self.escalations += 1,
            Event::TicketReopened(_) => self.reopenings += 1,
            Event::SatisfactionRecorded(e) if e.source == RatingSource::Survey => {
                self.survey_ratings += 1;
                self.survey_score_sum += u64::from(e.score);
            }
            Event::SatisfactionRecorded(_) => self.callback_ratings += 1,
            Event::ResolutionConfirmed(_) => self.confirmations += 1,
            Event::ResolutionRejected(_) => self.rejections += 1,
            Event::FollowUpScheduled(_) => self.follow_ups += 1,
            Event::FollowUpRecorded(e) => {
                self.follow_ups_recorded += 1;
                self.visits_entered_late += u64::from(e.entered_late);
            }
            Event::FollowUpOverdue(_) => self.follow_ups_overdue += 1,
            Event::DeadlineSet(_) => self.deadlines += 1,
            Event::DeadlineMet(e) if e.late => self.deadlines_met_late += 1,
            Event::DeadlineMet(_) => self.deadlines_met += 1,
            Event::DeadlineBreached(e) => {
                self.deadlines_breached += 1;
                self.exchanges_flagged += u64::from(e.consequence.is_some());
            }
            Event::ComplaintRuled(e) => {
                self.rulings += 1;
                self.rulings_justified += u64::from(e.justified);
                self.rulings_superseding += u64::from(e.ruling > 1);
            }
            Event::TicketClosed(e) if e.reason == CloseReason::AutoClosedUnconfirmed => {
                self.auto_closed_unconfirmed += 1
            }
            _ => {}
        }
        let state = self.states.remove(&stored.stream).flatten();
        self.states
            .insert(stored.stream.clone(), evolve(state, event));
    }

    /// Recomputes `by_status` from the tickets' current states.
    pub fn finish(&mut self) {
        self.by_status.clear();
        for ticket in self.states.values().flatten() {
            *self
                .by_status
                .entry(ticket.status)
                .or_default()
                .entry(ticket.grade)
                .or_default() += 1;
        }
    }

    /// Mean survey score (1..5), if any survey was answered.
    pub fn survey_mean(&self) -> Option<f64> {
        (self.survey_ratings > 0).then(|| self.survey_score_sum as f64 / self.survey_ratings as f64)
    }
}
