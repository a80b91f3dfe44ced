//! Keyset pagination. A page token is opaque to callers: it carries the last id returned, a
//! fingerprint of the filters (so a token cannot be replayed against a different query) and a
//! SHA-256 check over both, and is decoded strictly: base64url without padding, version 2, the
//! check matching, the id plain ASCII (letters, digits, `_`, `-`). Any edit of a token (a flipped
//! byte, a truncation, a NUL smuggled into the id) answers INVALID_ARGUMENT naming `page_token`
//! before anything reaches the database.
//!
//! The check is not keyed (not an HMAC): a token is not a credential. Tenant and filters are
//! applied to every page whatever the token says, so a deliberately forged token can only choose
//! where the caller's own query starts, which `after_sequence`-style filters allow anyway. An
//! unkeyed check keeps tokens valid across restarts and replicas with no key to distribute.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::error::FieldViolation;

pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAX_PAGE_SIZE: i64 = 1000;

/// A validated page request: at most `size` items with ids after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: i64,
    pub after: Option<String>,
    filter_fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

impl PageRequest {
    /// `filters` describes the query's filters; a token is only valid with the same ones.
    pub fn parse(
        page_size: i32,
        page_token: &str,
        filters: &str,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let size = match i64::from(page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            n => {
                violations.push(FieldViolation::new(
                    "page_size",
                    format!("{n} is outside 1 to {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"),
                ));
                DEFAULT_PAGE_SIZE
            }
        };
        let fingerprint = fingerprint(filters);
        let after = if page_token.is_empty() {
            None
        } else {
            match decode(page_token) {
                Some((token_filters, last_id)) if token_filters == fingerprint => Some(last_id),
                Some(_) => {
                    violations.push(FieldViolation::new(
                        "page_token",
                        "was issued for different filters; repeat the query's filters or start over",
                    ));
                    None
                }
                None => {
                    violations.push(FieldViolation::new(
                        "page_token",
                        "is malformed; pass next_page_token from a previous response unchanged",
                    ));
                    None
                }
            }
        };
        if violations.is_empty() {
            Ok(PageRequest {
                size,
                after,
                filter_fingerprint: fingerprint,
            })
        } else {
            Err(violations)
        }
    }

    /// How many rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts a fetched batch (of up to `fetch_limit` rows in id order) into a page.
    pub fn page<T>(&self, mut rows: Vec<T>, id_of: impl Fn(&T) -> &str) -> Page<T> {
        let more = rows.len() as i64 > self.size;
        rows.truncate(self.size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => Some(encode(&self.filter_fingerprint, id_of(last))),
            _ => None,
        };
        Page {
            items: rows,
            next_page_token,
        }
    }
}

fn fingerprint(filters: &str) -> String {
    hex::encode(&Sha256::digest(filters.as_bytes())[..8])
}

/// How many bytes of SHA-256 a token carries as its check.
const CHECK_LEN: usize = 12;
/// The longest id a token may carry (ids are a short prefix and a UUID, or a number, or a key).
const MAX_ID_LEN: usize = 128;
/// The longest token accepted (well above what `encode` issues).
const MAX_TOKEN_LEN: usize = 512;

fn check(payload: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::digest(payload);
    let mut out = [0; CHECK_LEN];
    out.copy_from_slice(&digest[..CHECK_LEN]);
    out
}

fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn encode(fingerprint: &str, last_id: &str) -> String {
    seal(format!("2|{fingerprint}|{last_id}").as_bytes())
}

/// A token of any payload: the payload, its check, base64url. (The fuzz targets seal arbitrary
/// payloads to reach what `decode` does after the check.)
pub(crate) fn seal(payload: &[u8]) -> String {
    let mut bytes = payload.to_vec();
    bytes.extend_from_slice(&check(payload));
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode(token: &str) -> Option<(String, String)> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    // Strict: the token must be exactly what `encode` would produce for these bytes (no
    // alternative encodings of the last character's spare bits).
    if URL_SAFE_NO_PAD.encode(&bytes) != token || bytes.len() <= CHECK_LEN {
        return None;
    }
    let (payload, sum) = bytes.split_at(bytes.len() - CHECK_LEN);
    if check(payload) != sum {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("2"), Some(fp), Some(id)) if plain_id(id) => Some((fp.to_string(), id.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_filters() {
        let first = PageRequest::parse(2, "", "status=ACTIVE").unwrap();
        let page = first.page(vec!["a", "b", "c"], |s| s);
        assert_eq!(page.items, vec!["a", "b"]);
        let token = page.next_page_token.unwrap();
        let second = PageRequest::parse(2, &token, "status=ACTIVE").unwrap();
        assert_eq!(second.after.as_deref(), Some("b"));
        assert!(PageRequest::parse(2, &token, "status=SUSPENDED").is_err());
        assert!(PageRequest::parse(2, "garbage!", "").is_err());
        assert!(PageRequest::parse(-1, "", "").is_err());
        assert!(PageRequest::parse(1001, "", "").is_err());
    }

    fn token_after(id: &str) -> String {
        let first = PageRequest::parse(1, "", "f").unwrap();
        first.page(vec![id, "z"], |s| s).next_page_token.unwrap()
    }

    fn malformed(token: &str) -> bool {
        match PageRequest::parse(1, token, "f") {
            Err(v) => v.len() == 1 && v[0].field == "page_token",
            Ok(_) => false,
        }
    }

    #[test]
    fn any_edit_of_a_token_is_refused() {
        let token = token_after("cus_0192a0b1c2d3");
        assert!(PageRequest::parse(1, &token, "f").is_ok());
        // Every single-character change, every truncation.
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (i, c) in token.char_indices() {
            for replacement in alphabet.chars().filter(|r| *r != c) {
                let mut edited = token.clone();
                edited.replace_range(i..i + 1, &replacement.to_string());
                assert!(malformed(&edited), "{edited} accepted");
            }
        }
        for end in 1..token.len() {
            assert!(malformed(&token[..end]), "{} accepted", &token[..end]);
        }
        assert!(malformed(&format!("{token}A")));
    }

    #[test]
    fn a_forged_id_with_odd_bytes_is_refused_even_with_a_good_check() {
        for id in ["a\0b", "a b", "a|b", "ü", "a'b"] {
            assert!(malformed(&encode(&fingerprint("f"), id)), "{id:?}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert!(malformed(&encode(&fingerprint("f"), &long)));
        // Version 1 tokens (no check) are no longer read.
        let v1 = URL_SAFE_NO_PAD.encode(format!("1|{}|cus_1", fingerprint("f")));
        assert!(malformed(&v1));
    }
}
