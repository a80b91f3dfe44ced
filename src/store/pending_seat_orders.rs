//! Purchases sent to a vendor and not yet recorded (`domain::subscription_record::PendingOrder`): written
//! before the vendor is called, removed in the transaction that records the subscription, and
//! finished by the sweeper (`ledger::pending_orders`) when left behind.
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::catalog_schema::pending_seat_orders as p;
use super::for_each_backend;
use super::sql_types::DbTime;
use crate::domain::catalog::Offer;
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::subscription_record::{CREATE_SUBSCRIPTION, NewSubscription, PendingOrder};

type Row = (
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    DbTime,
    DbTime,
);

fn pending(row: Row) -> Result<PendingOrder> {
    let (
        tenant_id,
        request_id,
        fingerprint,
        customer_id,
        item_id,
        quantity,
        term,
        billing,
        ordered_at,
        created_at,
    ) = row;
    let corrupt = |e: String| Error::Internal(format!("stored pending order {request_id}: {e}"));
    let offer = Offer::new(
        term.parse().map_err(corrupt)?,
        billing.parse().map_err(corrupt)?,
    )
    .map_err(corrupt)?;
    let quantity = u32::try_from(quantity).map_err(|e| corrupt(e.to_string()))?;
    Ok(PendingOrder {
        tenant_id,
        key: IdempotencyKey {
            request_id,
            operation: CREATE_SUBSCRIPTION,
            fingerprint,
        },
        order: NewSubscription {
            customer_id,
            item_id,
            quantity,
            offer,
        },
        ordered_at: ordered_at.0,
        created_at: created_at.0,
    })
}

for_each_backend! {
    use super::{Row, pending};

    /// Records the order before the vendor is called (a retry's row stays as the first wrote it).
    pub async fn insert(conn: &mut Conn, order: &PendingOrder) -> Result<()> {
        diesel::insert_into(p::table)
            .values((
                p::tenant_id.eq(&order.tenant_id),
                p::request_id.eq(&order.key.request_id),
                p::fingerprint.eq(&order.key.fingerprint),
                p::customer_id.eq(&order.order.customer_id),
                p::item_id.eq(&order.order.item_id),
                p::quantity.eq(i64::from(order.order.quantity)),
                p::term.eq(order.order.offer.term.as_str()),
                p::billing_frequency.eq(order.order.offer.billing.as_str()),
                p::ordered_at.eq(DbTime(order.ordered_at)),
                p::created_at.eq(DbTime(order.created_at)),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Removes the request's pending order (recorded, or refused to the caller).
    pub async fn remove(conn: &mut Conn, tenant_id: &str, key: &IdempotencyKey) -> Result<()> {
        diesel::delete(p::table.filter(p::tenant_id.eq(tenant_id)).filter(p::request_id.eq(&key.request_id)).filter(p::fingerprint.eq(&key.fingerprint)))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The refusal the sweeper met repeating the request's order: the request's answer.
    pub async fn refusal(conn: &mut Conn, tenant_id: &str, key: &IdempotencyKey) -> Result<Option<String>> {
        Ok(p::table
            .filter(p::tenant_id.eq(tenant_id))
            .filter(p::request_id.eq(&key.request_id))
            .filter(p::fingerprint.eq(&key.fingerprint))
            .select(p::refusal)
            .first::<Option<String>>(conn)
            .await
            .optional()?
            .flatten())
    }

    /// Marks the request failed with `reason`: no longer pending, the answer to its retries.
    pub async fn refuse(conn: &mut Conn, tenant_id: &str, key: &IdempotencyKey, reason: &str) -> Result<()> {
        diesel::update(p::table.filter(p::tenant_id.eq(tenant_id)).filter(p::request_id.eq(&key.request_id)).filter(p::fingerprint.eq(&key.fingerprint)))
            .set(p::refusal.eq(reason))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Forgets the refusals of requests made before `before` (every tenant's), with their
    /// request ids (`Store::forget_request_ids_before`): a retry after that is a new request.
    pub async fn forget_refused_before(conn: &mut Conn, before: DateTime<Utc>) -> Result<usize> {
        Ok(diesel::delete(p::table.filter(p::refusal.is_not_null()).filter(p::created_at.lt(DbTime(before))))
            .execute(conn)
            .await?)
    }

    /// Pending orders written before `before`, oldest first, at most `limit` (every tenant's).
    pub async fn due(conn: &mut Conn, before: DateTime<Utc>, limit: i64) -> Result<Vec<PendingOrder>> {
        let rows: Vec<Row> = p::table
            .filter(p::refusal.is_null())
            .filter(p::created_at.lt(DbTime(before)))
            .select((p::tenant_id, p::request_id, p::fingerprint, p::customer_id, p::item_id, p::quantity, p::term, p::billing_frequency, p::ordered_at, p::created_at))
            .order(p::created_at)
            .limit(limit)
            .load(conn)
            .await?;
        rows.into_iter().map(pending).collect()
    }
}
