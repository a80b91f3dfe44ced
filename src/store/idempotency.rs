//! Recorded request ids and the first answers they gave (see `domain::idempotency`). Claimed
//! and answered inside the transaction of the work they guard, so the record commits or rolls
//! back with it. On PostgreSQL a concurrent claim of the same id waits on the primary key until
//! the first transaction ends, then sees its answer.
//!
//! A mutating call: write its store (or ledger) function without any request id, and call it
//! through `dispatch!(store, write_once(tenant_id, request), module::function(args…))`, with
//! `request: Option<&Idempotent<T>>` built by the API layer. The first call runs the function
//! and records its encoded response; a retry gets that response (`Answer::Replayed`) without
//! running it.
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::idempotency_keys;
use super::sql_types::DbTime;
use super::{Store, dispatch, for_each_backend, pending_seat_orders};
use crate::domain::error::Result;
use crate::domain::idempotency::{IdempotencyKey, unrecorded_answer};

for_each_backend! {
    /// Records `key` for this call: `None` the first time (do the work, then [`record`] its
    /// response in the same transaction), or the response the first call recorded. The same id
    /// with a different request is refused.
    pub async fn claim(conn: &mut Conn, tenant_id: &str, key: &IdempotencyKey) -> Result<Option<Vec<u8>>> {
        let inserted = diesel::insert_into(idempotency_keys::table)
            .values((
                idempotency_keys::tenant_id.eq(tenant_id),
                idempotency_keys::request_id.eq(&key.request_id),
                idempotency_keys::operation.eq(key.operation),
                idempotency_keys::fingerprint.eq(&key.fingerprint),
                // Rows from before responses were kept name the resource; new ones need not.
                idempotency_keys::resource_id.eq(""),
                idempotency_keys::created_at.eq(DbTime(Utc::now())),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if inserted == 1 {
            return Ok(None);
        }
        // The row is there (another call's): its answer, or the mismatch.
        recorded(conn, tenant_id, key).await
    }

    /// The answer a committed call with `key` recorded, if any (the same id with a different
    /// request is refused). For work that must not start again once answered (a vendor order
    /// before its write).
    pub async fn recorded(conn: &mut Conn, tenant_id: &str, key: &IdempotencyKey) -> Result<Option<Vec<u8>>> {
        let row: Option<(String, String, String, Option<Vec<u8>>)> = idempotency_keys::table
            .find((tenant_id, &key.request_id))
            .select((
                idempotency_keys::operation,
                idempotency_keys::fingerprint,
                idempotency_keys::resource_id,
                idempotency_keys::response,
            ))
            .first(conn)
            .await
            .optional()?;
        let Some((operation, fingerprint, resource_id, response)) = row else {
            return Ok(None);
        };
        if operation != key.operation || fingerprint != key.fingerprint {
            return Err(key.mismatch());
        }
        response.map(Some).ok_or_else(|| unrecorded_answer(key, &resource_id))
    }

    /// Forgets every request id recorded before `before`; how many. A retry of a forgotten id
    /// runs as a new call, so `before` must lie beyond any client's retry horizon.
    pub async fn forget_before(conn: &mut Conn, before: DateTime<Utc>) -> Result<usize> {
        Ok(diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(DbTime(before))))
            .execute(conn)
            .await?)
    }

    /// Records the response of the call that claimed `key`.
    pub async fn record(conn: &mut Conn, tenant_id: &str, key: &IdempotencyKey, response: &[u8]) -> Result<()> {
        diesel::update(idempotency_keys::table.find((tenant_id, &key.request_id)))
            .set(idempotency_keys::response.eq(response))
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl Store {
    /// The answer recorded for `key` (see [`recorded`]), read on the primary.
    pub async fn recorded_answer(
        &self,
        tenant_id: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<Vec<u8>>> {
        dispatch!(self, fresh, self::recorded(tenant_id, key))
    }

    /// Forgets the request ids recorded before `before` (see [`forget_before`]).
    pub async fn forget_request_ids_before(&self, before: DateTime<Utc>) -> Result<usize> {
        let forgotten = dispatch!(self, write, self::forget_before(before))?;
        // A purchase the sweeper found refused keeps its refusal as its retries' answer: it
        // goes with its request id.
        let refused = dispatch!(
            self,
            write,
            pending_seat_orders::forget_refused_before(before)
        )?;
        Ok(forgotten + refused)
    }
}

/// Runs `$module::$function(conn, args…)` once per request id, on the store's writer, in one
/// transaction with the claim and the record of its answer (see the module docs). Expands to an
/// expression of type `Result<Answer<T>>`; `$request` is an `Option<&Idempotent<T>>` (without a
/// request id the function simply runs).
macro_rules! write_once {
    ($store:expr, $tenant_id:expr, $request:expr, $module:ident :: $function:ident ( $($arg:expr),* $(,)? )) => {{
        use diesel_async::AsyncConnection as _;
        use $crate::domain::idempotency::Answer;
        let request: Option<&$crate::domain::idempotency::Idempotent<'_, _>> = $request;
        let tenant_id: &str = $tenant_id;
        match $store.backend() {
            $crate::store::Backend::Postgres(pool) => {
                let mut conn = $crate::store::checkout(pool).await?;
                let result: $crate::domain::error::Result<Answer<_>> = conn
                    .transaction(async |conn| {
                        $crate::store::idempotency::once_in_transaction!(
                            pg, conn, tenant_id, request, $module::$function($($arg),*)
                        )
                    })
                    .await;
                result
            }
            $crate::store::Backend::Sqlite { writer, .. } => {
                let mut conn = $crate::store::checkout(writer).await?;
                let result: $crate::domain::error::Result<Answer<_>> = conn
                    .immediate_transaction(async |conn| {
                        $crate::store::idempotency::once_in_transaction!(
                            sqlite, conn, tenant_id, request, $module::$function($($arg),*)
                        )
                    })
                    .await;
                drop(conn);
                $store.committed();
                result
            }
        }
    }};
}
pub(crate) use write_once;

/// The body of [`write_once!`] on one backend, inside its transaction.
macro_rules! once_in_transaction {
    ($backend:ident, $conn:ident, $tenant_id:ident, $request:ident, $module:ident :: $function:ident ( $($arg:expr),* )) => {{
        use $crate::store::idempotency::$backend as idempotency;
        if let Some(request) = $request
            && let Some(response) = idempotency::claim($conn, $tenant_id, &request.key).await?
        {
            return Ok(Answer::Replayed(response));
        }
        let value = $module::$backend::$function($conn, $($arg),*).await?;
        if let Some(request) = $request {
            idempotency::record($conn, $tenant_id, &request.key, &request.encode(&value)).await?;
        }
        Ok(Answer::Fresh(value))
    }};
}
pub(crate) use once_in_transaction;
