//! What the three intakes (`intake.rs`, `durable.rs`, `query.rs`) share: [`Gate`], the bound
//! on requests in flight and the wait for all of them at shutdown, and [`Drained`], a
//! queue subscription taken until shutdown and then drained, so requests already delivered
//! are still answered. Written once so the three stop the same way.

use std::sync::Arc;

use closeloop_core::log::Shutdown;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most `max` requests in flight; each holds a permit until it is answered.
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Gate {
    pub(crate) fn new(max: usize) -> Gate {
        Gate {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A permit if one is free now (a caller that sheds load rather than queueing it).
    pub(crate) fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// A permit, waiting for one.
    pub(crate) async fn enter(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Waits until every permit is back: every request taken has been answered.
    pub(crate) async fn all_done(self) {
        let all = u32::try_from(self.max).expect("in_flight_max fits in u32");
        let _ = self.permits.acquire_many(all).await;
    }
}

/// A core-NATS subscription taken until shutdown; then drained (the server delivers what it
/// had already routed to it, and the subscription ends).
pub(crate) struct Drained {
    subscriber: async_nats::Subscriber,
    /// What it carries, for the log ("command", "query").
    what: &'static str,
    draining: bool,
}

impl Drained {
    pub(crate) fn new(subscriber: async_nats::Subscriber, what: &'static str) -> Drained {
        Drained {
            subscriber,
            what,
            draining: false,
        }
    }

    /// The next message, or `None` once the subscription has ended (drained after shutdown,
    /// or closed) or could not be drained.
    pub(crate) async fn next(&mut self, shutdown: &mut Shutdown) -> Option<async_nats::Message> {
        loop {
            tokio::select! {
                _ = shutdown.wait(), if !self.draining => {
                    self.draining = true;
                    if let Err(e) = self.subscriber.drain().await {
                        tracing::warn!(error = %e, "draining the {} subscription", self.what);
                        return None;
                    }
                }
                message = self.subscriber.next() => return message,
            }
        }
    }
}
