//! Crypto-shredding: the customer fields of an event ([`closeloop_domain::customer_fields`])
//! are stored encrypted under the customer's data key ([`crate::KeyStore`]), so destroying
//! the key erases them while the events, and the hash chains over them, stay as they are.
//!
//! A sealed field is a self-describing string, so the event schemas keep `type: string`:
//!
//! `enc:v1:<customer_id>:<key id>:<base64url, unpadded, of the 24-byte nonce then the ciphertext and tag>`
//!
//! The key id ([`DataKey::id`], 12 hex digits) tells which of the customer's keys sealed it:
//! after an erasure a customer heard from again gets a new key, under which the older fields
//! must read as erased, not as altered.
//!
//! XChaCha20-Poly1305 with a random 24-byte nonce per field (random nonces are safe at that
//! size). The associated data binds the ciphertext to its place: the event id, the event
//! type, the field and the customer, so a ciphertext copied into another field or event, or
//! relabelled with another customer, fails to open. The customer id is in the clear: it is a
//! pseudonym, not personal data (README, "Personal data"), and it tells a reader which key
//! to ask for without knowing the ticket.
//!
//! Reading: a sealed field whose key exists opens to its text; one whose key was destroyed
//! reads as [`ERASED`], never as ciphertext (so does one sealed under an earlier key of the
//! customer's, destroyed since); a field stored in the clear (written before
//! encryption existed) reads as stored.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use closeloop_domain::customer_fields;
use serde_json::Value;
use uuid::Uuid;

use crate::{DataKey, Error, KeyStore, StoredEvent};

/// The prefix of a sealed field (version 1 of the format).
pub const SEALED_PREFIX: &str = "enc:v1:";

/// What an erased field reads as, everywhere it is read in the clear.
pub const ERASED: &str = "[erased]";

/// Bytes of the nonce.
const NONCE_BYTES: usize = 24;

/// Whether `text` is a sealed field.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(SEALED_PREFIX)
}

/// The associated data of a field: what the ciphertext is bound to.
fn associated(event_id: Uuid, event_type: &str, field: &str, customer_id: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(64 + event_type.len() + field.len() + customer_id.len());
    ad.extend_from_slice(b"closeloop/field/v1\0");
    ad.extend_from_slice(event_id.as_bytes());
    for part in [event_type, field, customer_id] {
        ad.extend_from_slice(part.as_bytes());
        ad.push(0);
    }
    ad
}

/// Encrypts the customer fields of `data` (the data of an event of `event_type` with id
/// `event_id`) in place under `key`, customer `customer_id`'s key. Fields absent or `null`
/// stay so; a field already sealed is left alone.
pub fn seal_data(
    event_type: &str,
    event_id: Uuid,
    customer_id: &str,
    key: &DataKey,
    data: &mut Value,
) {
    let fields = customer_fields(event_type);
    if fields.is_empty() {
        return;
    }
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    for field in fields {
        let Some(Value::String(text)) = data.get_mut(field.as_str()) else {
            continue;
        };
        if is_sealed(text) {
            continue;
        }
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated(event_id, event_type, field, customer_id);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: text.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any text shorter than 256 GiB");
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        *text = format!(
            "{SEALED_PREFIX}{customer_id}:{}:{}",
            key.id(),
            URL_SAFE_NO_PAD.encode(bytes)
        );
    }
}

/// A sealed field's customer, key id and payload (base64url text). Split from the right:
/// neither the key id nor base64url holds a `:`, a customer id may.
fn parts(text: &str) -> Option<(&str, &str, &str)> {
    let (rest, payload) = text.strip_prefix(SEALED_PREFIX)?.rsplit_once(':')?;
    let (customer, key_id) = rest.rsplit_once(':')?;
    Some((customer, key_id, payload))
}

/// The customers whose keys the sealed fields of `data` need.
pub fn sealed_customers<'a>(event_type: &str, data: &'a Value) -> Vec<&'a str> {
    customer_fields(event_type)
        .iter()
        .filter_map(|field| data.get(field.as_str())?.as_str())
        .filter_map(|text| parts(text).map(|(customer, _, _)| customer))
        .collect()
}

/// Opens the sealed customer fields of `data` in place: to their text under the key
/// `key_of` gives for their customer, or to [`ERASED`] when it gives none (destroyed).
/// A field that does not open under an existing key (tampered, or moved from elsewhere) is
/// an error naming it.
pub fn unseal_data(
    event_type: &str,
    event_id: Uuid,
    data: &mut Value,
    key_of: &dyn Fn(&str) -> Option<DataKey>,
) -> Result<(), String> {
    for field in customer_fields(event_type) {
        let Some(Value::String(text)) = data.get_mut(field.as_str()) else {
            continue;
        };
        let Some((customer_id, key_id, payload)) = parts(text) else {
            continue;
        };
        let Some(key) = key_of(customer_id).filter(|key| key.id() == key_id) else {
            // The key it was sealed under is destroyed (none now, or a newer one).
            *text = ERASED.to_owned();
            continue;
        };
        let fail = |why: &str| format!("/data/{field} of event {event_id} ({event_type}): {why}");
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| fail("not base64url"))?;
        if bytes.len() < NONCE_BYTES {
            return Err(fail("shorter than its nonce"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let aad = associated(event_id, event_type, field, customer_id);
        let clear = XChaCha20Poly1305::new((&key.0).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| fail("does not open under its customer's key (altered or moved)"))?;
        *text = String::from_utf8(clear).map_err(|_| fail("not UTF-8 once opened"))?;
    }
    Ok(())
}

/// The keys of the customers `events` need, each asked for once (`None`: destroyed).
pub async fn keys_for(
    keys: &dyn KeyStore,
    events: &[StoredEvent],
) -> Result<HashMap<String, Option<DataKey>>, Error> {
    let mut found = HashMap::new();
    for event in events {
        for customer in sealed_customers(&event.event_type, &event.data) {
            if !found.contains_key(customer) {
                found.insert(customer.to_owned(), keys.get(customer).await?);
            }
        }
    }
    Ok(found)
}

/// Opens the sealed customer fields of stored events in place (see [`unseal_data`]): what
/// a reader inside Closeloop sees. The events' hashes then no longer match their data,
/// which is why only views (histories, states) are unsealed, never what is verified,
/// exported or published.
pub async fn unseal(keys: &dyn KeyStore, events: &mut [StoredEvent]) -> Result<(), Error> {
    let found = keys_for(keys, events).await?;
    let key_of = |customer: &str| found.get(customer).cloned().flatten();
    for event in events {
        unseal_data(&event.event_type, event.event_id, &mut event.data, &key_of)
            .map_err(Error::Corrupt)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opened(data: &mut Value, id: Uuid, key: Option<&DataKey>) -> Result<(), String> {
        unseal_data("ticket_opened", id, data, &|_| key.cloned())
    }

    #[test]
    fn a_sealed_field_opens_only_in_its_place_and_reads_erased_without_its_key() {
        let key = DataKey::generate();
        let id = Uuid::now_v7();
        let clear = json!({"ticket_id": id, "customer_id": "c-1", "subject": "My bike", "description": "Broken", "priority": "high"});
        let mut data = clear.clone();
        seal_data("ticket_opened", id, "c-1", &key, &mut data);
        let subject = data["subject"].as_str().unwrap().to_owned();
        assert!(
            subject.starts_with(&format!("enc:v1:c-1:{}:", key.id())),
            "{subject}"
        );
        assert!(!data.to_string().contains("My bike"));
        assert!(!data.to_string().contains("Broken"));
        assert_eq!(data["priority"], "high", "other fields stay clear");
        // Sealing twice leaves a sealed field alone.
        let mut twice = data.clone();
        seal_data("ticket_opened", id, "c-1", &key, &mut twice);
        assert_eq!(twice, data);

        let mut back = data.clone();
        opened(&mut back, id, Some(&key)).unwrap();
        assert_eq!(back, clear);

        // Another event's id, another field, another key: refused, naming the field.
        let mut moved = data.clone();
        let err = opened(&mut moved, Uuid::now_v7(), Some(&key)).unwrap_err();
        assert!(err.starts_with("/data/description"), "{err}");
        let mut only_subject = json!({"subject": subject.clone()});
        let err = opened(&mut only_subject, Uuid::now_v7(), Some(&key)).unwrap_err();
        assert!(err.starts_with("/data/subject"), "{err}");
        let mut swapped = data.clone();
        swapped["description"] = Value::String(subject.clone());
        let err = opened(&mut swapped, id, Some(&key)).unwrap_err();
        assert!(err.starts_with("/data/description"), "{err}");

        // A newer key of the customer's (an erasure, then new data): erased, not altered.
        let mut older = data.clone();
        opened(&mut older, id, Some(&DataKey::generate())).unwrap();
        assert_eq!(older["subject"], ERASED);
        // Tampered under the right key id: refused.
        let mut altered = data.clone();
        let mut text = subject.clone();
        let last = text.pop().unwrap();
        text.push(if last == 'A' { 'B' } else { 'A' });
        altered["subject"] = Value::String(text);
        assert!(opened(&mut altered, id, Some(&key)).is_err());

        // The key destroyed: the marker, never ciphertext.
        let mut erased = data.clone();
        opened(&mut erased, id, None).unwrap();
        assert_eq!(erased["subject"], ERASED);
        assert_eq!(erased["description"], ERASED);
        assert_eq!(erased["customer_id"], "c-1");
    }

    #[test]
    fn clear_fields_of_older_events_read_as_stored() {
        let id = Uuid::now_v7();
        let mut data = json!({"subject": "written before encryption"});
        opened(&mut data, id, None).unwrap();
        assert_eq!(data["subject"], "written before encryption");
    }

    #[test]
    fn nonces_differ_so_equal_texts_do_not_show() {
        let key = DataKey::generate();
        let id = Uuid::now_v7();
        let mut a = json!({"subject": "same"});
        let mut b = a.clone();
        seal_data("ticket_opened", id, "c", &key, &mut a);
        seal_data("ticket_opened", id, "c", &key, &mut b);
        assert_ne!(a, b);
    }
}
