//! Reading stored events of any schema version as the current [`Event`]. Old versions are
//! upcast here, on read; a stored event is never rewritten (DESIGN.md).

use super::event::{Event, CURRENT_SCHEMA_VERSION};

/// Decodes stored event data, upcasting older schema versions step by step.
pub fn upcast(
    event_type: &str,
    schema_version: u32,
    data: serde_json::Value,
) -> Result<Event, String> {
    if schema_version == 0 || schema_version > CURRENT_SCHEMA_VERSION {
        return Err(format!(
            "{event_type} has schema version {schema_version}; this build reads 1..={CURRENT_SCHEMA_VERSION}"
        ));
    }
    Event::from_data(event_type, data)
}
