//! The queries' schemas (`schemas/json/queries/<name>.{request,reply}.json`): one pair for
//! every query `serve` registers, from the mirror types below, and the tests that keep them
//! exact: the real replies of the real query functions (`serve.rs`'s `queries`, on a demo's
//! store) validate against the reply schemas with every field declared, and the request
//! schemas judge a corpus of edge cases as the query parsers do.
//!
//! The reports are built as JSON values (`projections/src/report/`), so their replies are
//! described by mirror types here rather than by the types that build them: typing the five
//! reports would change their code, not only their schemas. The test that validates real
//! replies with undeclared fields refused is what keeps the mirrors from drifting.

use std::sync::Arc;

use closeloop_commands::nats::{Caller, Queries};
use closeloop_commands::{Handler, HandlerConfig};
use closeloop_core::log::memory::MemoryLog;
use closeloop_core::log::EventLog;
use closeloop_projections::models::ReadModels;
use closeloop_projections::report::ReportQuery;
use closeloop_projections::tables::memory::MemoryTables;
use closeloop_replay::history::PAGE_EVENTS_MAX;
use jiff::civil::Date;

use super::*;

/// A timestamp a query parameter may carry: RFC 3339 (the `date-time` format) in a year
/// before 9999, the last a timestamp holds only in part.
const TIME_PATTERN: &str = "^(?:[0-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-";
/// A date parameter of the reports: `YYYY-MM-DD` (the `date` format checks the rest).
const DATE_PATTERN: &str = ReportQuery::DATE_PATTERN;
/// The page cursor of the SLA report's timers, as `timers_next_page` gives it.
const CURSOR_PATTERN: &str = "^(?:-|-?[0-9]{1,18})/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/(?:first_response|next_response|resolution)$";

/// The request of `ticket_state`.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct TicketStateQuery {
    /// Who asks; confidentiality rules apply to this actor. Over NATS the token in the
    /// `Authorization` header says who asks: `actor` may be left out, and if given must equal
    /// the token's.
    #[serde(default)]
    actor: Option<Actor>,
    ticket_id: Uuid,
    /// The ticket as of this business time.
    #[serde(default)]
    #[schemars(pattern(TIME_PATTERN))]
    as_of: Option<Timestamp>,
}

/// The request of `ticket_history`: one page of the ticket's events.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct TicketHistoryQuery {
    /// Who asks; confidentiality rules apply to this actor. Over NATS the token in the
    /// `Authorization` header says who asks: `actor` may be left out, and if given must equal
    /// the token's.
    #[serde(default)]
    actor: Option<Actor>,
    ticket_id: Uuid,
    /// Stop at this business time (`occurred_at`).
    #[serde(default)]
    #[schemars(pattern(TIME_PATTERN))]
    as_of: Option<Timestamp>,
    /// Stop at what the log held at this time (`recorded_at`).
    #[serde(default)]
    #[schemars(pattern(TIME_PATTERN))]
    as_known_at: Option<Timestamp>,
    /// The page after this version: a previous page's `next_after_version` (0, the default:
    /// the first page).
    #[serde(default)]
    after_version: Option<u64>,
    /// At most this many events (default and most: 1,000); a page is also cut to what one
    /// reply may carry.
    #[serde(default)]
    #[schemars(range(min = 1, max = PAGE_EVENTS_MAX))]
    limit: Option<usize>,
}

/// The reply of `ticket_history`: one page of the JSON of `closeloop history --json`.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct TicketHistory {
    stream: String,
    /// The ticket as of the cut (every event inside it folded, not only this page's).
    state: Ticket,
    /// This page's stored events, in version order (any type).
    events: Vec<StoredEventOf<Value>>,
    /// The `after_version` of the next page; `null` on the last.
    next_after_version: Option<u64>,
}

/// The reply of `ticket_state`.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct TicketStateReply {
    stream: String,
    version: u64,
    state: Ticket,
}

/// How a report groups days.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Period {
    Day,
    Week,
    Month,
    /// Everything selected, as one period.
    Total,
}

/// The request of every `report_*` query: the parameters of `closeloop report NAME`.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReportRequest {
    /// Who asks; the report is cut to what this actor may see. Over NATS the token in the
    /// `Authorization` header says who asks: `actor` may be left out, and if given must equal
    /// the token's.
    #[serde(default)]
    actor: Option<Actor>,
    /// Only this agent's rows (SLA: tickets assigned to them).
    #[serde(default)]
    agent: Option<String>,
    /// Only this team's rows (SLA: tickets of the team; performance: the team and its
    /// agents).
    #[serde(default)]
    team: Option<String>,
    /// First UTC day included (SLA: timers started on or after it).
    #[serde(default)]
    #[schemars(pattern(DATE_PATTERN))]
    from: Option<Date>,
    /// Last UTC day included.
    #[serde(default)]
    #[schemars(pattern(DATE_PATTERN))]
    to: Option<Date>,
    /// How days are grouped (default `month`).
    #[serde(default)]
    period: Option<Period>,
    /// The report's "now" (running timers are measured up to it); the time of the request
    /// when absent.
    #[serde(default)]
    #[schemars(pattern(TIME_PATTERN))]
    at: Option<Timestamp>,
    /// `report_sla`: at most this many timers in the list (default 1,000).
    #[serde(default = "limit_default")]
    #[schemars(range(min = 1, max = ReportQuery::LIMIT_MAX))]
    limit: u32,
    /// `report_sla`: the page after this cursor, a previous reply's `timers_next_page`.
    #[serde(default)]
    #[schemars(pattern(CURSOR_PATTERN))]
    page: Option<String>,
    /// `report_sla`: list only live timers breached or past their warning threshold.
    #[serde(default)]
    at_risk: bool,
}

fn limit_default() -> u32 {
    ReportQuery::LIMIT_DEFAULT
}

/// A projector behind the tables a report read: how far it has folded the log.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct ProjectorStatus {
    name: String,
    version: u32,
    /// The last log position folded.
    position: u64,
    /// The log's head as last seen.
    head: u64,
    /// `head - position`: events not in the report yet.
    lag: u64,
    /// Why it stopped, if it did.
    error: Option<String>,
}

/// Compliance with one target for one grade.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct GradeCompliance {
    grade: Grade,
    target: SlaTarget,
    met: u64,
    breached: u64,
    /// `met` of `met + breached`, in percent to one decimal; `null` with none.
    percent: Option<f64>,
}

/// Compliance with one target for one team (`null`: tickets never assigned).
#[allow(dead_code)]
#[derive(JsonSchema)]
struct TeamCompliance {
    team: Option<String>,
    target: SlaTarget,
    met: u64,
    breached: u64,
    percent: Option<f64>,
}

/// A timer's status at the report's time.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum TimerStatus {
    Running,
    Paused,
    Fulfilled,
    Breached,
}

/// One SLA timer (the latest cycle of one target of one ticket).
#[allow(dead_code)]
#[derive(JsonSchema)]
struct SlaTimer {
    ticket_id: Uuid,
    target: SlaTarget,
    status: TimerStatus,
    started_at: Timestamp,
    warn_at: Option<Timestamp>,
    due_at: Option<Timestamp>,
    fulfilled_at: Option<Timestamp>,
    target_minutes: u32,
    business_minutes_used: Option<i64>,
    calendar_minutes_used: Option<i64>,
    /// Live, and breached or past its warning threshold.
    at_risk: bool,
    warned: bool,
    breach_recorded: bool,
    grade: Grade,
    priority: Priority,
    assignee: Option<String>,
    team: Option<String>,
    calendar_id: Option<String>,
}

/// The reply of `report_sla`.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct SlaReply {
    report: String,
    /// The report's time.
    as_of: Timestamp,
    open_timers: u64,
    at_risk_timers: u64,
    compliance: Vec<GradeCompliance>,
    compliance_by_team: Vec<TeamCompliance>,
    /// One page of timers, soonest due first.
    timers: Vec<SlaTimer>,
    /// The `page` of the next page; `null` on the last.
    timers_next_page: Option<String>,
    projectors: Vec<ProjectorStatus>,
}

/// What a satisfaction row is grouped by.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum GroupedBy {
    Agent,
    Team,
    Category,
    Grade,
    Channel,
}

/// Survey ratings by score.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct Distribution {
    #[serde(rename = "1")]
    one: u32,
    #[serde(rename = "2")]
    two: u32,
    #[serde(rename = "3")]
    three: u32,
    #[serde(rename = "4")]
    four: u32,
    #[serde(rename = "5")]
    five: u32,
}

/// The four dimensions of a quality callback or inspection, each a mean of 1 to 5.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct Dimensions {
    recognition: Option<f64>,
    efficiency: Option<f64>,
    quality: Option<f64>,
    overall: Option<f64>,
}

/// Satisfaction of one group in one period.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct SatisfactionGroup {
    by: GroupedBy,
    /// The agent, team, category, grade or channel.
    key: String,
    /// The period's label: `2026-11-02`, `2026-W45`, `2026-11` or `total`.
    period: String,
    ratings: u32,
    mean: Option<f64>,
    satisfied_percent: Option<f64>,
    distribution: Distribution,
    resolutions: u32,
    response_rate_percent: Option<f64>,
    tickets: u32,
    complaints: u32,
    complaint_rate_percent: Option<f64>,
    confirmed: u32,
    rejected: u32,
    auto_closed_unconfirmed: u32,
    closed_before_answer: u32,
    confirmation_rate_percent: Option<f64>,
    rejection_rate_percent: Option<f64>,
}

/// Quality callbacks of one group in one period.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct CallbackGroup {
    by: GroupedBy,
    key: String,
    period: String,
    callbacks: u32,
    mean: Option<f64>,
    dimensions: Dimensions,
}

/// The reply of `report_satisfaction`.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct SatisfactionReply {
    report: String,
    period: Period,
    groups: Vec<SatisfactionGroup>,
    quality_callbacks: Vec<CallbackGroup>,
    projectors: Vec<ProjectorStatus>,
}

/// Median, 90th percentile and mean of some minutes; `null` with none.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct Stats {
    median: Option<f64>,
    p90: Option<u32>,
    mean: Option<f64>,
    count: u32,
}

/// Per-target SLA compliance, in percent.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct ByTarget {
    first_response: Option<f64>,
    next_response: Option<f64>,
    resolution: Option<f64>,
}

/// One part of the score: its value (0 to 100), weight, points, and the figures it is the
/// mean of.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct Part<T> {
    value: Option<f64>,
    weight_percent: f64,
    points: f64,
    of: T,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
struct ResultsOf {
    sla_percent: Option<f64>,
    satisfaction: Option<f64>,
    inspection: Option<f64>,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
struct BasicOf {
    resolution_rate: Option<f64>,
    one_touch_rate: Option<f64>,
    follow_ups_in_time_rate: Option<f64>,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
struct DisciplineOf {
    reopen_rate: Option<f64>,
}

/// The bonus or deduction: items counted, points per item, the cap, the points given.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct Items {
    items: u32,
    per_item: f64,
    cap: f64,
    points: f64,
}

/// How a score was made.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct ScoreParts {
    results: Part<ResultsOf>,
    basic: Part<BasicOf>,
    discipline: Part<DisciplineOf>,
    bonus: Items,
    deduction: Items,
}

/// The scorecard a row was scored with: a `define_scorecard` (its team, `null` for the
/// organisation's, and first day), or `configured`, the engine's default weights.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(untagged)]
enum ScorecardUsed {
    Defined {
        team: Option<String>,
        effective_from: Date,
    },
    Configured(ConfiguredWeights),
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum ConfiguredWeights {
    Configured,
}

/// The figures of one agent or team in one period.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct Figures {
    assigned: u32,
    resolved: u32,
    closed: u32,
    reopened: u32,
    escalated: u32,
    first_response_minutes: Stats,
    resolution_minutes: Stats,
    sla_percent: Option<f64>,
    sla_percent_by_target: ByTarget,
    one_touch_percent: Option<f64>,
    ratings: u32,
    satisfaction_mean: Option<f64>,
    follow_ups_due: u32,
    follow_ups_in_time: u32,
    follow_ups_late: u32,
    visits_entered_late: u32,
    inspections: u32,
    inspection_mean: Option<f64>,
    justified_complaints: u32,
    /// Open tickets assigned now (not of the period).
    open_now: i64,
    score: Option<f64>,
    score_parts: Option<ScoreParts>,
    scorecard: ScorecardUsed,
}

/// One agent's row.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct AgentPerformance {
    agent_id: String,
    /// Their team (empty when not registered).
    team: String,
    period: String,
    #[serde(flatten)]
    figures: Figures,
}

/// One team's row.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct TeamPerformance {
    team: String,
    period: String,
    #[serde(flatten)]
    figures: Figures,
}

/// The reply of `report_performance`.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct PerformanceReply {
    report: String,
    period: Period,
    agents: Vec<AgentPerformance>,
    teams: Vec<TeamPerformance>,
    projectors: Vec<ProjectorStatus>,
}

/// Rulings of one complaint cause.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct CauseRulings {
    cause: String,
    ruled: u32,
    justified: u32,
    justified_percent: Option<f64>,
}

/// Complaints of one period.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct ComplaintPeriod {
    period: String,
    received: u32,
    resolved: u32,
    ruled: u32,
    justified: u32,
    justified_percent: Option<f64>,
    minutes_to_first_ruling: Stats,
    minutes_to_resolution: Stats,
    causes: Vec<CauseRulings>,
}

/// The reply of `report_complaints`.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct ComplaintsReply {
    report: String,
    period: Period,
    periods: Vec<ComplaintPeriod>,
    projectors: Vec<ProjectorStatus>,
}

/// Quality inspections of one agent's work in one month.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct AgentInspections {
    agent_id: String,
    team: String,
    /// The month sampled, `YYYY-MM`.
    period: String,
    samples: u32,
    drawn: u32,
    inspected: u32,
    dimensions: Dimensions,
    log_complete_percent: Option<f64>,
    visits_checked: u32,
    visits_verified: u32,
    failed: u32,
    reinspections_due: u32,
    reinspected: u32,
    reinspections_overdue: u32,
    /// The month the failed ones are inspected again.
    reinspect_in: String,
}

/// The reply of `report_inspections`.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct InspectionsReply {
    report: String,
    agents: Vec<AgentInspections>,
    projectors: Vec<ProjectorStatus>,
}

/// One kind's step deadlines due in the period: met by their due time, breached (met late
/// after the breach among them) and open.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct KindDeadlines {
    kind: String,
    due: u32,
    met: u32,
    breached: u32,
    met_late: u32,
    open: u32,
    /// Met of those decided (met or breached); null when none is.
    met_percent: Option<f64>,
}

/// One owner's step deadlines due in the period (the team: theirs when set).
#[allow(dead_code)]
#[derive(JsonSchema)]
struct AgentDeadlines {
    agent_id: String,
    team: String,
    due: u32,
    met: u32,
    breached: u32,
    met_late: u32,
    open: u32,
    /// Met of those decided (met or breached); null when none is.
    met_percent: Option<f64>,
}

/// One team's step deadlines due in the period.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct TeamDeadlines {
    team: String,
    due: u32,
    met: u32,
    breached: u32,
    met_late: u32,
    open: u32,
    /// Met of those decided (met or breached); null when none is.
    met_percent: Option<f64>,
}

/// The step deadlines due in one period.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct DeadlinePeriod {
    period: String,
    due: u32,
    met: u32,
    breached: u32,
    met_late: u32,
    open: u32,
    /// Met of those decided (met or breached); null when none is.
    met_percent: Option<f64>,
    kinds: Vec<KindDeadlines>,
    agents: Vec<AgentDeadlines>,
    teams: Vec<TeamDeadlines>,
}

/// The reply of `report_deadlines`.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct DeadlinesReply {
    report: String,
    period: Period,
    periods: Vec<DeadlinePeriod>,
    projectors: Vec<ProjectorStatus>,
}

/// One erasure of a customer's personal data.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct Erasure {
    customer_id: String,
    erased_at: String,
    /// The actor's id; `null` for an erasure recorded before events named it.
    erased_by: Option<String>,
    /// `retention` for the retention scheduler's; the request's ground otherwise.
    reason: String,
    /// The retention policy, or the request's case number.
    reference: String,
    /// The log position of the `customer_data_erased` event.
    position: u64,
}

/// The reply of `report_erasures`.
#[allow(dead_code)]
#[derive(JsonSchema)]
struct ErasuresReply {
    report: String,
    /// First UTC day included (`YYYY-MM-DD`), `null` for none.
    from: Option<String>,
    /// Last UTC day included, `null` for none.
    to: Option<String>,
    erasures: Vec<Erasure>,
    projectors: Vec<ProjectorStatus>,
}

/// The queries `serve` registers, from `serve.rs`'s own `queries` (compiled into the tests).
pub(crate) fn served() -> Vec<String> {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
    let models = ReadModels::new(Arc::new(MemoryTables::new()), Vec::new());
    crate::nats::serve::queries(log, handler, models)
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Every field of every object is sent (`null` when it has no value): all are required.
fn require_all(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                let names: Vec<Value> = properties.keys().map(|k| json!(k)).collect();
                map.insert("required".into(), Value::Array(names));
            }
            for value in map.values_mut() {
                require_all(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(require_all),
        _ => {}
    }
}

/// The request and reply schemas of the query `name`, titled; a query without them is a
/// failure naming it.
fn query_schemas(name: &str) -> (Value, Value) {
    let subject = format!("closeloop.v1.queries.{name}");
    let request_text = format!(
        "Request/reply on {subject}, header `Authorization: Bearer <jwt>`; a refusal is answered as reply.json says (`status` `rejected`, `command_id` null)."
    );
    let reply_text = match name.strip_prefix("report_") {
        Some(report) => format!(
            "The reply to {name}: the JSON of `closeloop report {report} --json`, every field present (`null` when it has no value)."
        ),
        None => format!("The reply to {name}."),
    };
    let report = |mut reply: Value| {
        require_all(&mut reply);
        set_const(&mut reply, "report", json!(&name["report_".len()..]));
        (schema_of::<ReportRequest>(), reply)
    };
    let (request, reply) = match name {
        "ticket_history" => (
            schema_of::<TicketHistoryQuery>(),
            schema_of::<TicketHistory>(),
        ),
        "ticket_state" => (
            schema_of::<TicketStateQuery>(),
            schema_of::<TicketStateReply>(),
        ),
        "report_sla" => report(schema_of::<SlaReply>()),
        "report_satisfaction" => report(schema_of::<SatisfactionReply>()),
        "report_performance" => report(schema_of::<PerformanceReply>()),
        "report_complaints" => report(schema_of::<ComplaintsReply>()),
        "report_inspections" => report(schema_of::<InspectionsReply>()),
        "report_deadlines" => report(schema_of::<DeadlinesReply>()),
        "report_erasures" => report(schema_of::<ErasuresReply>()),
        other => panic!(
            "serve answers the query `{other}`, which has no schema: give it request and reply \
             types in tests/schemas/queries.rs"
        ),
    };
    (
        retitle(request, &format!("{name} request"), Some(&request_text)),
        retitle(reply, &format!("{name} reply"), Some(&reply_text)),
    )
}

/// The query schemas, by path under `schemas/json/`.
pub(super) fn generate(files: &mut BTreeMap<String, Value>) {
    for name in served() {
        let (request, reply) = query_schemas(&name);
        files.insert(format!("queries/{name}.request.json"), request);
        files.insert(format!("queries/{name}.reply.json"), reply);
    }
}

/// `schema` with every object that declares properties refusing any other
/// (`unevaluatedProperties: false`): a reply validating against it sends no field its
/// schema does not name.
pub(super) fn strict(schema: &Value) -> Value {
    let mut schema = schema.clone();
    fn close(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.get("properties").is_some_and(Value::is_object) {
                    map.insert("unevaluatedProperties".into(), json!(false));
                }
                map.values_mut().for_each(close);
            }
            Value::Array(items) => items.iter_mut().for_each(close),
            _ => {}
        }
    }
    close(&mut schema);
    schema
}

pub(super) fn checked_in(path: &str) -> Value {
    let text = std::fs::read_to_string(json_dir().join(path))
        .unwrap_or_else(|e| panic!("schemas/json/{path}: {e}"));
    serde_json::from_str(&text).expect("a schema is JSON")
}

pub(super) fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("a valid schema")
}

pub(super) fn errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| {
            let text = e.to_string();
            format!("{} at {}", &text[..text.len().min(120)], e.instance_path)
        })
        .collect()
}

/// The demo's dates (`closeloop demo` starts on 2026-10-26).
const FROM: &str = "2026-10-26";
const TO: &str = "2026-11-08";
const AT: &str = "2026-11-30T00:00:00Z";

/// Issue 17, an exact contract for the queries. On a demo's store, through `serve.rs`'s own
/// query functions (the transport aside, what `closeloop.v1.queries.<name>` answers):
/// - every served query's replies, with several filters and pages, validate against its
///   reply schema with undeclared fields refused, and carry rows (not vacuous);
/// - every request schema and the query's parser judge a corpus of edge cases alike: an
///   unknown field, each parameter of the wrong type, out of range, malformed or at its
///   limits. A refusal counts as the parser's when its code is `validation`; `not_found`
///   or `forbidden` come after parsing. Where the schema is stricter than the parser (a
///   UUID, a time or a page cursor in another of the forms the parser also reads), the case is named in
///   `LENIENT` below; the converse, a schema-valid request refused by the parser, always
///   fails.
#[tokio::test(flavor = "multi_thread")]
async fn queries_answer_as_their_schemas_say() {
    use closeloop_projections::tables::runner::{TableConfig, TableProjector};

    let store = tokio::task::spawn_blocking(crate::dashboard_page::DemoStore::new)
        .await
        .expect("demo");
    let url = store.url();
    let log = closeloop_core::log::open(&url)
        .await
        .expect("the demo's log");
    let tables = closeloop_projections::tables::open_tables(&url)
        .await
        .expect("tables");
    TableProjector::open(log.clone(), tables, TableConfig::default())
        .await
        .expect("projector")
        .catch_up()
        .await
        .expect("tables caught up");
    let handler = Arc::new(Handler::new(log.clone(), HandlerConfig::default()));
    let (_jobs, models) = crate::nats::serve::read_side(
        &log,
        &handler,
        &crate::nats::serve::ReadSideConfig {
            store: url.clone(),
            scheduler_interval: None,
            process_managers: false,
        },
    )
    .await
    .expect("read side");
    let queries = crate::nats::serve::queries(log.clone(), handler, models);
    let names = served();
    assert!(names.len() >= 7, "{names:?}");

    // Replies.
    let sla = ask(&queries, "report_sla", json!({"at": AT, "limit": 3})).await;
    let ticket = sla["timers"][0]["ticket_id"].clone();
    assert!(ticket.is_string(), "{sla}");
    let first_history = ask(
        &queries,
        "ticket_history",
        json!({"ticket_id": ticket, "limit": 2}),
    )
    .await;
    let next = first_history["next_after_version"].clone();
    assert!(next.is_u64(), "{first_history}");
    let page = sla["timers_next_page"].clone();
    assert!(page.is_string(), "{sla}");
    let mut problems = Vec::new();
    for name in &names {
        let bodies: Vec<Value> = match name.as_str() {
            "ticket_history" => vec![
                json!({"ticket_id": ticket}),
                json!({"ticket_id": ticket, "limit": 2, "after_version": next}),
                json!({"ticket_id": ticket, "as_of": AT, "as_known_at": "2099-01-01T00:00:00Z"}),
            ],
            "ticket_state" => vec![
                json!({"ticket_id": ticket}),
                json!({"ticket_id": ticket, "as_of": AT}),
            ],
            _ => vec![
                json!({}),
                json!({"at": AT, "from": FROM, "to": TO, "period": "day"}),
                json!({"at": AT, "period": "week", "team": "front-a"}),
                json!({"at": AT, "period": "total", "agent": "front-a-2"}),
                json!({"at": AT, "at_risk": true, "limit": 5}),
                json!({"at": AT, "limit": 3, "page": page}),
            ],
        };
        let schema = checked_in(&format!("queries/{name}.reply.json"));
        let check = validator(&strict(&schema));
        let mut rows = 0;
        for body in bodies {
            let reply = ask(&queries, name, body.clone()).await;
            assert_ne!(reply["status"], "rejected", "{name} {body}: {reply}");
            rows += reply
                .as_object()
                .expect("an object")
                .values()
                .filter_map(Value::as_array)
                .map(Vec::len)
                .sum::<usize>();
            let found = errors(&check, &reply);
            if !found.is_empty() {
                problems.push(format!("{name} {body}: {found:?}"));
            }
        }
        assert!(
            rows > 0 || name.starts_with("ticket_"),
            "{name}: every reply had empty lists"
        );
    }
    assert!(
        problems.is_empty(),
        "replies that do not follow their schema:\n{}",
        problems.join("\n")
    );

    // Requests.
    let uuid = Uuid::new_v4();
    let simple = uuid.simple().to_string();
    let cursor = |due: &str, id: &str, target: &str| json!(format!("{due}/{id}/{target}"));
    let any = [json!(5), json!(true), json!([]), json!({})];
    let times = [
        json!(AT),
        json!("2026-11-30T01:00:00+01:00"),
        json!("2026-11-30T00:00:00.123456789Z"),
        json!("1999-12-31T23:59:59Z"),
        json!("9998-12-31T23:59:59Z"),
        json!("9999-12-31T23:59:59Z"),
        json!("2026-11-30"),
        json!("2026-11-30T25:00:00Z"),
        json!("2026-11-30T00:00:00"),
        json!("2026-11-30 00:00:00Z"),
        json!("2026-11-30t00:00:00z"),
        json!("yesterday"),
        json!(""),
        Value::Null,
    ];
    let dates = [
        json!(FROM),
        json!("0001-01-01"),
        json!("9999-12-31"),
        json!("2026-02-29"),
        json!("2028-02-29"),
        json!("2026-13-01"),
        json!("2026-1-5"),
        json!("20261026"),
        json!("2026-10-26T10:00"),
        json!("2026-10-26T10:00:00Z"),
        json!("+002026-10-26"),
        json!("2026-W44"),
        json!(""),
        Value::Null,
    ];
    let ids = [
        json!("front-a"),
        json!(""),
        json!(" "),
        json!("x".repeat(300)),
        Value::Null,
    ];
    let counts = |max: u64| {
        vec![
            json!(0),
            json!(1),
            json!(max),
            json!(max + 1),
            json!(-1),
            json!(2.5),
            json!("1"),
            json!(u64::MAX),
            Value::Null,
        ]
    };
    let mut report_fields: Vec<(&str, Vec<Value>)> = vec![
        ("agent", ids.to_vec()),
        ("team", ids.to_vec()),
        ("from", dates.to_vec()),
        ("to", dates.to_vec()),
        (
            "period",
            vec![
                json!("day"),
                json!("week"),
                json!("month"),
                json!("total"),
                json!("year"),
                json!("Day"),
                json!(""),
                Value::Null,
            ],
        ),
        ("at", times.to_vec()),
        ("limit", counts(u64::from(ReportQuery::LIMIT_MAX))),
        (
            "page",
            vec![
                page.clone(),
                cursor("-", &uuid.to_string(), "resolution"),
                cursor("1793013120", &uuid.to_string(), "first_response"),
                cursor("-5", &uuid.to_string(), "next_response"),
                cursor("1793013120", &uuid.to_string(), "sla"),
                cursor("1793013120", "not-a-uuid", "resolution"),
                cursor("soon", &uuid.to_string(), "resolution"),
                cursor("1793013120", &simple, "resolution"),
                json!("x"),
                json!(""),
                Value::Null,
            ],
        ),
        (
            "at_risk",
            vec![
                json!(true),
                json!(false),
                json!("true"),
                json!(1),
                Value::Null,
            ],
        ),
        ("colour", vec![json!("blue"), Value::Null]),
    ];
    for (_, values) in &mut report_fields {
        values.extend(any.iter().cloned());
    }
    let ticket_ids = vec![
        ticket.clone(),
        json!(uuid),
        json!(simple),
        json!(format!("{{{uuid}}}")),
        json!(uuid.to_string().to_uppercase()),
        json!("not-a-uuid"),
        json!(""),
        Value::Null,
    ];
    let mut history_fields: Vec<(&str, Vec<Value>)> = vec![
        ("ticket_id", ticket_ids.clone()),
        ("as_of", times.to_vec()),
        ("as_known_at", times.to_vec()),
        ("after_version", counts(u64::MAX - 1)),
        ("limit", counts(PAGE_EVENTS_MAX as u64)),
        ("colour", vec![json!("blue")]),
    ];
    let mut state_fields: Vec<(&str, Vec<Value>)> = vec![
        ("ticket_id", ticket_ids),
        ("as_of", times.to_vec()),
        ("limit", vec![json!(1)]),
    ];
    for fields in [&mut history_fields, &mut state_fields] {
        for (_, values) in fields.iter_mut() {
            values.extend(any.iter().cloned());
        }
    }
    let actors = [
        json!({"id": "audit-1", "role": "auditor"}),
        json!({"id": "audit-2", "role": "auditor"}),
        json!({"id": "audit-1", "role": "auditor", "team": "x"}),
        json!({"id": "audit-1"}),
        json!("audit-1"),
        Value::Null,
    ];

    /// Where the schema is stricter than the parser: (field, the forms the parser also
    /// reads). Both are documented in the schema's description or format.
    const LENIENT: &[(&str, &str)] = &[
        (
            "/ticket_id",
            "a UUID as 32 hex digits, in braces or upper case",
        ),
        (
            "/page",
            "a cursor whose UUID is written in another form, or its time with a sign",
        ),
        (
            "/at",
            "a time without its offset, or with a space for the T",
        ),
        (
            "/as_of",
            "a time without its offset, or with a space for the T",
        ),
        (
            "/as_known_at",
            "a time without its offset, or with a space for the T",
        ),
    ];
    let (mut checked, mut both_accept, mut both_refuse, mut lenient) = (0, 0, 0, 0);
    let mut disagreements = Vec::new();
    for name in &names {
        let (baseline, fields) = match name.as_str() {
            "ticket_history" => (json!({"ticket_id": ticket}), &history_fields),
            "ticket_state" => (json!({"ticket_id": ticket}), &state_fields),
            _ => (json!({"at": AT}), &report_fields),
        };
        let check = validator(&checked_in(&format!("queries/{name}.request.json")));
        let mut cases = vec![json!([]), json!("x"), Value::Null];
        for (field, values) in fields.iter() {
            for value in values {
                let mut case = baseline.clone();
                case[*field] = value.clone();
                cases.push(case);
            }
        }
        for actor in &actors {
            let mut case = baseline.clone();
            case["actor"] = actor.clone();
            cases.push(case);
        }
        for case in cases {
            checked += 1;
            let schema_ok = check.is_valid(&case);
            let reply = ask(&queries, name, case.clone()).await;
            let refused = reply["status"] == "rejected" && reply["error"]["code"] == "validation";
            match (schema_ok, refused) {
                (true, false) => both_accept += 1,
                (false, true) => both_refuse += 1,
                (true, true) => disagreements.push(format!(
                    "{name}: the schema accepts, the parser refuses {case}: {}",
                    reply["error"]["message"]
                )),
                (false, false) => {
                    let at: Vec<String> = check
                        .iter_errors(&case)
                        .map(|e| e.instance_path.to_string())
                        .collect();
                    if at
                        .iter()
                        .all(|path| LENIENT.iter().any(|(field, _)| path == field))
                    {
                        lenient += 1;
                    } else {
                        disagreements.push(format!(
                            "{name}: the parser accepts, the schema refuses {case}: {:?}",
                            errors(&check, &case)
                        ));
                    }
                }
            }
        }
    }
    println!(
        "{checked} query requests: {both_accept} accepted and {both_refuse} refused by both, \
         {lenient} read by the parser in a form the schema leaves out"
    );
    assert!(
        both_accept > 100 && both_refuse > 300,
        "{both_accept} accepted and {both_refuse} refused by both"
    );
    assert!(
        disagreements.is_empty(),
        "{} of {checked} requests judged differently:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .map(|d| d.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// One query's answer, asked as an auditor (who may see everything).
async fn ask(queries: &Queries, name: &str, body: Value) -> Value {
    let auditor = Actor {
        id: "audit-1".into(),
        role: Role::Auditor,
    };
    let answer = queries
        .answer(
            name,
            body.to_string().as_bytes(),
            COMMAND_BYTES_MAX,
            64 << 20,
            Ok(Caller::Verified(auditor)),
        )
        .await;
    serde_json::from_slice(&answer).expect("answers are JSON")
}
