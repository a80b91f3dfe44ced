//! API keys: minted, listed, revoked, and looked up to authenticate a call.
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::idempotency::write_once;
use super::schema::{api_keys, customers};
use super::sql_types::DbTime;
use super::{Store, dispatch, for_each_backend};
use crate::domain::access::{ApiKey, MintedKey, NewApiKey, Scope};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::paging::{Page, PageRequest};

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys)]
struct ApiKeyRow {
    id: String,
    tenant_id: String,
    name: String,
    scope: String,
    customer_id: Option<String>,
    created_at: DbTime,
    revoked_at: Option<DbTime>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = Error;
    fn try_from(row: ApiKeyRow) -> Result<Self> {
        Ok(ApiKey {
            scope: row
                .scope
                .parse::<Scope>()
                .map_err(|e| Error::Internal(format!("stored key {}: {e}", row.id)))?,
            id: row.id,
            tenant_id: row.tenant_id,
            name: row.name,
            customer_id: row.customer_id,
            created_at: row.created_at.0,
            revoked_at: row.revoked_at.map(|t| t.0),
        })
    }
}

for_each_backend! {
    pub async fn create(
        conn: &mut Conn,
        tenant_id: &str,
        new: &NewApiKey,
        key: MintedKey,
    ) -> Result<(ApiKey, MintedKey)> {
        conn.transaction(async |conn| {
            if let Some(customer_id) = &new.customer_id {
                let exists: i64 = customers::table
                    .filter(customers::tenant_id.eq(tenant_id))
                    .filter(customers::id.eq(customer_id))
                    .count()
                    .get_result(conn)
                    .await?;
                if exists == 0 {
                    return Err(Error::invalid("customer_id", format!("customer {customer_id:?} not found")));
                }
            }
            diesel::insert_into(api_keys::table)
                .values((
                    api_keys::id.eq(&key.id),
                    api_keys::tenant_id.eq(tenant_id),
                    api_keys::name.eq(&new.name),
                    api_keys::scope.eq(new.scope.as_str()),
                    api_keys::customer_id.eq(&new.customer_id),
                    api_keys::secret_hash.eq(&key.secret_hash),
                    api_keys::created_at.eq(DbTime(Utc::now())),
                ))
                .execute(conn)
                .await?;
            Ok((get(conn, tenant_id, &key.id).await?, key))
        })
        .await
    }

    pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<ApiKey> {
        api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::id.eq(id))
            .select(ApiKeyRow::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("API key", id))?
            .try_into()
    }

    pub async fn list(conn: &mut Conn, tenant_id: &str, page: &PageRequest) -> Result<Page<ApiKey>> {
        let mut query = api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .select(ApiKeyRow::as_select())
            .order(api_keys::id)
            .limit(page.fetch_limit())
            .into_boxed();
        if let Some(after) = &page.after {
            query = query.filter(api_keys::id.gt(after));
        }
        let rows = query
            .load(conn)
            .await?
            .into_iter()
            .map(ApiKey::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |k| &k.id))
    }

    pub async fn revoke(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<ApiKey> {
        diesel::update(api_keys::table)
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::id.eq(id))
            .filter(api_keys::revoked_at.is_null())
            .set(api_keys::revoked_at.eq(DbTime(Utc::now())))
            .execute(conn)
            .await?;
        get(conn, tenant_id, id).await
    }

    /// The stored key and its secret hash, by key id (any tenant: the id is in the token).
    pub async fn for_authentication(conn: &mut Conn, id: &str) -> Result<Option<(ApiKey, String)>> {
        let row: Option<(ApiKeyRow, String)> = api_keys::table
            .filter(api_keys::id.eq(id))
            .select((ApiKeyRow::as_select(), api_keys::secret_hash))
            .first(conn)
            .await
            .optional()?;
        row.map(|(key, hash)| Ok((ApiKey::try_from(key)?, hash))).transpose()
    }
}

impl Store {
    /// Mints a key. What a retry of `request` answers is the API's (without the secret).
    pub async fn create_api_key(
        &self,
        tenant_id: &str,
        new: &NewApiKey,
        request: Option<&Idempotent<'_, (ApiKey, MintedKey)>>,
    ) -> Result<Answer<(ApiKey, MintedKey)>> {
        let minted = MintedKey::new();
        write_once!(
            self,
            tenant_id,
            request,
            self::create(tenant_id, new, minted)
        )
    }

    pub async fn list_api_keys(&self, tenant_id: &str, page: &PageRequest) -> Result<Page<ApiKey>> {
        dispatch!(self, read, self::list(tenant_id, page))
    }

    pub async fn revoke_api_key(
        &self,
        tenant_id: &str,
        id: &str,
        request: Option<&Idempotent<'_, ApiKey>>,
    ) -> Result<Answer<ApiKey>> {
        write_once!(self, tenant_id, request, self::revoke(tenant_id, id))
    }

    /// Fresh: a key works the moment it is created, and stops the moment it is revoked.
    pub async fn api_key_for_authentication(&self, id: &str) -> Result<Option<(ApiKey, String)>> {
        dispatch!(self, fresh, self::for_authentication(id))
    }
}
