//! The tables a replay (`closeloop replay`) builds beside the live ones, and how it switches
//! them in: [`Shadows`], one implementation per SQL backend (`sqlite/shadow.rs`,
//! `postgres/shadow.rs`), opened by URL with `tables::open_shadows`.
//!
//! - A build is an ordinary [`TableStore`] with its own checkpoint, so a replay stopped
//!   midway (Ctrl-C, a crash) resumes where it stopped when run again. It is bulk-loaded:
//!   its secondary indexes (every index that backs no key) are dropped while it fills and
//!   created once at the end, which is cheaper than keeping them up to date row by row.
//! - [`Build::Live`] replaces the live tables: [`Shadows::finish`] swaps it in atomically,
//!   and readers see the old tables or the new, never a mix. The swapped-in checkpoint has
//!   the build's own generation ([`Saved::generation`](super::Saved)), so a projector still
//!   holding the old one (a running `serve`) is fenced at its next commit, reloads and goes
//!   on from the new checkpoint: it never writes into the new tables what it folded from
//!   the old.
//! - [`Build::AsOf`] keeps the tables as of a point under a name of their own, for an
//!   analyst to compare with today's; [`Shadows::finish`] marks it complete and
//!   [`Shadows::open_complete`] reads it back. The live tables are left alone.

use std::sync::Arc;

use super::store::{TableError, TableStore};

/// What a replay builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Build {
    /// A replacement of the live tables, swapped in when complete.
    Live,
    /// The tables as of a point, named by this slug (`[a-z0-9_]`, at most
    /// [`SLUG_MAX`] bytes, e.g. `1200` or `20261101t000000z`).
    AsOf(String),
}

/// Longest [`Build::AsOf`] slug.
pub const SLUG_MAX: usize = 40;

impl Build {
    /// Checks an [`Build::AsOf`] slug: it becomes part of a file or schema name.
    pub fn check(&self) -> Result<(), TableError> {
        match self {
            Build::Live => Ok(()),
            Build::AsOf(slug) => {
                let valid = !slug.is_empty()
                    && slug.len() <= SLUG_MAX
                    && slug
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if valid {
                    Ok(())
                } else {
                    Err(TableError::Invalid(format!(
                        "replay name `{slug}`: 1 to {SLUG_MAX} of a-z, 0-9 and _"
                    )))
                }
            }
        }
    }
}

/// Where a replay builds tables, and how they are switched in.
#[async_trait::async_trait]
pub trait Shadows: Send + Sync {
    /// The tables `build` is built into: created empty, or as an earlier run left them
    /// (their checkpoint says where to go on from). Their secondary indexes are dropped.
    async fn open(&self, build: &Build) -> Result<Arc<dyn TableStore>, TableError>;
    /// Completes `build` once its checkpoint is at its end: creates its secondary indexes,
    /// then swaps it in ([`Build::Live`]) or marks it complete ([`Build::AsOf`]).
    async fn finish(&self, build: &Build) -> Result<(), TableError>;
    /// The complete [`Build::AsOf`] of this slug, for reading; `None` when no replay
    /// completed it.
    async fn open_complete(&self, slug: &str) -> Result<Option<Arc<dyn TableStore>>, TableError>;
    /// Where `build` lives (a file, a schema), for messages.
    fn describe(&self, build: &Build) -> String;
}
