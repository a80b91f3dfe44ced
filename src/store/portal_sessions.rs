//! Portal sessions and each tenant's key for signing their links (rules in `domain::portal`).
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::idempotency::write_once;
use super::schema::{customers, portal_sessions, portal_signing_keys};
use super::sql_types::DbTime;
use super::{Store, dispatch, for_each_backend};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::portal::{
    LINK_TTL, LinkRefusal, NewPortalSession, PortalSession, SESSION_ID_PREFIX, SESSION_TTL,
    SessionCookie, check_link, cookie_matches, new_signing_key, session_live, split_token,
    verify_link,
};

#[derive(Queryable, Selectable)]
#[diesel(table_name = portal_sessions)]
struct SessionRow {
    id: String,
    tenant_id: String,
    customer_id: String,
    return_url: String,
    created_at: DbTime,
    link_expires_at: DbTime,
    opened_at: Option<DbTime>,
    session_expires_at: Option<DbTime>,
}

impl From<SessionRow> for PortalSession {
    fn from(r: SessionRow) -> Self {
        PortalSession {
            id: r.id,
            tenant_id: r.tenant_id,
            customer_id: r.customer_id,
            return_url: r.return_url,
            created_at: r.created_at.0,
            link_expires_at: r.link_expires_at.0,
            opened_at: r.opened_at.map(|t| t.0),
            session_expires_at: r.session_expires_at.map(|t| t.0),
        }
    }
}

for_each_backend! {
    /// The tenant's signing key, made on first use.
    async fn signing_key(conn: &mut Conn, tenant_id: &str) -> Result<String> {
        diesel::insert_into(portal_signing_keys::table)
            .values((
                portal_signing_keys::tenant_id.eq(tenant_id),
                portal_signing_keys::secret.eq(new_signing_key()),
                portal_signing_keys::created_at.eq(DbTime(Utc::now())),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(portal_signing_keys::table
            .find(tenant_id)
            .select(portal_signing_keys::secret)
            .first(conn)
            .await?)
    }

    async fn get(conn: &mut Conn, id: &str) -> Result<Option<PortalSession>> {
        Ok(portal_sessions::table
            .find(id)
            .select(SessionRow::as_select())
            .first(conn)
            .await
            .optional()?
            .map(PortalSession::from))
    }

    /// A new session for `new.customer_id` (NOT_FOUND unless the tenant has it) and its link
    /// token.
    pub async fn create(conn: &mut Conn, tenant_id: &str, new: &NewPortalSession, now: DateTime<Utc>) -> Result<(PortalSession, String)> {
        conn.transaction(async |conn| {
            let id = crate::domain::ids::new_id(SESSION_ID_PREFIX);
            let exists: i64 = customers::table
                .filter(customers::tenant_id.eq(tenant_id))
                .filter(customers::id.eq(&new.customer_id))
                .count()
                .get_result(conn)
                .await?;
            if exists == 0 {
                return Err(Error::not_found("customer", new.customer_id.clone()));
            }
            diesel::insert_into(portal_sessions::table)
                .values((
                    portal_sessions::id.eq(&id),
                    portal_sessions::tenant_id.eq(tenant_id),
                    portal_sessions::customer_id.eq(&new.customer_id),
                    portal_sessions::return_url.eq(&new.return_url),
                    portal_sessions::created_at.eq(DbTime(now)),
                    portal_sessions::link_expires_at.eq(DbTime(now + LINK_TTL)),
                ))
                .execute(conn)
                .await?;
            let session = get(conn, &id)
                .await?
                .ok_or_else(|| Error::Internal(format!("portal session {id} vanished")))?;
            let key = signing_key(conn, tenant_id).await?;
            let token = crate::domain::portal::link_token(key.as_bytes(), &session.id);
            Ok((session, token))
        })
        .await
    }

    /// Swaps a link for a browser session, once: the session and its cookie, or why not.
    pub async fn open(conn: &mut Conn, token: &str, now: DateTime<Utc>) -> Result<Result<(PortalSession, SessionCookie), LinkRefusal>> {
        let Some((id, _)) = split_token(token) else { return Ok(Err(LinkRefusal::Invalid)) };
        let Some(session) = get(conn, id).await? else { return Ok(Err(LinkRefusal::Invalid)) };
        let key: Option<String> = portal_signing_keys::table
            .find(&session.tenant_id)
            .select(portal_signing_keys::secret)
            .first(conn)
            .await
            .optional()?;
        if key.is_none_or(|key| verify_link(key.as_bytes(), token).is_none()) {
            return Ok(Err(LinkRefusal::Invalid));
        }
        if let Err(refusal) = check_link(&session, now) {
            return Ok(Err(refusal));
        }
        let cookie = SessionCookie::mint(&session.id);
        // Only the first of two concurrent openings finds it unopened.
        let opened = diesel::update(portal_sessions::table.find(&session.id))
            .filter(portal_sessions::opened_at.is_null())
            .set((
                portal_sessions::opened_at.eq(DbTime(now)),
                portal_sessions::cookie_hash.eq(&cookie.secret_hash),
                portal_sessions::session_expires_at.eq(DbTime(now + SESSION_TTL)),
            ))
            .execute(conn)
            .await?;
        if opened == 0 {
            return Ok(Err(LinkRefusal::AlreadyUsed));
        }
        let session = get(conn, id).await?.ok_or_else(|| Error::Internal(format!("portal session {id} vanished")))?;
        Ok(Ok((session, cookie)))
    }

    /// The live session a cookie belongs to, if any.
    pub async fn for_cookie(conn: &mut Conn, cookie: &str, now: DateTime<Utc>) -> Result<Option<PortalSession>> {
        let Some((id, secret)) = split_token(cookie) else { return Ok(None) };
        let row: Option<(Option<String>, SessionRow)> = portal_sessions::table
            .find(id)
            .select((portal_sessions::cookie_hash, SessionRow::as_select()))
            .first(conn)
            .await
            .optional()?;
        Ok(row.and_then(|(hash, row)| {
            let session = PortalSession::from(row);
            (hash.is_some_and(|h| cookie_matches(secret, &h)) && session_live(&session, now)).then_some(session)
        }))
    }
}

impl Store {
    pub async fn create_portal_session(
        &self,
        tenant_id: &str,
        new: &NewPortalSession,
        request: &Idempotent<'_, (PortalSession, String)>,
        now: DateTime<Utc>,
    ) -> Result<Answer<(PortalSession, String)>> {
        // A retry of a recorded request id answers the first session and link, as sent.
        write_once!(
            self,
            tenant_id,
            Some(request),
            self::create(tenant_id, new, now)
        )
    }

    pub async fn open_portal_link(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<(PortalSession, SessionCookie), LinkRefusal>> {
        dispatch!(self, write, self::open(token, now))
    }

    /// Fresh: the browser comes here straight from opening its link, which wrote the session.
    pub async fn portal_session_for_cookie(
        &self,
        cookie: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PortalSession>> {
        dispatch!(self, fresh, self::for_cookie(cookie, now))
    }
}
