//! Ledger writes: a vendor pull, pushed usage, or a re-rate, each in one transaction under the
//! tenant's ledger lock. The domain plans what changes (`domain::ledger`); this applies it.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::batch::{BatchWriter, LedgerRows};
use super::schema::{customers, pricing_versions, vendor_accounts};
use super::{Store, dispatch, for_each_backend};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{IdempotencyKey, Replay};
use crate::domain::ledger::{
    LedgerPlan, NewChargeEvent, RatingContext, keyed, plan_keyed, plan_pull, plan_rerate,
};
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
    rules: Vec<PriceRule>,
    fx: Vec<FxRate>,
    /// (vendor, vendor account id) -> linked customer.
    chargees: HashMap<Vendor, HashMap<String, Chargee>>,
    currencies: HashMap<String, Currency>,
}

impl TenantPricing {
    fn context<'a>(
        &'a self,
        account: &'a PartnerAccount,
        empty: &'a HashMap<String, Chargee>,
    ) -> RatingContext<'a> {
        RatingContext {
            partner_account_id: &account.id,
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
    fn get(&self, tenant_id: &str, version: i64) -> Option<Arc<TenantPricing>> {
        let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match cached.get(tenant_id) {
            Some((at, pricing)) if *at == version => Some(pricing.clone()),
            _ => None,
        }
    }

    fn put(&self, tenant_id: &str, version: i64, pricing: Arc<TenantPricing>) {
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

/// Keys planned and read together in a chunked ledger write (see
/// [`BatchWriter::write_ledger_chunks`]): big enough that per-statement costs vanish, small
/// enough that planning one chunk overlaps the server's work on the previous one.
const LEDGER_CHUNK_KEYS: usize = 5_000;

/// The rows of one ledger transaction as they are planned, chunk by chunk: numbers the events
/// from the sequence the ledger lock returned and keeps them for the credit hook.
struct LedgerAppend<'t> {
    tenant_id: &'t str,
    last_sequence: i64,
    now: chrono::DateTime<chrono::Utc>,
    lines_written: usize,
    events: Vec<NewChargeEvent>,
}

impl<'t> LedgerAppend<'t> {
    fn new(tenant_id: &'t str, last_sequence: i64) -> Self {
        Self {
            tenant_id,
            last_sequence,
            now: chrono::Utc::now(),
            lines_written: 0,
            events: Vec::new(),
        }
    }

    /// The rows of `plan`; `is_stored` tells which of its keys are stored already.
    fn rows(&mut self, plan: LedgerPlan, is_stored: &(dyn Fn(&str) -> bool + Sync)) -> LedgerRows {
        let lines = super::usage_lines::rows(self.tenant_id, &plan.lines, is_stored, self.now);
        let events = super::charges::event_rows(
            self.tenant_id,
            &plan.events,
            self.last_sequence + 1,
            self.now,
        );
        self.last_sequence += plan.events.len() as i64;
        self.lines_written += plan.lines.len();
        self.events.extend(plan.events);
        LedgerRows { lines, events }
    }
}

fn parse_currency(code: &str) -> Result<Currency> {
    Currency::parse("billing_currency", code)
        .map_err(|e| Error::Internal(format!("stored customer: {e}")))
}

for_each_backend! {
    /// The tenant's pricing, from `cache` while the tenant's pricing version has not moved. The
    /// version is read before anything is loaded, so a load is never tagged newer than its data.
    async fn pricing(conn: &mut Conn, cache: &PricingCache, tenant_id: &str) -> Result<Arc<TenantPricing>> {
        let version: i64 = pricing_versions::table
            .find(tenant_id)
            .select(pricing_versions::version)
            .first(conn)
            .await
            .optional()?
            .unwrap_or(0);
        if let Some(pricing) = cache.get(tenant_id, version) {
            return Ok(pricing);
        }
        let pricing = Arc::new(load_pricing(conn, tenant_id).await?);
        cache.put(tenant_id, version, pricing.clone());
        Ok(pricing)
    }

    async fn load_pricing(conn: &mut Conn, tenant_id: &str) -> Result<TenantPricing> {
        let rules = q::pricing::rules(conn, tenant_id).await?;
        let fx = q::pricing::fx(conn, tenant_id).await?;
        let currencies: HashMap<String, Currency> = customers::table
            .filter(customers::tenant_id.eq(tenant_id))
            .select((customers::id, customers::billing_currency))
            .load::<(String, String)>(conn)
            .await?
            .into_iter()
            .map(|(id, code)| Ok((id, parse_currency(&code)?)))
            .collect::<Result<_>>()?;
        let links: Vec<(String, String, String)> = vendor_accounts::table
            .filter(vendor_accounts::tenant_id.eq(tenant_id))
            .select((vendor_accounts::vendor, vendor_accounts::account_id, vendor_accounts::customer_id))
            .load(conn)
            .await?;
        let mut chargees: HashMap<Vendor, HashMap<String, Chargee>> = HashMap::new();
        for (vendor, account_id, customer_id) in links {
            let vendor: Vendor = vendor.parse().map_err(Error::Internal)?;
            let Some(currency) = currencies.get(&customer_id) else { continue };
            chargees.entry(vendor).or_default().insert(account_id, Chargee { customer_id, currency: *currency });
        }
        Ok(TenantPricing { rules, fx, chargees, currencies })
    }

    /// Writes `plan` in one go (pulls and re-rates: their stored lines are read up front).
    async fn apply(
        conn: &mut Conn,
        mut append: LedgerAppend<'_>,
        plan: LedgerPlan,
        is_stored: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<IngestSummary> {
        let rows = append.rows(plan, is_stored);
        conn.write_ledger_rows(rows.lines, rows.events).await?;
        finish(conn, append).await
    }

    /// After the rows are written: the new last sequence, then the credit hook and notification.
    async fn finish(conn: &mut Conn, append: LedgerAppend<'_>) -> Result<IngestSummary> {
        let last_sequence = (!append.events.is_empty()).then_some(append.last_sequence);
        if let Some(last) = last_sequence {
            q::charges::set_last_sequence(conn, append.tenant_id, last).await?;
            q::charges::appended(conn, append.tenant_id, &append.events, last).await?;
        }
        Ok(IngestSummary {
            lines_written: append.lines_written,
            events_appended: append.events.len(),
            last_sequence,
        })
    }

    /// Records a pull that restates `[pull.start, pull.end)` for the partner account.
    pub async fn pull(
        conn: &mut Conn,
        cache: &PricingCache,
        tenant_id: &str,
        account: &PartnerAccount,
        pull: &Pull,
    ) -> Result<IngestSummary> {
        conn.transaction(async |conn| {
            let append = LedgerAppend::new(tenant_id, q::charges::lock_ledger(conn, tenant_id).await?);
            let pricing = pricing(conn, cache, tenant_id).await?;
            let stored = q::usage_lines::in_window(conn, tenant_id, &account.id, pull.start, pull.end).await?;
            let empty = HashMap::new();
            let plan = plan_pull(&stored, pull.lines.clone(), pull.start, pull.end, &pricing.context(account, &empty));
            apply(conn, append, plan, &|key| stored.contains_key(key)).await
        })
        .await
    }

    /// Records pushed lines: each replaces its key; nothing else is touched. A retry of a
    /// recorded request id writes nothing and answers `None`.
    pub async fn push(
        conn: &mut Conn,
        cache: &PricingCache,
        tenant_id: &str,
        account: &PartnerAccount,
        lines: Vec<UsageLine>,
        request: &IdempotencyKey,
    ) -> Result<Option<IngestSummary>> {
        conn.transaction(async |conn| {
            if let Replay::Done { .. } = q::idempotency::claim(conn, tenant_id, request, &account.id).await? {
                return Ok(None);
            }
            let mut append = LedgerAppend::new(tenant_id, q::charges::lock_ledger(conn, tenant_id).await?);
            let pricing = pricing(conn, cache, tenant_id).await?;
            let empty = HashMap::new();
            let ctx = pricing.context(account, &empty);
            // Each key's plan needs only its own stored line, so the write goes in chunks
            // whose planning overlaps the writing of the previous ones.
            let mut chunks = Vec::new();
            let mut key_chunks = Vec::new();
            let mut lines = keyed(&account.id, lines).into_iter().peekable();
            while lines.peek().is_some() {
                let chunk: Vec<_> = lines.by_ref().take(LEDGER_CHUNK_KEYS).collect();
                key_chunks.push(chunk.iter().map(|(key, _)| key.clone()).collect());
                chunks.push(chunk);
            }
            let mut chunks = chunks.into_iter();
            let mut plan_chunk = |stored: Vec<crate::store::usage_lines::UsageLineRow>| -> Result<LedgerRows> {
                let chunk = chunks
                    .next()
                    .ok_or_else(|| Error::Internal("more stored chunks than planned".into()))?;
                let stored = crate::store::usage_lines::stored_lines(tenant_id, stored)?;
                let plan = plan_keyed(&stored, chunk, &ctx);
                Ok(append.rows(plan, &|key| stored.contains_key(key)))
            };
            conn.write_ledger_chunks(key_chunks, &mut plan_chunk).await?;
            finish(conn, append).await.map(Some)
        })
        .await
    }

    /// Re-rates live lines (only the unrated ones, after a link) against current prices. It
    /// follows a pricing change, so it loads the tenant's pricing afresh.
    pub async fn rerate(conn: &mut Conn, tenant_id: &str, only_unrated: bool) -> Result<IngestSummary> {
        conn.transaction(async |conn| {
            let append = LedgerAppend::new(tenant_id, q::charges::lock_ledger(conn, tenant_id).await?);
            let pricing = load_pricing(conn, tenant_id).await?;
            let accounts: HashMap<String, PartnerAccount> = q::partner_accounts::all(conn, tenant_id)
                .await?
                .into_iter()
                .map(|a| (a.id.clone(), a))
                .collect();
            let lines = q::usage_lines::for_rerate(conn, tenant_id, only_unrated).await?;
            let mut by_account: HashMap<&str, Vec<&crate::domain::ledger::LedgerLine>> = HashMap::new();
            for line in &lines {
                by_account.entry(line.partner_account_id.as_str()).or_default().push(line);
            }
            let empty = HashMap::new();
            let mut plan = LedgerPlan::default();
            let mut account_ids: Vec<&str> = by_account.keys().copied().collect();
            account_ids.sort_unstable();
            for id in account_ids {
                let Some(account) = accounts.get(id) else { continue };
                let part = plan_rerate(by_account[id].iter().copied(), &pricing.context(account, &empty));
                plan.lines.extend(part.lines);
                plan.events.extend(part.events);
            }
            apply(conn, append, plan, &|_| true).await
        })
        .await
    }
}

impl Store {
    pub async fn ingest_pull(
        &self,
        tenant_id: &str,
        account: &PartnerAccount,
        pull: &Pull,
    ) -> Result<IngestSummary> {
        dispatch!(
            self,
            write,
            ingest::pull(&self.pricing, tenant_id, account, pull)
        )
    }

    /// Records pushed usage; `None` when `request` was already recorded (a retry).
    pub async fn ingest_push(
        &self,
        tenant_id: &str,
        account: &PartnerAccount,
        lines: Vec<UsageLine>,
        request: &IdempotencyKey,
    ) -> Result<Option<IngestSummary>> {
        dispatch!(
            self,
            write,
            ingest::push(&self.pricing, tenant_id, account, lines, request)
        )
    }

    pub async fn rerate(&self, tenant_id: &str, only_unrated: bool) -> Result<IngestSummary> {
        dispatch!(self, write, ingest::rerate(tenant_id, only_unrated))
    }
}
