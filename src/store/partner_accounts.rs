//! Partner accounts.
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::errors::is_unique_violation;
use super::idempotency::write_once;
use super::schema::partner_accounts;
use super::sql_types::{DbDecimal, DbTime};
use super::{Store, dispatch, for_each_backend};
use crate::domain::aws_settings::AwsSettings;
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::ids;
use crate::domain::microsoft_settings::MicrosoftSettings;
use crate::domain::money::Currency;
use crate::domain::paging::{Page, PageRequest};
use crate::domain::partner_account::{
    PartnerAccount, PartnerAccountPatch, PartnerAccountSpec, PollStatus,
};
use crate::domain::vendor::Vendor;

#[derive(Queryable, Selectable)]
#[diesel(table_name = partner_accounts)]
struct PartnerAccountRow {
    id: String,
    tenant_id: String,
    vendor: String,
    display_name: String,
    vendor_account_id: String,
    partner_discount_rate: DbDecimal,
    credentials_ref: String,
    poll_interval_secs: i64,
    enabled: bool,
    endpoint_url: String,
    version: i64,
    created_at: DbTime,
    updated_at: DbTime,
    aws_granularity: Option<String>,
    aws_cost_metric: Option<String>,
    aws_meter_mode: Option<String>,
    aws_request_budget: Option<i32>,
    line_key_prefix: i32,
    ms_billing_currency: Option<String>,
    ms_authority_host: Option<String>,
    ms_token_scope: Option<String>,
}

/// The next partner account's line key prefix.
#[derive(QueryableByName)]
struct NextPrefix {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    prefix: i32,
}

/// The AWS settings columns of a row: all set, or all NULL (not an AWS account).
type AwsColumns<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<i32>,
);

fn aws_columns(aws: Option<&AwsSettings>) -> AwsColumns<'static> {
    match aws {
        Some(a) => (
            Some(a.granularity.as_str()),
            Some(a.cost_metric.as_str()),
            Some(a.meter_mode.as_str()),
            // At most MAX_REQUEST_BUDGET: fits.
            Some(a.request_budget as i32),
        ),
        None => (None, None, None, None),
    }
}

/// The Microsoft settings columns of a row: all set, or all NULL (not a Microsoft account).
type MicrosoftColumns<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

fn microsoft_columns(settings: Option<&MicrosoftSettings>) -> MicrosoftColumns<'_> {
    match settings {
        Some(m) => (
            Some(m.billing_currency.code()),
            Some(m.authority_host.as_str()),
            Some(m.token_scope.as_str()),
        ),
        None => (None, None, None),
    }
}

impl PartnerAccountRow {
    fn microsoft(&self) -> std::result::Result<Option<MicrosoftSettings>, String> {
        let columns = (
            self.ms_billing_currency.as_deref(),
            self.ms_authority_host.as_deref(),
            self.ms_token_scope.as_deref(),
        );
        match columns {
            (None, None, None) => Ok(None),
            (Some(currency), Some(authority_host), Some(token_scope)) => {
                Ok(Some(MicrosoftSettings {
                    billing_currency: Currency::parse("ms_billing_currency", currency)
                        .map_err(|e| e.to_string())?,
                    authority_host: authority_host.to_string(),
                    token_scope: token_scope.to_string(),
                }))
            }
            _ => Err("partly set Microsoft settings".into()),
        }
    }

    fn aws(&self) -> std::result::Result<Option<AwsSettings>, String> {
        let columns = (
            self.aws_granularity.as_deref(),
            self.aws_cost_metric.as_deref(),
            self.aws_meter_mode.as_deref(),
            self.aws_request_budget,
        );
        match columns {
            (None, None, None, None) => Ok(None),
            (Some(granularity), Some(cost_metric), Some(meter_mode), Some(budget)) => {
                Ok(Some(AwsSettings {
                    granularity: granularity.parse()?,
                    cost_metric: cost_metric.parse()?,
                    meter_mode: meter_mode.parse()?,
                    request_budget: u32::try_from(budget).map_err(|e| e.to_string())?,
                }))
            }
            _ => Err("partly set AWS settings".into()),
        }
    }
}

impl TryFrom<PartnerAccountRow> for PartnerAccount {
    type Error = Error;
    fn try_from(row: PartnerAccountRow) -> Result<Self> {
        let corrupt =
            |e: String| Error::Internal(format!("stored partner account {}: {e}", row.id));
        let aws = row.aws().map_err(corrupt)?;
        let microsoft = row.microsoft().map_err(corrupt)?;
        Ok(PartnerAccount {
            spec: PartnerAccountSpec {
                vendor: row.vendor.parse().map_err(corrupt)?,
                display_name: row.display_name,
                vendor_account_id: row.vendor_account_id,
                partner_discount_rate: row.partner_discount_rate.0,
                credentials_ref: row.credentials_ref,
                poll_interval_secs: row.poll_interval_secs,
                enabled: row.enabled,
                endpoint_url: row.endpoint_url,
                aws,
                microsoft,
            },
            line_key_prefix: u32::try_from(row.line_key_prefix)
                .map_err(|e| corrupt(format!("line key prefix: {e}")))?,
            id: row.id,
            tenant_id: row.tenant_id,
            version: row.version,
            created_at: row.created_at.0,
            updated_at: row.updated_at.0,
        })
    }
}

fn taken(spec: &PartnerAccountSpec) -> Error {
    Error::AlreadyExists {
        kind: "partner account",
        field: "partner_account.vendor_account_id".into(),
        value: format!("{} {}", spec.vendor, spec.vendor_account_id),
    }
}

for_each_backend! {
    pub async fn create(
        conn: &mut Conn,
        tenant_id: &str,
        spec: &PartnerAccountSpec,
    ) -> Result<PartnerAccount> {
        conn.transaction(async |conn| {
            let id = ids::new_id(ids::PARTNER_ACCOUNT);
            let now = DbTime(Utc::now());
            let (granularity, cost_metric, meter_mode, budget) = aws_columns(spec.aws_settings().as_ref());
            let (ms_currency, ms_authority, ms_scope) = microsoft_columns(spec.microsoft.as_ref());
            // PostgreSQL numbers accounts from a sequence (concurrent creates never collide);
            // SQLite has one writer at a time.
            let next_prefix = if IS_POSTGRES {
                "SELECT nextval('partner_account_line_key_prefixes')::integer AS prefix"
            } else {
                "SELECT COALESCE(MAX(line_key_prefix), 0) + 1 AS prefix FROM partner_accounts"
            };
            let prefix = diesel::sql_query(next_prefix).get_result::<NextPrefix>(conn).await?.prefix;
            let inserted = diesel::insert_into(partner_accounts::table)
                .values((
                    partner_accounts::id.eq(&id),
                    partner_accounts::line_key_prefix.eq(prefix),
                    partner_accounts::tenant_id.eq(tenant_id),
                    partner_accounts::vendor.eq(spec.vendor.as_str()),
                    partner_accounts::display_name.eq(&spec.display_name),
                    partner_accounts::vendor_account_id.eq(&spec.vendor_account_id),
                    partner_accounts::partner_discount_rate.eq(DbDecimal(spec.partner_discount_rate)),
                    partner_accounts::credentials_ref.eq(&spec.credentials_ref),
                    partner_accounts::poll_interval_secs.eq(spec.poll_interval_secs),
                    partner_accounts::enabled.eq(spec.enabled),
                    partner_accounts::endpoint_url.eq(&spec.endpoint_url),
                    partner_accounts::aws_granularity.eq(granularity),
                    partner_accounts::aws_cost_metric.eq(cost_metric),
                    partner_accounts::aws_meter_mode.eq(meter_mode),
                    partner_accounts::aws_request_budget.eq(budget),
                    partner_accounts::ms_billing_currency.eq(ms_currency),
                    partner_accounts::ms_authority_host.eq(ms_authority),
                    partner_accounts::ms_token_scope.eq(ms_scope),
                    partner_accounts::version.eq(1i64),
                    partner_accounts::created_at.eq(now),
                    partner_accounts::updated_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if inserted == 0 {
                return Err(taken(spec));
            }
            get(conn, tenant_id, &id).await
        })
        .await
    }

    pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<PartnerAccount> {
        partner_accounts::table
            .filter(partner_accounts::tenant_id.eq(tenant_id))
            .filter(partner_accounts::id.eq(id))
            .select(PartnerAccountRow::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("partner account", id))?
            .try_into()
    }

    pub async fn list(conn: &mut Conn, tenant_id: &str, vendor: Option<Vendor>, page: &PageRequest) -> Result<Page<PartnerAccount>> {
        let mut query = partner_accounts::table
            .filter(partner_accounts::tenant_id.eq(tenant_id))
            .select(PartnerAccountRow::as_select())
            .order(partner_accounts::id)
            .limit(page.fetch_limit())
            .into_boxed();
        if let Some(vendor) = vendor {
            query = query.filter(partner_accounts::vendor.eq(vendor.as_str()));
        }
        if let Some(after) = &page.after {
            query = query.filter(partner_accounts::id.gt(after));
        }
        let rows = query
            .load(conn)
            .await?
            .into_iter()
            .map(PartnerAccount::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |a| &a.id))
    }

    /// Every partner account of the tenant (a handful), for choosing one to enroll through.
    pub async fn all(conn: &mut Conn, tenant_id: &str) -> Result<Vec<PartnerAccount>> {
        partner_accounts::table
            .filter(partner_accounts::tenant_id.eq(tenant_id))
            .select(PartnerAccountRow::as_select())
            .order(partner_accounts::id)
            .load(conn)
            .await?
            .into_iter()
            .map(PartnerAccount::try_from)
            .collect()
    }

    /// Enabled partner accounts of every tenant, for the pollers.
    pub async fn all_enabled(conn: &mut Conn) -> Result<Vec<PartnerAccount>> {
        partner_accounts::table
            .filter(partner_accounts::enabled.eq(true))
            .select(PartnerAccountRow::as_select())
            .order(partner_accounts::id)
            .load(conn)
            .await?
            .into_iter()
            .map(PartnerAccount::try_from)
            .collect()
    }

    /// The vendor account ids linked through the partner account (the simulator's accounts).
    pub async fn linked_accounts(conn: &mut Conn, partner_account_id: &str) -> Result<Vec<String>> {
        use crate::store::schema::vendor_accounts;
        Ok(vendor_accounts::table
            .filter(vendor_accounts::partner_account_id.eq(partner_account_id))
            .select(vendor_accounts::account_id)
            .order(vendor_accounts::account_id)
            .load(conn)
            .await?)
    }

    pub async fn update(
        conn: &mut Conn,
        tenant_id: &str,
        id: &str,
        etag: &str,
        patch: &PartnerAccountPatch,
    ) -> Result<PartnerAccount> {
        conn.transaction(async |conn| {
            let current = get(conn, tenant_id, id).await?;
            let stale = || Error::EtagMismatch {
                kind: "partner account",
                id: id.to_string(),
                sent: etag.to_string(),
                current: PartnerAccountSpec::etag(current.version),
            };
            if !etag.is_empty() && etag != PartnerAccountSpec::etag(current.version) {
                return Err(stale());
            }
            let next = patch.apply(&current.spec)?;
            let (granularity, cost_metric, meter_mode, budget) = aws_columns(next.aws_settings().as_ref());
            let (ms_currency, ms_authority, ms_scope) = microsoft_columns(next.microsoft.as_ref());
            let result = diesel::update(partner_accounts::table)
                .filter(partner_accounts::id.eq(id))
                .filter(partner_accounts::version.eq(current.version))
                .set((
                    partner_accounts::display_name.eq(&next.display_name),
                    partner_accounts::vendor_account_id.eq(&next.vendor_account_id),
                    partner_accounts::partner_discount_rate.eq(DbDecimal(next.partner_discount_rate)),
                    partner_accounts::credentials_ref.eq(&next.credentials_ref),
                    partner_accounts::poll_interval_secs.eq(next.poll_interval_secs),
                    partner_accounts::enabled.eq(next.enabled),
                    partner_accounts::endpoint_url.eq(&next.endpoint_url),
                    partner_accounts::aws_granularity.eq(granularity),
                    partner_accounts::aws_cost_metric.eq(cost_metric),
                    partner_accounts::aws_meter_mode.eq(meter_mode),
                    partner_accounts::aws_request_budget.eq(budget),
                    partner_accounts::ms_billing_currency.eq(ms_currency),
                    partner_accounts::ms_authority_host.eq(ms_authority),
                    partner_accounts::ms_token_scope.eq(ms_scope),
                    partner_accounts::version.eq(current.version + 1),
                    partner_accounts::updated_at.eq(DbTime(Utc::now())),
                ))
                .execute(conn)
                .await;
            match result {
                Ok(0) => Err(stale()),
                Ok(_) => {
                    // New settings (credentials, budget, currency…) deserve a poll now, not
                    // after the back-off the old ones earned.
                    q::poll_states::reschedule_now(conn, id).await?;
                    get(conn, tenant_id, id).await
                }
                Err(e) if is_unique_violation(&e) => Err(taken(&next)),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// `create`, with the account's poll status read in the same transaction (what the API
    /// answers, and so what a retry gets).
    pub async fn create_with_status(conn: &mut Conn, tenant_id: &str, spec: &PartnerAccountSpec) -> Result<(PartnerAccount, PollStatus)> {
        let account = create(conn, tenant_id, spec).await?;
        let status = q::poll_states::get(conn, &account.id).await?;
        Ok((account, status))
    }

    /// `update`, with the poll status likewise.
    pub async fn update_with_status(conn: &mut Conn, tenant_id: &str, id: &str, etag: &str, patch: &PartnerAccountPatch) -> Result<(PartnerAccount, PollStatus)> {
        let account = update(conn, tenant_id, id, etag, patch).await?;
        let status = q::poll_states::get(conn, &account.id).await?;
        Ok((account, status))
    }
}

impl Store {
    /// A partner account as it is now, for its poller (which has no principal).
    pub async fn partner_account_in(&self, tenant_id: &str, id: &str) -> Result<PartnerAccount> {
        dispatch!(self, read, self::get(tenant_id, id))
    }

    pub async fn enabled_partner_accounts(&self) -> Result<Vec<PartnerAccount>> {
        dispatch!(self, read, self::all_enabled())
    }

    pub async fn linked_vendor_accounts(&self, partner_account_id: &str) -> Result<Vec<String>> {
        dispatch!(self, read, self::linked_accounts(partner_account_id))
    }

    pub async fn create_partner_account(
        &self,
        tenant_id: &str,
        spec: &PartnerAccountSpec,
        request: &Idempotent<'_, (PartnerAccount, PollStatus)>,
    ) -> Result<Answer<(PartnerAccount, PollStatus)>> {
        write_once!(
            self,
            tenant_id,
            Some(request),
            self::create_with_status(tenant_id, spec)
        )
    }

    pub async fn partner_account(&self, tenant_id: &str, id: &str) -> Result<PartnerAccount> {
        dispatch!(self, read, self::get(tenant_id, id))
    }

    pub async fn list_partner_accounts(
        &self,
        tenant_id: &str,
        vendor: Option<Vendor>,
        page: &PageRequest,
    ) -> Result<Page<PartnerAccount>> {
        dispatch!(self, read, self::list(tenant_id, vendor, page))
    }

    pub async fn update_partner_account(
        &self,
        tenant_id: &str,
        id: &str,
        etag: &str,
        patch: &PartnerAccountPatch,
        request: Option<&Idempotent<'_, (PartnerAccount, PollStatus)>>,
    ) -> Result<Answer<(PartnerAccount, PollStatus)>> {
        let updated = write_once!(
            self,
            tenant_id,
            request,
            self::update_with_status(tenant_id, id, etag, patch)
        )?;
        // This replica's pollers look at once (disabling stops a poller now, not at the next
        // refresh); other replicas' see the change before their next poll.
        self.partner_accounts_changed.notify_one();
        Ok(updated)
    }
}
