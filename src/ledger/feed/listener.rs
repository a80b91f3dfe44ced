//! PostgreSQL LISTEN for the charge feeds: one connection per gateway process receives the
//! notifications every replica's ledger writes send on commit, and hands them to the feeds.
//! On connection loss it reconnects with back-off and then says so (`reconnected`), so the
//! feeds re-read the database and nothing committed while it was away is missed. A periodic
//! ping notices a connection that died silently.
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures::StreamExt;

const PING_INTERVAL: Duration = Duration::from_secs(20);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Listens on `channels` at `url` for as long as the process runs: `notified(channel,
/// payload)` for each notification, `reconnected()` each time the connection is (re)made.
pub(super) fn spawn(
    url: String,
    channels: &[&str],
    notified: impl Fn(&str, &str) + Send + Sync + 'static,
    reconnected: impl Fn() + Send + Sync + 'static,
) {
    let listen_sql: String = channels.iter().map(|c| format!("LISTEN {c}; ")).collect();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listen(&url, &listen_sql, &notified, &reconnected).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(%error, "ledger notification listener lost its connection; reconnecting");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

/// Listens until the connection fails.
async fn listen(
    url: &str,
    listen_sql: &str,
    notified: &impl Fn(&str, &str),
    reconnected: &impl Fn(),
) -> Result<(), String> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| e.to_string())?;
    conn.batch_execute(listen_sql)
        .await
        .map_err(|e| e.to_string())?;
    // Anything committed before LISTEN took effect is picked up by re-reading.
    reconnected();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    loop {
        let notification = {
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            tokio::select! {
                n = notifications.next() => Some(n),
                _ = ping.tick() => None,
            }
        };
        match notification {
            Some(Some(Ok(n))) => notified(&n.channel, &n.payload),
            Some(Some(Err(e))) => return Err(e.to_string()),
            Some(None) => return Err("notification stream ended".into()),
            None => conn
                .batch_execute("SELECT 1")
                .await
                .map_err(|e| e.to_string())?,
        }
    }
}
