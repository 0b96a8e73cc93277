//! Customers' data keys: what crypto-shredding destroys (README, "Personal data").
//!
//! Why a store beside the log and not in it: the events are immutable (triggers refuse
//! UPDATE and DELETE, and the hash chains cover them), so erasing a customer's texts cannot
//! touch them. Their customer fields are stored encrypted under the customer's key
//! ([`crate::shred`]); destroying the key, one row of a table that may be deleted from, makes
//! them unreadable for ever while every chain still verifies. Each backend keeps its keys in
//! its own database (SQLite: `customer_keys` in the log's file; PostgreSQL: `customer_keys` in
//! the log's schema), so a backup of the log holds the keys that were alive when it was
//! taken: restoring an older backup brings back keys destroyed since, which is why erasure
//! must be repeated after a restore (the `customer_data_erased` events say which).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chacha20poly1305::aead::{KeyInit, OsRng};
use chacha20poly1305::XChaCha20Poly1305;

use crate::error::Error;

/// A customer's 256-bit data key. Its `Debug` shows nothing of the key.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(pub [u8; 32]);

impl DataKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> DataKey {
        DataKey(XChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    /// The key's id: 12 hex digits of a SHA-256 of the key, written into every field sealed
    /// under it. Why: a customer erased and then heard from again gets a new key, and a
    /// reader must tell a field of the destroyed key (erased) from a field that does not
    /// open under the key it names (altered). The id says nothing of the key's bytes.
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"closeloop/key-id/v1\0")
            .chain_update(self.0)
            .finalize();
        hex::encode(&digest[..6])
    }

    /// The key from stored bytes; `None` unless exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<DataKey> {
        <[u8; 32]>::try_from(bytes).ok().map(DataKey)
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Where customers' data keys live. Every method is safe to call concurrently, from several
/// processes too: `get_or_create` under a race returns the one key that was stored.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores `key` as the customer's key unless the customer has one; the key stored
    /// (`key`, or the one that was there). Durable when it returns.
    async fn store(&self, customer_id: &str, key: &DataKey) -> Result<DataKey, Error>;

    /// The customer's key, created and stored now if there is none (also after an erasure:
    /// data given after it is readable under the new key, what came before stays erased).
    async fn get_or_create(&self, customer_id: &str) -> Result<DataKey, Error> {
        self.store(customer_id, &DataKey::generate()).await
    }

    /// The customer's key, `None` if none was ever created or it was destroyed.
    async fn get(&self, customer_id: &str) -> Result<Option<DataKey>, Error>;

    /// Destroys the customer's key (deletes it); whether there was one. Idempotent.
    async fn destroy(&self, customer_id: &str) -> Result<bool, Error>;
}

/// The keys of the memory log: the reference implementation.
#[derive(Default)]
pub struct MemoryKeys {
    keys: Mutex<HashMap<String, DataKey>>,
}

#[async_trait]
impl KeyStore for MemoryKeys {
    async fn store(&self, customer_id: &str, key: &DataKey) -> Result<DataKey, Error> {
        let mut keys = self.keys.lock().expect("key map poisoned");
        Ok(keys
            .entry(customer_id.to_owned())
            .or_insert_with(|| key.clone())
            .clone())
    }

    async fn get(&self, customer_id: &str) -> Result<Option<DataKey>, Error> {
        Ok(self
            .keys
            .lock()
            .expect("key map poisoned")
            .get(customer_id)
            .cloned())
    }

    async fn destroy(&self, customer_id: &str) -> Result<bool, Error> {
        Ok(self
            .keys
            .lock()
            .expect("key map poisoned")
            .remove(customer_id)
            .is_some())
    }
}
