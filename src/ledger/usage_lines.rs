//! Reads of usage lines as the ledger keeps them: the stored lines a write restates, and the
//! usage still waiting to be rated.
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::rows::UsageLineRow;
use super::rows::usage_lines;
use super::{Ledger, ledger_backends};
use crate::domain::error::{Error, Result};
use crate::domain::ledger::LedgerLine;
use crate::domain::line_key::{LineKey, LineKeyMap};
use crate::domain::paging::{Page, PageRequest};
use crate::domain::partner_account::PartnerAccount;
use crate::store::dispatch;
use crate::store::sql_types::DbTime;

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

ledger_backends! {
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

impl Ledger {
    /// Usage kept but not yet rated, in key order; `only` narrows it to one customer's (a
    /// portal key's).
    pub async fn unrated_usage(
        &self,
        tenant_id: &str,
        only: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<LedgerLine>> {
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
        let mut lines = dispatch!(self.store, read, self::unrated(tenant_id, after, limit))?;
        if let Some(own) = only {
            lines.retain(|l| l.customer_id.as_deref() == Some(own));
        }
        let keyed: Vec<(String, LedgerLine)> = lines
            .into_iter()
            .map(|l| (l.line_key.to_string(), l))
            .collect();
        let page = page.page(keyed, |(key, _)| key);
        Ok(Page {
            items: page.items.into_iter().map(|(_, line)| line).collect(),
            next_page_token: page.next_page_token,
        })
    }

    /// The partner account's lines with a window start in `[start, end)`.
    pub async fn usage_lines_in_window(
        &self,
        tenant_id: &str,
        account: &PartnerAccount,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<LineKeyMap<LedgerLine>> {
        dispatch!(
            self.store,
            read,
            self::in_window(tenant_id, account, start, end)
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
