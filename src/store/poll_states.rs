//! Per-partner-account poll state: the lease that lets one replica poll an account at a time,
//! the vendor's version tags of the data last seen, what the last polls did, and when the
//! account is polled next.
use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::poll_states;
use super::sql_types::DbTime;
use super::{Store, dispatch, for_each_backend};
use crate::domain::error::Result;
use crate::domain::partner_account::{PollRecord, PollStatus, VersionTags};
/// Tags are stored as a JSON object; anything else (a tag kept by an older version) reads as
/// none, which costs one download.
fn decode_tags(stored: Option<String>) -> VersionTags {
    stored
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn encode_tags(tags: &VersionTags) -> Option<String> {
    (!tags.is_empty()).then(|| {
        serde_json::Value::from_iter(
            tags.iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))),
        )
        .to_string()
    })
}

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

    pub async fn record(conn: &mut Conn, partner_account_id: &str, record: &PollRecord<'_>) -> Result<()> {
        let now = DbTime(Utc::now());
        let target = poll_states::table.find(partner_account_id);
        let failures = i32::try_from(record.consecutive_failures).unwrap_or(i32::MAX);
        let common = (
            poll_states::last_poll_at.eq(now),
            poll_states::last_error.eq(record.error),
            poll_states::version_tags.eq(encode_tags(record.version_tags)),
            poll_states::requests_spent.eq(poll_states::requests_spent + record.requests),
            poll_states::next_poll_at.eq(DbTime(record.next_poll_at)),
            poll_states::consecutive_failures.eq(failures),
        );
        if record.error.is_none() {
            diesel::update(target)
                .set((common, poll_states::last_success_at.eq(now)))
                .execute(conn)
                .await?;
        } else {
            diesel::update(target).set(common).execute(conn).await?;
        }
        Ok(())
    }

    /// Polls the account as soon as its poller looks (after its settings changed).
    pub async fn reschedule_now(conn: &mut Conn, partner_account_id: &str) -> Result<()> {
        diesel::update(poll_states::table.find(partner_account_id))
            .set((
                poll_states::next_poll_at.eq(None::<DbTime>),
                poll_states::consecutive_failures.eq(0),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    pub async fn get(conn: &mut Conn, partner_account_id: &str) -> Result<PollStatus> {
        type Row = (
            (Option<DbTime>, Option<DbTime>, Option<String>, i64, Option<String>),
            (Option<String>, Option<DbTime>, i32),
        );
        let row: Option<Row> = poll_states::table
            .find(partner_account_id)
            .select((
                (
                    poll_states::last_poll_at,
                    poll_states::last_success_at,
                    poll_states::last_error,
                    poll_states::requests_spent,
                    poll_states::version_tags,
                ),
                (
                    poll_states::lease_owner,
                    poll_states::next_poll_at,
                    poll_states::consecutive_failures,
                ),
            ))
            .first(conn)
            .await
            .optional()?;
        Ok(row
            .map(|((poll, success, error, spent, tags), (owner, next, failures))| PollStatus {
                last_poll_at: poll.map(|t| t.0),
                last_success_at: success.map(|t| t.0),
                last_error: error,
                requests_spent: spent,
                version_tags: decode_tags(tags),
                lease_owner: owner,
                next_poll_at: next.map(|t| t.0),
                consecutive_failures: u32::try_from(failures).unwrap_or_default(),
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
        record: &PollRecord<'_>,
    ) -> Result<()> {
        dispatch!(self, write, self::record(partner_account_id, record))
    }

    pub async fn poll_status(&self, partner_account_id: &str) -> Result<PollStatus> {
        dispatch!(self, read, self::get(partner_account_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_old_tags_read_as_none() {
        let mut tags = VersionTags::new();
        tags.insert("2026-11-01T00:00:00+00:00".into(), "etag \"1\"".into());
        assert_eq!(decode_tags(encode_tags(&tags)), tags);
        assert_eq!(encode_tags(&VersionTags::new()), None);
        assert!(decode_tags(Some("etag-from-before".into())).is_empty());
    }
}
