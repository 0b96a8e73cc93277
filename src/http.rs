//! `serve --http ADDR`: the supervisor's dashboard live, the reports as JSON and CSV, over
//! HTTP; read-only.
//!
//! Routes (GET only; anything else 405):
//! - `GET /`: the dashboard page (`crate::dashboard`), filters as URL query parameters;
//! - `GET /reports/{name}`: the JSON of the query `report_{name}` (the same reply);
//! - `GET /reports/{name}.csv`: the report's main rows as CSV (`rows=KEY` picks another list
//!   of the report, such as `timers` of `sla` or `teams` of `performance`).
//!
//! Parameters are those of the `report_*` queries (`agent`, `team`, `from`, `to`, `period`,
//! `at`, `limit`, `page`, `at_risk`), each at most once. Who is asking is decided as over
//! NATS, by the same code: the `Authorization: Bearer <jwt>` header goes through
//! `Auth::authenticate` (the `--auth-keys` verifier; 401 without a valid token), and with
//! `--insecure-no-auth` the actor is taken unverified from `actor_id` and `actor_role`, as
//! NATS takes it from the body. What that actor may see is the caller's rule (`Sources::scope`,
//! which `serve` builds on the domain's `report_scope`, as for the queries): it forces the
//! `agent` or `team` filter, or refuses (403). This module holds no confidentiality rule.
//!
//! Limits: at most [`REQUESTS_MAX`] requests are answered at once (beyond that, 503 at once),
//! each within [`REQUEST_TIMEOUT`] (else 503); a request line over [`URI_BYTES_MAX`] bytes is
//! refused (414); bodies are never read.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use closeloop_commands::nats::{Auth, Caller};
use closeloop_core::domain::{Actor, Rejection, RejectionCode, Role};
use closeloop_projections::models::ReadModels;
use closeloop_projections::period::Granularity;
use closeloop_projections::report::ReportQuery;
use jiff::Timestamp;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Requests answered at once; more get 503 (a report reads the tables, so it is bounded like
/// the queries).
pub const REQUESTS_MAX: usize = 16;
/// Longest a request may take (the dashboard asks the SLA report once per period).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest path and query accepted, in bytes.
pub const URI_BYTES_MAX: usize = 4_096;

/// What a report may show an actor: the query with its `agent` or `team` filter forced to
/// what the actor may see, or why not (`forbidden`, or `unavailable` when the directory
/// cannot be read).
pub type ScopeFn = Arc<
    dyn Fn(
            Actor,
            ReportQuery,
        ) -> Pin<Box<dyn Future<Output = Result<ReportQuery, Rejection>> + Send>>
        + Send
        + Sync,
>;

/// What the endpoint answers from.
pub struct Sources {
    pub models: ReadModels,
    /// Who is acting: `serve`'s own `Auth` (tokens, or explicitly unverified).
    pub auth: Auth,
    pub scope: ScopeFn,
}

/// The running endpoint; [`Endpoint::stop`] ends it.
pub struct Endpoint {
    task: JoinHandle<()>,
}

impl Endpoint {
    pub fn stop(self) {
        self.task.abort();
    }
}

struct Shared {
    sources: Sources,
    requests: Semaphore,
}

/// Serves the routes of the module doc on `addr` (port 0: any free port; the bound address
/// is logged, field `http_addr`). Fails if `addr` cannot be bound, so a wrong address stops
/// `serve` at start.
pub async fn start(addr: SocketAddr, sources: Sources) -> anyhow::Result<Endpoint> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP endpoint to {addr}"))?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        sources,
        requests: Semaphore::new(REQUESTS_MAX),
    });
    let app = Router::new()
        .route("/", get(dashboard))
        .route("/reports/{name}", get(report))
        .with_state(shared);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP endpoint stopped");
        }
    });
    tracing::info!(http_addr = %addr, "dashboard and reports at http://{addr}/");
    Ok(Endpoint { task })
}

/// A refusal as an HTTP answer: the status its code means, and the rejection as JSON (the
/// `error` of a query's reply).
struct Refusal(StatusCode, Rejection);

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Refusal {
        let status = match rejection.code {
            RejectionCode::Unauthorized => StatusCode::UNAUTHORIZED,
            RejectionCode::Forbidden => StatusCode::FORBIDDEN,
            RejectionCode::NotFound => StatusCode::NOT_FOUND,
            RejectionCode::Validation => StatusCode::BAD_REQUEST,
            RejectionCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refusal(status, rejection)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.1 }).to_string();
        let mut response = (
            self.0,
            [(header::CONTENT_TYPE, "application/json")],
            body + "\n",
        )
            .into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// What a request asks for once authenticated and scoped.
struct Asked {
    query: ReportQuery,
    at: Timestamp,
    period_given: bool,
    /// `rows` (CSV only).
    rows: Option<String>,
}

/// Runs `answer` under the limits of the module doc.
async fn limited<F>(shared: &Shared, uri_bytes: usize, answer: F) -> Response
where
    F: Future<Output = Result<Response, Refusal>>,
{
    let Ok(_turn) = shared.requests.try_acquire() else {
        return Refusal::from(Rejection::new(
            RejectionCode::Unavailable,
            format!("more than {REQUESTS_MAX} requests at once: try again shortly"),
        ))
        .into_response();
    };
    if uri_bytes > URI_BYTES_MAX {
        return (
            StatusCode::URI_TOO_LONG,
            format!("the request's path and query exceed {URI_BYTES_MAX} bytes\n"),
        )
            .into_response();
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(refusal)) => refusal.into_response(),
        Err(_) => Refusal::from(Rejection::new(
            RejectionCode::Unavailable,
            format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        ))
        .into_response(),
    }
}

async fn dashboard(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let bytes = raw.as_deref().map_or(0, str::len) + 1;
    limited(&shared, bytes, async {
        let mut asked = ask(&shared.sources, &headers, raw.as_deref(), false).await?;
        if !asked.period_given {
            asked.query.period = Granularity::Week;
        }
        let page = crate::dashboard::gather(&shared.sources.models, &asked.query, asked.at)
            .await
            .map_err(|e| Rejection::new(RejectionCode::Unavailable, e.to_string()))?;
        Ok((
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // The page is self-contained: forbid it to load or run anything.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
            ],
            crate::dashboard::render(&page),
        )
            .into_response())
    })
    .await
}

async fn report(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let bytes = name.len() + raw.as_deref().map_or(0, str::len) + "/reports/?".len();
    limited(&shared, bytes, async {
        let (name, csv) = match name.strip_suffix(".csv") {
            Some(name) => (name.to_owned(), true),
            None => (name, false),
        };
        if !closeloop_projections::models::REPORTS.contains(&name.as_str()) {
            return Err(Rejection::not_found(
                "",
                format!(
                    "no report `{name}`: {}",
                    closeloop_projections::models::REPORTS.join(", ")
                ),
            )
            .into());
        }
        let asked = ask(&shared.sources, &headers, raw.as_deref(), csv).await?;
        let value = shared
            .sources
            .models
            .report(&name, &asked.query, asked.at)
            .await
            .map_err(|e| Rejection::new(RejectionCode::Unavailable, e.to_string()))?
            .ok_or_else(|| Rejection::not_found("", format!("no report `{name}`")))?;
        if !csv {
            return Ok((
                [(header::CONTENT_TYPE, "application/json")],
                value.to_string() + "\n",
            )
                .into_response());
        }
        let key = asked
            .rows
            .unwrap_or_else(|| crate::csv::main_rows(&name).to_owned());
        let Some(rows) = value.get(&key).and_then(Value::as_array) else {
            return Err(Rejection::validation(
                "/rows",
                format!("report `{name}` has no list `{key}`"),
            )
            .into());
        };
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    &format!("attachment; filename=\"{name}-{key}.csv\""),
                ),
            ],
            crate::csv::to_csv(rows),
        )
            .into_response())
    })
    .await
}

/// Who is asking (module doc) and what, restricted to what they may see.
async fn ask(
    sources: &Sources,
    headers: &HeaderMap,
    raw: Option<&str>,
    csv: bool,
) -> Result<Asked, Refusal> {
    let mut params = parse_query(raw)?;
    let caller = {
        // The NATS path's own check, fed the HTTP header.
        let mut nats_headers = async_nats::HeaderMap::new();
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| {
                Rejection::new(
                    RejectionCode::Unauthorized,
                    "the Authorization header is not text",
                )
            })?;
            nats_headers.insert("Authorization", value);
        }
        sources
            .auth
            .authenticate(Some(&nats_headers), Timestamp::now().as_second())
            .map_err(|e| e.rejection())?
    };
    let body_actor = match caller {
        Caller::Verified(_) => None,
        Caller::Unverified => {
            let id = params.remove("actor_id");
            let role = params.remove("actor_role");
            match (id, role) {
                (Some(Value::String(id)), Some(role)) => Some(Actor {
                    id,
                    role: serde_json::from_value::<Role>(role)
                        .map_err(|e| Rejection::validation("/actor_role", e.to_string()))?,
                }),
                _ => {
                    return Err(Rejection::validation(
                        "/actor_id",
                        "without authentication (--insecure-no-auth) name the actor: \
                         actor_id and actor_role",
                    )
                    .into())
                }
            }
        }
    };
    let actor = caller.bind(body_actor.as_ref())?;
    let at = match params.remove("at") {
        Some(value) => Some(
            serde_json::from_value::<Timestamp>(value)
                .map_err(|e| Rejection::validation("/at", e.to_string()))?,
        ),
        None => None,
    };
    let rows = match params.remove("rows") {
        Some(Value::String(rows)) if csv => Some(rows),
        Some(_) => return Err(Rejection::validation("/rows", "only for a report's .csv").into()),
        None => None,
    };
    let period_given = params.contains_key("period");
    let query = ReportQuery::from_params(&params).map_err(|(path, message)| {
        Rejection::validation(&path, message.replace("expected actor, ", "expected at, "))
    })?;
    let query = (sources.scope)(actor, query).await?;
    Ok(Asked {
        query,
        at: at.unwrap_or_else(Timestamp::now),
        period_given,
        rows,
    })
}

/// URL query parameters as a query request's fields: each at most once, `limit` a number,
/// `at_risk` a boolean, the others text.
fn parse_query(raw: Option<&str>) -> Result<Map<String, Value>, Rejection> {
    let mut params = Map::new();
    for (key, text) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let (key, text) = (key.into_owned(), text.into_owned());
        let value = match key.as_str() {
            "limit" => text
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| Rejection::validation("/limit", "must be a whole number"))?,
            "at_risk" => match text.as_str() {
                "true" | "" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(Rejection::validation("/at_risk", "must be true or false")),
            },
            _ => Value::String(text),
        };
        if params.insert(key.clone(), value).is_some() {
            return Err(Rejection::validation(
                &format!("/{key}"),
                "given more than once",
            ));
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_parameters_become_request_fields() {
        let params =
            parse_query(Some("team=front-a&limit=5&at_risk=true&from=2026-11-01")).expect("parses");
        assert_eq!(
            Value::Object(params),
            json!({"team": "front-a", "limit": 5, "at_risk": true, "from": "2026-11-01"})
        );
        assert_eq!(
            parse_query(Some("team=a&team=b")).unwrap_err().details[0].path,
            "/team"
        );
        assert!(parse_query(Some("limit=many")).is_err());
    }
}
