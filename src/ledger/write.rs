//! Ledger writes: a vendor pull, pushed usage, or a re-rate, each in one transaction. The domain
//! plans what changes (`domain::ledger`) and numbers the events (`domain::ledger_append`); this
//! runs the plan against a [`LedgerTx`], the transaction's statements on one connection (see
//! `tx` for the lock order, `diesel_tx` for Diesel, `copy` for PostgreSQL COPY): lines first,
//! then, under the tenant's ledger lock, the events and what follows them (`finish`).
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Utc;
use chrono_tz::Tz;
use futures::future::BoxFuture;

use super::Ledger;
use super::pricing_cache::{PricingCache, pricing};
use super::tx::{Access, LedgerTx};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::ledger::{
    IngestSummary, LedgerLine, LedgerPlan, NewChargeEvent, keyed_by, plan_keyed, plan_pull,
    plan_rerate,
};
use crate::domain::ledger_append::{
    Appended, Appender, NumberedEvent, Total, TotalKey, add_daily_totals,
};
use crate::domain::line_key::{LineKey, LineKeyMap, LineKeySet};
use crate::domain::partner_account::PartnerAccount;
use crate::domain::usage::{Pull, UsageLine};
use crate::telemetry::metrics::{CHARGES_APPENDED, USAGE_LINES_WRITTEN};

/// One chunk of a ledger write: lines (each with whether its key is new, for which a plain
/// insert suffices) and the events their changes imply.
pub(crate) struct ChunkPlan {
    pub lines: Vec<(LedgerLine, bool)>,
    pub events: Vec<NewChargeEvent>,
}

impl ChunkPlan {
    fn of(plan: LedgerPlan, is_stored: &(dyn Fn(&LineKey) -> bool + Sync)) -> Self {
        ChunkPlan {
            lines: plan
                .lines
                .into_iter()
                .map(|line| {
                    let fresh = !is_stored(&line.line_key);
                    (line, fresh)
                })
                .collect(),
            events: plan.events,
        }
    }
}

/// Keys planned, encoded and written together: big enough that per-statement costs vanish,
/// small enough that planning one chunk overlaps the server's work on the previous one.
pub(crate) const LEDGER_CHUNK_KEYS: usize = 5_000;

/// The first chunk of a phase is smaller, so the database starts sooner.
const FIRST_CHUNK_KEYS: usize = 1_000;

/// The size of the chunk after `written` chunks.
fn chunk_keys(written: usize) -> usize {
    if written == 0 {
        FIRST_CHUNK_KEYS
    } else {
        LEDGER_CHUNK_KEYS
    }
}

/// Hands chunks from the planner thread to the writer; `false` once the writer has stopped.
struct Feed<C>(tokio::sync::mpsc::Sender<C>);

impl<C> Feed<C> {
    fn send(&self, chunk: C) -> bool {
        self.0.blocking_send(chunk).is_ok()
    }
}

/// Runs `produce` on a blocking thread and `write`s each chunk it feeds to `tx` as it comes: on
/// a machine with two cores the next chunk is planned and encoded while the database writes the
/// previous one. Returns the planner's result, or the first write error (which stops it).
async fn pipelined<T, C, R>(
    tx: &mut T,
    produce: impl FnOnce(&Feed<C>) -> Result<R> + Send + 'static,
    write: impl for<'t> Fn(&'t mut T, C) -> BoxFuture<'t, Result<()>>,
) -> Result<R>
where
    T: LedgerTx,
    C: Send + 'static,
    R: Send + 'static,
{
    let (queue, mut queued) = tokio::sync::mpsc::channel(2);
    let planner = tokio::task::spawn_blocking(move || produce(&Feed(queue)));
    let mut failure = None;
    while let Some(chunk) = queued.recv().await {
        if let Err(error) = write(tx, chunk).await {
            failure = Some(error);
            break;
        }
    }
    // The planner's next send fails, and it stops.
    drop(queued);
    let planned = planner
        .await
        .map_err(|e| Error::Internal(format!("ledger planner failed: {e}")))?;
    match failure {
        Some(error) => Err(error),
        None => planned,
    }
}

/// A backend's encoders (see [`LedgerTx`]) as plain functions, so the planner thread can own them.
type EncodeLines<C> = fn(&str, Vec<(LedgerLine, bool)>, chrono::DateTime<Utc>) -> Result<C>;
type EncodeEvents<C> = fn(&str, Vec<NumberedEvent>, chrono::DateTime<Utc>) -> Result<C>;

/// What phase one leaves: the lines written, the events (unnumbered) and their daily totals.
struct LinesWritten {
    lines: usize,
    events: Vec<NewChargeEvent>,
    totals: BTreeMap<TotalKey, Total>,
}

/// Phase one of a ledger write, under the tenant's shared write lock and the row locks of the
/// stored lines it read: `plan` yields one chunk's lines and events at a time; the lines are
/// encoded and written, the events kept (unnumbered) for [`append_events`] and their daily
/// totals summed (by the planner thread, while the database writes the lines).
async fn write_lines<T, P>(
    tx: &mut T,
    tenant_id: &str,
    zones: Arc<HashMap<String, Tz>>,
    mut plan: P,
) -> Result<LinesWritten>
where
    T: LedgerTx,
    P: FnMut() -> Option<Result<ChunkPlan>> + Send + 'static,
{
    let encode: EncodeLines<T::Lines> = T::encode_lines;
    let tenant = tenant_id.to_string();
    let produce = move |feed: &Feed<T::Lines>| {
        let mut written = LinesWritten {
            lines: 0,
            events: Vec::new(),
            totals: BTreeMap::new(),
        };
        let now = Utc::now();
        while let Some(next) = plan() {
            let chunk = next?;
            written.lines += chunk.lines.len();
            add_daily_totals(&mut written.totals, &chunk.events, &zones);
            written.events.extend(chunk.events);
            if !feed.send(encode(&tenant, chunk.lines, now)?) {
                break;
            }
        }
        Ok(written)
    };
    pipelined(tx, produce, |tx: &mut T, lines| tx.write_lines(lines)).await
}

/// Phase two, under the tenant's ledger lock: numbers `events` after `last_sequence` chunk by
/// chunk (customer by customer within a chunk), writes them, and returns what the append left.
async fn append_events<T: LedgerTx>(
    tx: &mut T,
    tenant_id: &str,
    appender: Appender,
    events: Vec<NewChargeEvent>,
) -> Result<Appended> {
    let encode: EncodeEvents<T::Events> = T::encode_events;
    let tenant = tenant_id.to_string();
    let produce = move |feed: &Feed<T::Events>| {
        let (mut appender, now) = (appender, Utc::now());
        let mut events = events.into_iter().peekable();
        let mut chunks = 0;
        while events.peek().is_some() {
            let chunk: Vec<_> = events.by_ref().take(chunk_keys(chunks)).collect();
            chunks += 1;
            if !feed.send(encode(&tenant, appender.append(chunk), now)?) {
                break;
            }
        }
        Ok(appender.finish())
    };
    pipelined(tx, produce, |tx: &mut T, events| tx.write_events(events)).await
}

/// Writes a planned write's lines and, when it implies events, adds their daily totals (and
/// rollups; SQLite after the events, see `LedgerTx`), then takes the ledger lock and appends
/// the events with what follows: runs, the new last sequence, the credit hook and the
/// notification. The ledger lock is held only for what is numbered, so writers of one tenant
/// write their lines and totals side by side (each holding the row locks of what it wrote): a
/// 2,000-fee period-boundary batch's rollup upsert alone (8,000 rows) took ~81 ms under the
/// lock before (BENCHMARKS.md, sessions 9 and 11).
async fn write<T, P>(
    tx: &mut T,
    tenant_id: &str,
    zones: Arc<HashMap<String, Tz>>,
    plan: P,
) -> Result<IngestSummary>
where
    T: LedgerTx,
    P: FnMut() -> Option<Result<ChunkPlan>> + Send + 'static,
{
    let LinesWritten {
        lines: lines_written,
        events,
        totals,
    } = write_lines(tx, tenant_id, zones, plan).await?;
    if events.is_empty() {
        return Ok(IngestSummary {
            lines_written,
            events_appended: 0,
            last_sequence: None,
        });
    }
    if T::TOTALS_BEFORE_LEDGER_LOCK {
        tx.write_totals(tenant_id, &totals).await?;
    }
    let last = tx.lock_ledger(tenant_id).await?;
    let appended = append_events(tx, tenant_id, Appender::new(last), events).await?;
    if !T::TOTALS_BEFORE_LEDGER_LOCK {
        tx.write_totals(tenant_id, &totals).await?;
    }
    // Contiguous within the write: every event got the next number after the ledger's last.
    debug_assert_eq!(
        appended.last_sequence - last,
        appended.events as i64,
        "sequences of one write are contiguous"
    );
    finish(tx, tenant_id, &appended).await?;
    Ok(IngestSummary {
        lines_written,
        events_appended: appended.events,
        last_sequence: Some(appended.last_sequence),
    })
}

/// Chunks of a plan made in one go (pulls and re-rates, from lines read up front); `stored`
/// holds the keys stored already.
fn chunks_of(
    plan: LedgerPlan,
    stored: LineKeySet,
) -> impl FnMut() -> Option<Result<ChunkPlan>> + Send + 'static {
    let LedgerPlan { lines, events } = plan;
    let mut lines = lines.into_iter().peekable();
    let mut events = Some(events);
    let mut chunks = 0;
    move || {
        let events = events.take();
        if lines.peek().is_none() && events.as_ref().is_none_or(Vec::is_empty) {
            return None;
        }
        let size = chunk_keys(chunks);
        chunks += 1;
        let plan = LedgerPlan {
            lines: lines.by_ref().take(size).collect(),
            events: events.unwrap_or_default(),
        };
        Some(Ok(ChunkPlan::of(plan, &|key| stored.contains(key))))
    }
}

/// Appends charges that have no usage line (a subscription's fees, prorations and refunds)
/// with what follows them, like any ledger write's events. The caller entered the tenant
/// ([`LedgerTx::enter`]) before writing its own records.
pub(super) async fn append_unlined<T: LedgerTx>(
    tx: &mut T,
    tenant_id: &str,
    zones: Arc<HashMap<String, Tz>>,
    events: Vec<NewChargeEvent>,
) -> Result<IngestSummary> {
    let plan = LedgerPlan {
        lines: Vec::new(),
        events,
    };
    write(tx, tenant_id, zones, chunks_of(plan, LineKeySet::default())).await
}

/// Records a pull that restates `[pull.start, pull.end)` for the partner account.
async fn pull<T: LedgerTx>(
    tx: &mut T,
    cache: &PricingCache,
    tenant_id: &str,
    account: &PartnerAccount,
    pull: &Pull,
) -> Result<IngestSummary> {
    tx.enter(tenant_id, Access::Shared).await?;
    let pricing = pricing(tx, cache, tenant_id).await?;
    let stored = tx
        .lines_in_window(tenant_id, account, pull.start, pull.end)
        .await?;
    let plan = plan_pull(
        &stored,
        pull.lines.clone(),
        pull.start,
        pull.end,
        &pricing.context(account),
    );
    let stored = stored.into_keys().collect();
    write(
        tx,
        tenant_id,
        pricing.zones.clone(),
        chunks_of(plan, stored),
    )
    .await
}

/// Records pushed lines: each replaces its key; nothing else is touched. A retry of a recorded
/// request id writes nothing and answers the first call's recorded response.
async fn push<T: LedgerTx>(
    tx: &mut T,
    cache: &PricingCache,
    tenant_id: &str,
    account: &PartnerAccount,
    keyed: Vec<(LineKey, UsageLine)>,
    request: &Idempotent<'_, IngestSummary>,
) -> Result<Answer<IngestSummary>> {
    if let Some(response) = tx.claim(tenant_id, &request.key).await? {
        return Ok(Answer::Replayed(response));
    }
    tx.enter(tenant_id, Access::Shared).await?;
    let pricing = pricing(tx, cache, tenant_id).await?;
    let keys: Vec<LineKey> = keyed.iter().map(|(key, _)| *key).collect();
    let mut stored = tx.lines_by_keys(tenant_id, &keys).await?;
    let zones = pricing.zones.clone();
    let account = account.clone();
    let mut chunks = keyed.into_iter().peekable();
    let mut planned = 0;
    let plan = move || {
        chunks.peek()?;
        let chunk: Vec<_> = chunks.by_ref().take(chunk_keys(planned)).collect();
        planned += 1;
        // Each key's plan needs only its own stored line.
        let chunk_stored: LineKeyMap<LedgerLine> = chunk
            .iter()
            .filter_map(|(key, _)| stored.remove(key).map(|line| (*key, line)))
            .collect();
        let plan = plan_keyed(&chunk_stored, chunk, &pricing.context(&account));
        Some(Ok(ChunkPlan::of(plan, &|key| {
            chunk_stored.contains_key(key)
        })))
    };
    let summary = write(tx, tenant_id, zones, plan).await?;
    tx.record(tenant_id, &request.key, &request.encode(&summary))
        .await?;
    Ok(Answer::Fresh(summary))
}

/// Re-rates live lines (only the unrated ones, after a link) against current prices. It follows
/// a pricing change, so it loads the tenant's pricing afresh.
pub(super) async fn rerate<T: LedgerTx>(
    tx: &mut T,
    tenant_id: &str,
    only_unrated: bool,
) -> Result<IngestSummary> {
    // Alone among the tenant's writers: a push planned with the old prices cannot land after.
    tx.enter(tenant_id, Access::Exclusive).await?;
    let pricing = tx.load_pricing(tenant_id).await?;
    let accounts: HashMap<String, PartnerAccount> = tx
        .partner_accounts(tenant_id)
        .await?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    let lines = tx.lines_for_rerate(tenant_id, only_unrated).await?;
    let mut by_account: HashMap<&str, Vec<&LedgerLine>> = HashMap::new();
    for line in &lines {
        by_account
            .entry(line.partner_account_id.as_str())
            .or_default()
            .push(line);
    }
    let mut plan = LedgerPlan::default();
    let mut account_ids: Vec<&str> = by_account.keys().copied().collect();
    account_ids.sort_unstable();
    for id in account_ids {
        let Some(account) = accounts.get(id) else {
            continue;
        };
        let part = plan_rerate(by_account[id].iter().copied(), &pricing.context(account));
        plan.lines.extend(part.lines);
        plan.events.extend(part.events);
    }
    let stored = lines.iter().map(|line| line.line_key).collect();
    write(
        tx,
        tenant_id,
        pricing.zones.clone(),
        chunks_of(plan, stored),
    )
    .await
}

/// The line keys of `lines`, in their order, hashed on up to four threads.
fn line_keys(prefix: u32, partner_account_id: &str, lines: &[UsageLine]) -> Vec<LineKey> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let part = lines.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = lines
            .chunks(part)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|u| LineKey::of(prefix, partner_account_id, &u.key))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_default())
            .collect()
    })
}

/// After the events of a write: its runs and the new last sequence, the credit hook, and the
/// notification that wakes every replica's feeds on commit.
async fn finish<T: LedgerTx>(tx: &mut T, tenant_id: &str, appended: &Appended) -> Result<()> {
    tx.write_appended(tenant_id, appended).await?;
    super::credit::hook(tx, tenant_id, appended).await?;
    tx.notify(
        super::feed::LEDGER_CHANNEL,
        &super::feed::notification(tenant_id, appended.last_sequence),
    )
    .await
}

/// Runs `$body` with `$tx` bound to a [`LedgerTx`] in a fresh transaction on the ledger's
/// backend, committing when it returns `Ok`: PostgreSQL writes through COPY on a connection of
/// the ledger's pool, SQLite through Diesel on the single writer connection.
macro_rules! ledger_write {
    ($ledger:expr, |$tx:ident| $body:expr) => {
        match $ledger.store.backend() {
            crate::store::Backend::Postgres(pool) => {
                let copy_pool = $ledger.copy_pool.as_ref().ok_or_else(|| {
                    Error::Internal("a PostgreSQL ledger without its COPY pool".into())
                })?;
                super::copy::transaction(copy_pool, pool, async |$tx| $body).await
            }
            crate::store::Backend::Sqlite { writer, .. } => {
                let mut conn = crate::store::checkout(writer).await?;
                let result = conn
                    .immediate_transaction(async |conn| {
                        let $tx = &mut super::diesel_tx::DieselLedger::new(conn);
                        $body
                    })
                    .await;
                drop(conn);
                $ledger.store.committed();
                result
            }
        }
    };
}

impl Ledger {
    pub async fn ingest_pull(
        &self,
        tenant_id: &str,
        account: &PartnerAccount,
        pull: &Pull,
    ) -> Result<IngestSummary> {
        let summary = ledger_write!(self, |tx| self::pull(
            tx,
            &self.pricing,
            tenant_id,
            account,
            pull
        )
        .await)?;
        count_committed("pull", &summary);
        Ok(summary)
    }

    /// Records pushed usage; a retry of `request` answers its first response.
    pub async fn ingest_push(
        &self,
        tenant_id: &str,
        account: &PartnerAccount,
        lines: Vec<UsageLine>,
        request: &Idempotent<'_, IngestSummary>,
    ) -> Result<Answer<IngestSummary>> {
        // Keyed before the transaction (hashing is the write's own work, not the ledger's), on
        // every core: the database has nothing to do for this write meanwhile.
        let (prefix, partner_account_id) = (account.line_key_prefix, account.id.clone());
        let keyed = tokio::task::spawn_blocking(move || {
            let keys = line_keys(prefix, &partner_account_id, &lines);
            keyed_by(keys, lines)
        })
        .await
        .map_err(|e| Error::Internal(format!("keying usage lines failed: {e}")))?;
        let summary = ledger_write!(self, |tx| {
            self::push(tx, &self.pricing, tenant_id, account, keyed, request).await
        })?;
        if let Answer::Fresh(summary) = &summary {
            count_committed("push", summary);
        }
        Ok(summary)
    }

    /// Re-rates every live line of the tenant (only the unrated ones when asked) at current
    /// prices, in a transaction of its own.
    pub async fn rerate(&self, tenant_id: &str, only_unrated: bool) -> Result<IngestSummary> {
        let summary = ledger_write!(self, |tx| self::rerate(tx, tenant_id, only_unrated).await)?;
        count_committed("rerate", &summary);
        Ok(summary)
    }
}

/// The write counters, once its transaction has committed (a rolled-back write counts nothing).
fn count_committed(source: &'static str, summary: &IngestSummary) {
    metrics::counter!(USAGE_LINES_WRITTEN, "source" => source)
        .increment(summary.lines_written as u64);
    metrics::counter!(CHARGES_APPENDED, "source" => source)
        .increment(summary.events_appended as u64);
}
