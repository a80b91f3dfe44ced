//! Tenants and their first admin key.
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::idempotency::write_once;
use super::schema::{api_keys, tenants};
use super::sql_types::DbTime;
use super::{Store, dispatch, for_each_backend};
use crate::domain::access::{MintedKey, Scope};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::ids;
use crate::domain::money::Currency;
use crate::domain::tenant::{Branding, Color, NewTenant, Tenant};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
struct TenantRow {
    id: String,
    name: String,
    currency: String,
    time_zone: String,
    created_at: DbTime,
    brand_primary_color: Option<String>,
    brand_accent_color: Option<String>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = Error;
    fn try_from(row: TenantRow) -> Result<Self> {
        let colour = |c: &Option<String>| c.as_deref().map(Color::from_stored).transpose();
        Ok(Tenant {
            branding: Branding {
                primary: colour(&row.brand_primary_color)?,
                accent: colour(&row.brand_accent_color)?,
            },
            currency: Currency::parse("currency", &row.currency)
                .map_err(|e| Error::Internal(format!("stored tenant {}: {e}", row.id)))?,
            id: row.id,
            name: row.name,
            time_zone: row.time_zone,
            created_at: row.created_at.0,
        })
    }
}

for_each_backend! {
    pub async fn create(conn: &mut Conn, new: NewTenant, key: MintedKey) -> Result<(Tenant, MintedKey)> {
        conn.transaction(async |conn| {
            let now = DbTime(Utc::now());
            let row = TenantRow {
                id: ids::new_id(ids::TENANT),
                name: new.name.clone(),
                currency: new.currency.code().to_string(),
                time_zone: new.time_zone.clone(),
                created_at: now,
                brand_primary_color: None,
                brand_accent_color: None,
            };
            let inserted = diesel::insert_into(tenants::table)
                .values(&row)
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if inserted == 0 {
                return Err(Error::AlreadyExists { kind: "tenant", field: "name".into(), value: new.name.clone() });
            }
            diesel::insert_into(api_keys::table)
                .values((
                    api_keys::id.eq(&key.id),
                    api_keys::tenant_id.eq(&row.id),
                    api_keys::name.eq("initial admin key"),
                    api_keys::scope.eq(Scope::Admin.as_str()),
                    api_keys::secret_hash.eq(&key.secret_hash),
                    api_keys::created_at.eq(now),
                ))
                .execute(conn)
                .await?;
            Ok((Tenant::try_from(row)?, key))
        })
        .await
    }

    pub async fn get(conn: &mut Conn, id: String) -> Result<Tenant> {
        tenants::table
            .find(&id)
            .select(TenantRow::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("tenant", id))?
            .try_into()
    }

    pub async fn find_by_name(conn: &mut Conn, name: String) -> Result<Option<Tenant>> {
        tenants::table
            .filter(tenants::name.eq(&name))
            .select(TenantRow::as_select())
            .first(conn)
            .await
            .optional()?
            .map(Tenant::try_from)
            .transpose()
    }

    /// Sets the tenant's portal colours (both: an unset one returns to the default).
    pub async fn set_branding(conn: &mut Conn, tenant_id: &str, branding: &Branding) -> Result<Tenant> {
        diesel::update(tenants::table.find(tenant_id))
            .set((
                tenants::brand_primary_color.eq(branding.primary.map(Color::hex)),
                tenants::brand_accent_color.eq(branding.accent.map(Color::hex)),
            ))
            .execute(conn)
            .await?;
        get(conn, tenant_id.to_string()).await
    }

    pub async fn count(conn: &mut Conn) -> Result<i64> {
        Ok(tenants::table.count().get_result(conn).await?)
    }
}

impl Store {
    /// Creates a tenant and its first admin key; the key's secret is in the returned token only.
    pub async fn create_tenant(&self, new: NewTenant) -> Result<(Tenant, MintedKey)> {
        dispatch!(self, write, self::create(new.clone(), MintedKey::new()))
    }

    pub async fn tenant(&self, id: &str) -> Result<Tenant> {
        dispatch!(self, read, self::get(id.to_string()))
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        dispatch!(self, read, self::find_by_name(name.to_string()))
    }

    /// Sets the tenant's portal colours; a retry of `request` answers the first call's tenant.
    pub async fn set_tenant_branding(
        &self,
        tenant_id: &str,
        branding: &Branding,
        request: Option<&Idempotent<'_, Tenant>>,
    ) -> Result<Answer<Tenant>> {
        write_once!(
            self,
            tenant_id,
            request,
            self::set_branding(tenant_id, branding)
        )
    }

    pub async fn tenant_count(&self) -> Result<i64> {
        dispatch!(self, read, self::count())
    }
}
