//! The listener: wakes `wait_beyond` on every commit, from any process (see "Tails" in
//! the crate doc).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::oneshot;
use tokio_postgres::AsyncMessage;

use closeloop_log::*;

use crate::common::*;
use crate::statements::*;
use crate::url::*;

pub(crate) async fn listen(
    config: Endpoint,
    sql: Arc<Sql>,
    shared: Arc<Shared>,
    ready: oneshot::Sender<Result<(), tokio_postgres::Error>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    loop {
        match listen_once(&config, &sql, &shared, &mut ready).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e));
                    return;
                }
                tracing::debug!("postgres listener: {}", describe(&e));
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Listens until the connection ends.
pub(crate) async fn listen_once(
    config: &Endpoint,
    sql: &Sql,
    shared: &Arc<Shared>,
    ready: &mut Option<oneshot::Sender<Result<(), tokio_postgres::Error>>>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect().await?;
    let notified = shared.clone();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if let Ok(head) = n.payload().parse::<Position>() {
                        notified.publish_head(head);
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let setup = async {
        client
            .batch_execute(&format!("LISTEN \"{}\"", sql.channel))
            .await?;
        let row = client.query_one(&sql.head, &[]).await?;
        Ok::<_, tokio_postgres::Error>(row.get::<_, i64>(0))
    };
    let head = match setup.await {
        Ok(head) => head,
        Err(e) => {
            driver.abort();
            return Err(e);
        }
    };
    shared.publish_head(head.max(0) as Position);
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(()));
    }
    let ended = driver.await;
    drop(client);
    match ended {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}
