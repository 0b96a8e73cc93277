//! PostgreSQL backend (placeholder until implemented).
use super::*;
use async_trait::async_trait;
use std::time::Duration;
use uuid::Uuid;

pub struct PostgresLog;

impl PostgresLog {
    pub async fn connect(url: &str) -> Result<PostgresLog, Error> {
        Err(Error::Unavailable(format!(
            "postgres backend not built yet ({url})"
        )))
    }
}

#[async_trait]
impl EventLog for PostgresLog {
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
