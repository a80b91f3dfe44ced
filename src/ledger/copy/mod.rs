//! PostgreSQL ledger writes (pushes and pulls) on a raw tokio-postgres connection, so usage
//! lines and charge events go in with binary COPY.
//!
//! Why not Diesel: COPY is PostgreSQL's bulk path (rows go into heap pages in batches, one WAL
//! record per page instead of one per row), and measured here it takes ~30 % less server time
//! per line than the UNNEST inserts Diesel can send; the server's time is what bounds ingest.
//! diesel-async keeps its tokio-postgres client private, so the ledger transaction runs on a
//! connection of its own small pool, with its statements written out below. Everything else,
//! including re-rates (which run inside the Diesel transaction that changed a price), stays on
//! Diesel (`diesel_tx`).
mod credit;
mod rows;
mod service_actions;

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use deadpool::managed::{Metrics, Object, RecycleError, RecycleResult};
use diesel_async::AsyncPgConnection;
use futures::SinkExt;
use rust_decimal::Decimal;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use super::diesel_tx::DieselLedger;
use super::rows::{UsageLineRow, charge_event_columns, usage_line_columns};
use super::tx::{Access, LedgerTx};
use super::usage_lines::stored_lines;
use crate::domain::credit::{CreditEvent, CreditInputs, ExposureUpdate};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{IdempotencyKey, unrecorded_answer};
use crate::domain::ledger::{LedgerLine, TenantPricing};
use crate::domain::ledger_append::{Appended, NumberedEvent, Total, TotalKey};
use crate::domain::line_key::{LineKey, LineKeyMap};
use crate::domain::partner_account::PartnerAccount;
use crate::domain::service_action::NewServiceAction;
use crate::domain::service_action::credit_policy::PolicyCustomer;
use crate::domain::spend::rollup::rollups;
use rows::{PgLines, lines_of};

/// Opens ledger connections (plaintext, like the Diesel pool's).
pub(super) struct Connector {
    config: tokio_postgres::Config,
}

impl deadpool::managed::Manager for Connector {
    type Type = Client;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> std::result::Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "ledger connection ended");
            }
        });
        Ok(client)
    }

    async fn recycle(
        &self,
        client: &mut Client,
        _: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        if client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        Ok(())
    }
}

pub(super) type LedgerPool = deadpool::managed::Pool<Connector>;

/// Ledger writers of different tenants run side by side; one tenant's wait on its ledger lock.
const LEDGER_CONNECTIONS: usize = 4;

pub(super) fn pool(url: &str, options: &crate::store::PoolOptions) -> Result<LedgerPool> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| Error::Unavailable("database", format!("bad PostgreSQL URL: {e}")))?;
    deadpool::managed::Pool::builder(Connector { config })
        .max_size(LEDGER_CONNECTIONS.min(options.max_connections).max(1))
        .wait_timeout(Some(options.acquire_timeout))
        .create_timeout(Some(options.acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Internal(format!("cannot build the ledger pool: {e}")))
}

/// Runs `work` in a transaction on a ledger connection; commits when it returns `Ok`.
pub(super) async fn transaction<R>(
    ledger: &LedgerPool,
    readers: &crate::store::pool::Pool<AsyncPgConnection>,
    work: impl AsyncFnOnce(&mut PgLedger) -> Result<R>,
) -> Result<R> {
    let client = ledger
        .get()
        .await
        .map_err(|e| Error::Unavailable("database", e.to_string()))?;
    client.batch_execute("BEGIN").await?;
    let mut tx = PgLedger {
        client: Some(client),
        readers: readers.clone(),
        open: true,
    };
    let result = work(&mut tx).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    tx.client()?.batch_execute(end).await?;
    tx.open = false;
    result
}

/// One ledger transaction on a ledger connection.
pub(super) struct PgLedger {
    client: Option<Object<Connector>>,
    /// Pricing and partner accounts are read through Diesel on another connection (read
    /// committed, as the transaction's own statements would see them).
    readers: crate::store::pool::Pool<AsyncPgConnection>,
    open: bool,
}

impl Drop for PgLedger {
    /// A write abandoned mid-transaction (its caller went away): the connection leaves the pool
    /// and closes, which rolls the transaction back, instead of serving the next writer.
    fn drop(&mut self) {
        if self.open
            && let Some(client) = self.client.take()
        {
            drop(Object::take(client));
        }
    }
}

impl PgLedger {
    fn client(&self) -> Result<&Client> {
        self.client
            .as_deref()
            .ok_or_else(|| Error::Internal("ledger connection already released".into()))
    }

    async fn copy_in(&self, sql: &str, data: Bytes) -> Result<()> {
        let sink = self.client()?.copy_in::<_, Bytes>(sql).await?;
        futures::pin_mut!(sink);
        sink.send(data).await?;
        sink.finish().await?;
        Ok(())
    }
}

/// Keys per lookup statement.
const LOOKUP_KEYS: usize = 5_000;

#[async_trait::async_trait]
impl LedgerTx for PgLedger {
    type Lines = PgLines;
    type Events = Bytes;

    async fn enter(&mut self, tenant_id: &str, access: Access) -> Result<()> {
        self.client()?
            .execute(access.postgres_lock_sql(), &[&tenant_id])
            .await?;
        Ok(())
    }

    async fn claim(
        &mut self,
        tenant_id: &str,
        request: &IdempotencyKey,
    ) -> Result<Option<Vec<u8>>> {
        let client = self.client()?;
        let inserted = client
            .execute(
                "INSERT INTO idempotency_keys (tenant_id, request_id, operation, fingerprint, \
                 resource_id, created_at) VALUES ($1, $2, $3, $4, '', $5) ON CONFLICT DO NOTHING",
                &[
                    &tenant_id,
                    &request.request_id,
                    &request.operation,
                    &request.fingerprint,
                    &Utc::now(),
                ],
            )
            .await?;
        if inserted == 1 {
            return Ok(None);
        }
        let row = client
            .query_one(
                "SELECT operation, fingerprint, resource_id, response FROM idempotency_keys \
                 WHERE tenant_id = $1 AND request_id = $2",
                &[&tenant_id, &request.request_id],
            )
            .await?;
        if row.try_get::<_, &str>(0)? != request.operation
            || row.try_get::<_, &str>(1)? != request.fingerprint
        {
            return Err(request.mismatch());
        }
        match row.try_get::<_, Option<Vec<u8>>>(3)? {
            Some(response) => Ok(Some(response)),
            None => Err(unrecorded_answer(request, row.try_get(2)?)),
        }
    }

    async fn record(
        &mut self,
        tenant_id: &str,
        request: &IdempotencyKey,
        response: &[u8],
    ) -> Result<()> {
        self.client()?
            .execute(
                "UPDATE idempotency_keys SET response = $3 WHERE tenant_id = $1 AND request_id = $2",
                &[&tenant_id, &request.request_id, &response],
            )
            .await?;
        Ok(())
    }

    async fn lock_ledger(&mut self, tenant_id: &str) -> Result<i64> {
        let client = self.client()?;
        client
            .execute(
                "INSERT INTO ledger_sequences (tenant_id, last_sequence) VALUES ($1, 0) \
                 ON CONFLICT DO NOTHING",
                &[&tenant_id],
            )
            .await?;
        Ok(client
            .query_one(
                "UPDATE ledger_sequences SET last_sequence = last_sequence WHERE tenant_id = $1 \
                 RETURNING last_sequence",
                &[&tenant_id],
            )
            .await?
            .try_get(0)?)
    }

    async fn pricing_version(&mut self, tenant_id: &str) -> Result<i64> {
        let row = self
            .client()?
            .query_opt(
                "SELECT version FROM pricing_versions WHERE tenant_id = $1",
                &[&tenant_id],
            )
            .await?;
        Ok(match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        })
    }

    async fn load_pricing(&mut self, tenant_id: &str) -> Result<TenantPricing> {
        let mut conn = crate::store::checkout(&self.readers).await?;
        DieselLedger::new(&mut *conn).load_pricing(tenant_id).await
    }

    async fn partner_accounts(&mut self, tenant_id: &str) -> Result<Vec<PartnerAccount>> {
        let mut conn = crate::store::checkout(&self.readers).await?;
        crate::store::pg_queries::partner_accounts::all(&mut conn, tenant_id).await
    }

    /// Most keys of a push are new and share a few account-and-hour groups: one statement finds
    /// the groups that hold any stored line, and only keys of those are probed.
    async fn lines_by_keys(
        &mut self,
        tenant_id: &str,
        keys: &[LineKey],
    ) -> Result<LineKeyMap<LedgerLine>> {
        let client = self.client()?;
        let mut groups: Vec<(LineKey, LineKey)> = keys.iter().map(LineKey::group).collect();
        groups.sort_unstable();
        groups.dedup();
        let lows: Vec<&[u8]> = groups.iter().map(|(low, _)| low.as_bytes()).collect();
        let highs: Vec<&[u8]> = groups.iter().map(|(_, high)| high.as_bytes()).collect();
        let stored_groups: Vec<LineKey> = client
            .query(
                "SELECT r.low FROM unnest($1::bytea[], $2::bytea[]) AS r(low, high) \
                 WHERE EXISTS (SELECT 1 FROM usage_lines u \
                               WHERE u.line_key >= r.low AND u.line_key < r.high)",
                &[&lows, &highs],
            )
            .await?
            .iter()
            .map(|row| {
                let low: &[u8] = row.try_get(0)?;
                LineKey::from_bytes(low)
                    .ok_or_else(|| Error::Internal("a group bound is not a line key".into()))
            })
            .collect::<Result<_>>()?;
        if stored_groups.is_empty() {
            return Ok(LineKeyMap::default());
        }
        // Locked in key order, as every writer locks them: no two writers deadlock.
        let mut probe: Vec<&[u8]> = keys
            .iter()
            .filter(|key| stored_groups.binary_search(&key.group().0).is_ok())
            .map(LineKey::as_bytes)
            .collect();
        probe.sort_unstable();
        // One primary-key probe per key whatever the planner's statistics (see batch.rs).
        let lookup = format!(
            "SELECT {} FROM unnest($1::bytea[]) AS wanted(line_key) \
             CROSS JOIN LATERAL (SELECT * FROM usage_lines \
                 WHERE usage_lines.line_key = wanted.line_key LIMIT 1 FOR UPDATE) AS line",
            usage_line_columns::columns_of("line")
        );
        let mut rows = Vec::new();
        for chunk in probe.chunks(LOOKUP_KEYS) {
            let chunk: Vec<&[u8]> = chunk.to_vec();
            rows.extend(lines_of(client.query(lookup.as_str(), &[&chunk]).await?)?);
        }
        stored_lines(tenant_id, rows)
    }

    async fn lines_in_window(
        &mut self,
        tenant_id: &str,
        account: &PartnerAccount,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<LineKeyMap<LedgerLine>> {
        let (low, high) = LineKey::range(account.line_key_prefix, start, end);
        let rows = self
            .client()?
            .query(
                format!(
                    "SELECT {} FROM usage_lines WHERE line_key >= $1 AND line_key < $2 \
                     AND tenant_id = $3 AND partner_account_id = $4 \
                     AND window_start >= $5 AND window_start < $6 ORDER BY line_key FOR UPDATE",
                    usage_line_columns::columns()
                )
                .as_str(),
                &[
                    &low.as_bytes(),
                    &high.as_bytes(),
                    &tenant_id,
                    &account.id,
                    &start,
                    &end,
                ],
            )
            .await?;
        stored_lines(tenant_id, lines_of(rows)?)
    }

    async fn lines_for_rerate(
        &mut self,
        tenant_id: &str,
        only_unrated: bool,
    ) -> Result<Vec<LedgerLine>> {
        let filter = if only_unrated {
            " AND unrated_reason IS NOT NULL"
        } else {
            ""
        };
        let rows = self
            .client()?
            .query(
                format!(
                    "SELECT {} FROM usage_lines WHERE tenant_id = $1 AND NOT removed \
                     {filter} ORDER BY line_key",
                    usage_line_columns::columns()
                )
                .as_str(),
                &[&tenant_id],
            )
            .await?;
        lines_of(rows)?
            .into_iter()
            .map(UsageLineRow::into_line)
            .collect()
    }

    fn encode_lines(
        tenant_id: &str,
        lines: Vec<(LedgerLine, bool)>,
        now: DateTime<Utc>,
    ) -> Result<PgLines> {
        rows::encode_lines(tenant_id, lines, now)
    }

    fn encode_events(
        tenant_id: &str,
        events: Vec<NumberedEvent>,
        now: DateTime<Utc>,
    ) -> Result<Bytes> {
        rows::encode_events(tenant_id, &events, now)
    }

    async fn write_lines(&mut self, lines: PgLines) -> Result<()> {
        if let Some(data) = lines.new_lines {
            self.copy_in(usage_line_columns::copy_sql(), data).await?;
        }
        rows::upsert_lines(
            self.client()?,
            &lines.tenant_id,
            &lines.known_lines,
            lines.now,
        )
        .await
    }

    async fn write_events(&mut self, events: Bytes) -> Result<()> {
        self.copy_in(charge_event_columns::copy_sql(), events).await
    }

    const TOTALS_BEFORE_LEDGER_LOCK: bool = true;

    async fn write_totals(
        &mut self,
        tenant_id: &str,
        changes: &BTreeMap<TotalKey, Total>,
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let client = self.client()?;
        let customers: Vec<&str> = changes.keys().map(|k| k.customer_id.as_str()).collect();
        let dates: Vec<NaiveDate> = changes.keys().map(|k| k.usage_date).collect();
        let vendors: Vec<&str> = changes.keys().map(|k| k.vendor.as_str()).collect();
        let services: Vec<&str> = changes.keys().map(|k| k.service.as_str()).collect();
        let meters: Vec<&str> = changes.keys().map(|k| k.meter.as_str()).collect();
        let amounts: Vec<Decimal> = changes.values().map(|t| t.amount).collect();
        let quantities: Vec<Decimal> = changes.values().map(|t| t.quantity).collect();
        let totals: [&(dyn ToSql + Sync); 8] = [
            &tenant_id,
            &customers,
            &dates,
            &vendors,
            &services,
            &meters,
            &amounts,
            &quantities,
        ];
        let rolled = rollups(changes);
        let r_customers: Vec<&str> = rolled.keys().map(|k| k.customer_id.as_str()).collect();
        let r_grains: Vec<&str> = rolled.keys().map(|k| k.grain.as_str()).collect();
        let r_buckets: Vec<NaiveDate> = rolled.keys().map(|k| k.bucket).collect();
        let r_vendors: Vec<&str> = rolled.keys().map(|k| k.vendor).collect();
        let r_services: Vec<&str> = rolled.keys().map(|k| k.service.as_str()).collect();
        let r_meters: Vec<&str> = rolled.keys().map(|k| k.meter.as_str()).collect();
        let r_amounts: Vec<Decimal> = rolled.values().map(|t| t.amount).collect();
        let r_quantities: Vec<Decimal> = rolled.values().map(|t| t.quantity).collect();
        let r_events: Vec<i64> = rolled.values().map(|t| t.events).collect();
        let r_line_keys: Vec<Option<&[u8]>> = rolled
            .values()
            .map(|t| t.line_key.as_ref().map(|k| k.as_bytes()))
            .collect();
        let r_units: Vec<Option<&str>> = rolled.values().map(|t| t.unit.as_deref()).collect();
        let rollup_columns: [&(dyn ToSql + Sync); 12] = [
            &tenant_id,
            &r_customers,
            &r_grains,
            &r_buckets,
            &r_vendors,
            &r_services,
            &r_meters,
            &r_amounts,
            &r_quantities,
            &r_events,
            &r_line_keys,
            &r_units,
        ];
        // Sent together: the connection pipelines them. Each in key order (see `LedgerTx`).
        futures::try_join!(
            client.execute(
                "INSERT INTO charge_totals (tenant_id, customer_id, usage_date, vendor, service, \
                 meter, amount, quantity) SELECT $1, unnest($2::text[]), unnest($3::date[]), \
                 unnest($4::text[]), unnest($5::text[]), unnest($6::text[]), \
                 unnest($7::numeric[]), unnest($8::numeric[]) \
                 ON CONFLICT (tenant_id, customer_id, usage_date, vendor, service, meter) \
                 DO UPDATE SET amount = charge_totals.amount + EXCLUDED.amount, \
                 quantity = charge_totals.quantity + EXCLUDED.quantity",
                &totals,
            ),
            client.execute(
                "INSERT INTO charge_rollups (tenant_id, customer_id, grain, bucket, vendor, \
                 service, meter, amount, quantity, events, line_key, unit) SELECT $1, \
                 unnest($2::text[]), unnest($3::text[]), unnest($4::date[]), \
                 unnest($5::text[]), unnest($6::text[]), unnest($7::text[]), \
                 unnest($8::numeric[]), unnest($9::numeric[]), unnest($10::int8[]), \
                 unnest($11::bytea[]), unnest($12::text[]) \
                 ON CONFLICT (tenant_id, customer_id, grain, bucket, vendor, service, meter) \
                 DO UPDATE SET amount = charge_rollups.amount + EXCLUDED.amount, \
                 quantity = charge_rollups.quantity + EXCLUDED.quantity, \
                 events = charge_rollups.events + EXCLUDED.events, \
                 line_key = coalesce(charge_rollups.line_key, EXCLUDED.line_key), \
                 unit = coalesce(EXCLUDED.unit, charge_rollups.unit)",
                &rollup_columns,
            ),
        )?;
        Ok(())
    }

    async fn write_appended(&mut self, tenant_id: &str, appended: &Appended) -> Result<()> {
        let client = self.client()?;
        let run_customers: Vec<&str> = appended
            .runs
            .iter()
            .map(|r| r.customer_id.as_str())
            .collect();
        let firsts: Vec<i64> = appended.runs.iter().map(|r| r.first_sequence).collect();
        let lasts: Vec<i64> = appended.runs.iter().map(|r| r.last_sequence).collect();
        let first_windows: Vec<DateTime<Utc>> =
            appended.runs.iter().map(|r| r.first_window).collect();
        let last_windows: Vec<DateTime<Utc>> =
            appended.runs.iter().map(|r| r.last_window).collect();
        let runs: [&(dyn ToSql + Sync); 6] = [
            &tenant_id,
            &run_customers,
            &firsts,
            &lasts,
            &first_windows,
            &last_windows,
        ];
        let last: [&(dyn ToSql + Sync); 2] = [&tenant_id, &appended.last_sequence];
        // Sent together: the connection pipelines them.
        futures::try_join!(
            client.execute(
                "INSERT INTO charge_event_runs (tenant_id, customer_id, first_sequence, \
                 last_sequence, first_window, last_window) SELECT $1, unnest($2::text[]), \
                 unnest($3::int8[]), unnest($4::int8[]), unnest($5::timestamptz[]), \
                 unnest($6::timestamptz[])",
                &runs,
            ),
            client.execute(
                "UPDATE ledger_sequences SET last_sequence = $2 WHERE tenant_id = $1",
                &last,
            ),
        )?;
        Ok(())
    }

    async fn credit_inputs(
        &mut self,
        tenant_id: &str,
        customer_ids: &[&str],
    ) -> Result<CreditInputs> {
        credit::inputs(self.client()?, tenant_id, customer_ids).await
    }

    async fn write_exposure(&mut self, tenant_id: &str, updates: &[ExposureUpdate]) -> Result<()> {
        credit::write_exposure(self.client()?, tenant_id, updates).await
    }

    async fn append_credit_events(
        &mut self,
        tenant_id: &str,
        events: &[CreditEvent],
    ) -> Result<i64> {
        credit::append_events(self.client()?, tenant_id, events).await
    }

    async fn policy_customers(
        &mut self,
        tenant_id: &str,
        customer_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, PolicyCustomer>> {
        service_actions::policy_customers(self.client()?, tenant_id, customer_ids).await
    }

    async fn insert_service_actions(
        &mut self,
        tenant_id: &str,
        actions: &[NewServiceAction],
    ) -> Result<()> {
        service_actions::insert(self.client()?, tenant_id, actions).await
    }

    async fn notify(&mut self, channel: &str, payload: &str) -> Result<()> {
        self.client()?
            .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await?;
        Ok(())
    }
}
