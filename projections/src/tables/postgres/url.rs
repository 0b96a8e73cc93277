//! Store URLs of the tables on PostgreSQL: `postgres://...?schema=S` puts the tables in
//! `S_read` (so test schemas stay apart), none in `closeloop_read`.

use crate::tables::store::TableError;

/// The read-model schema when the URL names none.
pub const READ_SCHEMA: &str = "closeloop_read";
/// Longest schema name PostgreSQL keeps (NAMEDATALEN - 1).
const SCHEMA_NAME_MAX: usize = 63;

/// Splits `?schema=S` off a URL: (URL for tokio-postgres, read-model schema).
pub fn split_url(url: &str) -> Result<(String, String), TableError> {
    let (rest, schema) = closeloop_core::log::postgres::split_schema(url);
    let schema = match schema.as_deref() {
        None | Some("closeloop") => READ_SCHEMA.to_owned(),
        Some(s) => format!("{s}_read"),
    };
    let mut chars = schema.chars();
    let valid = schema.len() <= SCHEMA_NAME_MAX
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(TableError::Unavailable(format!(
            "read-model schema `{schema}`: lowercase letters, digits and _ only"
        )));
    }
    Ok((rest, schema))
}
