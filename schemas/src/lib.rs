//! closeloop-schemas: the published contract. `json/` holds the JSON Schemas (draft 2020-12)
//! of every command, event and reply, generated from the Rust types and drift-tested;
//! `sql/` holds the versioned PostgreSQL migrations, embedded here so the binary carries them.
