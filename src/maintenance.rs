//! Housekeeping that keeps tables from growing without bound: request ids older than the
//! retention are forgotten (`idempotency_retention_days`). Runs where the pollers run.
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::store::Store;

/// How often old request ids are forgotten. An hour keeps each pass small (one hour of ids)
/// while nobody can notice the difference against a retention of days.
pub const FORGET_EVERY: Duration = Duration::from_secs(3600);

/// Forgets request ids older than `retention` now and then every `every`, until `stop` is set.
pub async fn forget_old_request_ids(
    store: Arc<Store>,
    retention: chrono::Duration,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match store
            .forget_request_ids_before(Utc::now() - retention)
            .await
        {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "forgot request ids past their retention"),
            Err(error) => {
                tracing::warn!(%error, "cannot forget old request ids; trying again later")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}
