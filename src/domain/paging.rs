//! Keyset pagination. A page token is opaque to callers: it carries the last id returned and a
//! fingerprint of the filters, so a token cannot be replayed against a different query.
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

fn encode(fingerprint: &str, last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("1|{fingerprint}|{last_id}"))
}

fn decode(token: &str) -> Option<(String, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("1"), Some(fp), Some(id)) if !id.is_empty() => Some((fp.to_string(), id.to_string())),
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
}
