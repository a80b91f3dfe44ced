//! Usage lines as the ledger keeps them: row mapping and loading.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::for_each_backend;
use super::schema::usage_lines;
use super::sql_types::{DbDecimal, DbTime};
use crate::domain::error::{Error, Result};
use crate::domain::ledger::LedgerLine;
use crate::domain::line_key::{LineKey, LineKeyMap};
use crate::domain::money::Currency;
use crate::domain::partner_account::PartnerAccount;
use crate::domain::rating::{RatedAmount, UnratedReason};
use crate::domain::usage::{UsageKey, UsageLine};

/// Rows per multi-row INSERT with a bind parameter per cell: 24 columns stays under SQLite's
/// limit of 32766 parameters.
pub const BATCH_ROWS: usize = 1000;

#[derive(Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = usage_lines, treat_none_as_default_value = false)]
pub struct UsageLineRow {
    pub tenant_id: String,
    pub line_key: Vec<u8>,
    pub partner_account_id: String,
    pub vendor: String,
    pub vendor_account_id: String,
    pub service: String,
    pub meter: String,
    pub region: String,
    pub window_start: DbTime,
    pub window_end: DbTime,
    pub meter_name: String,
    pub quantity: DbDecimal,
    pub unit: String,
    pub cost: DbDecimal,
    pub list_cost: Option<DbDecimal>,
    pub currency: String,
    pub estimated: bool,
    pub removed: bool,
    pub customer_id: Option<String>,
    pub rated_amount: Option<DbDecimal>,
    pub rated_currency: Option<String>,
    pub rule_id: Option<String>,
    pub unrated_reason: Option<String>,
    pub updated_at: DbTime,
}

/// Stored form of an unrated reason: its code, with the currency pair for FX.
pub fn encode_reason(reason: &UnratedReason) -> String {
    match reason {
        UnratedReason::NoFxRate { from, to } => format!("NO_FX_RATE:{from}:{to}"),
        UnratedReason::UnknownCurrency(code) => format!("UNKNOWN_CURRENCY:{code}"),
        UnratedReason::BelowCost { rule_id } => format!("BELOW_COST:{rule_id}"),
        other => other.code().to_string(),
    }
}

fn decode_reason(stored: &str) -> Result<UnratedReason> {
    let mut parts = stored.split(':');
    Ok(match (parts.next(), parts.next(), parts.next()) {
        (Some("UNKNOWN_VENDOR_ACCOUNT"), None, None) => UnratedReason::UnknownVendorAccount,
        (Some("NO_PRICE_RULE"), None, None) => UnratedReason::NoPriceRule,
        (Some("OVERFLOW"), None, None) => UnratedReason::Overflow,
        (Some("NO_FX_RATE"), Some(from), Some(to)) => UnratedReason::NoFxRate {
            from: from.into(),
            to: to.into(),
        },
        (Some("UNKNOWN_CURRENCY"), Some(code), None) => UnratedReason::UnknownCurrency(code.into()),
        (Some("BELOW_COST"), Some(rule_id), None) => UnratedReason::BelowCost {
            rule_id: rule_id.into(),
        },
        _ => return Err(Error::Internal(format!("stored unrated reason {stored:?}"))),
    })
}

impl UsageLineRow {
    pub fn from_line(tenant_id: &str, line: &LedgerLine, now: DateTime<Utc>) -> Self {
        let u = &line.usage;
        UsageLineRow {
            tenant_id: tenant_id.to_string(),
            line_key: line.line_key.as_bytes().to_vec(),
            partner_account_id: line.partner_account_id.clone(),
            vendor: line.vendor.as_str().to_string(),
            vendor_account_id: u.key.vendor_account_id.clone(),
            service: u.key.service.clone(),
            meter: u.key.meter.clone(),
            region: u.key.region.clone(),
            window_start: DbTime(u.key.window_start),
            window_end: DbTime(u.window_end),
            meter_name: u.meter_name.clone(),
            quantity: DbDecimal(u.quantity),
            unit: u.unit.clone(),
            cost: DbDecimal(u.cost),
            list_cost: u.list_cost.map(DbDecimal),
            currency: u.currency.clone(),
            estimated: u.estimated,
            removed: line.removed,
            customer_id: line.customer_id.clone(),
            rated_amount: line.rating.as_ref().map(|r| DbDecimal(r.amount)),
            rated_currency: line.rating.as_ref().map(|r| r.currency.code().to_string()),
            rule_id: line.rating.as_ref().map(|r| r.rule_id.clone()),
            unrated_reason: line.unrated_reason.as_ref().map(encode_reason),
            updated_at: DbTime(now),
        }
    }

    pub fn into_line(self) -> Result<LedgerLine> {
        let key = hex::encode(&self.line_key);
        let corrupt = |e: String| Error::Internal(format!("stored usage line {key}: {e}"));
        let line_key = LineKey::from_bytes(&self.line_key)
            .ok_or_else(|| corrupt("the key is not 24 bytes".into()))?;
        let vendor = self.vendor.parse().map_err(corrupt)?;
        let rating = match (self.rated_amount, &self.rated_currency, &self.rule_id) {
            (Some(amount), Some(currency), Some(rule_id)) => Some(RatedAmount {
                amount: amount.0,
                currency: Currency::parse("rated_currency", currency)
                    .map_err(|e| corrupt(e.to_string()))?,
                rule_id: rule_id.clone(),
            }),
            _ => None,
        };
        let unrated_reason = self
            .unrated_reason
            .as_deref()
            .map(decode_reason)
            .transpose()?;
        Ok(LedgerLine {
            line_key,
            partner_account_id: self.partner_account_id,
            vendor,
            usage: UsageLine {
                key: UsageKey {
                    vendor_account_id: self.vendor_account_id,
                    service: self.service,
                    meter: self.meter,
                    region: self.region,
                    window_start: self.window_start.0,
                },
                window_end: self.window_end.0,
                meter_name: self.meter_name,
                quantity: self.quantity.0,
                unit: self.unit,
                cost: self.cost.0,
                list_cost: self.list_cost.map(|d| d.0),
                currency: self.currency,
                estimated: self.estimated,
            },
            removed: self.removed,
            customer_id: self.customer_id,
            rating,
            unrated_reason,
        })
    }
}

/// The tenant's lines among rows read by line key, by key. Keys hash the partner account, so
/// another tenant's row cannot match; the filter is a guard.
pub(crate) fn stored_lines(
    tenant_id: &str,
    rows: Vec<UsageLineRow>,
) -> Result<LineKeyMap<LedgerLine>> {
    index(
        rows.into_iter()
            .filter(|row| row.tenant_id == tenant_id)
            .collect(),
    )
}

fn index(rows: Vec<UsageLineRow>) -> Result<LineKeyMap<LedgerLine>> {
    rows.into_iter()
        .map(|row| row.into_line().map(|line| (line.line_key, line)))
        .collect()
}

for_each_backend! {
    /// The partner account's lines with a window start in `[start, end)`: one primary-key range
    /// (keys lead with the account's prefix and the window hour).
    pub async fn in_window(
        conn: &mut Conn,
        tenant_id: &str,
        account: &PartnerAccount,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<LineKeyMap<LedgerLine>> {
        let (low, high) = LineKey::range(account.line_key_prefix, start, end);
        let rows = usage_lines::table
            .filter(usage_lines::line_key.ge(low.as_bytes()))
            .filter(usage_lines::line_key.lt(high.as_bytes()))
            .filter(usage_lines::tenant_id.eq(tenant_id))
            .filter(usage_lines::partner_account_id.eq(&account.id))
            .filter(usage_lines::window_start.ge(DbTime(start)))
            .filter(usage_lines::window_start.lt(DbTime(end)))
            .select(UsageLineRow::as_select())
            .load(conn)
            .await?;
        index(rows)
    }

    /// Every live line of the tenant that a price or link change may affect: the unrated ones,
    /// or all of them.
    pub async fn for_rerate(conn: &mut Conn, tenant_id: &str, only_unrated: bool) -> Result<Vec<LedgerLine>> {
        let mut query = usage_lines::table
            .filter(usage_lines::tenant_id.eq(tenant_id))
            .filter(usage_lines::removed.eq(false))
            .select(UsageLineRow::as_select())
            .order(usage_lines::line_key)
            .into_boxed();
        if only_unrated {
            query = query.filter(usage_lines::unrated_reason.is_not_null());
        }
        query.load(conn).await?.into_iter().map(UsageLineRow::into_line).collect()
    }

    /// Unrated live lines, in key order.
    pub async fn unrated(conn: &mut Conn, tenant_id: &str, after: Option<LineKey>, limit: i64) -> Result<Vec<LedgerLine>> {
        let mut query = usage_lines::table
            .filter(usage_lines::tenant_id.eq(tenant_id))
            .filter(usage_lines::removed.eq(false))
            .filter(usage_lines::unrated_reason.is_not_null())
            .select(UsageLineRow::as_select())
            .order(usage_lines::line_key)
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(usage_lines::line_key.gt(after.as_bytes().to_vec()));
        }
        query.load(conn).await?.into_iter().map(UsageLineRow::into_line).collect()
    }
}

impl super::Store {
    /// Usage kept but not yet rated, in key order (portal keys see only their customer's).
    pub async fn unrated_usage(
        &self,
        principal: &crate::domain::access::Principal,
        page: &crate::domain::paging::PageRequest,
    ) -> Result<crate::domain::paging::Page<LedgerLine>> {
        let tenant = principal.tenant_id.as_str();
        // Tokens carry the last key in hex; one that is not a key was not issued here.
        let after = match page.after.as_deref() {
            Some(text) => Some(LineKey::parse_hex(text).ok_or_else(|| {
                Error::invalid(
                    "page_token",
                    "is malformed; pass next_page_token from a previous response unchanged",
                )
            })?),
            None => None,
        };
        let limit = page.fetch_limit();
        let mut lines = super::dispatch!(self, read, usage_lines::unrated(tenant, after, limit))?;
        if let Some(own) = principal.customer_scope() {
            lines.retain(|l| l.customer_id.as_deref() == Some(own));
        }
        let keyed: Vec<(String, LedgerLine)> = lines
            .into_iter()
            .map(|l| (l.line_key.to_string(), l))
            .collect();
        let page = page.page(keyed, |(key, _)| key);
        Ok(crate::domain::paging::Page {
            items: page.items.into_iter().map(|(_, line)| line).collect(),
            next_page_token: page.next_page_token,
        })
    }
}

impl super::Store {
    /// The partner account's lines with a window start in `[start, end)`.
    pub async fn usage_lines_in_window(
        &self,
        tenant_id: &str,
        account: &PartnerAccount,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<LineKeyMap<LedgerLine>> {
        super::dispatch!(
            self,
            read,
            usage_lines::in_window(tenant_id, account, start, end)
        )
    }

    /// How many live lines an empty pull of `[start, end)` for the account would reverse. (Only
    /// asked when a pull comes back empty, so it reads the lines rather than keep a query of
    /// its own.)
    pub async fn live_usage_lines(
        &self,
        account: &PartnerAccount,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<usize> {
        let lines = self
            .usage_lines_in_window(&account.tenant_id, account, start, end)
            .await?;
        Ok(lines.values().filter(|line| !line.removed).count())
    }
}
