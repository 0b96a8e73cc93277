//! The reports as the read side serves them: computed from the analysts' tables at the
//! moment they are asked for, with the status of the projector keeping the tables, so
//! staleness is never silent. Every `serve` instance answers from the shared tables.

use std::sync::Arc;

use closeloop_core::log::EventLog;
use jiff::Timestamp;
use serde_json::Value;

use crate::report::{self, ReportQuery, ScoreWeights};
use crate::runtime::Status;
use crate::tables::{TableError, TableStore};

/// The names of the reports, as in `closeloop report NAME` and `closeloop.v1.queries.report_NAME`.
pub const REPORTS: &[&str] = &[
    "sla",
    "satisfaction",
    "performance",
    "complaints",
    "inspections",
    "deadlines",
];

/// The data-protection officer's reports: not staff reports, so neither in [`REPORTS`] (the
/// ones every staff scope filters) nor on the HTTP endpoint; `serve` answers
/// `closeloop.v1.queries.report_erasures` to the roles the domain's `may_read_erasures`
/// admits.
pub const PRIVACY_REPORTS: &[&str] = &["erasures"];

/// What reports read: the tables, and the statuses of the projectors behind them.
#[derive(Clone)]
pub struct ReadModels {
    pub tables: Arc<dyn TableStore>,
    pub statuses: Vec<Arc<Status>>,
    pub weights: ScoreWeights,
    /// When set, each report first reads the head of this log and the tables' checkpoint
    /// into the tables' status: an instance that does not run the projector (it runs under
    /// a lease elsewhere) still says how current the shared tables are.
    pub log: Option<Arc<dyn EventLog>>,
}

/// Why a report query got no report.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter is wrong: (JSON Pointer, why).
    #[error("{0}: {1}")]
    Invalid(String, String),
    /// No such report.
    #[error(
        "no report `{0}`: sla, satisfaction, performance, complaints, inspections, deadlines or erasures"
    )]
    Unknown(String),
    /// The tables could not be read.
    #[error(transparent)]
    Tables(#[from] TableError),
}

impl ReadModels {
    pub fn new(tables: Arc<dyn TableStore>, statuses: Vec<Arc<Status>>) -> ReadModels {
        ReadModels {
            tables,
            statuses,
            weights: ScoreWeights::default(),
            log: None,
        }
    }

    /// Refreshes the tables' status from `log` and the tables before each report.
    pub fn with_log(mut self, log: Arc<dyn EventLog>) -> ReadModels {
        self.log = Some(log);
        self
    }

    async fn refresh(&self) -> Result<(), TableError> {
        let Some(log) = &self.log else { return Ok(()) };
        let position = self.tables.checkpoint().await?.position;
        let head = log
            .head()
            .await
            .map_err(|e| TableError::Unavailable(e.to_string()))?;
        for status in self
            .statuses
            .iter()
            .filter(|s| s.name == crate::tables::NAME)
        {
            status.raise_head(head);
            if position > status.position() {
                status.set_position(position);
            }
        }
        Ok(())
    }

    /// The report `name` as JSON; `None` for an unknown name. `now` is the report time
    /// (running timers are measured up to it).
    pub async fn report(
        &self,
        name: &str,
        query: &ReportQuery,
        now: Timestamp,
    ) -> Result<Option<Value>, TableError> {
        self.refresh().await?;
        let tables = self.tables.as_ref();
        let mut value = match name {
            "sla" => report::sla_report(tables, query, now).await?,
            "satisfaction" => report::satisfaction_report(tables, query).await?,
            "performance" => report::performance_report(tables, query, &self.weights).await?,
            "complaints" => report::complaints_report(tables, query).await?,
            "inspections" => report::inspections_report(tables, query).await?,
            "deadlines" => report::deadlines_report(tables, query).await?,
            "erasures" => report::erasures_report(tables, query).await?,
            _ => return Ok(None),
        };
        if let Value::Object(map) = &mut value {
            map.insert("projectors".into(), self.status_json());
        }
        Ok(Some(value))
    }

    /// A report query as it arrives over NATS (`closeloop.v1.queries.report_NAME`): `name` is
    /// `sla`, `satisfaction`, `performance`, `complaints`, `inspections` or `deadlines`, `params` the request's fields other than
    /// `actor`.
    pub async fn query(
        &self,
        name: &str,
        params: &serde_json::Map<String, Value>,
        now: Timestamp,
    ) -> Result<Value, QueryError> {
        let query =
            ReportQuery::from_params(params).map_err(|(at, why)| QueryError::Invalid(at, why))?;
        self.report(name, &query, now)
            .await?
            .ok_or_else(|| QueryError::Unknown(name.to_owned()))
    }

    /// Each projector's position, lag and error.
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
