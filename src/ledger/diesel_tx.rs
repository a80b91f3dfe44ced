//! The ledger's statements ([`LedgerTx`]) through Diesel on both backends: every ledger write on
//! SQLite, and on PostgreSQL the re-rates and re-evaluations that run inside the Diesel
//! transaction of the change that caused them (`changes`).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::batch::BatchWriter;
use super::ledger_backends;
use super::rows::{ChargeEventRow, UsageLineRow};
use super::tx::{Access, LedgerTx};
use crate::domain::credit::{CreditEvent, CreditInputs, ExposureUpdate};
use crate::domain::error::Result;
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::ledger::{LedgerLine, TenantPricing, tenant_pricing};
use crate::domain::ledger_append::{Appended, NumberedEvent, Total, TotalKey};
use crate::domain::line_key::{LineKey, LineKeyMap};
use crate::domain::partner_account::PartnerAccount;
use crate::domain::service_action::NewServiceAction;
use crate::domain::service_action::credit_policy::PolicyCustomer;
use crate::store::prepared::KeepPrepared;
use crate::store::schema::{customers, ledger_sequences, pricing_versions, vendor_accounts};

/// A ledger transaction through Diesel on `conn`.
pub(super) struct DieselLedger<'c, C> {
    conn: &'c mut C,
}

impl<'c, C> DieselLedger<'c, C> {
    pub(super) fn new(conn: &'c mut C) -> Self {
        DieselLedger { conn }
    }
}

ledger_backends! {
    use super::DieselLedger;

    #[async_trait::async_trait]
    impl LedgerTx for DieselLedger<'_, Conn> {
        type Lines = Vec<(UsageLineRow, bool)>;
        type Events = Vec<ChargeEventRow>;

        /// SQLite has one writer at a time. On PostgreSQL only re-rates write through Diesel,
        /// exclusively.
        async fn enter(&mut self, tenant_id: &str, access: Access) -> Result<()> {
            if IS_POSTGRES {
                diesel::sql_query(access.postgres_lock_sql())
                    .bind::<diesel::sql_types::Text, _>(tenant_id)
                    .keep_prepared()
                    .execute(self.conn)
                    .await?;
            }
            Ok(())
        }

        async fn claim(&mut self, tenant_id: &str, request: &IdempotencyKey) -> Result<Option<Vec<u8>>> {
            q::idempotency::claim(self.conn, tenant_id, request).await
        }

        async fn record(&mut self, tenant_id: &str, request: &IdempotencyKey, response: &[u8]) -> Result<()> {
            q::idempotency::record(self.conn, tenant_id, request, response).await
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
            let links: Vec<(String, String, String, String)> = vendor_accounts::table
                .filter(vendor_accounts::tenant_id.eq(tenant_id))
                .select((vendor_accounts::vendor, vendor_accounts::kind, vendor_accounts::account_id, vendor_accounts::customer_id))
                .load(self.conn)
                .await?;
            tenant_pricing(rules, fx, policy, customers, links)
        }

        async fn partner_accounts(&mut self, tenant_id: &str) -> Result<Vec<PartnerAccount>> {
            q::partner_accounts::all(self.conn, tenant_id).await
        }

        async fn lines_by_keys(&mut self, tenant_id: &str, keys: &[LineKey]) -> Result<LineKeyMap<LedgerLine>> {
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
            let rows = self.conn.usage_lines_by_keys(keys).await?;
            crate::ledger::usage_lines::stored_lines(tenant_id, rows)
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
                .map(|(line, fresh)| (UsageLineRow::of(line, tenant_id, now), *fresh))
                .collect())
        }

        fn encode_events(tenant_id: &str, events: Vec<NumberedEvent>, now: DateTime<Utc>) -> Result<Self::Events> {
            Ok(events.iter().map(|e| ChargeEventRow::of(e, tenant_id, now)).collect())
        }

        async fn write_lines(&mut self, lines: Self::Lines) -> Result<()> {
            Ok(self.conn.write_ledger_rows(lines, Vec::new()).await?)
        }

        async fn write_events(&mut self, events: Self::Events) -> Result<()> {
            Ok(self.conn.write_ledger_rows(Vec::new(), events).await?)
        }

        const TOTALS_BEFORE_LEDGER_LOCK: bool = IS_POSTGRES;

        async fn write_totals(&mut self, tenant_id: &str, totals: &BTreeMap<TotalKey, Total>) -> Result<()> {
            q::totals::add(self.conn, tenant_id, totals).await
        }

        async fn write_appended(&mut self, tenant_id: &str, appended: &Appended) -> Result<()> {
            self.conn.write_runs(tenant_id.to_string(), appended.runs.clone()).await?;
            diesel::update(ledger_sequences::table.find(tenant_id))
                .set(ledger_sequences::last_sequence.eq(appended.last_sequence))
                .execute(self.conn)
                .await?;
            Ok(())
        }

        async fn credit_inputs(&mut self, tenant_id: &str, customer_ids: &[&str]) -> Result<CreditInputs> {
            // Three reads, not one join: joined, PostgreSQL planned `customer_credit` on a
            // table analyzed while still empty as a scan repeated per customer (115-235 ms for
            // 1,000 customers in the period-boundary benchmark), and SQLite scanned every
            // customer (138 ms). PostgreSQL sends the three pipelined (see `store::credit`).
            q::credit::inputs(self.conn, tenant_id, customer_ids).await
        }

        async fn write_exposure(&mut self, tenant_id: &str, updates: &[ExposureUpdate]) -> Result<()> {
            q::credit::write_exposure(self.conn, tenant_id, updates).await
        }

        async fn append_credit_events(&mut self, tenant_id: &str, events: &[CreditEvent]) -> Result<i64> {
            q::credit::append_events(self.conn, tenant_id, events).await
        }

        async fn policy_customers(&mut self, tenant_id: &str, customer_ids: &[&str]) -> Result<std::collections::HashMap<String, PolicyCustomer>> {
            let mut out = std::collections::HashMap::new();
            for id in customer_ids {
                let customer = match q::customers::get(self.conn, tenant_id, id).await {
                    Ok(customer) => customer,
                    Err(crate::domain::error::Error::NotFound { .. }) => continue,
                    Err(error) => return Err(error),
                };
                let policy = PolicyCustomer {
                    status: customer.status,
                    links: customer.vendor_accounts,
                    open: q::service_actions::open_for_customer(self.conn, tenant_id, id).await?,
                    last_suspension: q::service_actions::last_suspension(self.conn, tenant_id, id).await?,
                };
                out.insert(id.to_string(), policy);
            }
            Ok(out)
        }

        async fn insert_service_actions(&mut self, tenant_id: &str, actions: &[NewServiceAction]) -> Result<()> {
            for action in actions {
                if !q::service_actions::insert(self.conn, tenant_id, action, Utc::now()).await? {
                    tracing::warn!(action = %action.id, customer = %action.customer_id, "another service action opened first; the credit event names an action that was not recorded");
                }
            }
            Ok(())
        }

        async fn notify(&mut self, channel: &str, payload: &str) -> Result<()> {
            if IS_POSTGRES {
                diesel::sql_query("SELECT pg_notify($1, $2)")
                    .bind::<diesel::sql_types::Text, _>(channel)
                    .bind::<diesel::sql_types::Text, _>(payload)
                    .keep_prepared()
                    .execute(self.conn)
                    .await?;
            }
            Ok(())
        }
    }
}
