//! The shutdown signal (mini-redis style): cheap to clone, handed to every task, fired once.
//! It lives beside the log because every follower of the log waits on it as it waits for
//! the log to move ([`Subscription::wait`](crate::Subscription::wait)): `serve`'s intakes
//! and jobs, the projectors' runners, the SLA scheduler, the process managers and the relay
//! all take this one type.

use tokio::sync::watch;

/// Fires a [`Shutdown`] (and every clone of it).
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

/// Tells a task to stop taking work, finish what it holds, and return.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A new signal and the trigger that fires it.
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Shutdown(rx))
    }

    /// A signal that never fires (for jobs run outside `serve`).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        Shutdown(rx)
    }

    /// Whether the signal has fired. A trigger dropped without firing counts as fired, as
    /// in [`wait`](Shutdown::wait): the task that held it is gone (`schedule`'s signal task
    /// dies if logging "shutdown requested" panics on a closed stderr), and a loop that asked
    /// `is_set` after `wait` returned would otherwise go round for ever.
    pub fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Completes once the signal has fired (at once if it already has, or if its trigger is
    /// gone).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone: treat that as fired too.
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    /// A signal that fires with this one or with the returned trigger, whichever is first
    /// (a leased job stops on shutdown and on losing its lease).
    pub fn linked(&self) -> (Trigger, Shutdown) {
        let (trigger, child) = Shutdown::new();
        let mut parent = self.clone();
        let tx = trigger.0.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = parent.wait() => { tx.send_replace(true); }
                _ = tx.closed() => {}
            }
        });
        (trigger, child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trigger dropped without firing stops its tasks like a fired one: `is_set` and
    /// `wait` agree, so a loop that waits and then asks `is_set` ends.
    #[tokio::test]
    async fn a_dropped_trigger_counts_as_fired() {
        let (trigger, mut shutdown) = Shutdown::new();
        assert!(!shutdown.is_set());
        drop(trigger);
        assert!(shutdown.is_set());
        shutdown.wait().await;

        let (trigger, mut fired) = Shutdown::new();
        trigger.fire();
        assert!(fired.is_set());
        fired.wait().await;
        assert!(!Shutdown::never().is_set());
    }
}
