//! Retrying a stream's page read when the database is briefly unreachable (a PostgreSQL restart
//! or failover, a terminated backend, a pool timeout): a stream's page read is side-effect free,
//! so it is tried up to [`STREAM_READ_ATTEMPTS`] times with a growing pause before the stream
//! ends with UNAVAILABLE (the client then reconnects from its cursor). Other errors end it at once.
//!
//! ```ignore
//! // (or `with_retries(state, |s| Box::pin(s.read_page()))`)
//! let mut attempt = 0;
//! let page = loop {
//!     match read_page().await {
//!         Err(error) if read_again(&error, &mut attempt).await => {}
//!         result => break result?,
//!     }
//! };
//! ```
use std::time::Duration;

use futures::future::BoxFuture;

use super::error::{Error, Result};

/// How many times a stream reads a page before giving up on an unavailable database.
pub const STREAM_READ_ATTEMPTS: u32 = 3;
/// The pause after the first failed attempt; each later pause is four times the one before.
pub const FIRST_PAUSE: Duration = Duration::from_millis(200);

/// The pause after failed attempt `attempt` (1-based): 200 ms, then 800 ms.
pub fn pause_after(attempt: u32) -> Duration {
    FIRST_PAUSE * 4u32.saturating_pow(attempt.saturating_sub(1))
}

/// After a failed read: true, having waited, when the read should be tried again (the error is
/// UNAVAILABLE-class and attempts remain); `attempt` counts the failures so far.
pub async fn read_again(error: &Error, attempt: &mut u32) -> bool {
    if !matches!(error, Error::Unavailable(..)) {
        return false;
    }
    *attempt += 1;
    if *attempt >= STREAM_READ_ATTEMPTS {
        tracing::warn!(%error, attempts = *attempt, "stream page read failed; ending the stream with UNAVAILABLE");
        return false;
    }
    tracing::info!(%error, attempt = *attempt, "stream page read failed; retrying");
    tokio::time::sleep(pause_after(*attempt)).await;
    true
}

/// `read(state)` until it succeeds, fails otherwise than UNAVAILABLE, or has been tried
/// [`STREAM_READ_ATTEMPTS`] times.
pub async fn with_retries<S: Send, T>(
    state: &mut S,
    mut read: impl for<'a> FnMut(&'a mut S) -> BoxFuture<'a, Result<T>>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        match read(state).await {
            Err(error) if read_again(&error, &mut attempt).await => {}
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unavailable_reads_are_retried_a_bounded_number_of_times() {
        let unavailable = Error::Unavailable("database", "terminating connection".into());
        let mut attempt = 0;
        let started = std::time::Instant::now();
        assert!(read_again(&unavailable, &mut attempt).await);
        assert!(read_again(&unavailable, &mut attempt).await);
        assert!(!read_again(&unavailable, &mut attempt).await);
        assert_eq!(attempt, STREAM_READ_ATTEMPTS);
        assert!(started.elapsed() >= Duration::from_millis(1000));
        let mut attempt = 0;
        assert!(!read_again(&Error::Internal("bug".into()), &mut attempt).await);
        assert_eq!(attempt, 0);
    }
}
