//! How the reports write their values: rounding, percentages, times as RFC 3339, and
//! [`Labels`], the period labels of days.

use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::period::{day_of, Granularity};

pub(crate) fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

pub(crate) fn percent(part: u64, whole: u64) -> Value {
    if whole == 0 {
        Value::Null
    } else {
        json!(round(part as f64 * 100.0 / whole as f64, 1))
    }
}

pub(crate) fn rfc3339(seconds: Option<i64>) -> Value {
    seconds
        .and_then(|s| Timestamp::from_second(s).ok())
        .map_or(Value::Null, |t| json!(t.to_string()))
}

/// Period labels by day, computed once per day a report meets, and each label's first and
/// last day met.
#[derive(Default)]
pub(crate) struct Labels {
    period: Granularity,
    by_day: HashMap<i32, String>,
    days: HashMap<String, (i32, i32)>,
}

impl Labels {
    pub(crate) fn new(period: Granularity) -> Labels {
        Labels {
            period,
            by_day: HashMap::new(),
            days: HashMap::new(),
        }
    }

    /// The day a period is scored on (the scorecard in force then): its first day, and for
    /// `total` the last day it holds a figure of.
    pub(crate) fn scoring_day(&self, label: &str) -> Option<i32> {
        let (first, last) = *self.days.get(label)?;
        Some(match self.period {
            Granularity::Total => last,
            period => period.start(first),
        })
    }

    pub(crate) fn of(&mut self, at: i64) -> String {
        let day = day_of(at);
        let period = self.period;
        let label = self
            .by_day
            .entry(day)
            .or_insert_with(|| period.label(day))
            .clone();
        let span = self.days.entry(label.clone()).or_insert((day, day));
        span.0 = span.0.min(day);
        span.1 = span.1.max(day);
        label
    }
}
