//! A background job of `serve` (the projectors' runners, the SLA scheduler, the event relay):
//! what it is and whether it runs in every instance or in one at a time.

use std::sync::Arc;

use futures::future::BoxFuture;

use closeloop_core::log::Shutdown;

/// A background job run by `serve` until shutdown: the projectors' runners, the SLA
/// scheduler. It gets a [`Shutdown`] and must return soon after it fires. A job that fails
/// (returns `Err`) is logged and started again after a pause.
pub type JobFn = Arc<dyn Fn(Shutdown) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A named background job.
#[derive(Clone)]
pub struct Job {
    /// Unique among jobs; for leased jobs, also the lease key (`[A-Za-z0-9_-]`).
    pub name: String,
    /// When true, the job runs in one instance at a time (a lease in a JetStream KV bucket).
    pub run_once: bool,
    pub run: JobFn,
}

impl Job {
    /// A job that runs in every instance.
    pub fn everywhere(name: &str, run: JobFn) -> Job {
        Job {
            name: name.to_owned(),
            run_once: false,
            run,
        }
    }

    /// A job that runs in exactly one instance at a time (lease).
    pub fn once(name: &str, run: JobFn) -> Job {
        Job {
            name: name.to_owned(),
            run_once: true,
            run,
        }
    }
}
