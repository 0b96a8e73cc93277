//! Reading stored events of any schema version as the current [`Event`]. Old versions are
//! upcast here, on read, one version at a time; a stored event is never rewritten
//! (docs/contract.md, Events).
//!
//! Each event type has its own current version ([`current_schema_version`]). An upcaster
//! takes the JSON data of version `n` of one type to version `n + 1`; [`upcast`] applies
//! them in a chain from the stored version to the current one, then decodes.
//!
//! The chain today:
//! - `note_added` v1 -> v2: v1 (the first release) had only internal notes and no
//!   `visible_to_customer`; v2 requires it, so the upcaster sets it to `false`.
//!
//! A field added with a default that its absence already meant, and left out when it has
//! that value, needs no new version: older events read as before and serialize (so hash) to
//! the same bytes. So `ticket_closed.reason` (absent: `staff`) and `calendar_defined`'s
//! `working_days` and `hours_overrides` (absent: none) joined version 1.

use serde_json::Value;

use super::event::{current_schema_version, Event};

/// One step: the data of `event_type` at version `from` to version `from + 1`.
type Step = fn(Value) -> Result<Value, String>;

/// The upcasters, as `(event_type, from_version, step)`.
const STEPS: &[(&str, u32, Step)] = &[("note_added", 1, note_added_v1_to_v2)];

fn note_added_v1_to_v2(mut data: Value) -> Result<Value, String> {
    let object = data
        .as_object_mut()
        .ok_or_else(|| "note_added v1 data is not an object".to_string())?;
    // Notes of the first release were always internal. (A field already present is kept:
    // data written by pre-release builds that had it.)
    object
        .entry("visible_to_customer")
        .or_insert(Value::Bool(false));
    Ok(data)
}

/// Decodes stored event data, upcasting older schema versions step by step to the type's
/// current version. A version this build does not know (0, or newer than the current one)
/// is an error naming the type and version; the caller adds the stream and position.
pub fn upcast(event_type: &str, schema_version: u32, data: Value) -> Result<Event, String> {
    let current = current_schema_version(event_type);
    if schema_version == 0 || schema_version > current {
        return Err(format!(
            "{event_type} has schema version {schema_version}; this build reads 1..={current}"
        ));
    }
    let mut data = data;
    for from in schema_version..current {
        let step = STEPS
            .iter()
            .find(|(t, v, _)| *t == event_type && *v == from)
            .map(|(_, _, step)| step)
            .ok_or_else(|| format!("{event_type}: no upcaster from schema version {from}"))?;
        data = step(data).map_err(|e| format!("{event_type} v{from} -> v{}: {e}", from + 1))?;
    }
    Event::from_data(event_type, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoteAdded;
    use serde_json::json;

    #[test]
    fn every_step_leads_to_a_current_version() {
        for (t, from, _) in STEPS {
            assert!(
                *from >= 1 && *from < current_schema_version(t),
                "{t} v{from}"
            );
        }
        for t in Event::TYPES {
            for v in 1..current_schema_version(t) {
                assert!(STEPS.iter().any(|(s, f, _)| s == t && *f == v), "{t} v{v}");
            }
        }
    }

    #[test]
    fn note_added_v1_reads_as_v2_internal() {
        let id = uuid::Uuid::nil();
        let v1 = json!({"ticket_id": id, "text": "called back"});
        assert_eq!(
            upcast("note_added", 1, v1.clone()).unwrap(),
            Event::NoteAdded(NoteAdded {
                ticket_id: id,
                text: "called back".into(),
                visible_to_customer: false,
            })
        );
        // Version 2 requires the field: no silent default.
        assert!(upcast("note_added", 2, v1).is_err());
        let e = upcast("note_added", 3, json!({})).unwrap_err();
        assert!(e.contains("schema version 3"), "{e}");
        assert!(upcast("ticket_closed", 2, json!({"ticket_id": id})).is_err());
    }

    #[test]
    fn calendar_defined_v1_reads_and_writes_the_same_bytes_with_or_without_dated_hours() {
        // As a build without the two lists wrote it.
        let text = r#"{"calendar_id":"office","time_zone":"UTC","weekly_hours":[{"day":"mon","start":"09:00","end":"17:00"}],"holidays":["2026-12-25"]}"#;
        let before: Value = serde_json::from_str(text).unwrap();
        let Event::CalendarDefined(old) = upcast("calendar_defined", 1, before.clone()).unwrap()
        else {
            panic!("not a calendar")
        };
        assert!(old.working_days.is_empty() && old.hours_overrides.is_empty());
        assert_eq!(serde_json::to_string(&old).unwrap(), text);
        let mut after = before;
        after["working_days"] =
            json!([{"date": "2026-12-27", "hours": [{"start": "09:00", "end": "12:00"}]}]);
        after["hours_overrides"] = json!([{"date": "2026-12-24", "hours": []}]);
        let Event::CalendarDefined(new) = upcast("calendar_defined", 1, after.clone()).unwrap()
        else {
            panic!("not a calendar")
        };
        assert_eq!(new.working_days[0].hours[0].end, "12:00");
        assert_eq!(serde_json::to_value(&new).unwrap(), after);
    }
}
