//! Queries: request/reply on `<prefix>.queries.<name>`. The request carries a token in its
//! `Authorization` header (`auth.rs`), which says who asks; the body is a JSON object with
//! the query's parameters and, optionally, `actor` (which must then equal the token's); the reply is the query's JSON, or a `rejected` reply
//! (`command_id` null). Queries are registered by name ([`Queries::register`]); the binary
//! registers `ticket_history` and `ticket_state`, and the read models add `report_*`.
//! Confidentiality is each query's own business: it gets the actor.

use std::collections::HashMap;
use std::sync::Arc;

use closeloop_core::domain::{Actor, Rejection, RejectionCode};
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::auth::{now_seconds, AuthError, Caller};
use super::config::ServeConfig;
use super::error::ServeError;
use super::gate::{Drained, Gate};
use super::intake::last_token;
use crate::Reply;
use closeloop_core::log::Shutdown;

/// A decoded query request: who asks (the credential's actor), and the other fields of the
/// request object.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub actor: Actor,
    pub params: Map<String, Value>,
    /// The largest reply the server carries (its `max_payload`): a query that can answer
    /// more in pages fits its page to it; a larger reply is refused, never dropped.
    pub reply_bytes_max: usize,
}

impl QueryRequest {
    /// Decodes a parameter; a missing optional parameter is `None`. Errors name the field.
    pub fn param<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        required: bool,
    ) -> Result<Option<T>, Rejection> {
        match self.params.get(name) {
            None | Some(Value::Null) if required => Err(Rejection::validation(
                &format!("/{name}"),
                "missing required field",
            )),
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| Rejection::validation(&format!("/{name}"), e.to_string())),
        }
    }

    /// Rejects parameters other than `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), Rejection> {
        match self.params.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(Rejection::validation(
                &format!("/{unknown}"),
                format!("unknown field; expected actor, {}", known.join(", ")),
            )),
            None => Ok(()),
        }
    }
}

/// A query: request in, JSON or a rejection out.
pub type QueryFn =
    Arc<dyn Fn(QueryRequest) -> BoxFuture<'static, Result<Value, Rejection>> + Send + Sync>;

/// The queries served, by name.
#[derive(Clone, Default)]
pub struct Queries {
    by_name: HashMap<String, QueryFn>,
}

impl Queries {
    pub fn new() -> Queries {
        Queries::default()
    }

    /// Serves `query` on `<prefix>.queries.<name>`; a later registration replaces an earlier.
    pub fn register(&mut self, name: &str, query: QueryFn) -> &mut Queries {
        self.by_name.insert(name.to_owned(), query);
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Answers one request's bytes for the query `name`, from `caller` (its credential,
    /// verified or refused): a refused credential is `unauthorized` before anything else.
    pub async fn answer(
        &self,
        name: &str,
        payload: &[u8],
        bytes_max: usize,
        reply_bytes_max: usize,
        caller: Result<Caller, AuthError>,
    ) -> Vec<u8> {
        let result = match caller {
            Err(refused) => Err(refused.rejection()),
            Ok(caller) => {
                self.dispatch(name, payload, bytes_max, reply_bytes_max, &caller)
                    .await
            }
        };
        let answer = match result {
            Ok(value) => serde_json::to_vec(&value).expect("JSON values serialize"),
            Err(rejection) => Reply::rejected(None, rejection).to_json().into_bytes(),
        };
        if answer.len() <= reply_bytes_max {
            return answer;
        }
        // The server would drop it and the caller would only time out: say so instead.
        let too_big = Rejection::validation(
            "",
            format!(
                "the answer is {} bytes, over the {reply_bytes_max} bytes a reply may carry: \
                 ask for less (a narrower filter, or a page: limit, after_version)",
                answer.len()
            ),
        );
        Reply::rejected(None, too_big).to_json().into_bytes()
    }

    async fn dispatch(
        &self,
        name: &str,
        payload: &[u8],
        bytes_max: usize,
        reply_bytes_max: usize,
        caller: &Caller,
    ) -> Result<Value, Rejection> {
        match self.by_name.get(name) {
            None => Err(Rejection::at(
                RejectionCode::NotFound,
                "",
                format!(
                    "no query `{name}`; expected one of {}",
                    self.names().join(", ")
                ),
            )),
            Some(query) => match decode(payload, bytes_max, reply_bytes_max, caller) {
                Ok(request) => query(request).await,
                Err(rejection) => Err(rejection),
            },
        }
    }
}

fn decode(
    payload: &[u8],
    bytes_max: usize,
    reply_bytes_max: usize,
    caller: &Caller,
) -> Result<QueryRequest, Rejection> {
    if payload.len() > bytes_max {
        return Err(Rejection::validation(
            "",
            format!(
                "request is {} bytes; at most {bytes_max} are accepted",
                payload.len()
            ),
        ));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| Rejection::validation("", format!("request is not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Rejection::validation("", format!("malformed JSON: {e}")))?;
    let Value::Object(mut params) = value else {
        return Err(Rejection::validation("", "expected a JSON object"));
    };
    let body_actor = match params.remove("actor") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<Actor>(v)
                .map_err(|e| Rejection::validation("/actor", e.to_string()))?,
        ),
    };
    let actor = caller.bind(body_actor.as_ref())?;
    Ok(QueryRequest {
        actor,
        params,
        reply_bytes_max,
    })
}

/// Query request/reply, subscribed and ready to run.
pub(crate) struct QueryIntake {
    subscriber: Drained,
    queries: Arc<Queries>,
}

impl QueryIntake {
    pub(crate) async fn subscribe(
        config: &ServeConfig,
        client: &async_nats::Client,
        queries: Queries,
    ) -> Result<QueryIntake, ServeError> {
        let subscriber = client
            .queue_subscribe(config.query_subject("*"), config.queue_group.clone())
            .await
            .map_err(|e| ServeError::nats("subscribing to queries", e))?;
        Ok(QueryIntake {
            subscriber: Drained::new(subscriber, "query"),
            queries: Arc::new(queries),
        })
    }

    pub(crate) async fn run(
        mut self,
        config: Arc<ServeConfig>,
        client: async_nats::Client,
        mut shutdown: Shutdown,
    ) -> Result<(), ServeError> {
        let gate = Gate::new(config.in_flight_max);
        while let Some(message) = self.subscriber.next(&mut shutdown).await {
            let Some(inbox) = message.reply.clone() else {
                continue;
            };
            let permit = gate.enter().await;
            let (queries, client, bytes_max) =
                (self.queries.clone(), client.clone(), config.bytes_max());
            // Room for the reply's headers beside its body.
            let reply_bytes_max = (client.server_info().max_payload).saturating_sub(1024);
            let caller = config
                .auth
                .authenticate(message.headers.as_ref(), now_seconds());
            tokio::spawn(async move {
                let name = last_token(message.subject.as_str());
                let answer = queries
                    .answer(name, &message.payload, bytes_max, reply_bytes_max, caller)
                    .await;
                if let Err(e) = client.publish(inbox, answer.into()).await {
                    tracing::warn!(error = %e, "publishing a query reply");
                }
                drop(permit);
            });
        }
        gate.all_done().await;
        Ok(())
    }
}
