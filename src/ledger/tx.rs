//! The statements of one ledger transaction ([`LedgerTx`]) and the order its locks are taken
//! in. Implemented through Diesel on both backends (`diesel_tx`: SQLite's writes, and
//! PostgreSQL re-rates inside the Diesel transaction that changed a price) and through
//! tokio-postgres with COPY (`copy`: PostgreSQL pushes and pulls).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::credit::{CreditEvent, CreditInputs, ExposureUpdate};
use crate::domain::error::Result;
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::ledger::{LedgerLine, TenantPricing};
use crate::domain::ledger_append::{Appended, NumberedEvent, Total, TotalKey};
use crate::domain::line_key::{LineKey, LineKeyMap};
use crate::domain::partner_account::PartnerAccount;
use crate::domain::service_action::NewServiceAction;
use crate::domain::service_action::credit_policy::PolicyCustomer;

/// How a ledger write holds its tenant (see [`LedgerTx::enter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Pushes and pulls: side by side, each holding the row locks of the stored lines it read.
    Shared,
    /// Re-rates: alone, so no write planned with older prices lands after them.
    Exclusive,
}

impl Access {
    /// PostgreSQL's form of the tenant write lock: a transaction-scoped advisory lock on the
    /// tenant id ("mspg" in ASCII, then the id's hash), shared or exclusive. SQLite needs none:
    /// it has one writer at a time.
    pub fn postgres_lock_sql(self) -> &'static str {
        match self {
            Access::Shared => "SELECT pg_advisory_xact_lock_shared(1836281959, hashtext($1))",
            Access::Exclusive => "SELECT pg_advisory_xact_lock(1836281959, hashtext($1))",
        }
    }
}

/// One ledger transaction's statements on one connection, in this order: `enter` (the tenant),
/// reads of stored lines (locking them), lines written, daily totals and rollups added
/// (`write_totals`: each statement in key order, totals before rollups; on SQLite after the
/// events instead, see `TOTALS_BEFORE_LEDGER_LOCK`), then `lock_ledger` (which serializes the
/// tenant's event appends until commit), events written, then what follows them
/// (`write_appended`, the credit hook, `notify`). Every writer takes these locks in that
/// order, and nothing holding the ledger lock waits for a line or a total, so writers of one
/// tenant never deadlock (two writers of one total take turns). Writes that change
/// prices or links (`changes`) update their own records first and then follow the same order.
#[async_trait::async_trait]
pub trait LedgerTx: Send {
    /// One chunk of lines, encoded for this connection (by the planner, ahead of the write).
    type Lines: Send + 'static;
    /// One chunk of numbered events, encoded likewise.
    type Events: Send + 'static;

    /// Takes the tenant's write lock until the transaction ends.
    async fn enter(&mut self, tenant_id: &str, access: Access) -> Result<()>;
    /// Records `request`: `None` the first time, else the response the first call recorded
    /// (see `store::idempotency`).
    async fn claim(&mut self, tenant_id: &str, request: &IdempotencyKey)
    -> Result<Option<Vec<u8>>>;
    /// Records the response of the call that claimed `request`.
    async fn record(
        &mut self,
        tenant_id: &str,
        request: &IdempotencyKey,
        response: &[u8],
    ) -> Result<()>;
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
    /// Whether a write adds its daily totals before it takes the ledger lock (PostgreSQL: so
    /// writers of one tenant add theirs side by side) or after its events (SQLite: one writer
    /// at a time, so the earlier place gains nothing there, and SQLite keeps the order its
    /// figures were measured with; BENCHMARKS.md, session 11).
    const TOTALS_BEFORE_LEDGER_LOCK: bool;
    /// Adds a write's changes of daily totals, and of their rollups, to the stored ones (the
    /// changes do not depend on the sequences).
    async fn write_totals(
        &mut self,
        tenant_id: &str,
        totals: &BTreeMap<TotalKey, Total>,
    ) -> Result<()>;
    /// After the chunks of a write that appended events: its runs of consecutive sequences and
    /// the tenant's new last sequence.
    async fn write_appended(&mut self, tenant_id: &str, appended: &Appended) -> Result<()>;
    /// The credit limits, states and defaults of the customers among `customer_ids`.
    async fn credit_inputs(
        &mut self,
        tenant_id: &str,
        customer_ids: &[&str],
    ) -> Result<CreditInputs>;
    async fn write_exposure(&mut self, tenant_id: &str, updates: &[ExposureUpdate]) -> Result<()>;
    /// Numbers and appends credit events with the tenant's credit sequence; the last one.
    async fn append_credit_events(
        &mut self,
        tenant_id: &str,
        events: &[CreditEvent],
    ) -> Result<i64>;
    /// What credit policy needs to know of the customers among `customer_ids` to act on their
    /// events (customers not found are left out).
    async fn policy_customers(
        &mut self,
        tenant_id: &str,
        customer_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, PolicyCustomer>>;
    /// Records the service actions credit policy asked for, after the events naming them.
    async fn insert_service_actions(
        &mut self,
        tenant_id: &str,
        actions: &[NewServiceAction],
    ) -> Result<()>;
    /// A notification delivered on commit to every replica's listener (PostgreSQL); nothing on
    /// SQLite, whose one writing process wakes its feeds itself after commit.
    async fn notify(&mut self, channel: &str, payload: &str) -> Result<()>;
}
