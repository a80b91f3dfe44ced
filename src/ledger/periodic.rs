//! The gateway's timed background passes (the automatic closer, the period-boundary run, the
//! pending-order sweeper): a pass, then a wait, until the server stops. Each pass logs its own
//! outcome; a failed pass is retried at the next tick.
use std::future::Future;
use std::time::Duration;

/// Runs `pass` now and then every `period` until `stop` turns true (checked between passes,
/// so a pass in progress finishes).
pub async fn every<Pass>(
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut pass: impl FnMut() -> Pass,
) where
    Pass: Future<Output = ()>,
{
    loop {
        pass().await;
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
