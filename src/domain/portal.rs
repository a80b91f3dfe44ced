//! Portal sessions: the BSS asks for a link for one customer; the link is single-use,
//! short-lived and signed (HMAC-SHA256 with the tenant's portal key over the session id, so a
//! retry of the request can hand out the same link without the gateway keeping it); opening it
//! swaps it for a session cookie whose secret the gateway keeps only as a hash.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::error::FieldViolation;

/// How long a link may wait to be opened.
pub const LINK_TTL: Duration = Duration::minutes(10);
/// How long a browser session lasts after the link was opened.
pub const SESSION_TTL: Duration = Duration::hours(1);
pub const MAX_RETURN_URL: usize = 2048;
pub const SESSION_ID_PREFIX: &str = "ps";

/// A validated request for a session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewPortalSession {
    pub customer_id: String,
    pub return_url: String,
}

/// `return_url`: empty, or an absolute http(s) URL without spaces, quotes or angle brackets
/// (it is written into a page's link).
pub fn parse_return_url(field: &str, url: &str) -> Result<String, FieldViolation> {
    if url.is_empty() {
        return Ok(String::new());
    }
    if url.len() > MAX_RETURN_URL {
        return Err(FieldViolation::new(
            field,
            format!("is {} characters; at most {MAX_RETURN_URL}", url.len()),
        ));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {}
        _ => {
            return Err(FieldViolation::new(
                field,
                "must be an absolute http:// or https:// URL",
            ));
        }
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '\\'))
    {
        return Err(FieldViolation::new(
            field,
            "must not contain spaces, quotes, backslashes or angle brackets",
        ));
    }
    Ok(url.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSession {
    pub id: String,
    pub tenant_id: String,
    pub customer_id: String,
    pub return_url: String,
    pub created_at: DateTime<Utc>,
    pub link_expires_at: DateTime<Utc>,
    pub opened_at: Option<DateTime<Utc>>,
    pub session_expires_at: Option<DateTime<Utc>>,
}

/// Why a link does not open a session; each is shown to the person as a plain page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Malformed, unknown, or its signature does not match.
    Invalid,
    Expired,
    AlreadyUsed,
}

impl LinkRefusal {
    pub fn explanation(self) -> &'static str {
        match self {
            LinkRefusal::Invalid => "This portal link is not valid.",
            LinkRefusal::Expired => "This portal link has expired.",
            LinkRefusal::AlreadyUsed => "This portal link has already been used.",
        }
    }
}

/// Whether `session`'s link may open a session at `now`.
pub fn check_link(session: &PortalSession, now: DateTime<Utc>) -> Result<(), LinkRefusal> {
    if session.opened_at.is_some() {
        return Err(LinkRefusal::AlreadyUsed);
    }
    if now >= session.link_expires_at {
        return Err(LinkRefusal::Expired);
    }
    Ok(())
}

/// The link token of a session: its id and the signature, `<id>.<hex HMAC>`.
pub fn link_token(signing_key: &[u8], session_id: &str) -> String {
    format!(
        "{session_id}.{}",
        hex::encode(hmac_sha256(signing_key, session_id.as_bytes()))
    )
}

/// The session id a link token names, if its signature is `signing_key`'s (constant time).
pub fn verify_link<'a>(signing_key: &[u8], token: &'a str) -> Option<&'a str> {
    let (id, _) = split_token(token)?;
    constant_time_eq(link_token(signing_key, id).as_bytes(), token.as_bytes()).then_some(id)
}

/// The session id a token (link or cookie) starts with, without checking it.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let valid_id = id.len() <= 64
        && id.starts_with(SESSION_ID_PREFIX)
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (valid_id && !secret.is_empty() && secret.len() <= 128).then_some((id, secret))
}

/// A new tenant signing key: 256 random bits, hex.
pub fn new_signing_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    hex::encode(key)
}

/// A browser session's cookie: `<session id>.<secret>`, and the hash the gateway keeps.
pub struct SessionCookie {
    pub value: String,
    pub secret_hash: String,
}

impl SessionCookie {
    pub fn mint(session_id: &str) -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let secret = URL_SAFE_NO_PAD.encode(secret);
        SessionCookie {
            value: format!("{session_id}.{secret}"),
            secret_hash: hash(&secret),
        }
    }
}

/// Whether a presented cookie's secret matches the stored hash (constant time).
pub fn cookie_matches(secret: &str, stored_hash: &str) -> bool {
    constant_time_eq(hash(secret).as_bytes(), stored_hash.as_bytes())
}

/// Whether a session opened by its link is still valid at `now`.
pub fn session_live(session: &PortalSession, now: DateTime<Utc>) -> bool {
    session.session_expires_at.is_some_and(|end| now < end)
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(block.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (test case 6).
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn links_verify_only_with_their_key_and_unaltered() {
        let token = link_token(b"k1", "ps_abc");
        assert_eq!(verify_link(b"k1", &token), Some("ps_abc"));
        assert_eq!(verify_link(b"k2", &token), None);
        let edited = token.replacen("ps_abc", "ps_abd", 1);
        assert_eq!(verify_link(b"k1", &edited), None);
        assert_eq!(verify_link(b"k1", "ps_abc"), None);
        assert_eq!(verify_link(b"k1", "x.y"), None);
    }

    #[test]
    fn cookies_match_their_hash_only() {
        let c = SessionCookie::mint("ps_1");
        let (id, secret) = split_token(&c.value).unwrap();
        assert_eq!(id, "ps_1");
        assert!(cookie_matches(secret, &c.secret_hash));
        assert!(!cookie_matches("other", &c.secret_hash));
    }

    #[test]
    fn links_open_once_before_they_expire() {
        let now = Utc::now();
        let mut s = PortalSession {
            id: "ps_1".into(),
            tenant_id: "t".into(),
            customer_id: "c".into(),
            return_url: String::new(),
            created_at: now,
            link_expires_at: now + LINK_TTL,
            opened_at: None,
            session_expires_at: None,
        };
        assert_eq!(check_link(&s, now), Ok(()));
        assert_eq!(check_link(&s, now + LINK_TTL), Err(LinkRefusal::Expired));
        s.opened_at = Some(now);
        s.session_expires_at = Some(now + SESSION_TTL);
        assert_eq!(check_link(&s, now), Err(LinkRefusal::AlreadyUsed));
        assert!(session_live(&s, now));
        assert!(!session_live(&s, now + SESSION_TTL));
    }

    #[test]
    fn return_urls_are_absolute_http_without_markup() {
        assert_eq!(parse_return_url("r", "").unwrap(), "");
        assert!(parse_return_url("r", "https://bss.example/acct?id=1").is_ok());
        for bad in [
            "javascript:alert(1)",
            "//evil",
            "https://",
            "https:///x",
            "https://a\"onmouseover=x",
            "https://a b",
        ] {
            assert!(parse_return_url("r", bad).is_err(), "{bad}");
        }
    }
}
