//! "Runs once across instances": a lease per job in a JetStream KV bucket whose entries
//! expire after `ttl` (the bucket's max age). An instance holds a lease while the key holds
//! its id; it takes a free key with `create` (fails if the key exists) and renews every
//! `ttl / 3` with `update` checked against the revision it last wrote, so two instances can
//! never both believe they hold it past one renewal. A holder that dies stops renewing and
//! the key expires after at most `ttl`; a holder that cannot renew stops its job at once.
//! A job that must not run twice even for that overlap makes its effects idempotent (the
//! relay does: `Nats-Msg-Id` de-duplicates re-publication).

use std::time::Duration;

use async_nats::jetstream::{self, kv};

use super::error::ServeError;
use super::job::Job;
use crate::metrics;
use closeloop_core::log::Shutdown;

/// Where leases live and how long one lasts without renewal.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// KV bucket (`CLOSELOOP_LEASES`).
    pub bucket: String,
    /// A lease not renewed for this long is free.
    pub ttl: Duration,
    /// Replicas of the bucket's stream.
    pub replicas: usize,
}

impl Default for LeaseConfig {
    fn default() -> LeaseConfig {
        LeaseConfig {
            bucket: "CLOSELOOP_LEASES".into(),
            ttl: Duration::from_secs(10),
            replicas: 1,
        }
    }
}

/// The lease bucket.
#[derive(Clone)]
pub struct Lease {
    kv: kv::Store,
    ttl: Duration,
}

impl Lease {
    /// Opens the bucket, creating it when missing.
    pub async fn bucket(
        js: &jetstream::Context,
        config: &LeaseConfig,
    ) -> Result<Lease, ServeError> {
        let kv = match js.get_key_value(&config.bucket).await {
            Ok(kv) => kv,
            Err(_) => {
                // The bucket's stream, as `create_key_value` would make it, made directly:
                // `create_key_value` first reads account details that older servers (2.9)
                // encode differently.
                js.get_or_create_stream(jetstream::stream::Config {
                    name: format!("KV_{}", config.bucket),
                    subjects: vec![format!("$KV.{}.>", config.bucket)],
                    max_messages_per_subject: 1,
                    max_age: config.ttl,
                    storage: jetstream::stream::StorageType::File,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: jetstream::stream::DiscardPolicy::New,
                    num_replicas: config.replicas.max(1),
                    ..Default::default()
                })
                .await
                .map_err(|e| ServeError::nats(&format!("lease bucket {}", config.bucket), e))?;
                js.get_key_value(&config.bucket)
                    .await
                    .map_err(|e| ServeError::nats(&format!("lease bucket {}", config.bucket), e))?
            }
        };
        Ok(Lease {
            kv,
            ttl: config.ttl,
        })
    }

    /// Takes the lease `key` for `holder` if it is free; the revision written on success.
    pub async fn try_acquire(&self, key: &str, holder: &str) -> Option<u64> {
        match self.kv.create(key, holder.to_owned().into()).await {
            Ok(revision) => Some(revision),
            Err(e) => {
                if e.kind() != kv::CreateErrorKind::AlreadyExists {
                    tracing::warn!(key, error = %e, "taking a lease");
                }
                None
            }
        }
    }

    /// Renews a held lease; `None` when it was lost.
    pub async fn renew(&self, key: &str, holder: &str, revision: u64) -> Option<u64> {
        match self
            .kv
            .update(key, holder.to_owned().into(), revision)
            .await
        {
            Ok(revision) => Some(revision),
            Err(e) => {
                tracing::warn!(key, error = %e, "lease lost");
                None
            }
        }
    }

    /// Gives a held lease back so another instance can take it at once.
    pub async fn release(&self, key: &str, revision: u64) {
        if let Err(e) = self.kv.delete_expect_revision(key, Some(revision)).await {
            tracing::debug!(key, error = %e, "releasing a lease");
        }
    }

    /// The current holder of `key`, if any.
    pub async fn holder(&self, key: &str) -> Option<String> {
        match self.kv.entry(key).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                Some(String::from_utf8_lossy(&entry.value).into_owned())
            }
            _ => None,
        }
    }
}

/// Runs `job` whenever this instance holds its lease, until `shutdown`.
pub async fn run_leased(lease: Lease, holder: String, job: Job, mut shutdown: Shutdown) {
    let renew_every = lease.ttl / 3;
    metrics::lease_held(&job.name, false);
    while !shutdown.is_set() {
        let Some(mut revision) = lease.try_acquire(&job.name, &holder).await else {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(renew_every) => continue,
            }
        };
        tracing::info!(job = %job.name, %holder, "lease taken: job starts");
        metrics::lease_held(&job.name, true);
        let (stop, signal) = shutdown.linked();
        let mut running = tokio::spawn((job.run)(signal));
        let mut ticker = tokio::time::interval(renew_every);
        ticker.tick().await;
        let lost = loop {
            tokio::select! {
                done = &mut running => {
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(job = %job.name, error = %e, "job failed"),
                        Err(e) => tracing::error!(job = %job.name, error = %e, "job panicked"),
                    }
                    break false;
                }
                _ = ticker.tick() => match lease.renew(&job.name, &holder, revision).await {
                    Some(r) => revision = r,
                    None => break true,
                },
            }
        };
        stop.fire();
        if !running.is_finished() {
            let _ = running.await;
        }
        metrics::lease_held(&job.name, false);
        if !lost {
            lease.release(&job.name, revision).await;
        }
        if !shutdown.is_set() {
            // A failed job or a lost lease: pause before competing again.
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(renew_every) => {}
            }
        }
    }
}
