//! closeloop-schemas: the published contract. `json/` holds the JSON Schemas (draft 2020-12)
//! of every command, event and reply, generated from the Rust types and drift-tested;
//! `sql/` holds the versioned PostgreSQL migrations, embedded here so the binary carries them.

/// The PostgreSQL migrations, oldest first: `(version, name, SQL)`. Versions start at 1 and
/// are contiguous; an applied migration is never edited (add a new one instead). Each runs
/// once per schema in one transaction with `search_path` set to that schema, so the SQL
/// names its objects unqualified (`closeloop-core`'s `PostgresLog::migrate` applies them).
pub const POSTGRES_MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "event_log",
        include_str!("../sql/postgres/0001_event_log.sql"),
    ),
    (
        2,
        "log_identity",
        include_str!("../sql/postgres/0002_log_identity.sql"),
    ),
    (
        3,
        "event_log_exact_times",
        include_str!("../sql/postgres/0003_event_log_exact_times.sql"),
    ),
    (
        4,
        "commands_last_position",
        include_str!("../sql/postgres/0004_commands_last_position.sql"),
    ),
    (
        5,
        "customer_keys",
        include_str!("../sql/postgres/0005_customer_keys.sql"),
    ),
];

/// The JSON Schemas (draft 2020-12) of the public contract, as `(path under json/, schema)`:
/// `command.json` and `commands/<type>.json`, `reply.json`, `event.json` and
/// `events/<type>.v<schema_version>.json`, `queries/<name>.{request,reply}.json`. Generated
/// from the Rust types and drift-tested by the root package's `tests/schemas.rs`; regenerate
/// with `CLOSELOOP_UPDATE_SCHEMAS=1 cargo test --test main schemas`.
pub const JSON_SCHEMAS: &[(&str, &str)] = include!("../json/index.rs");
