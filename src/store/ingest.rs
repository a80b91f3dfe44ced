//! Ledger writes: a vendor pull, pushed usage, or a re-rate, each in one transaction under the
//! tenant's ledger lock. The domain plans what changes (`domain::ledger`) and numbers the events
//! (`domain::ledger_append`); this runs the plan against a [`LedgerTx`], the transaction's
//! statements on one connection (see `ledger_tx` for Diesel, `pg_ledger` for PostgreSQL COPY).
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use chrono_tz::Tz;

use super::ledger_tx::{DieselLedger, LedgerTx};
use super::{Backend, Store};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{IdempotencyKey, Replay};
use crate::domain::ledger::{
    LedgerLine, LedgerPlan, RatingContext, keyed, plan_keyed, plan_pull, plan_rerate,
};
use crate::domain::ledger_append::{Appended, Appender, NumberedEvent};
use crate::domain::line_key::LineKey;
use crate::domain::money::Currency;
use crate::domain::partner_account::PartnerAccount;
use crate::domain::pricing::{FxRate, PriceRule};
use crate::domain::rating::{Chargee, PriceBook};
use crate::domain::usage::UsageLine;
use crate::domain::vendor::Vendor;
use crate::vendors::Pull;

/// What a ledger write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Usage lines inserted or changed.
    pub lines_written: usize,
    /// Charge events appended.
    pub events_appended: usize,
    /// The tenant's sequence after the write, when events were appended.
    pub last_sequence: Option<i64>,
}

/// Prices and links of one tenant: everything rating reads besides the line and its account.
pub struct TenantPricing {
    pub(crate) rules: Vec<PriceRule>,
    pub(crate) fx: Vec<FxRate>,
    /// (vendor, vendor account id) -> linked customer.
    pub(crate) chargees: HashMap<Vendor, HashMap<String, Chargee>>,
    pub(crate) currencies: HashMap<String, Currency>,
    /// Customers' time zones, which decide the day a charge's daily total falls on.
    pub(crate) zones: Arc<HashMap<String, Tz>>,
}

impl TenantPricing {
    fn context<'a>(
        &'a self,
        account: &'a PartnerAccount,
        empty: &'a HashMap<String, Chargee>,
    ) -> RatingContext<'a> {
        RatingContext {
            partner_account_id: &account.id,
            line_key_prefix: account.line_key_prefix,
            vendor: account.spec.vendor,
            partner_discount_rate: account.spec.partner_discount_rate,
            chargees: self.chargees.get(&account.spec.vendor).unwrap_or(empty),
            chargee_currencies: &self.currencies,
            prices: PriceBook {
                rules: &self.rules,
                fx: &self.fx,
            },
        }
    }
}

/// Each tenant's pricing as last loaded, tagged with the tenant's pricing version (bumped by
/// triggers on every change that can alter rating; see the `pricing_versions` migration). A
/// ledger write reads the version, one short query, instead of reloading every rule, rate,
/// customer and link of the tenant.
#[derive(Default)]
pub struct PricingCache(Mutex<HashMap<String, (i64, Arc<TenantPricing>)>>);

impl PricingCache {
    pub(crate) fn get(&self, tenant_id: &str, version: i64) -> Option<Arc<TenantPricing>> {
        let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match cached.get(tenant_id) {
            Some((at, pricing)) if *at == version => Some(pricing.clone()),
            _ => None,
        }
    }

    pub(crate) fn put(&self, tenant_id: &str, version: i64, pricing: Arc<TenantPricing>) {
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match cached.get(tenant_id) {
            // A concurrent writer may already hold a newer version.
            Some((at, _)) if *at > version => {}
            _ => {
                cached.insert(tenant_id.to_string(), (version, pricing));
            }
        }
    }
}

/// The tenant's pricing, from `cache` while the tenant's pricing version has not moved. The
/// version is read before anything is loaded, so a load is never tagged newer than its data.
async fn pricing<T: LedgerTx>(
    tx: &mut T,
    cache: &PricingCache,
    tenant_id: &str,
) -> Result<Arc<TenantPricing>> {
    let version = tx.pricing_version(tenant_id).await?;
    if let Some(pricing) = cache.get(tenant_id, version) {
        return Ok(pricing);
    }
    let pricing = Arc::new(tx.load_pricing(tenant_id).await?);
    cache.put(tenant_id, version, pricing.clone());
    Ok(pricing)
}

/// One chunk of a ledger write: lines (each with whether its key is new, for which a plain
/// insert suffices) and the events their changes imply.
pub(crate) struct ChunkPlan {
    pub lines: Vec<(LedgerLine, bool)>,
    pub events: Vec<crate::domain::ledger::NewChargeEvent>,
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

/// Writes planned chunks: `plan` yields one chunk's lines and events at a time, which are
/// numbered, encoded and handed to the transaction. Planning runs on a blocking thread, so on a
/// machine with two cores the next chunk is planned and encoded while the database writes the
/// previous one. Returns the lines written and what the append left.
async fn write_chunks<T, P>(
    tx: &mut T,
    tenant_id: &str,
    appender: Appender,
    mut plan: P,
) -> Result<(usize, Appended)>
where
    T: LedgerTx,
    P: FnMut() -> Option<Result<ChunkPlan>> + Send + 'static,
{
    let encode: Encode<T::Chunk> = T::encode;
    let (queue, mut queued) = tokio::sync::mpsc::channel::<Result<T::Chunk>>(2);
    let tenant = tenant_id.to_string();
    let planner = tokio::task::spawn_blocking(move || {
        let (mut appender, mut lines_written, now) = (appender, 0, Utc::now());
        while let Some(next) = plan() {
            let chunk = next.and_then(|ChunkPlan { lines, events }| {
                lines_written += lines.len();
                encode(&tenant, lines, appender.append(events), now)
            });
            let failed = chunk.is_err();
            // A closed queue means the writer failed; it reports why.
            if queue.blocking_send(chunk).is_err() || failed {
                break;
            }
        }
        (lines_written, appender.finish())
    });
    let mut failure = None;
    while let Some(chunk) = queued.recv().await {
        if let Err(error) = async { tx.write_chunk(chunk?).await }.await {
            failure = Some(error);
            break;
        }
    }
    drop(queued);
    let planned = planner
        .await
        .map_err(|e| Error::Internal(format!("ledger planner failed: {e}")))?;
    match failure {
        Some(error) => Err(error),
        None => Ok(planned),
    }
}

/// A backend's chunk encoder (see [`LedgerTx::encode`]), as a plain function so the planner
/// thread can own it.
type Encode<C> =
    fn(&str, Vec<(LedgerLine, bool)>, Vec<NumberedEvent>, chrono::DateTime<Utc>) -> Result<C>;

/// Writes `plan` (pulls and re-rates: planned in one go from lines read up front);
/// `stored` holds the keys stored already.
async fn write_plan<T: LedgerTx>(
    tx: &mut T,
    tenant_id: &str,
    appender: Appender,
    plan: LedgerPlan,
    stored: HashSet<LineKey>,
) -> Result<(usize, Appended)> {
    let LedgerPlan { lines, events } = plan;
    let mut lines = lines.into_iter().peekable();
    let mut events = Some(events);
    write_chunks(tx, tenant_id, appender, move || {
        // All events go with the first chunk, so they are numbered customer by customer.
        let events = events.take();
        if lines.peek().is_none() && events.as_ref().is_none_or(Vec::is_empty) {
            return None;
        }
        let plan = LedgerPlan {
            lines: lines.by_ref().take(LEDGER_CHUNK_KEYS).collect(),
            events: events.unwrap_or_default(),
        };
        Some(Ok(ChunkPlan::of(plan, &|key| stored.contains(key))))
    })
    .await
}

/// After the rows: runs, totals, the new last sequence, the credit hook and the notification.
async fn finish<T: LedgerTx>(
    tx: &mut T,
    tenant_id: &str,
    (lines_written, appended): (usize, Appended),
) -> Result<IngestSummary> {
    let last_sequence = (appended.events > 0).then_some(appended.last_sequence);
    if last_sequence.is_some() {
        tx.finish(tenant_id, &appended).await?;
    }
    Ok(IngestSummary {
        lines_written,
        events_appended: appended.events,
        last_sequence,
    })
}

/// Records a pull that restates `[pull.start, pull.end)` for the partner account.
pub(crate) async fn pull<T: LedgerTx>(
    tx: &mut T,
    cache: &PricingCache,
    tenant_id: &str,
    account: &PartnerAccount,
    pull: &Pull,
) -> Result<IngestSummary> {
    let last = tx.lock_ledger(tenant_id).await?;
    let pricing = pricing(tx, cache, tenant_id).await?;
    let stored = tx
        .lines_in_window(tenant_id, account, pull.start, pull.end)
        .await?;
    let empty = HashMap::new();
    let plan = plan_pull(
        &stored,
        pull.lines.clone(),
        pull.start,
        pull.end,
        &pricing.context(account, &empty),
    );
    let appender = Appender::new(last, pricing.zones.clone());
    let stored = stored.into_keys().collect();
    let written = write_plan(tx, tenant_id, appender, plan, stored).await?;
    finish(tx, tenant_id, written).await
}

/// Records pushed lines: each replaces its key; nothing else is touched. A retry of a recorded
/// request id writes nothing and answers `None`.
pub(crate) async fn push<T: LedgerTx>(
    tx: &mut T,
    cache: &PricingCache,
    tenant_id: &str,
    account: &PartnerAccount,
    keyed: Vec<(LineKey, UsageLine)>,
    request: &IdempotencyKey,
) -> Result<Option<IngestSummary>> {
    if let Replay::Done { .. } = tx.claim(tenant_id, request, &account.id).await? {
        return Ok(None);
    }
    let last = tx.lock_ledger(tenant_id).await?;
    let pricing = pricing(tx, cache, tenant_id).await?;
    let keys: Vec<LineKey> = keyed.iter().map(|(key, _)| *key).collect();
    let mut stored = tx.lines_by_keys(tenant_id, &keys).await?;
    let appender = Appender::new(last, pricing.zones.clone());
    let account = account.clone();
    let mut chunks = keyed.into_iter().peekable();
    let written = write_chunks(tx, tenant_id, appender, move || {
        chunks.peek()?;
        let chunk: Vec<_> = chunks.by_ref().take(LEDGER_CHUNK_KEYS).collect();
        // Each key's plan needs only its own stored line.
        let chunk_stored: HashMap<LineKey, LedgerLine> = chunk
            .iter()
            .filter_map(|(key, _)| stored.remove(key).map(|line| (*key, line)))
            .collect();
        let empty = HashMap::new();
        let plan = plan_keyed(&chunk_stored, chunk, &pricing.context(&account, &empty));
        Some(Ok(ChunkPlan::of(plan, &|key| {
            chunk_stored.contains_key(key)
        })))
    })
    .await?;
    finish(tx, tenant_id, written).await.map(Some)
}

/// Re-rates live lines (only the unrated ones, after a link) against current prices. It follows
/// a pricing change, so it loads the tenant's pricing afresh.
pub(crate) async fn rerate<T: LedgerTx>(
    tx: &mut T,
    tenant_id: &str,
    only_unrated: bool,
) -> Result<IngestSummary> {
    let last = tx.lock_ledger(tenant_id).await?;
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
    let empty = HashMap::new();
    let mut plan = LedgerPlan::default();
    let mut account_ids: Vec<&str> = by_account.keys().copied().collect();
    account_ids.sort_unstable();
    for id in account_ids {
        let Some(account) = accounts.get(id) else {
            continue;
        };
        let part = plan_rerate(
            by_account[id].iter().copied(),
            &pricing.context(account, &empty),
        );
        plan.lines.extend(part.lines);
        plan.events.extend(part.events);
    }
    let appender = Appender::new(last, pricing.zones.clone());
    let stored = lines.iter().map(|line| line.line_key).collect();
    let written = write_plan(tx, tenant_id, appender, plan, stored).await?;
    finish(tx, tenant_id, written).await
}

/// Runs `$body` with `$tx` bound to a [`LedgerTx`] in a fresh transaction on the store's
/// backend, committing when it returns `Ok`: PostgreSQL writes through COPY on a connection of
/// the ledger pool, SQLite through Diesel on the single writer connection.
macro_rules! ledger_write {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.backend {
            Backend::Postgres(pool) => {
                let ledger = $store.pg_ledger.as_ref().ok_or_else(|| {
                    Error::Internal("a PostgreSQL store without its ledger pool".into())
                })?;
                super::pg_ledger::transaction(ledger, pool, async |$tx| $body).await
            }
            Backend::Sqlite { writer, .. } => {
                let mut conn = super::checkout(writer).await?;
                let result = conn
                    .immediate_transaction(async |conn| {
                        let $tx = &mut DieselLedger::new(conn);
                        $body
                    })
                    .await;
                drop(conn);
                // After commit (one process on SQLite): live feeds look at the ledger.
                $store.feed.written();
                result
            }
        }
    };
}

impl Store {
    pub async fn ingest_pull(
        &self,
        tenant_id: &str,
        account: &PartnerAccount,
        pull: &Pull,
    ) -> Result<IngestSummary> {
        ledger_write!(self, |tx| self::pull(
            tx,
            &self.pricing,
            tenant_id,
            account,
            pull
        )
        .await)
    }

    /// Records pushed usage; `None` when `request` was already recorded (a retry).
    pub async fn ingest_push(
        &self,
        tenant_id: &str,
        account: &PartnerAccount,
        lines: Vec<UsageLine>,
        request: &IdempotencyKey,
    ) -> Result<Option<IngestSummary>> {
        // Keyed before the transaction: hashing is the write's own work, not the ledger's.
        let keyed = keyed(account.line_key_prefix, &account.id, lines);
        ledger_write!(self, |tx| {
            self::push(tx, &self.pricing, tenant_id, account, keyed, request).await
        })
    }

    pub async fn rerate(&self, tenant_id: &str, only_unrated: bool) -> Result<IngestSummary> {
        ledger_write!(self, |tx| self::rerate(tx, tenant_id, only_unrated).await)
    }
}
