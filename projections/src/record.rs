//! What a projector folds: one decoded event with the envelope fields projections use
//! (position, stream, business time). Decoding works from a [`StoredEvent`] (the runners) or
//! straight from its serialized JSON (benchmarks, NATS consumers), without building a
//! `serde_json::Value` for the data. From JSON, the data decodes either into the full [`Event`]
//! ([`Record::from_json`]) or into the lean [`Fact`] the report folds read
//! ([`Lean::from_json`], which copies no text; see `fact.rs`).

use closeloop_core::domain::*;
use closeloop_core::log::{Position, ScannedEvent, StoredEvent};
use std::borrow::Cow;
use std::marker::PhantomData;

use serde::de::DeserializeSeed;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fact::{Fact, Lean};

/// One event as projections see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub position: Position,
    pub stream: String,
    /// Business time (`occurred_at`) as Unix seconds.
    pub at: i64,
    pub event: Event,
}

/// Why an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("position {position} ({event_type}): {message}")]
pub struct DecodeError {
    pub position: Position,
    pub event_type: String,
    pub message: String,
}

impl Record {
    /// From a stored event (upcast from its schema version).
    pub fn from_stored(stored: &StoredEvent) -> Result<Record, DecodeError> {
        let event = stored.decode().map_err(|e| DecodeError {
            position: stored.position,
            event_type: stored.event_type.clone(),
            message: e.to_string(),
        })?;
        Ok(Record {
            position: stored.position,
            stream: stored.stream.clone(),
            at: stored.metadata.occurred_at.as_second(),
            event,
        })
    }

    /// From a stored event serialized as JSON (the envelope of docs/contract.md, Events).
    /// Reads the data straight into its event type when `type` and `schema_version` come
    /// before `data` (as the log writes them), without an intermediate `serde_json::Value`.
    pub fn from_json(bytes: &[u8]) -> Result<Record, DecodeError> {
        let (wire, event) = decode::<Event>(bytes)?;
        Ok(Record {
            position: wire.position,
            stream: wire.stream.into_owned(),
            at: wire.at,
            event,
        })
    }

    /// From a scanned event ([`EventLog::scan`](closeloop_core::log::EventLog::scan), what
    /// replay reads): the data text decodes straight into its event type (upcast first when
    /// it is of an older schema version), without a `serde_json::Value`. The same record as
    /// [`Record::from_stored`] of the same event.
    pub fn from_scanned(scanned: &ScannedEvent) -> Result<Record, DecodeError> {
        let fail = |message: String| DecodeError {
            position: scanned.position,
            event_type: scanned.event_type.clone(),
            message,
        };
        let event = if scanned.schema_version == current_schema_version(&scanned.event_type) {
            let mut de = serde_json::Deserializer::from_str(&scanned.data);
            let event = <Event as Body>::decode(&scanned.event_type, &mut de)
                .and_then(|event| de.end().map(|()| event))
                .map_err(|e| fail(e.to_string()))?;
            event
        } else {
            let value = serde_json::from_str(&scanned.data).map_err(|e| fail(e.to_string()))?;
            upcast(&scanned.event_type, scanned.schema_version, value).map_err(fail)?
        };
        Ok(Record {
            position: scanned.position,
            stream: scanned.stream.clone(),
            at: scanned.occurred_at.as_second(),
            event,
        })
    }

    /// The ticket id of a ticket event.
    pub fn ticket_id(&self) -> Option<uuid::Uuid> {
        self.event.ticket_id()
    }

    /// The record as the report folds read it, borrowed from this one.
    pub fn lean(&self) -> Lean<'_> {
        Lean {
            position: self.position,
            stream: Cow::Borrowed(&self.stream),
            at: self.at,
            fact: Fact::from(&self.event),
        }
    }
}

impl<'a> Lean<'a> {
    /// From a stored event serialized as JSON, as [`Record::from_json`] but into the lean
    /// [`Fact`]: it accepts and refuses the same input, and borrows names from `bytes`.
    pub fn from_json(bytes: &'a [u8]) -> Result<Lean<'a>, DecodeError> {
        let (wire, fact) = decode::<Fact<'a>>(bytes)?;
        Ok(Lean {
            position: wire.position,
            stream: wire.stream,
            at: wire.at,
            fact,
        })
    }
}

/// What the data of a serialized event decodes into: the full [`Event`] or the lean [`Fact`].
trait Body<'de>: Sized {
    /// Data of `event_type` at the type's current schema version ([`current_schema_version`]).
    fn decode<D: serde::Deserializer<'de>>(event_type: &str, d: D) -> Result<Self, D::Error>;
    /// From an event of an older schema version, upcast.
    fn upcast(event: Event) -> Result<Self, String>;
}

impl<'de> Body<'de> for Event {
    fn decode<D: serde::Deserializer<'de>>(event_type: &str, d: D) -> Result<Event, D::Error> {
        DataSeed(event_type).deserialize(d)
    }
    fn upcast(event: Event) -> Result<Event, String> {
        Ok(event)
    }
}

impl<'de> Body<'de> for Fact<'de> {
    fn decode<D: serde::Deserializer<'de>>(event_type: &str, d: D) -> Result<Self, D::Error> {
        Fact::decode(event_type, d)
    }
    fn upcast(event: Event) -> Result<Self, String> {
        // Rare (old schema versions only): through the upcast event's JSON, owning the names.
        Fact::decode(event.event_type(), event.data()).map_err(|e| e.to_string())
    }
}

/// Decodes a serialized stored event: its envelope, and its data into `T`.
///
/// The input is checked to be UTF-8 once, up front, and then read as a `str`: serde_json then
/// does not validate each string it reads again, which was a good share of the decoding.
fn decode<'de, T: Body<'de>>(bytes: &'de [u8]) -> Result<(Wire<'de, T>, T), DecodeError> {
    let fail_at_zero = |message: String| DecodeError {
        position: 0,
        event_type: String::new(),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| fail_at_zero(e.to_string()))?;
    if let Some(decoded) = compact::decode(text) {
        return Ok(decoded);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let mut wire = serde::Deserializer::deserialize_map(&mut de, WireVisitor(PhantomData))
        .and_then(|w| de.end().map(|()| w))
        .map_err(|e| fail_at_zero(e.to_string()))?;
    let fail = |message: String| DecodeError {
        position: wire.position,
        event_type: wire.event_type.to_string(),
        message,
    };
    let data = std::mem::replace(&mut wire.data, Data::Missing);
    let body = match data {
        Data::Decoded(body) => body,
        Data::Raw(raw) if wire.schema_version == current_schema_version(&wire.event_type) => {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            T::decode(&wire.event_type, &mut de).map_err(|e| fail(e.to_string()))?
        }
        Data::Raw(raw) => {
            let value = serde_json::from_str(raw.get()).map_err(|e| fail(e.to_string()))?;
            let event = upcast(&wire.event_type, wire.schema_version, value).map_err(fail)?;
            T::upcast(event).map_err(fail)?
        }
        Data::Missing => return Err(fail("no `data`".into())),
    };
    Ok((wire, body))
}

/// The fast path: the envelope exactly as the log writes it.
///
/// The log serializes a [`StoredEvent`] with serde_json's compact output, so every event's
/// envelope has the same fields in the same order, no whitespace, and (in practice) no escapes
/// in its strings. Going through serde for it costs more than the event's data: a field-name
/// match per key and a string scan per value, for about twenty keys and values no fold reads
/// (event id, command, correlation and causation ids, actor, record time, hash). This reader
/// takes exactly that form: literal keys in order, strings without escapes or control
/// characters, plain unsigned integers; the data object goes to serde as usual. Anything else
/// (another order, whitespace, escapes, an older schema version, an error anywhere) returns
/// `None` and the general path decodes the event from the start, so the two accept the same
/// input and decode it the same (`tests` below).
mod compact {
    use super::*;

    pub(super) fn decode<'de, T: Body<'de>>(text: &'de str) -> Option<(Wire<'de, T>, T)> {
        let mut c = Cursor { text, at: 0 };
        c.lit("{\"position\":")?;
        let position = c.uint()?;
        c.lit(",\"stream\":")?;
        let stream = c.str()?;
        c.lit(",\"version\":")?;
        c.uint()?;
        c.lit(",\"event_id\":")?;
        c.str()?;
        c.lit(",\"type\":")?;
        let event_type = c.str()?;
        c.lit(",\"schema_version\":")?;
        let schema_version = u32::try_from(c.uint()?).ok()?;
        if schema_version != current_schema_version(event_type) {
            return None;
        }
        c.lit(",\"data\":")?;
        let data = c.object()?;
        let mut de = serde_json::Deserializer::from_str(data);
        let body = T::decode(event_type, &mut de).ok()?;
        de.end().ok()?;
        c.lit(",\"metadata\":{\"command_id\":")?;
        c.str()?;
        c.lit(",\"correlation_id\":")?;
        c.str()?;
        c.lit(",\"causation_id\":")?;
        c.str()?;
        c.lit(",\"actor\":{\"id\":")?;
        c.str()?;
        c.lit(",\"role\":")?;
        c.str()?;
        c.lit("},\"occurred_at\":")?;
        let occurred_at = c.str()?;
        let at = match utc_seconds(occurred_at) {
            Some(at) => at,
            None => occurred_at.parse::<jiff::Timestamp>().ok()?.as_second(),
        };
        c.lit(",\"recorded_at\":")?;
        c.str()?;
        c.lit("},\"hash\":")?;
        c.str()?;
        c.lit("}")?;
        (c.at == text.len()).then_some(())?;
        let wire = Wire {
            position,
            stream: Cow::Borrowed(stream),
            event_type: Cow::Borrowed(event_type),
            schema_version,
            data: Data::Missing,
            at,
        };
        Some((wire, body))
    }

    /// Unix seconds of a UTC timestamp in the form jiff writes one,
    /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, from 1970 on; `None` for anything else, which jiff
    /// then parses (general, and a good part of the envelope's cost otherwise). Fractions are
    /// dropped, as `Timestamp::as_second` drops them for these (non-negative) times.
    pub(super) fn utc_seconds(s: &str) -> Option<i64> {
        let b = s.as_bytes();
        let shape = b.len() >= 20
            && [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')]
                .iter()
                .all(|&(i, c)| b[i] == c)
            && b[b.len() - 1] == b'Z';
        if !shape {
            return None;
        }
        let number = |from: usize, to: usize| {
            b[from..to].iter().try_fold(0i64, |n, &d| {
                d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
            })
        };
        let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
        let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
        let fraction = &b[19..b.len() - 1];
        let fraction_ok = fraction.is_empty()
            || (fraction[0] == b'.'
                && (2..=10).contains(&fraction.len())
                && fraction[1..].iter().all(u8::is_ascii_digit));
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let month_days = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let valid = fraction_ok
            && year >= 1970
            && (1..=12).contains(&month)
            && (1..=month_days[(month - 1).clamp(0, 11) as usize]).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        if !valid {
            return None;
        }
        // Days from 1970-01-01 to the civil date (H. Hinnant's `days_from_civil`).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
    }

    /// The length of the plain start of a string's content: up to the first `"`, `\\` or
    /// control character (or the end). Eight bytes at a time, as serde_json does (most of the
    /// envelope is strings): a byte `b` of word `w` is flagged by `has_zero(w ^ b * ONES)`, and
    /// bytes below 0x20 by `(w - 0x20 * ONES) & !w`; a flag can be wrong only above the first
    /// true one, so the lowest flag is the answer.
    fn plain_len(bytes: &[u8]) -> usize {
        const ONES: u64 = u64::MAX / 255;
        const HIGH: u64 = ONES << 7;
        fn has_zero(w: u64) -> u64 {
            w.wrapping_sub(ONES) & !w & HIGH
        }
        let mut words = bytes.chunks_exact(8);
        let mut start = 0;
        for word in &mut words {
            let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            let flags = has_zero(w ^ (ONES * u64::from(b'"')))
                | has_zero(w ^ (ONES * u64::from(b'\\')))
                | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
            if flags != 0 {
                return start + flags.trailing_zeros() as usize / 8;
            }
            start += 8;
        }
        start
            + words
                .remainder()
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(bytes.len() - start)
    }

    struct Cursor<'de> {
        text: &'de str,
        /// Byte index of the next byte to read (always at an ASCII byte or the end).
        at: usize,
    }

    impl<'de> Cursor<'de> {
        fn rest(&self) -> &'de [u8] {
            &self.text.as_bytes()[self.at..]
        }

        fn lit(&mut self, expected: &str) -> Option<()> {
            self.rest().starts_with(expected.as_bytes()).then_some(())?;
            self.at += expected.len();
            Some(())
        }

        /// A JSON unsigned integer: digits, no leading zero, within `u64`.
        fn uint(&mut self) -> Option<u64> {
            let digits = self
                .rest()
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let s = &self.text[self.at..self.at + digits];
            if digits == 0 || (digits > 1 && s.starts_with('0')) {
                return None;
            }
            self.at += digits;
            s.parse().ok()
        }

        /// A string without escapes or control characters: its content, borrowed.
        fn str(&mut self) -> Option<&'de str> {
            let rest = self.rest().strip_prefix(b"\"")?;
            let len = plain_len(rest);
            (rest.get(len) == Some(&b'"')).then_some(())?;
            let content = &self.text[self.at + 1..self.at + 1 + len];
            self.at += len + 2;
            Some(content)
        }

        /// The extent of an object (which serde then reads in full, so this only has to find
        /// where a well-formed one ends): brackets counted outside strings.
        fn object(&mut self) -> Option<&'de str> {
            let bytes = self.rest();
            (bytes.first() == Some(&b'{')).then_some(())?;
            let (mut depth, mut i) = (0usize, 0);
            loop {
                match *bytes.get(i)? {
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b'"' => loop {
                        i += 1;
                        i += plain_len(&bytes[i..]);
                        match *bytes.get(i)? {
                            b'"' => break,
                            b'\\' => i += 1,
                            _ => {}
                        }
                    },
                    _ => {}
                }
                i += 1;
            }
            let object = &self.text[self.at..self.at + i + 1];
            self.at += i + 1;
            Some(object)
        }
    }
}

enum Data<'de, T> {
    Decoded(T),
    /// Data read before its type and version: decoded once the envelope is read.
    Raw(&'de RawValue),
    Missing,
}

struct Wire<'de, T> {
    position: Position,
    /// Borrowed from the input unless it holds escapes (so are the names below).
    stream: Cow<'de, str>,
    event_type: Cow<'de, str>,
    schema_version: u32,
    data: Data<'de, T>,
    at: i64,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Position,
    Stream,
    Type,
    SchemaVersion,
    Data,
    Metadata,
    #[serde(other)]
    Other,
}

struct WireVisitor<T>(PhantomData<T>);

impl<'de, T: Body<'de>> serde::de::Visitor<'de> for WireVisitor<T> {
    type Value = Wire<'de, T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a stored event")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de, T>, A::Error> {
        #[derive(Deserialize)]
        struct Meta {
            occurred_at: jiff::Timestamp,
        }
        use serde::de::Error;
        let (mut position, mut stream, mut event_type, mut schema_version) =
            (None, None, None::<Cow<'de, str>>, None);
        let (mut data, mut at) = (Data::Missing, None);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Position => position = Some(map.next_value()?),
                Field::Stream => stream = Some(map.next_value::<Text<'de>>()?.0),
                Field::Type => event_type = Some(map.next_value::<Text<'de>>()?.0),
                Field::SchemaVersion => schema_version = Some(map.next_value()?),
                Field::Data => {
                    data = match (&event_type, schema_version) {
                        (Some(t), Some(v)) if v == current_schema_version(t) => {
                            Data::Decoded(map.next_value_seed(BodySeed::<T>(t, PhantomData))?)
                        }
                        _ => Data::Raw(map.next_value()?),
                    }
                }
                Field::Metadata => at = Some(map.next_value::<Meta>()?.occurred_at.as_second()),
                Field::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Wire {
            position: position.ok_or_else(|| A::Error::missing_field("position"))?,
            stream: stream.ok_or_else(|| A::Error::missing_field("stream"))?,
            event_type: event_type.ok_or_else(|| A::Error::missing_field("type"))?,
            schema_version: schema_version
                .ok_or_else(|| A::Error::missing_field("schema_version"))?,
            data,
            at: at.ok_or_else(|| A::Error::missing_field("metadata"))?,
        })
    }
}

/// A string borrowed from the input when it can be (no escapes), owned otherwise.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Decodes the data of the named type into `T`.
struct BodySeed<'t, T>(&'t str, PhantomData<T>);

impl<'de, T: Body<'de>> DeserializeSeed<'de> for BodySeed<'_, T> {
    type Value = T;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::decode(self.0, d)
    }
}

/// Decodes event data of the type's current schema version ([`current_schema_version`])
/// straight into the named type.
struct DataSeed<'t>(&'t str);

impl<'de> serde::de::DeserializeSeed<'de> for DataSeed<'_> {
    type Value = Event;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
        macro_rules! decode {
            ($($wire:literal => $variant:ident),+ $(,)?) => {
                match self.0 {
                    $($wire => Deserialize::deserialize(d).map(Event::$variant),)+
                    other => Err(serde::de::Error::custom(format!("unknown event type `{other}`"))),
                }
            };
        }
        closeloop_core::for_each_event!(decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_core::log::{Metadata, StoredEvent};

    fn stored(event: &Event, schema_version: u32) -> StoredEvent {
        let at: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        StoredEvent {
            position: 42,
            stream: "ticket-x".into(),
            version: 3,
            event_id: uuid::Uuid::nil(),
            event_type: event.event_type().into(),
            schema_version,
            data: event.data(),
            metadata: Metadata {
                command_id: uuid::Uuid::nil(),
                correlation_id: uuid::Uuid::nil(),
                causation_id: uuid::Uuid::nil(),
                actor: Actor::system("t"),
                occurred_at: at,
                recorded_at: at,
                command_hash: None,
            },
            hash: "00".into(),
        }
    }

    #[test]
    fn json_decodes_like_stored() {
        let event = Event::TicketResolved(TicketResolved {
            ticket_id: uuid::Uuid::nil(),
            resolution: "fixed \"it\"".into(),
            agent_id: "a1".into(),
            outcome: None,
        });
        let s = stored(&event, event.schema_version());
        let bytes = serde_json::to_vec(&s).unwrap();
        let from_json = Record::from_json(&bytes).unwrap();
        assert_eq!(from_json, Record::from_stored(&s).unwrap());
        // Fields in another order (data before type) still decode, through the raw path.
        let mut value = serde_json::to_value(&s).unwrap();
        let data = value.as_object_mut().unwrap().remove("data").unwrap();
        let mut reordered = serde_json::Map::new();
        reordered.insert("data".into(), data);
        reordered.extend(value.as_object().unwrap().clone());
        let bytes = serde_json::to_vec(&reordered).unwrap();
        assert_eq!(Record::from_json(&bytes).unwrap(), from_json);
        // A schema version this build does not read is an error naming the event.
        let bad = serde_json::to_vec(&stored(&event, 9)).unwrap();
        let e = Record::from_json(&bad).unwrap_err();
        assert_eq!((e.position, e.event_type.as_str()), (42, "ticket_resolved"));
    }

    #[test]
    fn compact_envelope_takes_the_fast_path_and_others_do_not() {
        let event = Event::TicketAssigned(TicketAssigned {
            ticket_id: uuid::Uuid::nil(),
            agent_id: "a1".into(),
            team: "t1".into(),
            previous_agent_id: None,
        });
        let s = stored(&event, event.schema_version());
        let compact = serde_json::to_string(&s).unwrap();
        let (_, fact) = compact::decode::<Fact>(&compact).expect("the fast path");
        assert_eq!(fact, Fact::from(&event));
        assert!(compact::decode::<Event>(&compact).is_some());
        // Whitespace, an escape in the envelope, an old schema version: the general path.
        let pretty = serde_json::to_string_pretty(&s).unwrap();
        assert!(compact::decode::<Fact>(&pretty).is_none());
        let mut escaped = s.clone();
        escaped.stream = "ticket-\"x\"".into();
        let escaped = serde_json::to_string(&escaped).unwrap();
        assert!(compact::decode::<Fact>(&escaped).is_none());
        for json in [&pretty, &escaped] {
            let lean = Lean::from_json(json.as_bytes()).unwrap();
            let full = Record::from_json(json.as_bytes()).unwrap();
            assert_eq!(lean, full.lean());
        }
        // Trailing bytes are refused by both paths.
        let trailing = format!("{compact}x");
        assert!(compact::decode::<Fact>(&trailing).is_none());
        assert!(Lean::from_json(trailing.as_bytes()).is_err());
    }

    proptest::proptest! {
        /// The fast timestamp reading agrees with jiff on jiff's own output, and leaves
        /// everything else (offsets, odd dates) to jiff.
        #[test]
        fn utc_seconds_agrees_with_jiff(second in -10_000_000_000i64..100_000_000_000, nanos in 0i32..1_000_000_000, whole in proptest::bool::ANY) {
            let t = jiff::Timestamp::new(second, if whole { 0 } else { nanos }).unwrap();
            let text = t.to_string();
            match compact::utc_seconds(&text) {
                Some(s) => proptest::prop_assert_eq!(s, t.as_second()),
                None => proptest::prop_assert!(second < 0, "{}", text),
            }
        }
    }

    #[test]
    fn utc_seconds_leaves_the_unusual_to_jiff() {
        assert_eq!(
            compact::utc_seconds("2024-02-29T23:59:59Z"),
            Some(1_709_251_199)
        );
        for odd in [
            "2023-02-29T00:00:00Z",
            "2026-11-23T10:00:00+00:00",
            "2026-11-23t10:00:00z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T10:00:60Z",
            "2026-11-23T10:00:00.Z",
            "2026-13-01T10:00:00Z",
        ] {
            assert_eq!(compact::utc_seconds(odd), None, "{odd}");
        }
    }

    #[test]
    fn lean_upcasts_old_versions() {
        let note = Event::NoteAdded(NoteAdded {
            ticket_id: uuid::Uuid::nil(),
            text: "internal".into(),
            visible_to_customer: true,
        });
        let mut v1 = stored(&note, 1);
        v1.data
            .as_object_mut()
            .unwrap()
            .remove("visible_to_customer");
        let bytes = serde_json::to_vec(&v1).unwrap();
        let lean = Lean::from_json(&bytes).unwrap();
        assert_eq!(lean, Record::from_stored(&v1).unwrap().lean());
        assert_eq!(lean.fact, Fact::NoteAdded(uuid::Uuid::nil()));
        let mut bad = stored(&note, 2);
        bad.data
            .as_object_mut()
            .unwrap()
            .remove("visible_to_customer");
        assert!(Lean::from_json(&serde_json::to_vec(&bad).unwrap()).is_err());
    }

    #[test]
    fn json_fast_path_is_per_type_and_upcasts_old_versions() {
        let note = Event::NoteAdded(NoteAdded {
            ticket_id: uuid::Uuid::nil(),
            text: "internal".into(),
            visible_to_customer: true,
        });
        // Current version (2): the fast path.
        let s = stored(&note, 2);
        let bytes = serde_json::to_vec(&s).unwrap();
        assert_eq!(
            Record::from_json(&bytes).unwrap(),
            Record::from_stored(&s).unwrap()
        );
        // Version 1 lacked `visible_to_customer`: upcast to `false`.
        let mut v1 = stored(&note, 1);
        v1.data
            .as_object_mut()
            .unwrap()
            .remove("visible_to_customer");
        let bytes = serde_json::to_vec(&v1).unwrap();
        let record = Record::from_json(&bytes).unwrap();
        assert_eq!(record, Record::from_stored(&v1).unwrap());
        match record.event {
            Event::NoteAdded(n) => assert!(!n.visible_to_customer),
            other => panic!("{other:?}"),
        }
        // Version 2 without the field is an error, not a silent default.
        let mut bad = stored(&note, 2);
        bad.data
            .as_object_mut()
            .unwrap()
            .remove("visible_to_customer");
        assert!(Record::from_json(&serde_json::to_vec(&bad).unwrap()).is_err());
    }
}
