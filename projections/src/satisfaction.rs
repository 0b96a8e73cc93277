//! The satisfaction read model: survey ratings per agent (the assignee when the rating was
//! given), team, category, customer grade and channel, by UTC day (reports roll days up into
//! weeks, months or a total): number of ratings, score sum, distribution over 1..5,
//! resolutions (for the response rate), tickets and complaint tickets (for the complaint
//! rate). Quality-inspection callbacks are kept apart, per dimension.

use closeloop_core::domain::{Category, RatingSource};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fact::{Fact, Lean};
use crate::period::{day_of, FastMap, Names};
use crate::record::Record;
use crate::runtime::Projection;

/// What a group is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Agent,
    Team,
    Category,
    Grade,
    Channel,
}

impl By {
    pub const ALL: [By; 5] = [By::Agent, By::Team, By::Category, By::Grade, By::Channel];

    pub fn as_str(self) -> &'static str {
        match self {
            By::Agent => "agent",
            By::Team => "team",
            By::Category => "category",
            By::Grade => "grade",
            By::Channel => "channel",
        }
    }
}

/// A group and day: (by, interned key, UTC day).
pub type GroupKey = (By, u32, i32);

/// Survey figures of one group on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ratings {
    pub ratings: u32,
    pub score_sum: u32,
    /// Ratings of 1..=5.
    pub distribution: [u32; 5],
    pub resolutions: u32,
    pub tickets: u32,
    pub complaints: u32,
}

impl Ratings {
    pub fn add(&mut self, other: &Ratings) {
        self.ratings += other.ratings;
        self.score_sum += other.score_sum;
        for (a, b) in self.distribution.iter_mut().zip(other.distribution) {
            *a += b;
        }
        self.resolutions += other.resolutions;
        self.tickets += other.tickets;
        self.complaints += other.complaints;
    }
}

/// Quality-inspection callbacks of one group on one day: count and sums per dimension.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callbacks {
    pub callbacks: u32,
    pub score_sum: u32,
    /// Sums of recognition, efficiency, quality, overall (callbacks with dimensions only).
    pub dimension_sums: [u32; 4],
    pub with_dimensions: u32,
}

impl Callbacks {
    pub fn add(&mut self, other: &Callbacks) {
        self.callbacks += other.callbacks;
        self.score_sum += other.score_sum;
        for (a, b) in self.dimension_sums.iter_mut().zip(other.dimension_sums) {
            *a += b;
        }
        self.with_dimensions += other.with_dimensions;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SatTicket {
    /// Interned category, grade and channel.
    keys: [u32; 3],
    complaint: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    team: Option<u32>,
}

/// The satisfaction projection.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SatisfactionModel {
    names: Names,
    #[serde(with = "crate::period::pairs")]
    tickets: FastMap<Uuid, SatTicket>,
    #[serde(with = "crate::period::pairs")]
    ratings: FastMap<GroupKey, Ratings>,
    #[serde(with = "crate::period::pairs")]
    callbacks: FastMap<GroupKey, Callbacks>,
}

impl SatisfactionModel {
    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn ratings(&self) -> impl Iterator<Item = (&GroupKey, &Ratings)> {
        self.ratings.iter()
    }

    pub fn callbacks(&self) -> impl Iterator<Item = (&GroupKey, &Callbacks)> {
        self.callbacks.iter()
    }

    /// Folds one event ([`Projection::apply`] of its lean form).
    pub fn fold(&mut self, record: &Lean) -> Result<(), String> {
        let day = day_of(record.at);
        match &record.fact {
            Fact::TicketOpened(e) => {
                let keys = [
                    self.names.id(e.category.as_str()),
                    self.names.id(e.grade.as_str()),
                    self.names.id(e.channel.as_str()),
                ];
                let complaint = e.category == Category::Complaint;
                for (by, key) in [By::Category, By::Grade, By::Channel].into_iter().zip(keys) {
                    self.bump(by, key, day, |r| {
                        r.tickets += 1;
                        r.complaints += u32::from(complaint);
                    });
                }
                self.tickets.insert(
                    e.ticket_id,
                    SatTicket {
                        keys,
                        complaint,
                        team: None,
                    },
                );
            }
            Fact::TicketAssigned(e) => {
                let (agent, team) = (self.names.id(&e.agent_id), self.names.id(&e.team));
                let t = self
                    .tickets
                    .get_mut(&e.ticket_id)
                    .ok_or("assigned before opened")?;
                t.team = Some(team);
                let complaint = u32::from(t.complaint);
                for (by, key) in [(By::Agent, agent), (By::Team, team)] {
                    self.bump(by, key, day, |r| {
                        r.tickets += 1;
                        r.complaints += complaint;
                    });
                }
            }
            Fact::TicketEscalated(e) => {
                let team = e.to_team.as_deref().map(|t| self.names.id(t));
                let t = self
                    .tickets
                    .get_mut(&e.ticket_id)
                    .ok_or("escalated before opened")?;
                t.team = team;
            }
            Fact::TicketResolved(e) => {
                let agent = self.names.id(&e.agent_id);
                let t = self
                    .tickets
                    .get(&e.ticket_id)
                    .ok_or("resolved before opened")?;
                let (keys, team) = (t.keys, t.team);
                self.bump(By::Agent, agent, day, |r| r.resolutions += 1);
                if let Some(team) = team {
                    self.bump(By::Team, team, day, |r| r.resolutions += 1);
                }
                for (by, key) in [By::Category, By::Grade, By::Channel].into_iter().zip(keys) {
                    self.bump(by, key, day, |r| r.resolutions += 1);
                }
            }
            Fact::SatisfactionRecorded(e) => {
                if !(1..=5).contains(&e.score) {
                    return Err(format!("score {} is outside 1..=5", e.score));
                }
                let agent = e.agent_id.as_deref().map(|a| self.names.id(a));
                let t = self
                    .tickets
                    .get(&e.ticket_id)
                    .ok_or("rated before opened")?;
                // In this order: the order of first insertion does not show in the state
                // (it is sorted), but keep it anyway. An array, not a `Vec`: no allocation.
                let groups = [
                    Some((By::Category, t.keys[0])),
                    Some((By::Grade, t.keys[1])),
                    Some((By::Channel, t.keys[2])),
                    agent.map(|a| (By::Agent, a)),
                    t.team.map(|t| (By::Team, t)),
                ];
                let score = u32::from(e.score);
                for (by, key) in groups.into_iter().flatten() {
                    match e.source {
                        RatingSource::Survey => self.bump(by, key, day, |r| {
                            r.ratings += 1;
                            r.score_sum += score;
                            r.distribution[(score - 1) as usize] += 1;
                        }),
                        RatingSource::Callback => {
                            let c = self.callbacks.entry((by, key, day)).or_default();
                            c.callbacks += 1;
                            c.score_sum += score;
                            if let Some(d) = e.dimensions {
                                c.with_dimensions += 1;
                                let values = [d.recognition, d.efficiency, d.quality, d.overall];
                                for (sum, v) in c.dimension_sums.iter_mut().zip(values) {
                                    *sum += u32::from(v);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn bump(&mut self, by: By, key: u32, day: i32, f: impl FnOnce(&mut Ratings)) {
        f(self.ratings.entry((by, key, day)).or_default());
    }
}

impl Projection for SatisfactionModel {
    const NAME: &'static str = "satisfaction";
    const VERSION: u32 = 1;
    const CATEGORIES: &'static [&'static str] = &["ticket"];

    fn apply(&mut self, record: &Record) -> Result<(), String> {
        self.fold(&record.lean())
    }

    fn restored(&mut self) -> Result<(), String> {
        self.names.restored();
        Ok(())
    }
}
