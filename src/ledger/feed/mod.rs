//! Live charge feeds: what serves `StreamCharges` (and wakes `StreamCreditEvents`).
//!
//! The database is the buffer. Per tenant with open streams, one *tailer* task per process reads
//! newly committed charge events in sequence order into a bounded ring shared by all that
//! tenant's streams (so N streams cost one database read per commit, not N). A stream serves
//! itself from the ring while its cursor lies inside it and from the database (a page at a time)
//! when it has fallen behind the ring; it holds at most one page of events, and is only polled
//! when the HTTP/2 flow-control window has room, so a consumer that stops reading costs one page.
//!
//! Wake-ups carry no events, only "look again": after every SQLite write (one process), and on
//! PostgreSQL through `pg_notify` sent inside the appending transaction (delivered on commit, to
//! every replica's LISTEN connection; see `feed_listener`). A tailer also polls once a second,
//! so a lost notification costs latency, never events. Sequences are gap-free and commit in
//! order, so a reader that sees N has seen everything up to N.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;
use tokio::time::Instant;

mod listener;

use super::charges;
use super::ledger_backends;
use crate::domain::charges::{ChargeEvent, ChargeFilter};
use crate::domain::error::Result;
use crate::domain::ledger::ChargeKind;
use crate::domain::retry::read_again;
use crate::store::{Store, dispatch};

/// Events a tenant's ring keeps (shared by its streams).
pub const RING_CAPACITY: usize = 8192;
/// Events a stream reads at once, from the ring or the database; also the most it buffers.
pub const PAGE: usize = 256;
/// How often a tailer looks at the database without being woken.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// PostgreSQL notification channels: a write that appended charge events, or credit events,
/// notifies on commit with [`notification`].
pub const LEDGER_CHANNEL: &str = "mspgw_ledger";
pub const CREDIT_CHANNEL: &str = "mspgw_credit";

/// The payload of a notification: the tenant and the sequence its ledger (or credit events)
/// reached.
pub fn notification(tenant_id: &str, sequence: i64) -> String {
    format!("{tenant_id}:{sequence}")
}

/// What a charge stream wants: customers (any when empty) and kinds (any when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamFilter {
    pub customer_ids: Vec<String>,
    pub kinds: Vec<ChargeKind>,
}

impl StreamFilter {
    fn matches(&self, event: &ChargeEvent) -> bool {
        (self.customer_ids.is_empty() || self.customer_ids.contains(&event.customer_id))
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
    }
}

/// One item of a charge stream.
#[derive(Debug, Clone)]
pub enum FeedItem {
    Charge(Arc<ChargeEvent>),
    /// Every matching event up to `high_water_mark` has been delivered.
    Heartbeat {
        high_water_mark: i64,
    },
}

/// Counters for tests and benchmarks.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Events read by streams and not yet handed to the transport.
    pub buffered: AtomicUsize,
    /// Events handed to the transport.
    pub delivered: AtomicU64,
    /// Page reads streams made from the database (fell behind the ring).
    pub database_pages: AtomicU64,
    /// Open streams.
    pub streams: AtomicUsize,
    /// Notifications received from the database (PostgreSQL LISTEN).
    pub notifications: AtomicU64,
}

struct Ring {
    /// Sequence of `events[0]` (or the next sequence expected when empty).
    start: i64,
    events: VecDeque<Arc<ChargeEvent>>,
}

impl Ring {
    fn end(&self) -> i64 {
        self.start + self.events.len() as i64 - 1
    }
}

/// One tenant's live state within this process.
pub struct TenantFeed {
    tenant_id: String,
    ring: RwLock<Ring>,
    /// The last sequence in the ring: every event up to it is committed and readable.
    published: watch::Sender<i64>,
    /// Per customer with a filtered stream open: the last sequence that touched the customer.
    customers: Mutex<HashMap<String, watch::Sender<i64>>>,
    /// The highest sequence a notification announced.
    hint: watch::Sender<i64>,
    /// Bumped when a credit event may have been recorded.
    credit: watch::Sender<i64>,
    subscribers: AtomicUsize,
    /// Where each open charge stream has delivered up to (for its lag behind `published`).
    positions: Mutex<Vec<Weak<AtomicI64>>>,
    capacity: usize,
}

impl TenantFeed {
    /// Matching events after `cursor` from the ring, up to `max`, and the last sequence
    /// examined. None when the ring no longer (or not yet) holds `cursor + 1`.
    fn take_after(
        &self,
        cursor: i64,
        filter: &StreamFilter,
        max: usize,
    ) -> Option<(Vec<Arc<ChargeEvent>>, i64)> {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        if cursor + 1 < ring.start || cursor >= ring.end() {
            return None;
        }
        let first = (cursor + 1 - ring.start) as usize;
        let mut out = Vec::new();
        let mut scanned = cursor;
        for event in ring.events.range(first..) {
            scanned = event.sequence;
            if filter.matches(event) {
                out.push(event.clone());
                if out.len() >= max {
                    break;
                }
            }
        }
        Some((out, scanned))
    }

    fn customer_watch(&self, customer_id: &str) -> watch::Receiver<i64> {
        let mut map = self.customers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(customer_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

/// Holds a feed open while a stream uses it.
struct Subscription {
    hub: Arc<HubInner>,
    feed: Arc<TenantFeed>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.subscribers.fetch_sub(1, Ordering::SeqCst);
        self.hub.stats.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct HubInner {
    /// The database; its `written` signal is bumped after every SQLite write and after the
    /// LISTEN connection (re)connects.
    store: Arc<Store>,
    listener_started: std::sync::Once,
    feeds: Mutex<HashMap<String, Arc<TenantFeed>>>,
    heartbeat_ms: AtomicU64,
    ring_capacity: AtomicUsize,
    stats: FeedStats,
}

/// The process's charge feeds (one per tenant with open streams).
#[derive(Clone)]
pub struct LedgerHub {
    inner: Arc<HubInner>,
}

impl LedgerHub {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        LedgerHub {
            inner: Arc::new(HubInner {
                store,
                listener_started: std::sync::Once::new(),
                feeds: Mutex::new(HashMap::new()),
                heartbeat_ms: AtomicU64::new(DEFAULT_HEARTBEAT.as_millis() as u64),
                ring_capacity: AtomicUsize::new(RING_CAPACITY),
                stats: FeedStats::default(),
            }),
        }
    }

    pub fn set_heartbeat_interval(&self, interval: Duration) {
        let ms = interval.as_millis().clamp(10, u128::from(u32::MAX)) as u64;
        self.inner.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.inner.heartbeat_ms.load(Ordering::Relaxed))
    }

    /// Events each tenant's ring keeps (feeds opened from now on). Small values make streams
    /// fall back to the database sooner; tests use that.
    pub fn set_ring_capacity(&self, events: usize) {
        self.inner
            .ring_capacity
            .store(events.max(1), Ordering::Relaxed);
    }

    pub fn stats(&self) -> &FeedStats {
        &self.inner.stats
    }

    /// Per tenant with charge streams open here: how many sequences the slowest of them is
    /// behind the last one this process has read (0 when all are caught up).
    pub fn stream_lags(&self) -> Vec<(String, i64)> {
        let feeds: Vec<Arc<TenantFeed>> = {
            let feeds = self.inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
            feeds.values().cloned().collect()
        };
        feeds
            .iter()
            .filter_map(|feed| {
                let published = *feed.published.borrow();
                let mut positions = feed.positions.lock().unwrap_or_else(|p| p.into_inner());
                positions.retain(|p| p.strong_count() > 0);
                let slowest = positions
                    .iter()
                    .filter_map(Weak::upgrade)
                    .map(|p| p.load(Ordering::Relaxed))
                    .min()?;
                Some((feed.tenant_id.clone(), (published - slowest).max(0)))
            })
            .collect()
    }

    async fn subscribe(&self, tenant_id: &str) -> Result<Subscription> {
        let inner = &self.inner;
        if let Some(url) = inner.store.postgres_url() {
            inner.listener_started.call_once(|| {
                let (notified, reconnected) = (self.inner.clone(), self.inner.store.clone());
                listener::spawn(
                    url.to_string(),
                    &[LEDGER_CHANNEL, CREDIT_CHANNEL],
                    move |channel, payload| notified.notified(channel, payload),
                    // Anything committed while it was away: every tailer and credit stream
                    // reads the database again.
                    move || reconnected.committed(),
                );
            });
        }
        let existing = {
            let feeds = inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
            feeds.get(tenant_id).cloned().inspect(|feed| {
                feed.subscribers.fetch_add(1, Ordering::SeqCst);
            })
        };
        let feed = match existing {
            Some(feed) => feed,
            None => {
                let hwm = dispatch!(inner.store, read, charges::high_water_mark(tenant_id))?;
                let mut feeds = inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
                let feed = feeds
                    .entry(tenant_id.to_string())
                    .or_insert_with(|| {
                        let feed = Arc::new(TenantFeed {
                            tenant_id: tenant_id.to_string(),
                            ring: RwLock::new(Ring {
                                start: hwm + 1,
                                events: VecDeque::new(),
                            }),
                            published: watch::channel(hwm).0,
                            customers: Mutex::new(HashMap::new()),
                            hint: watch::channel(hwm).0,
                            credit: watch::channel(0).0,
                            subscribers: AtomicUsize::new(0),
                            positions: Mutex::new(Vec::new()),
                            capacity: inner.ring_capacity.load(Ordering::Relaxed),
                        });
                        tokio::spawn(tail(inner.clone(), feed.clone()));
                        feed
                    })
                    .clone();
                feed.subscribers.fetch_add(1, Ordering::SeqCst);
                feed
            }
        };
        inner.stats.streams.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            hub: inner.clone(),
            feed,
        })
    }

    /// Charge events of `tenant_id` after `after_sequence` matching `filter`: the backlog, then
    /// live events, with heartbeats when idle. Ends only on a database error (as its last item).
    pub async fn charges(
        &self,
        tenant_id: &str,
        filter: StreamFilter,
        after_sequence: i64,
    ) -> Result<BoxStream<'static, Result<FeedItem>>> {
        let subscription = self.subscribe(tenant_id).await?;
        let feed = subscription.feed.clone();
        let wake: Vec<watch::Receiver<i64>> = if filter.customer_ids.is_empty() {
            vec![feed.published.subscribe()]
        } else {
            filter
                .customer_ids
                .iter()
                .map(|c| feed.customer_watch(c))
                .collect()
        };
        let heartbeat = self.heartbeat_interval();
        let position = Arc::new(AtomicI64::new(after_sequence));
        feed.positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&position));
        let state = ChargeStream {
            position,
            hub: self.inner.clone(),
            feed,
            _subscription: subscription,
            filter,
            cursor: after_sequence,
            pending: VecDeque::new(),
            wake,
            heartbeat,
            next_heartbeat: Instant::now() + heartbeat,
            failed: false,
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
        .boxed())
    }

    /// Waits until a credit event of `tenant_id` may have been recorded, or `deadline`.
    /// Returns a handle to wait with (keeps the tenant's feed open).
    pub async fn credit_waiter(&self, tenant_id: &str) -> Result<CreditWaiter> {
        let subscription = self.subscribe(tenant_id).await?;
        Ok(CreditWaiter {
            credit: subscription.feed.credit.subscribe(),
            epoch: self.inner.store.written().subscribe(),
            published: subscription.feed.published.subscribe(),
            _subscription: subscription,
        })
    }
}

/// Wakes a credit-event stream when it should look at the database again.
pub struct CreditWaiter {
    credit: watch::Receiver<i64>,
    epoch: watch::Receiver<u64>,
    published: watch::Receiver<i64>,
    _subscription: Subscription,
}

impl CreditWaiter {
    /// Marks everything so far as seen (call before reading the database).
    pub fn mark_seen(&mut self) {
        self.credit.borrow_and_update();
        self.epoch.borrow_and_update();
        self.published.borrow_and_update();
    }

    /// True when woken, false when `deadline` passed first.
    pub async fn wait(&mut self, deadline: Instant) -> bool {
        tokio::select! {
            r = self.credit.changed() => r.is_ok(),
            r = self.epoch.changed() => r.is_ok(),
            r = self.published.changed() => r.is_ok(),
            _ = tokio::time::sleep_until(deadline) => false,
        }
    }
}

impl HubInner {
    fn notified(&self, channel: &str, payload: &str) {
        self.stats.notifications.fetch_add(1, Ordering::Relaxed);
        let Some((tenant_id, seq)) = payload.rsplit_once(':') else {
            return;
        };
        let Ok(seq) = seq.parse::<i64>() else { return };
        let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        let Some(feed) = feeds.get(tenant_id) else {
            return;
        };
        let target = if channel == CREDIT_CHANNEL {
            &feed.credit
        } else {
            &feed.hint
        };
        target.send_if_modified(|v| {
            let newer = seq > *v;
            if newer {
                *v = seq;
            }
            newer
        });
    }
}

/// Reads committed events into the tenant's ring and wakes its streams, until none is open.
async fn tail(hub: Arc<HubInner>, feed: Arc<TenantFeed>) {
    let mut epoch = hub.store.written().subscribe();
    let mut hint = feed.hint.subscribe();
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        let end = feed.ring.read().unwrap_or_else(|p| p.into_inner()).end();
        let must_read = tokio::select! {
            _ = epoch.changed() => true,
            _ = hint.changed() => *hint.borrow_and_update() > end,
            _ = poll.tick() => {
                let mut feeds = hub.feeds.lock().unwrap_or_else(|p| p.into_inner());
                if feed.subscribers.load(Ordering::SeqCst) == 0 {
                    feeds.remove(&feed.tenant_id);
                    return;
                }
                true
            }
        };
        if !must_read {
            continue;
        }
        match catch_up(&hub, &feed).await {
            Ok(()) => failures = 0,
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(tenant = %feed.tenant_id, %error, "charge feed cannot read the ledger; retrying");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Appends every committed event after the ring's end, page by page, publishing each page.
async fn catch_up(hub: &HubInner, feed: &TenantFeed) -> Result<()> {
    const READ: i64 = 1000;
    loop {
        let end = feed.ring.read().unwrap_or_else(|p| p.into_inner()).end();
        let all = ChargeFilter::default();
        let events = dispatch!(
            hub.store,
            read,
            charges::list(&feed.tenant_id, &all, end, READ)
        )?;
        let count = events.len() as i64;
        let Some(last) = events.last().map(|e| e.sequence) else {
            return Ok(());
        };
        let mut touched: Vec<String> = Vec::new();
        {
            let mut ring = feed.ring.write().unwrap_or_else(|p| p.into_inner());
            for event in events {
                if event.sequence != ring.end() + 1 {
                    // Cannot happen with gap-free, commit-ordered sequences; never serve a gap.
                    return Err(crate::domain::Error::Internal(format!(
                        "ledger of tenant {} jumped from {} to {}",
                        feed.tenant_id,
                        ring.end(),
                        event.sequence
                    )));
                }
                if !touched.contains(&event.customer_id) {
                    touched.push(event.customer_id.clone());
                }
                ring.events.push_back(Arc::new(event));
                if ring.events.len() > feed.capacity {
                    ring.events.pop_front();
                    ring.start += 1;
                }
            }
        }
        feed.published.send_replace(last);
        {
            let customers = feed.customers.lock().unwrap_or_else(|p| p.into_inner());
            for id in touched {
                if let Some(tx) = customers.get(&id) {
                    tx.send_replace(last);
                }
            }
        }
        if count < READ {
            return Ok(());
        }
    }
}

struct ChargeStream {
    /// The last sequence delivered (or skipped as not matching), for [`LedgerHub::stream_lags`].
    position: Arc<AtomicI64>,
    hub: Arc<HubInner>,
    feed: Arc<TenantFeed>,
    _subscription: Subscription,
    filter: StreamFilter,
    /// Every matching event up to here has been delivered or is in `pending`.
    cursor: i64,
    pending: VecDeque<Arc<ChargeEvent>>,
    wake: Vec<watch::Receiver<i64>>,
    heartbeat: Duration,
    next_heartbeat: Instant,
    failed: bool,
}

impl ChargeStream {
    async fn next(&mut self) -> Option<Result<FeedItem>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.hub.stats.buffered.fetch_sub(1, Ordering::Relaxed);
                self.hub.stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.next_heartbeat = Instant::now() + self.heartbeat;
                self.position.store(event.sequence, Ordering::Relaxed);
                return Some(Ok(FeedItem::Charge(event)));
            }
            self.position.store(self.cursor, Ordering::Relaxed);
            for rx in &mut self.wake {
                rx.borrow_and_update();
            }
            let published = *self.feed.published.borrow();
            if self.cursor < published {
                if let Err(error) = self.refill(published).await {
                    self.failed = true;
                    return Some(Err(error));
                }
                continue;
            }
            if Instant::now() >= self.next_heartbeat {
                self.next_heartbeat = Instant::now() + self.heartbeat;
                return Some(Ok(FeedItem::Heartbeat {
                    high_water_mark: self.cursor,
                }));
            }
            let deadline = self.next_heartbeat;
            let woken = {
                let waits = self.wake.iter_mut().map(|rx| Box::pin(rx.changed()));
                tokio::select! {
                    _ = futures::future::select_all(waits) => true,
                    _ = tokio::time::sleep_until(deadline) => false,
                }
            };
            if !woken {
                // Heartbeat due: first take in whatever the ring gained (events of other
                // customers move the cursor without waking this stream).
                continue;
            }
        }
    }

    async fn refill(&mut self, published: i64) -> Result<()> {
        let loaded = match self.feed.take_after(self.cursor, &self.filter, PAGE) {
            Some((events, scanned)) => {
                self.cursor = scanned;
                events
            }
            None => {
                self.hub
                    .stats
                    .database_pages
                    .fetch_add(1, Ordering::Relaxed);
                let (tenant_id, filter, cursor) = (&self.feed.tenant_id, &self.filter, self.cursor);
                // Again after a pause when the database is briefly unavailable.
                let mut attempt = 0;
                let events = loop {
                    let page = async {
                        dispatch!(
                            self.hub.store,
                            read,
                            self::list_for_stream(tenant_id, filter, cursor, PAGE as i64)
                        )
                    };
                    match page.await {
                        Err(error) if read_again(&error, &mut attempt).await => {}
                        result => break result?,
                    }
                };
                self.cursor = match events.last() {
                    Some(last) if events.len() == PAGE => last.sequence,
                    // Fewer than a page: nothing else matches up to what was committed when
                    // `published` was read.
                    Some(last) => last.sequence.max(published),
                    None => published.max(self.cursor),
                };
                events.into_iter().map(Arc::new).collect()
            }
        };
        self.hub
            .stats
            .buffered
            .fetch_add(loaded.len(), Ordering::Relaxed);
        self.pending.extend(loaded);
        Ok(())
    }
}

impl Drop for ChargeStream {
    fn drop(&mut self) {
        self.hub
            .stats
            .buffered
            .fetch_sub(self.pending.len(), Ordering::Relaxed);
    }
}

ledger_backends! {
    /// A stream's page from the database: matching events after `after`, in sequence order.
    pub async fn list_for_stream(
        conn: &mut Conn,
        tenant_id: &str,
        filter: &StreamFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChargeEvent>> {
        let customers: Vec<&str> = filter.customer_ids.iter().map(String::as_str).collect();
        q::charges::events_after(conn, tenant_id, &customers, &filter.kinds, (None, None), after, limit).await
    }
}
