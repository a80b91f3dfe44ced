//! The statements of one ledger transaction ([`LedgerTx`]), and their Diesel implementation for
//! both backends: SQLite's ledger writes, and PostgreSQL re-rates, which run inside the Diesel
//! transaction that changed the prices. PostgreSQL pushes and pulls use `pg_ledger` (COPY).
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;

use super::batch::BatchWriter;
use super::charges::ChargeEventRow;
use super::for_each_backend;
use super::ingest::TenantPricing;
use super::schema::{customers, ledger_sequences, pricing_versions, vendor_accounts};
use super::usage_lines::UsageLineRow;
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{IdempotencyKey, Replay};
use crate::domain::ledger::LedgerLine;
use crate::domain::ledger_append::{Appended, NumberedEvent};
use crate::domain::line_key::{LineKey, LineKeyMap};
use crate::domain::money::Currency;
use crate::domain::partner_account::PartnerAccount;
use crate::domain::rating::Chargee;
use crate::domain::vendor::Vendor;

/// How a ledger write holds its tenant (see [`LedgerTx::enter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Pushes and pulls: side by side, each holding the row locks of the stored lines it read.
    Shared,
    /// Re-rates: alone, so no write planned with older prices lands after them.
    Exclusive,
}

/// One ledger transaction's statements on one connection, in this order: `enter` (the tenant),
/// reads of stored lines (locking them), lines written, then `lock_ledger` (which serializes
/// the tenant's event appends until commit), events written, `finish`. Every writer takes these
/// locks in that order, so writers of one tenant never deadlock.
#[async_trait::async_trait]
pub(crate) trait LedgerTx: Send {
    /// One chunk of lines, encoded for this connection (by the planner, ahead of the write).
    type Lines: Send + 'static;
    /// One chunk of numbered events, encoded likewise.
    type Events: Send + 'static;

    /// Takes the tenant's write lock until the transaction ends.
    async fn enter(&mut self, tenant_id: &str, access: Access) -> Result<()>;
    /// Records `request` (see `store::idempotency`).
    async fn claim(
        &mut self,
        tenant_id: &str,
        request: &IdempotencyKey,
        resource_id: &str,
    ) -> Result<Replay>;
    /// Takes the tenant's ledger lock until the transaction ends; the last sequence handed out.
    async fn lock_ledger(&mut self, tenant_id: &str) -> Result<i64>;
    async fn pricing_version(&mut self, tenant_id: &str) -> Result<i64>;
    async fn load_pricing(&mut self, tenant_id: &str) -> Result<TenantPricing>;
    async fn partner_accounts(&mut self, tenant_id: &str) -> Result<Vec<PartnerAccount>>;
    /// The tenant's stored lines among `keys`, locked until the transaction ends.
    async fn lines_by_keys(
        &mut self,
        tenant_id: &str,
        keys: &[LineKey],
    ) -> Result<LineKeyMap<LedgerLine>>;
    /// The account's lines with a window start in `[start, end)`, locked likewise.
    async fn lines_in_window(
        &mut self,
        tenant_id: &str,
        account: &PartnerAccount,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<LineKeyMap<LedgerLine>>;
    /// Every live line of the tenant (only the unrated ones when asked), in key order.
    async fn lines_for_rerate(
        &mut self,
        tenant_id: &str,
        only_unrated: bool,
    ) -> Result<Vec<LedgerLine>>;
    /// Encodes a chunk of lines (`true`: the key is new).
    fn encode_lines(
        tenant_id: &str,
        lines: Vec<(LedgerLine, bool)>,
        now: DateTime<Utc>,
    ) -> Result<Self::Lines>;
    fn encode_events(
        tenant_id: &str,
        events: Vec<NumberedEvent>,
        now: DateTime<Utc>,
    ) -> Result<Self::Events>;
    async fn write_lines(&mut self, lines: Self::Lines) -> Result<()>;
    async fn write_events(&mut self, events: Self::Events) -> Result<()>;
    /// After the chunks of a write that appended events: its runs and daily totals, the new
    /// last sequence, the credit hook and the notification of other replicas.
    async fn finish(&mut self, tenant_id: &str, appended: &Appended) -> Result<()>;
}

/// A ledger transaction through Diesel on `conn`.
pub(crate) struct DieselLedger<'c, C> {
    conn: &'c mut C,
}

impl<'c, C> DieselLedger<'c, C> {
    pub(crate) fn new(conn: &'c mut C) -> Self {
        DieselLedger { conn }
    }
}

fn parse_currency(code: &str) -> Result<Currency> {
    Currency::parse("billing_currency", code)
        .map_err(|e| Error::Internal(format!("stored customer: {e}")))
}

fn parse_zone(customer_id: &str, zone: &str) -> Result<Tz> {
    zone.parse()
        .map_err(|_| Error::Internal(format!("stored customer {customer_id}: time zone {zone:?}")))
}

/// A tenant's pricing from its rules, rates, customers (id, currency, time zone) and links
/// (vendor, vendor account, customer).
pub(crate) fn tenant_pricing(
    rules: Vec<crate::domain::pricing::PriceRule>,
    fx: Vec<crate::domain::pricing::FxRate>,
    policy: crate::domain::pricing::PricingPolicy,
    customers: Vec<(String, String, String)>,
    links: Vec<(String, String, String)>,
) -> Result<TenantPricing> {
    let mut currencies = HashMap::with_capacity(customers.len());
    let mut zones = HashMap::with_capacity(customers.len());
    for (id, currency, zone) in customers {
        currencies.insert(id.clone(), parse_currency(&currency)?);
        zones.insert(id.clone(), parse_zone(&id, &zone)?);
    }
    let mut chargees: HashMap<Vendor, HashMap<String, Chargee>> = HashMap::new();
    for (vendor, account_id, customer_id) in links {
        let vendor: Vendor = vendor.parse().map_err(Error::Internal)?;
        let Some(currency) = currencies.get(&customer_id) else {
            continue;
        };
        chargees.entry(vendor).or_default().insert(
            account_id,
            Chargee {
                customer_id,
                currency: *currency,
            },
        );
    }
    Ok(TenantPricing {
        rules,
        fx,
        policy,
        chargees,
        currencies,
        zones: Arc::new(zones),
    })
}

for_each_backend! {
    use super::{Access, DieselLedger, LedgerTx};

    #[async_trait::async_trait]
    impl LedgerTx for DieselLedger<'_, Conn> {
        type Lines = Vec<(UsageLineRow, bool)>;
        type Events = Vec<ChargeEventRow>;

        /// SQLite has one writer at a time. On PostgreSQL only re-rates write through Diesel,
        /// exclusively (see `pg_ledger::tenant_lock` for the lock's key).
        async fn enter(&mut self, tenant_id: &str, access: Access) -> Result<()> {
            if IS_POSTGRES {
                diesel::sql_query(crate::store::pg_ledger::tenant_lock_sql(access))
                    .bind::<diesel::sql_types::Text, _>(tenant_id)
                    .execute(self.conn)
                    .await?;
            }
            Ok(())
        }

        async fn claim(&mut self, tenant_id: &str, request: &IdempotencyKey, resource_id: &str) -> Result<Replay> {
            q::idempotency::claim(self.conn, tenant_id, request, resource_id).await
        }

        async fn lock_ledger(&mut self, tenant_id: &str) -> Result<i64> {
            q::charges::lock_ledger(self.conn, tenant_id).await
        }

        async fn pricing_version(&mut self, tenant_id: &str) -> Result<i64> {
            Ok(pricing_versions::table
                .find(tenant_id)
                .select(pricing_versions::version)
                .first(self.conn)
                .await
                .optional()?
                .unwrap_or(0))
        }

        async fn load_pricing(&mut self, tenant_id: &str) -> Result<TenantPricing> {
            let rules = q::pricing::rules(self.conn, tenant_id).await?;
            let fx = q::pricing::fx(self.conn, tenant_id).await?;
            let policy = q::pricing::policy(self.conn, tenant_id).await?.policy;
            let customers: Vec<(String, String, String)> = customers::table
                .filter(customers::tenant_id.eq(tenant_id))
                .select((customers::id, customers::billing_currency, customers::time_zone))
                .load(self.conn)
                .await?;
            let links: Vec<(String, String, String)> = vendor_accounts::table
                .filter(vendor_accounts::tenant_id.eq(tenant_id))
                .select((vendor_accounts::vendor, vendor_accounts::account_id, vendor_accounts::customer_id))
                .load(self.conn)
                .await?;
            super::tenant_pricing(rules, fx, policy, customers, links)
        }

        async fn partner_accounts(&mut self, tenant_id: &str) -> Result<Vec<PartnerAccount>> {
            q::partner_accounts::all(self.conn, tenant_id).await
        }

        async fn lines_by_keys(&mut self, tenant_id: &str, keys: &[LineKey]) -> Result<LineKeyMap<LedgerLine>> {
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
            let rows = self.conn.usage_lines_by_keys(keys).await?;
            crate::store::usage_lines::stored_lines(tenant_id, rows)
        }

        async fn lines_in_window(
            &mut self,
            tenant_id: &str,
            account: &PartnerAccount,
            start: DateTime<Utc>,
            end: DateTime<Utc>,
        ) -> Result<LineKeyMap<LedgerLine>> {
            q::usage_lines::in_window(self.conn, tenant_id, account, start, end).await
        }

        async fn lines_for_rerate(&mut self, tenant_id: &str, only_unrated: bool) -> Result<Vec<LedgerLine>> {
            q::usage_lines::for_rerate(self.conn, tenant_id, only_unrated).await
        }

        fn encode_lines(tenant_id: &str, lines: Vec<(LedgerLine, bool)>, now: DateTime<Utc>) -> Result<Self::Lines> {
            Ok(lines
                .iter()
                .map(|(line, fresh)| (UsageLineRow::from_line(tenant_id, line, now), *fresh))
                .collect())
        }

        fn encode_events(tenant_id: &str, events: Vec<NumberedEvent>, now: DateTime<Utc>) -> Result<Self::Events> {
            Ok(events.iter().map(|e| ChargeEventRow::from_event(tenant_id, e, now)).collect())
        }

        async fn write_lines(&mut self, lines: Self::Lines) -> Result<()> {
            Ok(self.conn.write_ledger_rows(lines, Vec::new()).await?)
        }

        async fn write_events(&mut self, events: Self::Events) -> Result<()> {
            Ok(self.conn.write_ledger_rows(Vec::new(), events).await?)
        }

        async fn finish(&mut self, tenant_id: &str, appended: &Appended) -> Result<()> {
            self.conn.write_runs(tenant_id.to_string(), appended.runs.clone()).await?;
            q::charge_totals::add(self.conn, tenant_id, &appended.totals).await?;
            diesel::update(ledger_sequences::table.find(tenant_id))
                .set(ledger_sequences::last_sequence.eq(appended.last_sequence))
                .execute(self.conn)
                .await?;
            let deltas: Vec<(String, Decimal)> =
                appended.exposure.iter().map(|(id, sum)| (id.clone(), *sum)).collect();
            q::credit::evaluate(self.conn, tenant_id, &deltas, appended.last_sequence).await?;
            if IS_POSTGRES {
                // Delivered on commit to every replica's feed listener (see store::feed).
                diesel::sql_query("SELECT pg_notify($1, $2)")
                    .bind::<diesel::sql_types::Text, _>(crate::store::feed::LEDGER_CHANNEL)
                    .bind::<diesel::sql_types::Text, _>(format!("{tenant_id}:{}", appended.last_sequence))
                    .execute(self.conn)
                    .await?;
            }
            Ok(())
        }
    }
}
