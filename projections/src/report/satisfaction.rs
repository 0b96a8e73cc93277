//! The satisfaction report: survey ratings per agent (the one credited when the rating was
//! given), team, category, customer grade and channel, per period: number of ratings, score
//! sum, distribution over 1..5, resolutions (for the response rate), tickets and complaint
//! tickets (for the complaint rate), and the customers' answers to those resolutions
//! (confirmed, rejected, closed unconfirmed by the engine, closed by staff before any
//! answer). Quality-inspection callbacks apart, per dimension.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::query::ReportQuery;
use super::values::{percent, round, Labels};
use crate::tables::read::{AnyRow, Dated};
use crate::tables::{TableError, TableStore};

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
    /// Of `resolutions`: confirmed and rejected by the customer, closed by the engine after
    /// the wait for an answer, closed by staff before the customer answered.
    #[serde(default)]
    pub confirmed: u32,
    #[serde(default)]
    pub rejected: u32,
    #[serde(default)]
    pub auto_closed: u32,
    #[serde(default)]
    pub closed_unanswered: u32,
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
        self.confirmed += other.confirmed;
        self.rejected += other.rejected;
        self.auto_closed += other.auto_closed;
        self.closed_unanswered += other.closed_unanswered;
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

/// The satisfaction report from the tables: the rows of the selected days (tickets opened,
/// assignments begun, resolutions, ratings), streamed and counted into groups by agent,
/// team, category, grade and channel per period. Memory: the groups, not the rows.
pub async fn satisfaction_report(
    store: &dyn TableStore,
    query: &ReportQuery,
) -> Result<Value, TableError> {
    let span = query.span();
    let keep = |by: By, key: &str| match by {
        By::Agent => query.agent.as_deref().is_none_or(|a| key == a) && query.team.is_none(),
        By::Team => query.team.as_deref().is_none_or(|x| key == x) && query.agent.is_none(),
        _ => query.agent.is_none() && query.team.is_none(),
    };
    let mut labels = Labels::new(query.period);
    let mut groups: BTreeMap<(By, String, String), Ratings> = BTreeMap::new();
    let mut callbacks: BTreeMap<(By, String, String), Callbacks> = BTreeMap::new();
    let mut bump = |by: By, key: &str, at: i64, labels: &mut Labels, f: &dyn Fn(&mut Ratings)| {
        if keep(by, key) {
            f(groups
                .entry((by, key.to_owned(), labels.of(at)))
                .or_default());
        }
    };
    let complaint = |category: &str| u32::from(category == "complaint");
    for dated in [
        Dated::TicketOpened,
        Dated::AssignmentStarted,
        Dated::Resolved,
        Dated::Rated,
    ] {
        let mut on_row = |row: AnyRow| match row {
            AnyRow::Ticket(t) => {
                let c = complaint(&t.category);
                for (by, key) in [
                    (By::Category, &t.category),
                    (By::Grade, &t.grade),
                    (By::Channel, &t.channel),
                ] {
                    bump(by, key, t.opened_at, &mut labels, &|r| {
                        r.tickets += 1;
                        r.complaints += c;
                    });
                }
            }
            AnyRow::Assignment(a) if a.started_by == "assigned" => {
                let c = complaint(&a.category);
                for (by, key) in [(By::Agent, &a.agent_id), (By::Team, &a.team)] {
                    bump(by, key, a.from_at, &mut labels, &|r| {
                        r.tickets += 1;
                        r.complaints += c;
                    });
                }
            }
            AnyRow::Resolution(r) => {
                let groups = [
                    Some((By::Agent, &r.resolved_by)),
                    r.team.as_ref().map(|t| (By::Team, t)),
                    Some((By::Category, &r.category)),
                    Some((By::Grade, &r.grade)),
                    Some((By::Channel, &r.channel)),
                ];
                let answer = r.answer.as_deref();
                let confirmed = u32::from(answer == Some("confirmed"));
                let rejected = u32::from(answer == Some("rejected"));
                let closed = r.close_reason.as_deref();
                let auto_closed = u32::from(closed == Some("auto_closed_unconfirmed"));
                let closed_unanswered = u32::from(closed == Some("staff") && answer.is_none());
                for (by, key) in groups.into_iter().flatten() {
                    bump(by, key, r.resolved_at, &mut labels, &|g| {
                        g.resolutions += 1;
                        g.confirmed += confirmed;
                        g.rejected += rejected;
                        g.auto_closed += auto_closed;
                        g.closed_unanswered += closed_unanswered;
                    });
                }
            }
            AnyRow::Rating(r) => {
                let groups = [
                    Some((By::Category, &r.category)),
                    Some((By::Grade, &r.grade)),
                    Some((By::Channel, &r.channel)),
                    r.agent_id.as_ref().map(|a| (By::Agent, a)),
                    r.team.as_ref().map(|t| (By::Team, t)),
                ];
                let score = u32::from(r.score);
                for (by, key) in groups.into_iter().flatten() {
                    if r.source == "survey" {
                        bump(by, key, r.rated_at, &mut labels, &|g| {
                            g.ratings += 1;
                            g.score_sum += score;
                            g.distribution[(score - 1) as usize] += 1;
                        });
                    } else if keep(by, key) {
                        let c = callbacks
                            .entry((by, key.clone(), labels.of(r.rated_at)))
                            .or_default();
                        c.callbacks += 1;
                        c.score_sum += score;
                        if let (Some(a), Some(b), Some(q), Some(o)) =
                            (r.recognition, r.efficiency, r.quality, r.overall)
                        {
                            c.with_dimensions += 1;
                            for (sum, v) in c.dimension_sums.iter_mut().zip([a, b, q, o]) {
                                *sum += u32::from(v);
                            }
                        }
                    }
                }
            }
            _ => {}
        };
        store.scan(dated, span, &mut on_row).await?;
    }
    Ok(render_satisfaction(groups, callbacks, query))
}

fn render_satisfaction(
    groups: BTreeMap<(By, String, String), Ratings>,
    callbacks: BTreeMap<(By, String, String), Callbacks>,
    query: &ReportQuery,
) -> Value {
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|((by, key, period), r)| {
            let satisfied = u64::from(r.distribution[3] + r.distribution[4]);
            json!({
                "by": by.as_str(),
                "key": key,
                "period": period,
                "ratings": r.ratings,
                "mean": (r.ratings > 0).then(|| round(f64::from(r.score_sum) / f64::from(r.ratings), 2)),
                "satisfied_percent": percent(satisfied, u64::from(r.ratings)),
                "distribution": {
                    "1": r.distribution[0], "2": r.distribution[1], "3": r.distribution[2],
                    "4": r.distribution[3], "5": r.distribution[4],
                },
                "resolutions": r.resolutions,
                "response_rate_percent": percent(u64::from(r.ratings), u64::from(r.resolutions)),
                "tickets": r.tickets,
                "complaints": r.complaints,
                "complaint_rate_percent": percent(u64::from(r.complaints), u64::from(r.tickets)),
                "confirmed": r.confirmed,
                "rejected": r.rejected,
                "auto_closed_unconfirmed": r.auto_closed,
                "closed_before_answer": r.closed_unanswered,
                "confirmation_rate_percent": percent(u64::from(r.confirmed), u64::from(r.resolutions)),
                "rejection_rate_percent": percent(u64::from(r.rejected), u64::from(r.resolutions)),
            })
        })
        .collect();
    let callbacks: Vec<Value> = callbacks
        .into_iter()
        .map(|((by, key, period), c)| {
            let dim = |i: usize| {
                (c.with_dimensions > 0)
                    .then(|| round(f64::from(c.dimension_sums[i]) / f64::from(c.with_dimensions), 2))
            };
            json!({
                "by": by.as_str(),
                "key": key,
                "period": period,
                "callbacks": c.callbacks,
                "mean": (c.callbacks > 0).then(|| round(f64::from(c.score_sum) / f64::from(c.callbacks), 2)),
                "dimensions": {
                    "recognition": dim(0), "efficiency": dim(1), "quality": dim(2), "overall": dim(3),
                },
            })
        })
        .collect();
    json!({
        "report": "satisfaction",
        "period": query.period,
        "groups": groups,
        "quality_callbacks": callbacks,
    })
}
