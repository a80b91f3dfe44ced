//! A tenant's invoicing settings (number prefix, rounding rule, grace days).
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::idempotency::write_once;
use super::invoicing_schema::invoice_settings;
use super::schema::tenants;
use super::sql_types::DbTime;
use super::{Store, dispatch, for_each_backend};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::invoice_settings::InvoiceSettings;
use crate::domain::period_close::Grace;

/// Settings as stored (absent: the defaults).
fn settings_of(row: Option<(String, String, i32)>) -> Result<InvoiceSettings> {
    let Some((number_prefix, rounding, grace_days)) = row else {
        return Ok(InvoiceSettings::default());
    };
    let stored = |e: String| Error::Internal(format!("stored invoice settings: {e}"));
    Ok(InvoiceSettings {
        number_prefix,
        rounding: rounding.parse().map_err(stored)?,
        grace: Grace::days("grace_days", u32::try_from(grace_days).unwrap_or(u32::MAX))
            .map_err(|v| stored(v.to_string()))?,
    })
}

for_each_backend! {
    use super::settings_of;

    /// The tenant's settings, or the defaults when it has set none.
    pub async fn get(conn: &mut Conn, tenant_id: &str) -> Result<InvoiceSettings> {
        let row: Option<(String, String, i32)> = invoice_settings::table
            .find(tenant_id)
            .select((invoice_settings::number_prefix, invoice_settings::rounding, invoice_settings::grace_days))
            .first(conn)
            .await
            .optional()?;
        settings_of(row)
    }

    /// The tenant's settings with its time zone, in one read (a close needs both).
    pub async fn with_time_zone(conn: &mut impl Statements, tenant_id: &str) -> Result<(InvoiceSettings, String)> {
        let (time_zone, row): (String, Option<(String, String, i32)>) = tenants::table
            .left_join(invoice_settings::table.on(invoice_settings::tenant_id.eq(tenants::id)))
            .filter(tenants::id.eq(tenant_id))
            .select((
                tenants::time_zone,
                (invoice_settings::number_prefix, invoice_settings::rounding, invoice_settings::grace_days).nullable(),
            ))
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("tenant", tenant_id))?;
        Ok((settings_of(row)?, time_zone))
    }

    pub async fn put(conn: &mut Conn, tenant_id: &str, settings: &InvoiceSettings) -> Result<()> {
        let now = DbTime(Utc::now());
        let values = || (
            invoice_settings::number_prefix.eq(&settings.number_prefix),
            invoice_settings::rounding.eq(settings.rounding.as_str()),
            invoice_settings::grace_days.eq(settings.grace.in_days() as i32),
            invoice_settings::updated_at.eq(now),
        );
        diesel::insert_into(invoice_settings::table)
            .values((invoice_settings::tenant_id.eq(tenant_id), values()))
            .on_conflict(invoice_settings::tenant_id)
            .do_update()
            .set(values())
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Replaces the settings and answers them as stored.
    pub async fn replace(conn: &mut Conn, tenant_id: &str, settings: &InvoiceSettings) -> Result<InvoiceSettings> {
        put(conn, tenant_id, settings).await?;
        get(conn, tenant_id).await
    }
}

impl Store {
    pub async fn invoice_settings(&self, tenant_id: &str) -> Result<InvoiceSettings> {
        dispatch!(self, read, self::get(tenant_id))
    }

    /// Replaces the tenant's settings (they apply to closes from now on).
    pub async fn put_invoice_settings(
        &self,
        tenant_id: &str,
        settings: &InvoiceSettings,
    ) -> Result<()> {
        dispatch!(self, write, self::put(tenant_id, settings))
    }

    /// UpdateInvoiceSettings: replaces the settings once per request id.
    pub async fn update_invoice_settings(
        &self,
        tenant_id: &str,
        settings: &InvoiceSettings,
        request: &Idempotent<'_, InvoiceSettings>,
    ) -> Result<Answer<InvoiceSettings>> {
        write_once!(
            self,
            tenant_id,
            Some(request),
            self::replace(tenant_id, settings)
        )
    }
}
