//! The metrics `serve --metrics` exposes (README, Metrics): every name, its labels and what
//! it means, listed once here ([`CATALOGUE`]) and recorded where the fact is known (the
//! handler, the intakes, the leases; the binary samples the gauges read from the log, the
//! tables and JetStream when it is scraped).
//!
//! Recording goes through the `metrics` facade, whose macros do nothing until a recorder is
//! installed: only `serve --metrics` installs one, so the CLI, the demo, the benches and the
//! tests pay only for building a key that nothing records (a few small allocations per
//! command, beside an append's round trip to the store).
//!
//! Label values are always drawn from fixed sets (command types, rejection codes, job
//! names), never from input as received: a subject token that names no command is counted
//! as `unknown`, so a caller cannot grow the number of series.

use std::time::Duration;

use closeloop_core::domain::{Command, Rejection, RejectionCode};
use metrics::{counter, gauge, histogram};

use crate::reply::Reply;

/// Counter: commands answered, labels `type` (the command type, `unknown` when it could not
/// be read) and `outcome` (`accepted`, `duplicate`, `rejected`).
pub const COMMANDS: &str = "closeloop_commands_total";
/// Counter: refusals, labels `type` and `code` (the reply's error code).
pub const REJECTIONS: &str = "closeloop_command_rejections_total";
/// Histogram: seconds from a command's arrival at the handler to its reply, label `type`.
pub const COMMAND_DURATION: &str = "closeloop_command_duration_seconds";
/// Gauge: commands being handled now, label `intake` (`request`, `durable`).
pub const IN_FLIGHT: &str = "closeloop_commands_in_flight";
/// Counter: request/reply commands answered `unavailable` at once because `in_flight_max`
/// were in flight.
pub const SHED: &str = "closeloop_commands_shed_total";
/// Gauge: durable commands stored and not yet delivered (the consumer's `num_pending`).
pub const DURABLE_BACKLOG: &str = "closeloop_durable_backlog";
/// Gauge: durable commands delivered and not yet acknowledged (`num_ack_pending`).
pub const DURABLE_ACK_PENDING: &str = "closeloop_durable_ack_pending";
/// Counter: durable commands received again (a delivery after the first).
pub const DURABLE_REDELIVERIES: &str = "closeloop_durable_redeliveries_total";
/// Counter: durable commands left for a later redelivery (store unavailable).
pub const DURABLE_RETRIES: &str = "closeloop_durable_retries_total";
/// Counter: durable commands moved to the dead-letter stream.
pub const DURABLE_DEAD_LETTERED: &str = "closeloop_durable_dead_lettered_total";
/// Gauge: the log's head position.
pub const LOG_HEAD: &str = "closeloop_log_head_position";
/// Gauge: the last position folded into a projector's model, label `projector`.
pub const PROJECTOR_POSITION: &str = "closeloop_projector_position";
/// Gauge: events a projector is behind the log's head, label `projector`.
pub const PROJECTOR_LAG: &str = "closeloop_projector_lag_events";
/// Gauge: the log position of the events stream's last message (what the relay published).
pub const RELAY_POSITION: &str = "closeloop_relay_position";
/// Gauge: events the relay is behind the log's head.
pub const RELAY_LAG: &str = "closeloop_relay_lag_events";
/// Counter: the SLA scheduler's commands appended, label `kind` (`warning`, `breach`,
/// `close_unconfirmed`).
pub const SCHEDULER_APPENDED: &str = "closeloop_scheduler_appended_total";
/// Gauge: 1 while this instance holds a run-once job's lease, else 0; label `job`.
pub const LEASE_HELD: &str = "closeloop_lease_held";
/// Counter: reads of shared state for a scrape that failed or timed out, label `source`
/// (`log`, `tables`, `relay`, `durable`); the gauges they feed keep their last value.
pub const SAMPLE_FAILURES: &str = "closeloop_metrics_sample_failures_total";

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: name, kind, labels, meaning (the README's table follows this list).
#[derive(Debug, Clone, Copy)]
pub struct Described {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Every metric `serve` exposes.
pub const CATALOGUE: &[Described] = &[
    Described {
        name: COMMANDS,
        kind: Kind::Counter,
        labels: &["type", "outcome"],
        help: "Commands answered, by command type and outcome (accepted, duplicate, rejected).",
    },
    Described {
        name: REJECTIONS,
        kind: Kind::Counter,
        labels: &["type", "code"],
        help: "Commands refused, by command type and error code.",
    },
    Described {
        name: COMMAND_DURATION,
        kind: Kind::Histogram,
        labels: &["type"],
        help: "Seconds from a command's arrival at the handler to its reply.",
    },
    Described {
        name: IN_FLIGHT,
        kind: Kind::Gauge,
        labels: &["intake"],
        help: "Commands being handled now, by intake (request, durable).",
    },
    Described {
        name: SHED,
        kind: Kind::Counter,
        labels: &[],
        help: "Request/reply commands answered unavailable at once: in_flight_max were in flight.",
    },
    Described {
        name: DURABLE_BACKLOG,
        kind: Kind::Gauge,
        labels: &[],
        help: "Durable commands stored and not yet delivered (the consumer's num_pending).",
    },
    Described {
        name: DURABLE_ACK_PENDING,
        kind: Kind::Gauge,
        labels: &[],
        help: "Durable commands delivered and not yet acknowledged.",
    },
    Described {
        name: DURABLE_REDELIVERIES,
        kind: Kind::Counter,
        labels: &[],
        help: "Durable commands received again after a first delivery.",
    },
    Described {
        name: DURABLE_RETRIES,
        kind: Kind::Counter,
        labels: &[],
        help: "Durable commands left for a later redelivery because the store was unavailable.",
    },
    Described {
        name: DURABLE_DEAD_LETTERED,
        kind: Kind::Counter,
        labels: &[],
        help: "Durable commands moved to the dead-letter stream.",
    },
    Described {
        name: LOG_HEAD,
        kind: Kind::Gauge,
        labels: &[],
        help: "The log's head position.",
    },
    Described {
        name: PROJECTOR_POSITION,
        kind: Kind::Gauge,
        labels: &["projector"],
        help: "The last log position folded into the projector's model (its checkpoint).",
    },
    Described {
        name: PROJECTOR_LAG,
        kind: Kind::Gauge,
        labels: &["projector"],
        help: "Events the projector is behind the log's head.",
    },
    Described {
        name: RELAY_POSITION,
        kind: Kind::Gauge,
        labels: &[],
        help: "The log position of the events stream's last message.",
    },
    Described {
        name: RELAY_LAG,
        kind: Kind::Gauge,
        labels: &[],
        help: "Events the relay is behind the log's head.",
    },
    Described {
        name: SCHEDULER_APPENDED,
        kind: Kind::Counter,
        labels: &["kind"],
        help: "SLA scheduler commands appended (warning, breach, close_unconfirmed).",
    },
    Described {
        name: LEASE_HELD,
        kind: Kind::Gauge,
        labels: &["job"],
        help: "1 while this instance holds the run-once job's lease, else 0.",
    },
    Described {
        name: SAMPLE_FAILURES,
        kind: Kind::Counter,
        labels: &["source"],
        help: "Reads of shared state for a scrape that failed or timed out (log, tables, relay, durable).",
    },
];

/// Registers the help text of every metric with the installed recorder.
pub fn describe() {
    for m in CATALOGUE {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => {
                metrics::describe_histogram!(m.name, metrics::Unit::Seconds, m.help)
            }
        }
    }
}

/// A command type as a label: one of [`Command::TYPES`], else `unknown`.
pub fn type_label(name: &str) -> &'static str {
    Command::TYPES
        .iter()
        .find(|t| **t == name)
        .copied()
        .unwrap_or("unknown")
}

/// Counts one answered command of `command_type` (a [`type_label`]).
pub fn answered(command_type: &'static str, reply: &Reply) {
    let outcome = match reply {
        Reply::Accepted { .. } => "accepted",
        Reply::Duplicate { .. } => "duplicate",
        Reply::Rejected { error, .. } => {
            rejected(command_type, error);
            "rejected"
        }
    };
    counter!(COMMANDS, "type" => command_type, "outcome" => outcome).increment(1);
}

fn rejected(command_type: &'static str, error: &Rejection) {
    counter!(REJECTIONS, "type" => command_type, "code" => code_label(error.code)).increment(1);
}

/// An error code as the contract spells it (its serde name; a test holds them equal).
fn code_label(code: RejectionCode) -> &'static str {
    match code {
        RejectionCode::Validation => "validation",
        RejectionCode::NotFound => "not_found",
        RejectionCode::Conflict => "conflict",
        RejectionCode::InvalidTransition => "invalid_transition",
        RejectionCode::Forbidden => "forbidden",
        RejectionCode::Unauthorized => "unauthorized",
        RejectionCode::Unavailable => "unavailable",
        RejectionCode::Internal => "internal",
    }
}

/// Records how long the handler took over a command of `command_type`.
pub fn handled_in(command_type: &'static str, elapsed: Duration) {
    histogram!(COMMAND_DURATION, "type" => command_type).record(elapsed.as_secs_f64());
}

/// One command counted in [`IN_FLIGHT`] for `intake` while this lives.
pub struct InFlight(&'static str);

impl InFlight {
    pub fn new(intake: &'static str) -> InFlight {
        gauge!(IN_FLIGHT, "intake" => intake).increment(1.0);
        InFlight(intake)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(IN_FLIGHT, "intake" => self.0).decrement(1.0);
    }
}

/// Counts a request/reply command shed.
pub fn shed() {
    counter!(SHED).increment(1);
}

/// Counts a durable command received again.
pub fn redelivered() {
    counter!(DURABLE_REDELIVERIES).increment(1);
}

/// Counts a durable command left for redelivery.
pub fn retried() {
    counter!(DURABLE_RETRIES).increment(1);
}

/// Counts a durable command moved to the dead-letter stream.
pub fn dead_lettered() {
    counter!(DURABLE_DEAD_LETTERED).increment(1);
}

/// The kind of an SLA scheduler command, as [`SCHEDULER_APPENDED`] labels it; `None` for a
/// command the scheduler does not send.
pub fn scheduler_kind(command: &Command) -> Option<&'static str> {
    match command {
        Command::RaiseSlaWarning(_) => Some("warning"),
        Command::RecordSlaBreach(_) => Some("breach"),
        Command::CloseUnconfirmed(_) => Some("close_unconfirmed"),
        _ => None,
    }
}

/// Counts a scheduler command of `kind` ([`scheduler_kind`]) if `reply` says it was appended.
pub fn scheduler_answered(kind: Option<&'static str>, reply: &Reply) {
    if let (Some(kind), Reply::Accepted { .. }) = (kind, reply) {
        counter!(SCHEDULER_APPENDED, "kind" => kind).increment(1);
    }
}

/// Sets whether this instance holds `job`'s lease.
pub fn lease_held(job: &str, held: bool) {
    gauge!(LEASE_HELD, "job" => job.to_owned()).set(if held { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_prefixed_and_counters_end_in_total() {
        let mut names = std::collections::HashSet::new();
        for m in CATALOGUE {
            assert!(m.name.starts_with("closeloop_"), "{}", m.name);
            assert!(names.insert(m.name), "{} listed twice", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            if m.kind == Kind::Histogram {
                assert!(m.name.ends_with("_seconds"), "{}", m.name);
            }
        }
    }

    #[test]
    fn a_code_label_is_the_code_as_the_contract_spells_it() {
        for code in [
            RejectionCode::Validation,
            RejectionCode::NotFound,
            RejectionCode::Conflict,
            RejectionCode::InvalidTransition,
            RejectionCode::Forbidden,
            RejectionCode::Unauthorized,
            RejectionCode::Unavailable,
            RejectionCode::Internal,
        ] {
            assert_eq!(serde_json::json!(code), code_label(code));
        }
    }

    /// What a local recorder saw: each series (name and labels, sorted) with its value.
    fn recorded(
        work: impl FnOnce(),
    ) -> std::collections::BTreeMap<String, metrics_util::debugging::DebugValue> {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, work);
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect()
    }

    #[test]
    fn replies_are_counted_by_type_and_outcome_and_refusals_by_code() {
        use metrics_util::debugging::DebugValue::Counter;
        let id = uuid::Uuid::nil();
        let seen = recorded(|| {
            answered(
                "open_ticket",
                &Reply::rejected(Some(id), Rejection::validation("/type", "no")),
            );
            answered(
                type_label("nope"),
                &Reply::rejected(None, Rejection::validation("", "no")),
            );
            shed();
        });
        assert_eq!(
            seen["closeloop_commands_total{outcome=rejected,type=open_ticket}"],
            Counter(1)
        );
        assert_eq!(
            seen["closeloop_command_rejections_total{code=validation,type=open_ticket}"],
            Counter(1)
        );
        assert_eq!(
            seen["closeloop_commands_total{outcome=rejected,type=unknown}"],
            Counter(1)
        );
        assert_eq!(seen["closeloop_commands_shed_total{}"], Counter(1));
    }

    #[test]
    fn a_command_in_flight_is_counted_until_it_is_done() {
        use metrics_util::debugging::DebugValue::Gauge;
        let seen = recorded(|| {
            let first = InFlight::new("request");
            let _second = InFlight::new("request");
            drop(first);
            let _durable = InFlight::new("durable");
        });
        // Every guard is dropped by the end of the closure: back at zero.
        assert_eq!(
            seen["closeloop_commands_in_flight{intake=request}"],
            Gauge(0.0.into())
        );
        assert_eq!(
            seen["closeloop_commands_in_flight{intake=durable}"],
            Gauge(0.0.into())
        );
        // One never dropped stays counted.
        let during = recorded(|| {
            let _held = InFlight::new("request");
            std::mem::forget(InFlight::new("request"));
        });
        assert_eq!(
            during["closeloop_commands_in_flight{intake=request}"],
            Gauge(1.0.into())
        );
    }

    #[test]
    fn only_appended_scheduler_commands_count() {
        use metrics_util::debugging::DebugValue::Counter;
        let seen = recorded(|| {
            lease_held("relay", true);
            let accepted = Reply::Accepted {
                command_id: uuid::Uuid::nil(),
                stream: "ticket-x".into(),
                version: 2,
                position: 9,
                events: vec!["sla_breached".into()],
            };
            scheduler_answered(Some("breach"), &accepted);
            scheduler_answered(
                Some("warning"),
                &Reply::rejected(None, Rejection::validation("", "no")),
            );
            scheduler_answered(None, &accepted);
        });
        assert_eq!(
            seen["closeloop_scheduler_appended_total{kind=breach}"],
            Counter(1)
        );
        assert!(!seen.contains_key("closeloop_scheduler_appended_total{kind=warning}"));
        assert_eq!(
            seen["closeloop_lease_held{job=relay}"],
            metrics_util::debugging::DebugValue::Gauge(1.0.into())
        );
    }

    #[test]
    fn a_type_label_is_a_known_command_type() {
        assert_eq!(type_label("open_ticket"), "open_ticket");
        assert_eq!(type_label("open_ticket.>"), "unknown");
        assert_eq!(type_label(""), "unknown");
    }
}
