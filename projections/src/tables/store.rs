//! What every table store is and shares: [`TableStore`] (the trait each backend implements,
//! one transaction per method), its checkpoint ([`Saved`]), its errors ([`TableError`]), and
//! the projector's name and version. A leaf of `tables/`: the backends (`memory.rs`,
//! `sqlite/`, `postgres/`), the projector and the reports import it, and it imports only the
//! rows, the fold's `Changes` and the reads' vocabulary.

use closeloop_core::log::Position;
use uuid::Uuid;

use super::fold::Changes;
use super::read::{AnyRow, Dated, Listed, SlaCounts, Span, TimerFilter, TimerPage};
use super::rows::{
    AbsenceRow, AgentRow, ClosureRow, DeadlineRow, Dump, ErasureRow, FollowUpRow, InspectionRow,
    ResolutionRow, RetentionPolicyRow, ScorecardRow, TimerRow,
};

/// The projector's name: the key of its checkpoint.
pub const NAME: &str = "tables";
/// Bumped when the fold or a table's shape changes: stored tables of another version are
/// dropped and rebuilt from position zero.
pub const VERSION: u32 = 10;

/// What a table store's checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub version: u32,
    /// The last log position folded into the tables.
    pub position: Position,
    /// The calendars in force (JSON of `clock::Calendars`).
    pub calendars: Option<String>,
    /// Which build of the tables this is: new whenever they are (re)created, emptied for a
    /// new version, or swapped in by a replay. Commits are guarded by it as well as by the
    /// position, so a projector that read these tables before a replay swapped new ones in
    /// is fenced (even where the positions agree) instead of writing rows folded from its
    /// stale cache into them.
    pub generation: String,
}

impl Saved {
    /// What [`TableStore::checkpoint`] says of tables no projector has opened yet.
    pub fn absent() -> Saved {
        Saved {
            version: VERSION,
            position: 0,
            calendars: None,
            generation: String::new(),
        }
    }
}

/// A new generation for [`Saved::generation`].
pub fn new_generation() -> String {
    Uuid::new_v4().to_string()
}

/// What can go wrong storing the tables. Each kind says what the caller does.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TableError {
    /// Another writer moved the checkpoint since this one read it (two projectors on one
    /// store): nothing was written. The caller reloads the checkpoint and goes on from there.
    #[error("the checkpoint of {NAME} is at {found}, not at {expected} of the generation where this batch began: another writer is folding, or a replay swapped the tables")]
    Fenced { expected: Position, found: Position },
    /// The tables were written by a newer projector version: leave them alone.
    #[error("{NAME} tables are at version {stored}, newer than this binary's {ours}: run the newer binary")]
    Superseded { stored: u32, ours: u32 },
    /// The database could not be reached or failed transiently: retry later.
    #[error("read-model store unavailable: {0}")]
    Unavailable(String),
    /// A stored row this code cannot have written.
    #[error("corrupt read-model row: {0}")]
    Corrupt(String),
    /// A request the store cannot take (a name it cannot hold, a store with nothing to
    /// rebuild): nothing was done.
    #[error("{0}")]
    Invalid(String),
}

impl From<rusqlite::Error> for TableError {
    fn from(e: rusqlite::Error) -> TableError {
        TableError::Unavailable(format!("sqlite: {e}"))
    }
}

impl From<tokio_postgres::Error> for TableError {
    fn from(e: tokio_postgres::Error) -> TableError {
        TableError::Unavailable(format!("postgres: {e}"))
    }
}

/// Where the tables live. Every method is one transaction.
#[async_trait::async_trait]
pub trait TableStore: Send + Sync + 'static {
    /// The checkpoint (creating the tables and a checkpoint at position 0 when absent). A
    /// checkpoint of an older version empties the tables first.
    async fn open(&self) -> Result<Saved, TableError>;
    /// The stored states of these tickets (absent ones are left out).
    async fn works(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, TableError>;
    /// Writes the batch's rows and moves the checkpoint from `from` to `to`, in one
    /// transaction; [`TableError::Fenced`] (and nothing written) when the checkpoint is not
    /// at `from` of `generation` (what [`TableStore::open`] returned).
    async fn commit(
        &self,
        generation: &str,
        from: Position,
        to: Position,
        changes: Changes,
    ) -> Result<(), TableError>;
    /// Every row of every table, in primary-key order.
    async fn dump(&self) -> Result<Dump, TableError>;

    // Reads (see `read.rs`). Each is one consistent snapshot; none waits for the writer.

    /// The checkpoint as stored, without creating or changing anything (position 0 and no
    /// calendars before the first commit).
    async fn checkpoint(&self) -> Result<Saved, TableError>;
    /// Hands every row of `dated`'s table whose dated column lies in `span` to `sink`, in no
    /// particular order; memory holds a few hundred rows at a time, whatever the table's size.
    async fn scan(
        &self,
        dated: Dated,
        span: Span,
        sink: &mut (dyn FnMut(AnyRow) + Send),
    ) -> Result<(), TableError>;
    /// Every registered agent.
    async fn agents(&self) -> Result<Vec<AgentRow>, TableError>;
    /// Unrecorded follow-ups whose warning time or due time is at or before `now` and not
    /// yet marked, soonest warning first, at most `limit`.
    async fn due_follow_ups(&self, now: i64, limit: u32) -> Result<Vec<FollowUpRow>, TableError>;
    /// Step deadlines not done whose warning time or due time is at or before `now` and
    /// not yet marked, soonest owed moment first ([`read::deadline_order`]), at most `limit`.
    async fn due_deadlines(&self, now: i64, limit: u32) -> Result<Vec<DeadlineRow>, TableError>;
    /// Failed inspections whose month to be inspected again (`reinspect_in`) is before
    /// `month` (`YYYY-MM`), not inspected again then (the same ticket and agent in a sample
    /// of that month), and not yet marked overdue; at most `limit`.
    /// Planned absences whose start (`from_at`) or started ones whose end (`until_at`) is at
    /// or before `now`, soonest moment first, at most `limit`.
    async fn due_absences(&self, now: i64, limit: u32) -> Result<Vec<AbsenceRow>, TableError>;
    /// Every retention policy, as last defined.
    async fn retention_policies(&self) -> Result<Vec<RetentionPolicyRow>, TableError>;
    /// The retention scheduler's candidates: for each customer whose every ticket is closed,
    /// whose latest closure is at or before `closed_before`, and who was not erased at or
    /// after that closure, one row per (category, grade) of their tickets with its latest
    /// closure; by customer. The scheduler applies the policies to them.
    async fn retention_candidates(&self, closed_before: i64)
        -> Result<Vec<ClosureRow>, TableError>;
    /// The erasures recorded in `[from, until)`, in the order they were recorded.
    async fn erasures(&self, from: i64, until: i64) -> Result<Vec<ErasureRow>, TableError>;
    async fn due_reinspections(
        &self,
        month: &str,
        limit: u32,
    ) -> Result<Vec<InspectionRow>, TableError>;
    /// Every scorecard definition, by team and day.
    async fn scorecards(&self) -> Result<Vec<ScorecardRow>, TableError>;
    /// Open tickets (neither resolved nor closed) per assignee, by assignee.
    async fn open_load(&self) -> Result<Vec<(String, i64)>, TableError>;
    /// Compliance per (grade, target) and the live and at-risk counts at `now` of the
    /// filtered tickets' timers (compliance in no particular order).
    async fn sla_counts(&self, filter: &TimerFilter, now: i64) -> Result<SlaCounts, TableError>;
    /// One page of the SLA list, soonest due first (see [`TimerPage`]).
    async fn timers(&self, page: &TimerPage) -> Result<Vec<Listed>, TableError>;
    /// At most `limit` timers the scheduler must act on at `now` ([`read::scheduler_due`]),
    /// soonest due first.
    async fn due_timers(&self, now: i64, limit: u32) -> Result<Vec<TimerRow>, TableError>;
    /// At most `limit` resolutions still awaiting the customer's answer
    /// ([`ResolutionRow::awaits_answer`]) whose wait ended before `now`, soonest first: the
    /// scheduler closes their tickets unconfirmed.
    async fn due_answers(&self, now: i64, limit: u32) -> Result<Vec<ResolutionRow>, TableError>;
}

/// Checks a stored version against this binary's.
pub(crate) fn check_version(stored: u32) -> Result<bool, TableError> {
    match stored.cmp(&VERSION) {
        std::cmp::Ordering::Greater => Err(TableError::Superseded {
            stored,
            ours: VERSION,
        }),
        std::cmp::Ordering::Equal => Ok(true),
        std::cmp::Ordering::Less => Ok(false),
    }
}
