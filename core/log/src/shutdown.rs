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

    /// Whether the signal has fired.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the signal has fired (at once if it already has).
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
