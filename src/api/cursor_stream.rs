//! A server stream of sequenced records after a client's cursor: the backlog from the database
//! page by page, then what commits later, with heartbeats carrying the high-water mark when
//! idle. The database is the buffer (a slow consumer holds one page). Live changes are noticed
//! when this process commits (SQLite's single writer) or at the next poll (PostgreSQL, where
//! another replica may have committed).
use std::collections::VecDeque;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Status;

use crate::domain::error::Result;
use crate::domain::retry::with_retries;
use crate::proto::v1;

use super::convert::timestamp;

/// Where a cursor stream reads from.
#[async_trait::async_trait]
pub trait CursorSource: Send + 'static {
    type Item: Send + 'static;
    /// At most `limit` records after sequence `after`, in sequence order, with their sequences.
    async fn after(&mut self, after: i64, limit: i64) -> Result<Vec<(i64, Self::Item)>>;
    /// The last sequence handed out.
    async fn high_water_mark(&mut self) -> Result<i64>;
}

/// What a cursor stream sends.
pub enum Delivery<T> {
    Item(T),
    Heartbeat(v1::Heartbeat),
}

/// How a cursor stream paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub page: i64,
    /// The longest wait for a change before the database is read again.
    pub poll: Duration,
    pub heartbeat: Duration,
}

struct State<S: CursorSource> {
    source: S,
    cursor: i64,
    pending: VecDeque<S::Item>,
    wake: watch::Receiver<u64>,
    pacing: Pacing,
    next_heartbeat: Instant,
    caught_up_to: i64,
    failed: bool,
}

/// The stream of `source` after `after`, each delivery converted by `to_proto`; `wake` changes
/// when this process commits.
pub fn stream<S, R>(
    source: S,
    after: i64,
    wake: watch::Receiver<u64>,
    pacing: Pacing,
    to_proto: impl Fn(Delivery<S::Item>) -> R + Send + 'static,
) -> BoxStream<'static, Result<R, Status>>
where
    S: CursorSource,
    R: Send + 'static,
{
    let state = State {
        source,
        cursor: after,
        pending: VecDeque::new(),
        wake,
        pacing,
        next_heartbeat: Instant::now() + pacing.heartbeat,
        caught_up_to: 0,
        failed: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let delivery = state.next().await?;
        Some((delivery, state))
    })
    .map(move |delivery| delivery.map(&to_proto))
    .boxed()
}

impl<S: CursorSource> State<S> {
    async fn next(&mut self) -> Option<Result<Delivery<S::Item>, Status>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(item) = self.pending.pop_front() {
                self.next_heartbeat = Instant::now() + self.pacing.heartbeat;
                return Some(Ok(Delivery::Item(item)));
            }
            self.wake.borrow_and_update();
            match self.read().await {
                Err(error) => {
                    self.failed = true;
                    return Some(Err(error.into()));
                }
                Ok(true) => continue,
                Ok(false) => {}
            }
            if Instant::now() >= self.next_heartbeat {
                self.next_heartbeat = Instant::now() + self.pacing.heartbeat;
                return Some(Ok(Delivery::Heartbeat(v1::Heartbeat {
                    high_water_mark: self.caught_up_to.max(self.cursor),
                    time: Some(timestamp(Utc::now())),
                })));
            }
            let deadline = self.next_heartbeat.min(Instant::now() + self.pacing.poll);
            tokio::select! {
                _ = self.wake.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Reads the next page, again after a pause when the database is briefly unavailable;
    /// true when it found records.
    async fn read(&mut self) -> Result<bool> {
        with_retries(self, |s| Box::pin(s.read_page())).await
    }

    /// Reads the next page once; true when it found records.
    async fn read_page(&mut self) -> Result<bool> {
        // Read before the page: a page that reaches it proves the stream has caught up to it.
        let hwm = self.source.high_water_mark().await?;
        let page = self.source.after(self.cursor, self.pacing.page).await?;
        let full = page.len() as i64 >= self.pacing.page;
        match page.last() {
            Some((last, _)) => {
                self.cursor = *last;
                if !full {
                    self.caught_up_to = hwm;
                }
                self.pending.extend(page.into_iter().map(|(_, item)| item));
                Ok(true)
            }
            None => {
                self.caught_up_to = hwm;
                Ok(false)
            }
        }
    }
}
