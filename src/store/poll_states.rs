//! Per-partner-account poll state: the lease that lets one replica poll an account at a time,
//! the vendor's version tag of the last data seen, and what the last polls did.
use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::poll_states;
use super::sql_types::DbTime;
use super::{Store, dispatch, for_each_backend};
use crate::domain::error::Result;
use crate::domain::partner_account::{PollResult, PollStatus};

for_each_backend! {
    /// Takes or renews the lease on `partner_account_id` for `owner` until now + `ttl`; false
    /// when another live replica holds it.
    pub async fn lease(conn: &mut Conn, tenant_id: &str, partner_account_id: &str, owner: &str, ttl_secs: i64) -> Result<bool> {
        let now = Utc::now();
        diesel::insert_into(poll_states::table)
            .values((
                poll_states::partner_account_id.eq(partner_account_id),
                poll_states::tenant_id.eq(tenant_id),
                poll_states::requests_spent.eq(0i64),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        let taken = diesel::update(poll_states::table.find(partner_account_id))
            .filter(
                poll_states::lease_owner
                    .is_null()
                    .or(poll_states::lease_owner.eq(owner))
                    .or(poll_states::lease_expires_at.lt(DbTime(now))),
            )
            .set((
                poll_states::lease_owner.eq(owner),
                poll_states::lease_expires_at.eq(DbTime(now + Duration::seconds(ttl_secs))),
            ))
            .execute(conn)
            .await?;
        Ok(taken == 1)
    }

    /// Gives the lease up (on shutdown), so another replica can take over at once.
    pub async fn release(conn: &mut Conn, partner_account_id: &str, owner: &str) -> Result<()> {
        diesel::update(poll_states::table.find(partner_account_id))
            .filter(poll_states::lease_owner.eq(owner))
            .set((
                poll_states::lease_owner.eq(None::<String>),
                poll_states::lease_expires_at.eq(None::<DbTime>),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    pub async fn record(conn: &mut Conn, partner_account_id: &str, requests: i64, result: &PollResult<'_>) -> Result<()> {
        let now = DbTime(Utc::now());
        let target = poll_states::table.find(partner_account_id);
        match result {
            PollResult::Success { version_tag } => {
                diesel::update(target)
                    .set((
                        poll_states::last_poll_at.eq(now),
                        poll_states::last_success_at.eq(now),
                        poll_states::last_error.eq(None::<String>),
                        poll_states::version_tag.eq(*version_tag),
                        poll_states::requests_spent.eq(poll_states::requests_spent + requests),
                    ))
                    .execute(conn)
                    .await?;
            }
            PollResult::Failure { error } => {
                diesel::update(target)
                    .set((
                        poll_states::last_poll_at.eq(now),
                        poll_states::last_error.eq(*error),
                        poll_states::requests_spent.eq(poll_states::requests_spent + requests),
                    ))
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn get(conn: &mut Conn, partner_account_id: &str) -> Result<PollStatus> {
        type Row = (Option<DbTime>, Option<DbTime>, Option<String>, i64, Option<String>, Option<String>);
        let row: Option<Row> = poll_states::table
            .find(partner_account_id)
            .select((
                poll_states::last_poll_at,
                poll_states::last_success_at,
                poll_states::last_error,
                poll_states::requests_spent,
                poll_states::version_tag,
                poll_states::lease_owner,
            ))
            .first(conn)
            .await
            .optional()?;
        Ok(row
            .map(|(poll, success, error, spent, tag, owner)| PollStatus {
                last_poll_at: poll.map(|t| t.0),
                last_success_at: success.map(|t| t.0),
                last_error: error,
                requests_spent: spent,
                version_tag: tag,
                lease_owner: owner,
            })
            .unwrap_or_default())
    }
}

impl Store {
    pub async fn lease_partner_account(
        &self,
        tenant_id: &str,
        partner_account_id: &str,
        owner: &str,
        ttl_secs: i64,
    ) -> Result<bool> {
        dispatch!(
            self,
            write,
            self::lease(tenant_id, partner_account_id, owner, ttl_secs)
        )
    }

    pub async fn release_partner_account(
        &self,
        partner_account_id: &str,
        owner: &str,
    ) -> Result<()> {
        dispatch!(self, write, self::release(partner_account_id, owner))
    }

    pub async fn record_poll(
        &self,
        partner_account_id: &str,
        requests: i64,
        result: &PollResult<'_>,
    ) -> Result<()> {
        dispatch!(
            self,
            write,
            self::record(partner_account_id, requests, result)
        )
    }

    pub async fn poll_status(&self, partner_account_id: &str) -> Result<PollStatus> {
        dispatch!(self, read, self::get(partner_account_id))
    }
}
