//! Closeloop's integration tests: one binary (fast to link), one module per subject.
//! Tests that need PostgreSQL or NATS fail with instructions when the service is down;
//! `scripts/test.sh` starts them.

mod asyncapi;
mod audit;
mod business_time;
mod cli;
mod conformance;
mod corpus;
/// The binary's CSV of reports, which the HTTP endpoint serves.
#[allow(dead_code)]
#[path = "../src/csv.rs"]
mod csv;
/// The binary's dashboard page and HTTP endpoint, which `serve.rs` (compiled into `nats`)
/// starts.
#[allow(dead_code)]
#[path = "../src/dashboard.rs"]
mod dashboard;
mod dashboard_page;
mod guide;
mod handler;
#[allow(dead_code)]
#[path = "../src/http.rs"]
mod http;
/// The binary's metrics endpoint, which `serve.rs` (compiled into `nats`) starts.
#[allow(dead_code)]
#[path = "../src/metrics.rs"]
mod metrics;
mod nats;
mod postgres;
mod projections;
mod relay;
mod replay;
mod restart;
mod retention;
mod schemas;
mod scrape;
mod shred;
mod tables;
