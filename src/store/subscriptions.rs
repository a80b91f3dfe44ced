//! Subscriptions' records: each holds the domain's `Subscription` state beside whom and what it
//! is for. Charges are the ledger's (`ledger::subscriptions` writes both in one transaction).
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::catalog_schema::subscriptions;
use super::sql_types::{DbDecimal, DbTime};
use super::{Store, dispatch, for_each_backend};
use crate::domain::catalog::Offer;
use crate::domain::error::{Error, Result};
use crate::domain::money::Currency;
use crate::domain::paging::{Page, PageRequest};
use crate::domain::subscription::Subscription;
use crate::domain::subscription_period::BillingPeriod;
use crate::domain::subscription_record::SubscriptionRecord;

#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = subscriptions)]
pub(super) struct SubscriptionRow {
    id: String,
    customer_id: String,
    item_id: String,
    status: String,
    quantity: i64,
    term: String,
    billing_frequency: String,
    time_zone: String,
    currency: String,
    term_start: DbTime,
    period_index: i64,
    period_start: DbTime,
    period_end: DbTime,
    unit_price: DbDecimal,
    seat_seconds: i64,
    lots: String,
    scheduled: String,
    auto_renew: bool,
    ended_at: Option<DbTime>,
    created_at: DbTime,
    updated_at: DbTime,
    vendor_subscription_id: Option<String>,
}

impl SubscriptionRow {
    pub(super) fn into_record(self) -> Result<SubscriptionRecord> {
        let id = self.id.clone();
        let corrupt = |e: String| Error::Internal(format!("stored subscription {id}: {e}"));
        let offer = Offer::new(
            self.term.parse().map_err(corrupt)?,
            self.billing_frequency.parse().map_err(corrupt)?,
        )
        .map_err(corrupt)?;
        let time_zone: Tz = self
            .time_zone
            .parse()
            .map_err(|e: chrono_tz::ParseError| corrupt(e.to_string()))?;
        let state = Subscription {
            quantity: u32::try_from(self.quantity).map_err(|e| corrupt(e.to_string()))?,
            offer,
            time_zone,
            term_start: self.term_start.0,
            period: BillingPeriod {
                index: u32::try_from(self.period_index).map_err(|e| corrupt(e.to_string()))?,
                start: self.period_start.0,
                end: self.period_end.0,
                unit_price: self.unit_price.0,
                seat_seconds: self.seat_seconds,
            },
            lots: serde_json::from_str(&self.lots).map_err(|e| corrupt(e.to_string()))?,
            scheduled: serde_json::from_str(&self.scheduled).map_err(|e| corrupt(e.to_string()))?,
            auto_renew: self.auto_renew,
            status: self.status.parse().map_err(corrupt)?,
            ended_at: self.ended_at.map(|t| t.0),
        };
        Ok(SubscriptionRecord {
            currency: Currency::parse("currency", &self.currency)
                .map_err(|e| corrupt(e.to_string()))?,
            id: self.id,
            customer_id: self.customer_id,
            item_id: self.item_id,
            vendor_subscription_id: self.vendor_subscription_id,
            state,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        })
    }
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Internal(format!("encoding a subscription: {e}")))
}

/// The columns of a record's state, as one tuple that both an insert's values and an update's
/// changes accept.
macro_rules! state_columns {
    ($record:expr) => {{
        let (r, s) = (&$record, &$record.state);
        (
            subscriptions::status.eq(s.status.as_str()),
            subscriptions::quantity.eq(i64::from(s.quantity)),
            subscriptions::term.eq(s.offer.term.as_str()),
            subscriptions::billing_frequency.eq(s.offer.billing.as_str()),
            subscriptions::term_start.eq(DbTime(s.term_start)),
            subscriptions::period_index.eq(i64::from(s.period.index)),
            subscriptions::period_start.eq(DbTime(s.period.start)),
            subscriptions::period_end.eq(DbTime(s.period.end)),
            subscriptions::unit_price.eq(DbDecimal(s.period.unit_price)),
            subscriptions::seat_seconds.eq(s.period.seat_seconds),
            subscriptions::lots.eq(json(&s.lots)?),
            subscriptions::scheduled.eq(json(&s.scheduled)?),
            subscriptions::auto_renew.eq(s.auto_renew),
            subscriptions::ended_at.eq(s.ended_at.map(DbTime)),
            subscriptions::updated_at.eq(DbTime(r.updated_at)),
        )
    }};
}
pub(super) use state_columns;

for_each_backend! {
    use super::{SubscriptionRow, json};

    pub async fn insert(conn: &mut Conn, tenant_id: &str, r: &SubscriptionRecord) -> Result<()> {
        let s = &r.state;
        diesel::insert_into(subscriptions::table)
            .values((
                (
                    subscriptions::id.eq(&r.id),
                    subscriptions::tenant_id.eq(tenant_id),
                    subscriptions::customer_id.eq(&r.customer_id),
                    subscriptions::item_id.eq(&r.item_id),
                    subscriptions::time_zone.eq(s.time_zone.name()),
                    subscriptions::currency.eq(r.currency.code()),
                    subscriptions::created_at.eq(DbTime(r.created_at)),
                    subscriptions::vendor_subscription_id.eq(&r.vendor_subscription_id),
                ),
                state_columns!(r),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Writes the record's state (its identity never changes).
    pub async fn update(conn: &mut Conn, tenant_id: &str, r: &SubscriptionRecord) -> Result<()> {
        let updated = diesel::update(
            subscriptions::table
                .filter(subscriptions::tenant_id.eq(tenant_id))
                .filter(subscriptions::id.eq(&r.id)),
        )
        .set(state_columns!(r))
        .execute(conn)
        .await?;
        if updated != 1 {
            return Err(Error::not_found("subscription", &r.id));
        }
        Ok(())
    }

    pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<SubscriptionRecord> {
        subscriptions::table
            .filter(subscriptions::tenant_id.eq(tenant_id))
            .filter(subscriptions::id.eq(id))
            .select(SubscriptionRow::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("subscription", id))?
            .into_record()
    }

    /// Reads a subscription to change it, holding its row until the transaction ends (a no-op
    /// update takes PostgreSQL's row lock; SQLite has one writer).
    pub async fn get_for_update(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<SubscriptionRecord> {
        diesel::update(subscriptions::table.filter(subscriptions::tenant_id.eq(tenant_id)).filter(subscriptions::id.eq(id)))
            .set(subscriptions::updated_at.eq(subscriptions::updated_at))
            .execute(conn)
            .await?;
        get(conn, tenant_id, id).await
    }

    /// Holds the subscription's row until the transaction ends (as [`get_for_update`]) and
    /// names the request other than `request` whose change claims it at `now`, if any.
    pub async fn change_holder(conn: &mut Conn, tenant_id: &str, id: &str, request: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        let claim: Option<(Option<String>, Option<DbTime>)> = diesel::update(subscriptions::table.filter(subscriptions::tenant_id.eq(tenant_id)).filter(subscriptions::id.eq(id)))
            .set(subscriptions::updated_at.eq(subscriptions::updated_at))
            .returning((subscriptions::change_request, subscriptions::change_expires_at))
            .get_result(conn)
            .await
            .optional()?;
        Ok(match claim {
            Some((Some(holder), Some(expires_at))) if holder != request && expires_at.0 > now => Some(holder),
            _ => None,
        })
    }

    /// Claims the subscription for the change `request` until `expires_at` (the caller checked
    /// [`change_holder`] in the same transaction).
    pub async fn claim_change(conn: &mut Conn, tenant_id: &str, id: &str, request: &str, expires_at: DateTime<Utc>) -> Result<()> {
        diesel::update(subscriptions::table.filter(subscriptions::tenant_id.eq(tenant_id)).filter(subscriptions::id.eq(id)))
            .set((subscriptions::change_request.eq(request), subscriptions::change_expires_at.eq(DbTime(expires_at))))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Ends the change `request`'s claim (nothing when it holds none).
    pub async fn release_change(conn: &mut Conn, tenant_id: &str, id: &str, request: &str) -> Result<()> {
        diesel::update(
            subscriptions::table
                .filter(subscriptions::tenant_id.eq(tenant_id))
                .filter(subscriptions::id.eq(id))
                .filter(subscriptions::change_request.eq(request)),
        )
        .set((subscriptions::change_request.eq(None::<String>), subscriptions::change_expires_at.eq(None::<DbTime>)))
        .execute(conn)
        .await?;
        Ok(())
    }

    pub async fn list(conn: &mut Conn, tenant_id: &str, customer_id: Option<&str>, page: &PageRequest) -> Result<Page<SubscriptionRecord>> {
        let mut query = subscriptions::table
            .filter(subscriptions::tenant_id.eq(tenant_id))
            .select(SubscriptionRow::as_select())
            .order(subscriptions::id)
            .limit(page.fetch_limit())
            .into_boxed();
        if let Some(customer_id) = customer_id {
            query = query.filter(subscriptions::customer_id.eq(customer_id));
        }
        if let Some(after) = &page.after {
            query = query.filter(subscriptions::id.gt(after));
        }
        let records = query
            .load(conn)
            .await?
            .into_iter()
            .map(SubscriptionRow::into_record)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(records, |r| &r.id))
    }
}

impl Store {
    pub async fn subscription(&self, tenant_id: &str, id: &str) -> Result<SubscriptionRecord> {
        dispatch!(self, read, self::get(tenant_id, id))
    }

    pub async fn list_subscriptions(
        &self,
        tenant_id: &str,
        customer_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<SubscriptionRecord>> {
        dispatch!(self, read, self::list(tenant_id, customer_id, page))
    }
}
