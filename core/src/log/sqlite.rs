//! SQLite backend (placeholder until implemented).
use super::*;
use async_trait::async_trait;
use std::time::Duration;
use uuid::Uuid;

pub struct SqliteLog;

impl SqliteLog {
    pub async fn open(path: &str) -> Result<SqliteLog, Error> {
        Err(Error::Unavailable(format!(
            "sqlite backend not built yet ({path})"
        )))
    }
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(&self, _request: AppendRequest) -> Result<AppendOutcome, Error> {
        unreachable!()
    }
    async fn read_stream(
        &self,
        _stream: &str,
        _after_version: u64,
    ) -> Result<Vec<StoredEvent>, Error> {
        unreachable!()
    }
    async fn read_all(
        &self,
        _after: Position,
        _limit: usize,
        _filter: Filter<'_>,
    ) -> Result<Vec<StoredEvent>, Error> {
        unreachable!()
    }
    async fn head(&self) -> Result<Position, Error> {
        unreachable!()
    }
    async fn wait_beyond(&self, _after: Position, _max_wait: Duration) -> Result<Position, Error> {
        unreachable!()
    }
    async fn find_command(&self, _command_id: Uuid) -> Result<Option<Committed>, Error> {
        unreachable!()
    }
}
