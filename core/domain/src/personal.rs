//! Which fields of each event hold customer personal data: the ones whose JSON Schema says
//! `"x-personal-data": "customer"` (README, "Personal data"). The list is read from the
//! schemas the `#[schemars(extend(...))]` attributes on the event types produce, so the
//! published classification and the fields the log encrypts are one list and cannot drift.
//!
//! Staff data (`"staff"`: the names of agents and inspectors) is not listed here: it is kept
//! with the staff directory and is not in scope of a customer's erasure.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::event::*;

/// The top-level fields of `event_type`'s data that hold customer personal data, in the
/// order of their names; empty for an event type without any (or an unknown one).
/// Every one is a string (or an optional string) in the data.
pub fn customer_fields(event_type: &str) -> &'static [String] {
    static FIELDS: OnceLock<HashMap<&'static str, Vec<String>>> = OnceLock::new();
    FIELDS
        .get_or_init(|| {
            macro_rules! collect {
                ($($wire:literal => $variant:ident),+ $(,)?) => {
                    HashMap::from([$(($wire, marked(&schemars::schema_for!($variant)))),+])
                };
            }
            crate::for_each_event!(collect)
        })
        .get(event_type)
        .map_or(&[], Vec::as_slice)
}

/// The properties of an object schema marked `"x-personal-data": "customer"`.
fn marked(schema: &schemars::Schema) -> Vec<String> {
    let Some(properties) = schema
        .as_value()
        .get("properties")
        .and_then(serde_json::Value::as_object)
    else {
        return Vec::new();
    };
    properties
        .iter()
        .filter(|(_, p)| p.get("x-personal-data").and_then(|k| k.as_str()) == Some("customer"))
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_customer_fields_are_the_annotated_ones() {
        assert_eq!(
            customer_fields("ticket_opened"),
            ["description".to_owned(), "subject".to_owned()]
        );
        assert_eq!(customer_fields("customer_registered"), ["name".to_owned()]);
        assert_eq!(customer_fields("ticket_merged"), ["reason".to_owned()]);
        // Staff names are not customer data.
        assert!(customer_fields("agent_registered").is_empty());
        assert!(customer_fields("inspector_registered").is_empty());
        assert!(customer_fields("ticket_assigned").is_empty());
        assert!(customer_fields("no_such_event").is_empty());
    }
}
