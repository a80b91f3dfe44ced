//! SQLite WAL checkpoints off the write path. SQLite's automatic checkpoint runs inside the COMMIT
//! of the connection whose write crossed the threshold: it copies the WAL into the database file
//! and syncs it, which stalled ledger writes by up to tens of milliseconds (charge_streams bench:
//! 8,000 charges/s instead of 10,000). The writer connection turns the automatic checkpoint off
//! and this task checkpoints on a reader connection instead, in PASSIVE mode, which never blocks
//! the writer or the readers.
use std::time::Duration;

use super::pool::Pool;
use diesel_async::SimpleAsyncConnection;

use super::SqliteConn;

/// How often the WAL is checkpointed: bounds it to about this much of writes.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The running checkpoint task; stops when dropped with its store.
pub struct Checkpointer(tokio::task::JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether [`start`] can run here: it needs a Tokio runtime. Without one the writer keeps
/// SQLite's automatic checkpoint.
pub fn can_start() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

pub fn start(readers: Pool<SqliteConn>) -> Option<Checkpointer> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    Some(Checkpointer(runtime.spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = match readers.get().await {
                Ok(mut conn) => conn
                    .batch_execute("PRAGMA wal_checkpoint(PASSIVE)")
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(error) = result {
                tracing::warn!(%error, "SQLite WAL checkpoint failed; retrying");
            }
        }
    })))
}
