//! What a projector folds: one decoded event with the envelope fields projections use
//! (position, stream, business time). Decoding works from a [`StoredEvent`] (the runners) or
//! straight from its serialized JSON (benchmarks, NATS consumers), without building a
//! `serde_json::Value` for the data.

use closeloop_core::domain::*;
use closeloop_core::log::{Position, StoredEvent};
use std::borrow::Cow;

use serde::de::DeserializeSeed;
use serde::Deserialize;
use serde_json::value::RawValue;

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

    /// From a stored event serialized as JSON (the envelope of DESIGN.md). Reads the data
    /// straight into its event type when `type` and `schema_version` come before `data` (as
    /// the log writes them), without an intermediate `serde_json::Value`.
    pub fn from_json(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let wire = serde::Deserializer::deserialize_map(&mut de, WireVisitor)
            .and_then(|w| de.end().map(|()| w))
            .map_err(|e| DecodeError {
                position: 0,
                event_type: String::new(),
                message: e.to_string(),
            })?;
        let fail = |message: String| DecodeError {
            position: wire.position,
            event_type: wire.event_type.to_string(),
            message,
        };
        let event = match wire.data {
            Data::Decoded(event) => event,
            Data::Raw(raw) if wire.schema_version == current_schema_version(&wire.event_type) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                DataSeed(&wire.event_type)
                    .deserialize(&mut de)
                    .map_err(|e| fail(e.to_string()))?
            }
            Data::Raw(raw) => {
                let value = serde_json::from_str(raw.get()).map_err(|e| fail(e.to_string()))?;
                upcast(&wire.event_type, wire.schema_version, value).map_err(fail)?
            }
            Data::Missing => return Err(fail("no `data`".into())),
        };
        Ok(Record {
            position: wire.position,
            stream: wire.stream,
            at: wire.at,
            event,
        })
    }

    /// The ticket id of a ticket event.
    pub fn ticket_id(&self) -> Option<uuid::Uuid> {
        self.event.ticket_id()
    }
}

enum Data {
    Decoded(Event),
    Raw(Box<RawValue>),
    Missing,
}

struct Wire<'de> {
    position: Position,
    stream: String,
    /// Borrowed from the input unless it holds escapes.
    event_type: Cow<'de, str>,
    schema_version: u32,
    data: Data,
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

struct WireVisitor;

impl<'de> serde::de::Visitor<'de> for WireVisitor {
    type Value = Wire<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a stored event")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
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
                Field::Stream => stream = Some(map.next_value()?),
                Field::Type => event_type = Some(map.next_value::<Text<'de>>()?.0),
                Field::SchemaVersion => schema_version = Some(map.next_value()?),
                Field::Data => {
                    data = match (&event_type, schema_version) {
                        (Some(t), Some(v)) if v == current_schema_version(t) => {
                            Data::Decoded(map.next_value_seed(DataSeed(t))?)
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
        decode! {
            "ticket_opened" => TicketOpened,
            "ticket_assigned" => TicketAssigned,
            "ticket_escalated" => TicketEscalated,
            "customer_responded_to" => CustomerRespondedTo,
            "customer_info_requested" => CustomerInfoRequested,
            "customer_replied" => CustomerReplied,
            "priority_changed" => PriorityChanged,
            "note_added" => NoteAdded,
            "ticket_resolved" => TicketResolved,
            "ticket_reopened" => TicketReopened,
            "ticket_closed" => TicketClosed,
            "satisfaction_recorded" => SatisfactionRecorded,
            "sla_warning_raised" => SlaWarningRaised,
            "sla_breached" => SlaBreached,
            "agent_registered" => AgentRegistered,
            "agent_availability_changed" => AgentAvailabilityChanged,
            "customer_registered" => CustomerRegistered,
            "calendar_defined" => CalendarDefined,
            "sla_policy_defined" => SlaPolicyDefined,
        }
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
