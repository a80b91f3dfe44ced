//! Recorded request ids (see `domain::idempotency`). Claimed inside the caller's transaction, so
//! the record commits or rolls back with the work it guards. On PostgreSQL a concurrent claim of
//! the same id waits on the primary key until the first transaction ends, then sees its outcome.
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::for_each_backend;
use super::schema::idempotency_keys;
use super::sql_types::DbTime;
use crate::domain::error::Result;
use crate::domain::idempotency::{IdempotencyKey, Replay};

for_each_backend! {
    /// Records `key` as producing `resource_id`, or reports what an earlier call with the same
    /// request id produced (refusing a different request under the same id).
    pub async fn claim(conn: &mut Conn, tenant_id: &str, key: &IdempotencyKey, resource_id: &str) -> Result<Replay> {
        let inserted = diesel::insert_into(idempotency_keys::table)
            .values((
                idempotency_keys::tenant_id.eq(tenant_id),
                idempotency_keys::request_id.eq(&key.request_id),
                idempotency_keys::operation.eq(key.operation),
                idempotency_keys::fingerprint.eq(&key.fingerprint),
                idempotency_keys::resource_id.eq(resource_id),
                idempotency_keys::created_at.eq(DbTime(Utc::now())),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if inserted == 1 {
            return Ok(Replay::Fresh);
        }
        let (operation, fingerprint, recorded): (String, String, String) = idempotency_keys::table
            .find((tenant_id, &key.request_id))
            .select((
                idempotency_keys::operation,
                idempotency_keys::fingerprint,
                idempotency_keys::resource_id,
            ))
            .first(conn)
            .await?;
        if operation != key.operation || fingerprint != key.fingerprint {
            return Err(key.mismatch());
        }
        Ok(Replay::Done { resource_id: recorded })
    }

    /// `claim` for calls whose request id is optional.
    pub async fn claim_optional(conn: &mut Conn, tenant_id: &str, key: Option<&IdempotencyKey>, resource_id: &str) -> Result<Replay> {
        match key {
            Some(key) => claim(conn, tenant_id, key, resource_id).await,
            None => Ok(Replay::Fresh),
        }
    }

    /// Points a claimed request id at another resource: a call that found its work already done
    /// (closing a closed period) answers that resource, and so must its retries.
    pub async fn set_resource(conn: &mut Conn, tenant_id: &str, key: &IdempotencyKey, resource_id: &str) -> Result<()> {
        diesel::update(idempotency_keys::table.find((tenant_id, &key.request_id)))
            .set(idempotency_keys::resource_id.eq(resource_id))
            .execute(conn)
            .await?;
        Ok(())
    }
}
