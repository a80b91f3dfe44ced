//! Service actions: the action rows (each its own audit record), their per-tenant change
//! sequence, and the leases replicas hold while carrying one out. Steps are
//! `service_action_steps`; the rules `domain::service_action`.
use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::service_action_schema::{service_action_sequences, service_actions};
use super::sql_types::DbTime;
use super::{Store, dispatch, for_each_backend};
use crate::domain::error::{Error, Result};
use crate::domain::paging::{Page, PageRequest};
use crate::domain::service_action::{
    ActionFilter, ActionKind, ActionStatus, NewServiceAction, OpenAction, Requester, ServiceAction,
};
use crate::domain::work_queues::ActionQueue;

#[derive(Queryable, Selectable)]
#[diesel(table_name = service_actions)]
struct ActionRow {
    id: String,
    tenant_id: String,
    customer_id: String,
    kind: String,
    status: String,
    vendor: Option<String>,
    reason: String,
    automatic: bool,
    requested_by_key_id: Option<String>,
    requested_by_key_name: Option<String>,
    credit_event_sequence: Option<i64>,
    change_sequence: i64,
    created_at: DbTime,
    updated_at: DbTime,
    finished_at: Option<DbTime>,
}

fn corrupt(id: &str, what: String) -> Error {
    Error::Internal(format!("stored service action {id}: {what}"))
}

impl ActionRow {
    fn into_action(
        self,
        steps: &mut std::collections::HashMap<
            String,
            Vec<crate::domain::service_action::ServiceStep>,
        >,
    ) -> Result<ServiceAction> {
        let requester = match (
            self.automatic,
            self.credit_event_sequence,
            self.requested_by_key_id,
        ) {
            (true, Some(credit_event_sequence), _) => Requester::CreditPolicy {
                credit_event_sequence,
            },
            (false, _, Some(key_id)) => Requester::ApiKey {
                key_id,
                key_name: self.requested_by_key_name.unwrap_or_default(),
            },
            _ => return Err(corrupt(&self.id, "no requester".into())),
        };
        Ok(ServiceAction {
            kind: self.kind.parse().map_err(|e| corrupt(&self.id, e))?,
            status: self.status.parse().map_err(|e| corrupt(&self.id, e))?,
            vendor: self
                .vendor
                .map(|v| v.parse())
                .transpose()
                .map_err(|e: String| corrupt(&self.id, e))?,
            steps: steps.remove(&self.id).unwrap_or_default(),
            id: self.id,
            tenant_id: self.tenant_id,
            customer_id: self.customer_id,
            reason: self.reason,
            requester,
            change_sequence: self.change_sequence,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
            finished_at: self.finished_at.map(|t| t.0),
        })
    }
}

const OPEN: [&str; 2] = ["PENDING", "RUNNING"];

for_each_backend! {
    /// The tenant's next change sequence. The counter row stays locked until commit, so
    /// sequences are handed out in commit order.
    pub async fn next_change(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
        // The UPDATE first: an `INSERT … ON CONFLICT DO NOTHING` of the existing row waits for
        // the row's current holder to commit, then the UPDATE queues again behind the next one
        // (profiled on PostgreSQL: two lock waits per service-action write instead of one).
        for _ in 0..2 {
            let next: Option<i64> = diesel::update(service_action_sequences::table.find(tenant_id))
                .set(service_action_sequences::last_sequence.eq(service_action_sequences::last_sequence + 1))
                .returning(service_action_sequences::last_sequence)
                .get_result(conn)
                .await
                .optional()?;
            if let Some(next) = next {
                return Ok(next);
            }
            diesel::insert_into(service_action_sequences::table)
                .values((
                    service_action_sequences::tenant_id.eq(tenant_id),
                    service_action_sequences::last_sequence.eq(0i64),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
        }
        Err(Error::Internal(format!("no service-action sequence row for tenant {tenant_id}")))
    }

    /// The tenant's last change sequence.
    pub async fn high_water_mark(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
        Ok(service_action_sequences::table
            .find(tenant_id)
            .select(service_action_sequences::last_sequence)
            .first(conn)
            .await
            .optional()?
            .unwrap_or(0))
    }

    /// Records an admitted action and its steps; false (nothing written) when another open
    /// action of the customer got in first.
    pub async fn insert(conn: &mut Conn, tenant_id: &str, new: &NewServiceAction, now: DateTime<Utc>) -> Result<bool> {
        let change = next_change(conn, tenant_id).await?;
        let (key_id, key_name, credit_event) = match &new.requester {
            Requester::ApiKey { key_id, key_name } => (Some(key_id.as_str()), Some(key_name.as_str()), None),
            Requester::CreditPolicy { credit_event_sequence } => (None, None, Some(*credit_event_sequence)),
        };
        let inserted = diesel::insert_into(service_actions::table)
            .values((
                service_actions::id.eq(&new.id),
                service_actions::tenant_id.eq(tenant_id),
                service_actions::customer_id.eq(&new.customer_id),
                service_actions::kind.eq(new.kind.as_str()),
                service_actions::status.eq(ActionStatus::Pending.as_str()),
                service_actions::vendor.eq(new.vendor.map(|v| v.as_str())),
                service_actions::reason.eq(&new.reason),
                service_actions::automatic.eq(credit_event.is_some()),
                service_actions::requested_by_key_id.eq(key_id),
                service_actions::requested_by_key_name.eq(key_name),
                service_actions::credit_event_sequence.eq(credit_event),
                service_actions::change_sequence.eq(change),
                service_actions::created_at.eq(DbTime(now)),
                service_actions::updated_at.eq(DbTime(now)),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        q::service_action_steps::insert_all(conn, tenant_id, &new.id, &new.steps).await?;
        Ok(true)
    }

    async fn assemble(conn: &mut Conn, rows: Vec<ActionRow>) -> Result<Vec<ServiceAction>> {
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let mut steps = q::service_action_steps::for_actions(conn, &ids).await?;
        rows.into_iter().map(|row| row.into_action(&mut steps)).collect()
    }

    pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<ServiceAction> {
        let row = service_actions::table
            .filter(service_actions::tenant_id.eq(tenant_id))
            .filter(service_actions::id.eq(id))
            .select(ActionRow::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("service action", id))?;
        assemble(conn, vec![row])
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("service action vanished while loading".into()))
    }

    /// Actions in creation (id) order.
    pub async fn list(conn: &mut Conn, tenant_id: &str, filter: &ActionFilter, page: &PageRequest) -> Result<Page<ServiceAction>> {
        let mut query = service_actions::table
            .filter(service_actions::tenant_id.eq(tenant_id))
            .select(ActionRow::as_select())
            .order(service_actions::id)
            .limit(page.fetch_limit())
            .into_boxed();
        if let Some(customer_id) = &filter.customer_id {
            query = query.filter(service_actions::customer_id.eq(customer_id));
        }
        if let Some(status) = filter.status {
            query = query.filter(service_actions::status.eq(status.as_str()));
        }
        if let Some(kind) = filter.kind {
            query = query.filter(service_actions::kind.eq(kind.as_str()));
        }
        if let Some(after) = &page.after {
            query = query.filter(service_actions::id.gt(after));
        }
        let rows = query.load(conn).await?;
        let actions = assemble(conn, rows).await?;
        Ok(page.page(actions, |a| &a.id))
    }

    /// The customer's newest `limit` actions (ids are time-ordered), newest first.
    pub async fn latest(conn: &mut Conn, tenant_id: &str, customer_id: &str, limit: i64) -> Result<Vec<ServiceAction>> {
        let rows = service_actions::table
            .filter(service_actions::tenant_id.eq(tenant_id))
            .filter(service_actions::customer_id.eq(customer_id))
            .select(ActionRow::as_select())
            .order(service_actions::id.desc())
            .limit(limit)
            .load(conn)
            .await?;
        assemble(conn, rows).await
    }

    /// Actions changed after change sequence `after`, in change order (only `customer_ids`'
    /// when given).
    pub async fn changed_after(conn: &mut Conn, tenant_id: &str, customer_ids: &[String], after: i64, limit: i64) -> Result<Vec<ServiceAction>> {
        let mut query = service_actions::table
            .filter(service_actions::tenant_id.eq(tenant_id))
            .filter(service_actions::change_sequence.gt(after))
            .select(ActionRow::as_select())
            .order(service_actions::change_sequence)
            .limit(limit)
            .into_boxed();
        if !customer_ids.is_empty() {
            query = query.filter(service_actions::customer_id.eq_any(customer_ids));
        }
        let rows = query.load(conn).await?;
        assemble(conn, rows).await
    }

    /// The open actions of each of `customer_ids` (those with none left out).
    pub async fn open_for_customers(conn: &mut Conn, tenant_id: &str, customer_ids: &[String]) -> Result<HashMap<String, Vec<OpenAction>>> {
        let rows: Vec<(String, String, String, Option<String>)> = service_actions::table
            .filter(service_actions::tenant_id.eq(tenant_id))
            .filter(service_actions::customer_id.eq_any(customer_ids))
            .filter(service_actions::status.eq_any(OPEN))
            .select((service_actions::customer_id, service_actions::id, service_actions::kind, service_actions::vendor))
            .order(service_actions::id)
            .load(conn)
            .await?;
        let mut out: HashMap<String, Vec<OpenAction>> = HashMap::new();
        for (customer_id, id, kind, vendor) in rows {
            out.entry(customer_id).or_default().push(OpenAction {
                kind: kind.parse().map_err(|e| corrupt(&id, e))?,
                vendor: vendor.map(|v| v.parse()).transpose().map_err(|e: String| corrupt(&id, e))?,
                id,
            });
        }
        Ok(out)
    }

    /// The customer's actions that have not ended.
    pub async fn open_for_customer(conn: &mut Conn, tenant_id: &str, customer_id: &str) -> Result<Vec<OpenAction>> {
        let rows: Vec<(String, String, Option<String>)> = service_actions::table
            .filter(service_actions::tenant_id.eq(tenant_id))
            .filter(service_actions::customer_id.eq(customer_id))
            .filter(service_actions::status.eq_any(OPEN))
            .select((service_actions::id, service_actions::kind, service_actions::vendor))
            .order(service_actions::id)
            .load(conn)
            .await?;
        rows.into_iter()
            .map(|(id, kind, vendor)| {
                Ok(OpenAction {
                    kind: kind.parse().map_err(|e| corrupt(&id, e))?,
                    vendor: vendor.map(|v| v.parse()).transpose().map_err(|e: String| corrupt(&id, e))?,
                    id,
                })
            })
            .collect()
    }

    /// The customer's latest suspend or resume that succeeded or is under way: (kind, whether
    /// credit policy asked for it).
    pub async fn last_suspension(conn: &mut Conn, tenant_id: &str, customer_id: &str) -> Result<Option<(ActionKind, bool)>> {
        let row: Option<(String, String, bool)> = service_actions::table
            .filter(service_actions::tenant_id.eq(tenant_id))
            .filter(service_actions::customer_id.eq(customer_id))
            .filter(service_actions::kind.eq_any([ActionKind::Suspend.as_str(), ActionKind::Resume.as_str()]))
            .filter(service_actions::status.ne(ActionStatus::Failed.as_str()))
            .select((service_actions::id, service_actions::kind, service_actions::automatic))
            .order(service_actions::id.desc())
            .first(conn)
            .await
            .optional()?;
        row.map(|(id, kind, automatic)| Ok((kind.parse().map_err(|e| corrupt(&id, e))?, automatic)))
            .transpose()
    }

    /// Writes the action's status (summarised from its steps) and takes a change sequence.
    pub async fn set_status(conn: &mut Conn, tenant_id: &str, id: &str, status: ActionStatus, now: DateTime<Utc>) -> Result<()> {
        let change = next_change(conn, tenant_id).await?;
        let finished = status.is_terminal().then_some(DbTime(now));
        diesel::update(service_actions::table.find(id))
            .set((
                service_actions::status.eq(status.as_str()),
                service_actions::change_sequence.eq(change),
                service_actions::updated_at.eq(DbTime(now)),
                service_actions::finished_at.eq(finished),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Open actions no live replica holds (or `owner` holds), oldest first: (tenant, id). Only
    /// a customer's oldest open action runs; one queued behind it (a suspend behind an
    /// enrollment, see `transitions::queues_behind`) waits until that one has ended.
    pub async fn runnable(conn: &mut Conn, owner: &str, limit: i64) -> Result<Vec<(String, String)>> {
        let now = DbTime(Utc::now());
        let candidates: Vec<(String, String, String)> = service_actions::table
            .filter(service_actions::status.eq_any(OPEN))
            .filter(
                service_actions::lease_owner
                    .is_null()
                    .or(service_actions::lease_owner.eq(owner))
                    .or(service_actions::lease_expires_at.lt(now)),
            )
            .select((service_actions::tenant_id, service_actions::id, service_actions::customer_id))
            .order(service_actions::id)
            .limit(limit)
            .load(conn)
            .await?;
        let customers: Vec<&str> = candidates.iter().map(|(_, _, c)| c.as_str()).collect();
        let oldest: HashMap<String, Option<String>> = service_actions::table
            .filter(service_actions::status.eq_any(OPEN))
            .filter(service_actions::customer_id.eq_any(&customers))
            .group_by(service_actions::customer_id)
            .select((service_actions::customer_id, diesel::dsl::min(service_actions::id)))
            .load::<(String, Option<String>)>(conn)
            .await?
            .into_iter()
            .collect();
        Ok(candidates
            .into_iter()
            .filter(|(_, id, customer_id)| oldest.get(customer_id).and_then(|o| o.as_deref()) == Some(id.as_str()))
            .map(|(tenant_id, id, _)| (tenant_id, id))
            .collect())
    }

    /// Takes or renews the lease on action `id` for `owner` until now + `ttl`; false when
    /// another live replica holds it or the action has ended.
    pub async fn lease(conn: &mut Conn, id: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let now = Utc::now();
        let taken = diesel::update(service_actions::table.find(id))
            .filter(service_actions::status.eq_any(OPEN))
            .filter(
                service_actions::lease_owner
                    .is_null()
                    .or(service_actions::lease_owner.eq(owner))
                    .or(service_actions::lease_expires_at.lt(DbTime(now))),
            )
            .set((
                service_actions::lease_owner.eq(owner),
                service_actions::lease_expires_at.eq(DbTime(now + ttl)),
            ))
            .execute(conn)
            .await?;
        Ok(taken == 1)
    }

    pub async fn release(conn: &mut Conn, id: &str, owner: &str) -> Result<()> {
        diesel::update(service_actions::table.find(id))
            .filter(service_actions::lease_owner.eq(owner))
            .set((
                service_actions::lease_owner.eq(None::<String>),
                service_actions::lease_expires_at.eq(None::<DbTime>),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Open actions per tenant and status, and each tenant's oldest (for `/metrics`).
    pub async fn queues(conn: &mut Conn) -> Result<Vec<ActionQueue>> {
        let counts: Vec<(String, String, i64)> = service_actions::table
            .filter(service_actions::status.eq_any(OPEN))
            .group_by((service_actions::tenant_id, service_actions::status))
            .select((
                service_actions::tenant_id,
                service_actions::status,
                diesel::dsl::count_star(),
            ))
            .order(service_actions::tenant_id)
            .load(conn)
            .await?;
        let mut queues: Vec<ActionQueue> = Vec::new();
        for (tenant_id, status, count) in counts {
            if queues.last().is_none_or(|q| q.tenant_id != tenant_id) {
                queues.push(ActionQueue {
                    tenant_id: tenant_id.clone(),
                    ..Default::default()
                });
            }
            let queue = queues.last_mut().expect("pushed above");
            let status: ActionStatus = status
                .parse()
                .map_err(|e| Error::Internal(format!("stored service action status: {e}")))?;
            match status {
                ActionStatus::Running => queue.running += count,
                _ => queue.pending += count,
            }
        }
        for queue in &mut queues {
            let oldest: Option<DbTime> = service_actions::table
                .filter(service_actions::tenant_id.eq(&queue.tenant_id))
                .filter(service_actions::status.eq_any(OPEN))
                .select(service_actions::created_at)
                .order(service_actions::created_at)
                .first(conn)
                .await
                .optional()?;
            queue.oldest_open_since = oldest.map(|t| t.0);
        }
        Ok(queues)
    }
}

impl Store {
    /// Open service actions per tenant (for `/metrics`).
    pub async fn service_action_queues(&self) -> Result<Vec<ActionQueue>> {
        dispatch!(self, read, self::queues())
    }

    /// The open actions of each of `customer_ids`, for the status they show.
    pub async fn open_service_actions(
        &self,
        tenant_id: &str,
        customer_ids: &[String],
    ) -> Result<HashMap<String, Vec<OpenAction>>> {
        dispatch!(
            self,
            read,
            self::open_for_customers(tenant_id, customer_ids)
        )
    }

    pub async fn service_action(&self, tenant_id: &str, id: &str) -> Result<ServiceAction> {
        dispatch!(self, read, self::get(tenant_id, id))
    }

    /// The customer's newest `limit` service actions, newest first.
    pub async fn latest_service_actions(
        &self,
        tenant_id: &str,
        customer_id: &str,
        limit: i64,
    ) -> Result<Vec<ServiceAction>> {
        dispatch!(self, read, self::latest(tenant_id, customer_id, limit))
    }

    pub async fn list_service_actions(
        &self,
        tenant_id: &str,
        filter: &ActionFilter,
        page: &PageRequest,
    ) -> Result<Page<ServiceAction>> {
        dispatch!(self, read, self::list(tenant_id, filter, page))
    }

    pub async fn service_actions_changed_after(
        &self,
        tenant_id: &str,
        customer_ids: &[String],
        after: i64,
        limit: i64,
    ) -> Result<Vec<ServiceAction>> {
        dispatch!(
            self,
            read,
            self::changed_after(tenant_id, customer_ids, after, limit)
        )
    }

    pub async fn service_action_high_water_mark(&self, tenant_id: &str) -> Result<i64> {
        dispatch!(self, read, self::high_water_mark(tenant_id))
    }

    pub async fn runnable_service_actions(
        &self,
        owner: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>> {
        dispatch!(self, read, self::runnable(owner, limit))
    }

    pub async fn lease_service_action(&self, id: &str, owner: &str, ttl: Duration) -> Result<bool> {
        dispatch!(self, write, self::lease(id, owner, ttl))
    }

    pub async fn release_service_action(&self, id: &str, owner: &str) -> Result<()> {
        dispatch!(self, write, self::release(id, owner))
    }
}
