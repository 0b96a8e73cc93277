//! What a JSON document must be before any of it is believed: no key twice in one object
//! (serde_json keeps the last, so `{"actor": auditor, "actor": system}` would be read as
//! `system` while a reviewer, a log line or another parser sees `auditor`), and no text a
//! backend cannot store (U+0000: PostgreSQL refuses it in `text` and `jsonb`, so a command
//! holding it would be stored on SQLite and fail for ever on PostgreSQL). One rule, checked
//! on the raw text before decoding, so it holds on every backend and every path in.
//!
//! The walk is a serde visitor over the text: it builds nothing but the current path, so its
//! memory is the document's depth.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The first problem found: (JSON Pointer, message).
pub type Problem = (String, String);

/// Checks `text` (JSON) for duplicate keys and NUL characters; malformed JSON is left to the
/// decoder that follows (it says where).
pub fn check(text: &str) -> Result<(), Problem> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let _ = Walk {
        path: String::new(),
        found: &mut found,
    }
    .deserialize(&mut de);
    match found {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// JSON Pointer escaping (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

struct Walk<'a> {
    path: String,
    found: &'a mut Option<Problem>,
}

impl Walk<'_> {
    fn fail<E: serde::de::Error>(&mut self, path: String, message: &str) -> E {
        self.found.get_or_insert((path, message.to_owned()));
        E::custom("strict JSON")
    }

    fn text<E: serde::de::Error>(&mut self, path: String, value: &str) -> Result<(), E> {
        if value.contains('\0') {
            return Err(self.fail(path, "must not contain U+0000 (NUL)"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(mut self, v: &str) -> Result<(), E> {
        let path = std::mem::take(&mut self.path);
        self.text(path, v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let seed = Walk {
                path: format!("{}/{i}", self.path),
                found: &mut *self.found,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}/{}", self.path, escape(&key));
            self.text(path.clone(), &key)?;
            if !seen.insert(key) {
                return Err(self.fail(path, "duplicate key: each field may appear once"));
            }
            map.next_value_seed(Walk {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_named_by_their_path() {
        let text =
            r#"{"actor":{"id":"a","role":"auditor"},"payload":{"x":[1,{"k":1,"k":2}]},"actor":{}}"#;
        assert_eq!(check(text).unwrap_err().0, "/payload/x/1/k");
        let text = r#"{"actor":{"id":"a","role":"auditor"},"actor":{"id":"s","role":"system"}}"#;
        assert_eq!(check(text).unwrap_err().0, "/actor");
        assert_eq!(check(r#"{"a/b":1,"a/b":2}"#).unwrap_err().0, "/a~1b");
    }

    #[test]
    fn nul_is_refused_in_values_and_keys() {
        let (path, message) = check(r#"{"payload":{"note":"a\u0000b"}}"#).unwrap_err();
        assert_eq!(path, "/payload/note");
        assert!(message.contains("NUL"));
        assert_eq!(check(r#"{"p":["ok","\u0000"]}"#).unwrap_err().0, "/p/1");
        assert_eq!(check("{\"k\\u0000\":1}").unwrap_err().0, "/k\u{0}");
    }

    #[test]
    fn clean_documents_pass_and_malformed_ones_are_left_to_the_decoder() {
        assert!(check(r#"{"a":{"b":[1,2.5,true,null,"é\n"]},"c":"x"}"#).is_ok());
        assert!(check(r#"{"a":"#).is_ok());
    }
}
