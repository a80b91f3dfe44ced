//! Price rules and FX rates.
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{customers, fx_rates, price_rules, pricing_policies};
use super::sql_types::{DbDecimal, DbTime};
use super::{Store, dispatch, for_each_backend};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::Written;
use crate::domain::ids;
use crate::domain::money::Currency;
use crate::domain::paging::{Page, PageRequest};
use crate::domain::pricing::{
    FxRate, NewPriceRule, PriceRule, PricingPolicy, RuleScope, VersionedPricingPolicy,
};

#[derive(Queryable, Selectable)]
#[diesel(table_name = price_rules)]
struct PriceRuleRow {
    id: String,
    vendor: Option<String>,
    service: Option<String>,
    meter: Option<String>,
    customer_id: Option<String>,
    kind: String,
    value: DbDecimal,
    currency: Option<String>,
    effective_from: DbTime,
    effective_to: Option<DbTime>,
    created_at: DbTime,
}

impl PriceRuleRow {
    fn into_rule(self) -> Result<PriceRule> {
        let corrupt = |e: String| Error::Internal(format!("stored price rule {}: {e}", self.id));
        Ok(PriceRule {
            scope: RuleScope {
                vendor: self
                    .vendor
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(corrupt)?,
                service: self.service,
                meter: self.meter,
                customer_id: self.customer_id,
            },
            kind: self.kind.parse().map_err(corrupt)?,
            value: self.value.0,
            currency: self
                .currency
                .as_deref()
                .map(|c| Currency::parse("currency", c))
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            effective_from: self.effective_from.0,
            effective_to: self.effective_to.map(|t| t.0),
            created_at: self.created_at.0,
            id: self.id,
        })
    }
}

for_each_backend! {
    pub async fn rules(conn: &mut Conn, tenant_id: &str) -> Result<Vec<PriceRule>> {
        price_rules::table
            .filter(price_rules::tenant_id.eq(tenant_id))
            .select(PriceRuleRow::as_select())
            .order(price_rules::id)
            .load(conn)
            .await?
            .into_iter()
            .map(PriceRuleRow::into_rule)
            .collect()
    }

    pub async fn fx(conn: &mut Conn, tenant_id: &str) -> Result<Vec<FxRate>> {
        let rows: Vec<(String, String, DbTime, DbDecimal)> = fx_rates::table
            .filter(fx_rates::tenant_id.eq(tenant_id))
            .select((fx_rates::from_currency, fx_rates::to_currency, fx_rates::effective_from, fx_rates::rate))
            .order((fx_rates::from_currency, fx_rates::to_currency, fx_rates::effective_from))
            .load(conn)
            .await?;
        rows.into_iter()
            .map(|(from, to, at, rate)| {
                let parse = |c: &str| Currency::parse("currency", c)
                    .map_err(|e| Error::Internal(format!("stored FX rate: {e}")));
                Ok(FxRate { from: parse(&from)?, to: parse(&to)?, rate: rate.0, effective_from: at.0 })
            })
            .collect()
    }

    /// Adds a rule (re-rating after it is the ledger's: `ledger::changes`).
    pub async fn create_rule(conn: &mut Conn, tenant_id: &str, new: &NewPriceRule) -> Result<PriceRule> {
        conn.transaction(async |conn| {
            let id = ids::new_id(ids::PRICE_RULE);
            if let Some(customer_id) = &new.scope.customer_id {
                let found: i64 = customers::table
                    .filter(customers::tenant_id.eq(tenant_id))
                    .filter(customers::id.eq(customer_id))
                    .count()
                    .get_result(conn)
                    .await?;
                if found == 0 {
                    return Err(Error::invalid("price_rule.customer_id", format!("customer {customer_id:?} not found")));
                }
            }
            diesel::insert_into(price_rules::table)
                .values((
                    price_rules::id.eq(&id),
                    price_rules::tenant_id.eq(tenant_id),
                    price_rules::vendor.eq(new.scope.vendor.map(|v| v.as_str())),
                    price_rules::service.eq(&new.scope.service),
                    price_rules::meter.eq(&new.scope.meter),
                    price_rules::customer_id.eq(&new.scope.customer_id),
                    price_rules::kind.eq(new.kind.as_str()),
                    price_rules::value.eq(DbDecimal(new.value)),
                    price_rules::currency.eq(new.currency.map(|c| c.code())),
                    price_rules::effective_from.eq(DbTime(new.effective_from)),
                    price_rules::effective_to.eq(new.effective_to.map(DbTime)),
                    price_rules::created_at.eq(DbTime(Utc::now())),
                ))
                .execute(conn)
                .await?;
            get_rule(conn, tenant_id, &id).await
        })
        .await
    }

    pub async fn get_rule(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<PriceRule> {
        price_rules::table
            .filter(price_rules::tenant_id.eq(tenant_id))
            .filter(price_rules::id.eq(id))
            .select(PriceRuleRow::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("price rule", id))?
            .into_rule()
    }

    pub async fn list_rules(conn: &mut Conn, tenant_id: &str, page: &PageRequest) -> Result<Page<PriceRule>> {
        let mut query = price_rules::table
            .filter(price_rules::tenant_id.eq(tenant_id))
            .select(PriceRuleRow::as_select())
            .order(price_rules::id)
            .limit(page.fetch_limit())
            .into_boxed();
        if let Some(after) = &page.after {
            query = query.filter(price_rules::id.gt(after));
        }
        let rules = query.load(conn).await?.into_iter().map(PriceRuleRow::into_rule).collect::<Result<Vec<_>>>()?;
        Ok(page.page(rules, |r| &r.id))
    }

    /// The tenant's pricing policy; the defaults (version 0) until one is set.
    pub async fn policy(conn: &mut Conn, tenant_id: &str) -> Result<VersionedPricingPolicy> {
        let row: Option<(bool, i64, DbTime)> = pricing_policies::table
            .find(tenant_id)
            .select((pricing_policies::hold_below_cost, pricing_policies::version, pricing_policies::updated_at))
            .first(conn)
            .await
            .optional()?;
        Ok(match row {
            Some((hold_below_cost, version, at)) => VersionedPricingPolicy {
                policy: PricingPolicy { hold_below_cost },
                version,
                updated_at: Some(at.0),
            },
            None => VersionedPricingPolicy { policy: PricingPolicy::default(), version: 0, updated_at: None },
        })
    }

    /// Replaces the tenant's pricing policy (refused when `etag` is set and stale); fresh when
    /// the policy changed (re-rating after it is the ledger's: `ledger::changes`).
    pub async fn update_policy(conn: &mut Conn, tenant_id: &str, etag: &str, next: PricingPolicy) -> Result<Written<VersionedPricingPolicy>> {
        conn.transaction(async |conn| {
            let current = policy(conn, tenant_id).await?;
            let stale = || Error::EtagMismatch {
                kind: "pricing policy",
                id: tenant_id.to_string(),
                sent: etag.to_string(),
                current: current.etag(),
            };
            if !etag.is_empty() && etag != current.etag() {
                return Err(stale());
            }
            if current.policy == next && current.version > 0 {
                return Ok(Written { value: current, fresh: false });
            }
            let now = DbTime(Utc::now());
            // Not an upsert: on SQLite the outer ON CONFLICT would override the pricing-version
            // trigger's INSERT OR IGNORE (and fail it).
            if current.version == 0 {
                let inserted = diesel::insert_into(pricing_policies::table)
                    .values((
                        pricing_policies::tenant_id.eq(tenant_id),
                        pricing_policies::hold_below_cost.eq(next.hold_below_cost),
                        pricing_policies::version.eq(1i64),
                        pricing_policies::updated_at.eq(now),
                    ))
                    .execute(conn)
                    .await;
                match inserted {
                    // A concurrent first update won.
                    Err(e) if crate::store::errors::is_unique_violation(&e) => return Err(stale()),
                    other => other?,
                };
            } else {
                diesel::update(pricing_policies::table.find(tenant_id))
                    .set((
                        pricing_policies::hold_below_cost.eq(next.hold_below_cost),
                        pricing_policies::version.eq(current.version + 1),
                        pricing_policies::updated_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
            }
            let changed = current.policy != next;
            Ok(Written { value: policy(conn, tenant_id).await?, fresh: changed })
        })
        .await
    }

    /// Sets (or replaces) the rate from `effective_from` on (re-rating after it is the
    /// ledger's: `ledger::changes`).
    pub async fn set_fx(conn: &mut Conn, tenant_id: &str, rate: &FxRate) -> Result<()> {
        use diesel::upsert::excluded;
        let row = (
            fx_rates::tenant_id.eq(tenant_id),
            fx_rates::from_currency.eq(rate.from.code()),
            fx_rates::to_currency.eq(rate.to.code()),
            fx_rates::effective_from.eq(DbTime(rate.effective_from)),
            fx_rates::rate.eq(DbDecimal(rate.rate)),
            fx_rates::created_at.eq(DbTime(Utc::now())),
        );
        if IS_POSTGRES {
            diesel::insert_into(fx_rates::table)
                .values(row)
                .on_conflict((fx_rates::tenant_id, fx_rates::from_currency, fx_rates::to_currency, fx_rates::effective_from))
                .do_update()
                .set(fx_rates::rate.eq(excluded(fx_rates::rate)))
                .execute(conn)
                .await?;
            return Ok(());
        }
        // Not an upsert on SQLite: the outer ON CONFLICT would override the pricing-version
        // trigger's INSERT OR IGNORE (and fail it). SQLite has one writer, so nothing comes
        // between the update and the insert.
        let replaced = diesel::update(fx_rates::table.find((tenant_id, rate.from.code(), rate.to.code(), DbTime(rate.effective_from))))
            .set(fx_rates::rate.eq(DbDecimal(rate.rate)))
            .execute(conn)
            .await?;
        if replaced == 0 {
            diesel::insert_into(fx_rates::table).values(row).execute(conn).await?;
        }
        Ok(())
    }
}

impl Store {
    pub async fn list_price_rules(
        &self,
        tenant_id: &str,
        page: &PageRequest,
    ) -> Result<Page<PriceRule>> {
        dispatch!(self, read, self::list_rules(tenant_id, page))
    }

    pub async fn pricing_policy(&self, tenant_id: &str) -> Result<VersionedPricingPolicy> {
        dispatch!(self, read, self::policy(tenant_id))
    }

    pub async fn fx_rates(&self, tenant_id: &str) -> Result<Vec<FxRate>> {
        dispatch!(self, read, self::fx(tenant_id))
    }
}
