//! The SQL text of one schema ([`Sql`]), built once per log, and the guarded write
//! statements of a batch in their two forms ([`Writes`]).

use postgres_types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::common::*;

/// The SQL of one schema (the schema name is validated, then quoted).
pub(crate) struct Sql {
    pub(crate) schema: String,
    pub(crate) channel: String,
    /// The guarded writes of a batch, and of a batch of one event ([`Writes`]).
    pub(crate) append: Writes,
    pub(crate) append_one: Writes,
    pub(crate) lock_head: String,
    pub(crate) stream_heads: String,
    pub(crate) commands: String,
    /// Idempotency records in position order (`EventLog::command_records`).
    pub(crate) command_records: String,
    pub(crate) read_stream: String,
    pub(crate) read_stream_page: String,
    pub(crate) read_all: String,
    pub(crate) read_all_filtered: String,
    pub(crate) head: String,
    pub(crate) log_id: String,
    pub(crate) category_heads: String,
    pub(crate) category_heads_to_head: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Sql {
        let s = format!("\"{schema}\"");
        // The head moves from $1 to $2 only if it is still at $1 and, when the batch leaves
        // requests unwritten, only if their command ids ($g) and the streams it took as new
        // ($n) are not in the log. (The checks look each id and stream up on its own,
        // through its index: as `EXISTS (... = ANY($n))` a generic plan may scan the whole
        // table hoping for an early match.)
        let head = |guards: Option<(usize, usize)>| {
            let guards = guards.map_or_else(String::new, |(g, n)| {
                format!(
                    "AND NOT EXISTS (SELECT 1 FROM unnest(${g}::uuid[]) AS u(id)
                                      CROSS JOIN LATERAL (
                                            SELECT 1 FROM {s}.commands AS c
                                             WHERE c.command_id = u.id LIMIT 1) AS known)
                     AND NOT EXISTS (SELECT 1 FROM unnest(${n}::text[]) AS n(stream)
                                      CROSS JOIN LATERAL (
                                            SELECT e.version FROM {s}.events AS e
                                             WHERE e.stream = n.stream
                                             ORDER BY e.version DESC LIMIT 1) AS hit)"
                )
            });
            format!(
                "UPDATE {s}.log_head SET position = $2 WHERE position = $1 {guards}
                 RETURNING position"
            )
        };
        // The guarded write of a batch (crate doc, "Group commit"): `head` locks the
        // counter row and moves it only if it is still where the batch was planned; the
        // inserts and the notification happen only if it moved.
        let append = |guards| {
            format!(
                "WITH head AS ({}), appended AS (
                     INSERT INTO {s}.events ({EVENT_COLUMNS})
                     SELECT r.* FROM unnest($3::bigint[], $4::text[], $5::bigint[], $6::uuid[],
                                            $7::text[], $8::integer[], $9::jsonb[],
                                            $10::jsonb[], $11::text[]) AS r
                      WHERE EXISTS (SELECT 1 FROM head)
                 ), recorded AS (
                     INSERT INTO {s}.commands (command_id, first_position, last_position)
                     SELECT r.* FROM unnest($12::uuid[], $13::bigint[], $14::bigint[]) AS r
                      WHERE EXISTS (SELECT 1 FROM head)
                 )
                 SELECT position, pg_notify($15, position::text) FROM head",
                head(guards)
            )
        };
        // The same for a batch of one event (a lone appender's): scalars instead of
        // arrays, which costs the server noticeably less.
        let append_one = |guards| {
            format!(
                "WITH head AS ({}), appended AS (
                     INSERT INTO {s}.events ({EVENT_COLUMNS})
                     SELECT $2, $3::text, $4::bigint, $5::uuid, $6::text, $7::integer,
                            $8::jsonb, $9::jsonb, $10::text
                      WHERE EXISTS (SELECT 1 FROM head)
                 ), recorded AS (
                     INSERT INTO {s}.commands (command_id, first_position, last_position)
                     SELECT $11::uuid, $2, $2 WHERE EXISTS (SELECT 1 FROM head)
                 )
                 SELECT position, pg_notify($12, position::text) FROM head",
                head(guards)
            )
        };
        Sql {
            schema: schema.to_owned(),
            channel: format!("{schema}_head"),
            append: Writes {
                plain: append(None),
                guarded: append(Some((16, 17))),
            },
            append_one: Writes {
                plain: append_one(None),
                guarded: append_one(Some((13, 14))),
            },
            lock_head: format!("SELECT position FROM {s}.log_head FOR UPDATE"),
            stream_heads: format!(
                "SELECT s.stream, e.version, e.hash
                   FROM unnest($1::text[]) AS s(stream)
                  CROSS JOIN LATERAL (
                        SELECT version, hash FROM {s}.events
                         WHERE events.stream = s.stream
                         ORDER BY version DESC LIMIT 1) AS e"
            ),
            commands: format!(
                "SELECT c.command_id, e.stream, e.version, e.position, e.type
                   FROM {s}.commands AS c
                   JOIN {s}.events AS e
                     ON e.position BETWEEN c.first_position AND c.last_position
                  WHERE c.command_id = ANY($1::uuid[])
                  ORDER BY c.command_id, e.position"
            ),
            command_records: format!(
                "SELECT command_id, first_position, last_position FROM {s}.commands
                  WHERE last_position > $1 ORDER BY last_position LIMIT $2"
            ),
            read_stream: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                  WHERE stream = $1 AND version > $2 ORDER BY version"
            ),
            read_stream_page: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                  WHERE stream = $1 AND version > $2 ORDER BY version LIMIT $3"
            ),
            read_all: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                  WHERE position > $1 ORDER BY position LIMIT $2"
            ),
            read_all_filtered: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events
                  WHERE position > $1 AND split_part(stream, '-', 1) = ANY($3::text[])
                  ORDER BY position LIMIT $2"
            ),
            head: format!("SELECT position FROM {s}.log_head"),
            log_id: format!("SELECT log_id FROM {s}.log_identity"),
            // The last position of each category among events after $1. Under the writer's
            // lock, "after $1" is everything up to the locked head.
            category_heads: format!(
                "SELECT split_part(stream, '-', 1), max(position) FROM {s}.events
                  WHERE position > $1 GROUP BY 1"
            ),
            // The same without the lock, up to the head of the statement's own snapshot (the
            // head row and the events it counts commit together, so the two agree).
            category_heads_to_head: format!(
                "WITH h AS (SELECT position FROM {s}.log_head)
                 SELECT h.position, c.category, c.last
                   FROM h LEFT JOIN LATERAL (
                        SELECT split_part(stream, '-', 1) AS category, max(position) AS last
                          FROM {s}.events
                         WHERE position > $1 AND position <= h.position GROUP BY 1) AS c
                     ON true"
            ),
        }
    }
}

/// A write statement in its two forms. The guards cost the server a good part of a lone
/// append (each of their plan nodes is set up at every execution), and most batches write
/// every request they hold, which leaves nothing to guard.
pub(crate) struct Writes {
    /// For a batch that writes all its requests and read every stream it takes as new.
    pub(crate) plain: String,
    /// For the others: the head moves only if the unwritten requests' command ids and the
    /// unread streams taken as new are not in the log.
    pub(crate) guarded: String,
}

/// [`Writes`] prepared on a connection.
pub(crate) struct WriteStatements {
    pub(crate) plain: Statement,
    pub(crate) guarded: Statement,
}

impl WriteStatements {
    /// The plain form with `params`, or the guarded one with the guards' two arrays after
    /// them.
    pub(crate) async fn run(
        &self,
        client: &Client,
        params: &[&(dyn ToSql + Sync)],
        guards: Option<[&(dyn ToSql + Sync); 2]>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        match guards {
            None => client.query(&self.plain, params).await,
            Some(guards) => {
                let all: Vec<_> = params.iter().chain(&guards).copied().collect();
                client.query(&self.guarded, &all).await
            }
        }
    }
}
