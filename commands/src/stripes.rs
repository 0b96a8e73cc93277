//! Lock stripes: a fixed set of async mutexes, a key (a stream name) always mapping to the
//! same one, so work on one stream can be taken in turn without a lock per stream. Used by
//! the handler (one command of a ticket at a time) and by durable intake (per-stream
//! delivery order).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::Mutex;

pub(crate) struct Stripes(Vec<Arc<Mutex<()>>>);

impl Stripes {
    pub(crate) fn new(count: usize) -> Stripes {
        Stripes(
            (0..count.max(1))
                .map(|_| Arc::new(Mutex::new(())))
                .collect(),
        )
    }

    /// The stripe of `key`.
    pub(crate) fn of(&self, key: &str) -> &Arc<Mutex<()>> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        &self.0[(hasher.finish() % self.0.len() as u64) as usize]
    }
}
