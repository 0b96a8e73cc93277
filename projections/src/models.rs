//! The three report projectors together: open them on a log and a store, catch them up (for
//! `closeloop report`), or run each in its own task (for `serve`), and answer report queries
//! from whatever they have folded.

use std::sync::{Arc, RwLock};

use closeloop_core::log::EventLog;
use jiff::Timestamp;
use serde_json::Value;

use crate::performance::PerformanceModel;
use crate::report::{self, ReportQuery, ScoreWeights};
use crate::runtime::{Projection, ProjectorError, Runner, RunnerConfig, Status};
use crate::satisfaction::SatisfactionModel;
use crate::sla::SlaModel;
use crate::store::CheckpointStore;

/// The names of the reports, as in `closeloop report NAME` and `closeloop.v1.queries.report_NAME`.
pub const REPORTS: &[&str] = &["sla", "satisfaction", "performance"];

/// The projectors, not yet running.
pub struct Projectors {
    pub sla: Runner<SlaModel>,
    pub satisfaction: Runner<SatisfactionModel>,
    pub performance: Runner<PerformanceModel>,
}

/// Shared handles on the read models and the projectors' statuses.
#[derive(Clone)]
pub struct ReadModels {
    pub sla: Arc<RwLock<SlaModel>>,
    pub satisfaction: Arc<RwLock<SatisfactionModel>>,
    pub performance: Arc<RwLock<PerformanceModel>>,
    pub statuses: Vec<Arc<Status>>,
    pub weights: ScoreWeights,
}

impl Projectors {
    /// Loads each projector's saved state and checkpoint.
    pub async fn open(
        log: Arc<dyn EventLog>,
        store: Arc<dyn CheckpointStore>,
        config: RunnerConfig,
    ) -> Result<Projectors, ProjectorError> {
        Ok(Projectors {
            sla: Runner::open(log.clone(), store.clone(), config.clone()).await?,
            satisfaction: Runner::open(log.clone(), store.clone(), config.clone()).await?,
            performance: Runner::open(log, store, config).await?,
        })
    }

    pub fn read_models(&self) -> ReadModels {
        ReadModels {
            sla: self.sla.model(),
            satisfaction: self.satisfaction.model(),
            performance: self.performance.model(),
            statuses: vec![
                self.sla.status(),
                self.satisfaction.status(),
                self.performance.status(),
            ],
            weights: ScoreWeights::default(),
        }
    }

    /// Catches every projector up to the head. They are independent: one failing does not
    /// stop the others; every failure is returned.
    pub async fn catch_up(&mut self) -> Vec<ProjectorError> {
        let results = [
            self.sla.catch_up().await,
            self.satisfaction.catch_up().await,
            self.performance.catch_up().await,
        ];
        results.into_iter().filter_map(Result::err).collect()
    }

    /// Runs each projector in its own task until `shutdown` turns true.
    pub fn spawn(
        self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinSet<Result<(), ProjectorError>> {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.sla.run(shutdown.clone()));
        tasks.spawn(self.satisfaction.run(shutdown.clone()));
        tasks.spawn(self.performance.run(shutdown));
        tasks
    }
}

fn state<P: Projection>(model: &RwLock<P>) -> std::sync::RwLockReadGuard<'_, P> {
    model.read().expect("read model lock poisoned")
}

impl ReadModels {
    /// The report `name` as JSON; `None` for an unknown name. `now` is the report time
    /// (running timers are measured up to it).
    pub fn report(&self, name: &str, query: &ReportQuery, now: Timestamp) -> Option<Value> {
        let mut value = match name {
            "sla" => report::sla_report(&state(&self.sla), query, now),
            "satisfaction" => report::satisfaction_report(&state(&self.satisfaction), query),
            "performance" => {
                report::performance_report(&state(&self.performance), query, &self.weights)
            }
            _ => return None,
        };
        if let Value::Object(map) = &mut value {
            map.insert("projectors".into(), self.status_json());
        }
        Some(value)
    }

    /// A report query as it arrives over NATS (`closeloop.v1.queries.report_NAME`): `name` is
    /// `sla`, `satisfaction` or `performance`, `params` the request's fields other than
    /// `actor`. A bad parameter is `Err((JSON pointer, message))`, for a `validation` rejection.
    pub fn query(
        &self,
        name: &str,
        params: &serde_json::Map<String, Value>,
        now: Timestamp,
    ) -> Result<Value, (String, String)> {
        let query = ReportQuery::from_params(params)?;
        self.report(name, &query, now).ok_or_else(|| {
            (
                String::new(),
                format!("no report `{name}`: sla, satisfaction or performance"),
            )
        })
    }

    /// Each projector's position, lag and error: staleness is never silent.
    pub fn status_json(&self) -> Value {
        Value::Array(
            self.statuses
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.name,
                        "version": s.version,
                        "position": s.position(),
                        "head": s.head(),
                        "lag": s.lag(),
                        "error": s.error(),
                    })
                })
                .collect(),
        )
    }
}

/// Read models are shared with query handlers on other tasks and threads.
const _: fn() = || {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<ReadModels>();
};
