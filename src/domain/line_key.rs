//! A usage line's identity: 24 bytes that both identify the line and say where it sits.
//!
//! `[partner account's key prefix: 4][window hour since the epoch: 4][identity hash: 16]`, all
//! big-endian. The hash (SHA-256 over the partner account and the usage key, first 16 bytes)
//! identifies the line; the prefix and the hour in front make the keys of one account and
//! window sort together, so a ledger write inserts into a few neighbouring index pages, and a
//! pull reads the lines of its windows as one key range.
use std::fmt;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::usage::UsageKey;

pub const LINE_KEY_LEN: usize = 24;
const MICROS_PER_HOUR: i64 = 3_600_000_000;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineKey([u8; LINE_KEY_LEN]);

/// Hashes a key by 8 bytes of its SHA-256 part, which are already uniformly distributed: maps
/// keyed by line keys (a ledger write builds several per chunk) skip a second hash function.
impl std::hash::Hash for LineKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from_le_bytes(self.hash_bytes()));
    }
}

/// A `BuildHasher` for maps keyed by [`LineKey`]: passes the key's own hash bits through.
#[derive(Clone, Copy, Default)]
pub struct LineKeyHasher(u64);

impl std::hash::Hasher for LineKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `LineKey`; anything else still hashes deterministically.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Maps keyed by line keys.
pub type LineKeyMap<V> =
    std::collections::HashMap<LineKey, V, std::hash::BuildHasherDefault<LineKeyHasher>>;
/// Sets of line keys.
pub type LineKeySet =
    std::collections::HashSet<LineKey, std::hash::BuildHasherDefault<LineKeyHasher>>;

impl LineKey {
    /// The key of `key`'s line, pulled or pushed through the partner account `partner_account_id`
    /// whose key prefix is `prefix`.
    pub fn of(prefix: u32, partner_account_id: &str, key: &UsageKey) -> Self {
        let mut hasher = Sha256::new();
        for part in [
            partner_account_id,
            &key.vendor_account_id,
            &key.service,
            &key.meter,
            &key.region,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0x1f]);
        }
        hasher.update(key.window_start.timestamp_micros().to_be_bytes());
        let hash = hasher.finalize();
        let mut bytes = Self::bound(prefix, key.window_start).0;
        bytes[8..].copy_from_slice(&hash[..16]);
        LineKey(bytes)
    }

    /// The smallest key of `prefix`'s lines whose window starts in the hour of `at`.
    fn bound(prefix: u32, at: DateTime<Utc>) -> Self {
        let hour = at.timestamp_micros().div_euclid(MICROS_PER_HOUR);
        let hour = u32::try_from(hour.max(0)).unwrap_or(u32::MAX);
        let mut bytes = [0u8; LINE_KEY_LEN];
        bytes[..4].copy_from_slice(&prefix.to_be_bytes());
        bytes[4..8].copy_from_slice(&hour.to_be_bytes());
        LineKey(bytes)
    }

    /// `[low, high)`: every key of `prefix`'s lines with a window starting in `[start, end)`
    /// lies in it (with others of the same hours: callers filter on the window itself).
    pub fn range(prefix: u32, start: DateTime<Utc>, end: DateTime<Utc>) -> (Self, Self) {
        let low = Self::bound(prefix, start);
        let last = Self::bound(prefix, end - chrono::Duration::microseconds(1));
        (low, last.next_hour())
    }

    /// The first key of the hour after this key's hour (saturating).
    fn next_hour(self) -> Self {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        let next = u64::from_be_bytes(head).saturating_add(1);
        let mut bytes = [0u8; LINE_KEY_LEN];
        bytes[..8].copy_from_slice(&next.to_be_bytes());
        LineKey(bytes)
    }

    /// The key's account-and-hour group: keys of one group share their first 8 bytes.
    pub fn group(&self) -> (Self, Self) {
        let mut low = [0u8; LINE_KEY_LEN];
        low[..8].copy_from_slice(&self.0[..8]);
        (LineKey(low), LineKey(low).next_hour())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn hash_bytes(&self) -> [u8; 8] {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.0[8..16]);
        bytes
    }

    /// A stored key; `None` when it is not 24 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(LineKey(bytes.try_into().ok()?))
    }

    /// A key as the API shows it (48 lowercase hex digits).
    pub fn parse_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Display for LineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; LINE_KEY_LEN * 2];
        hex::encode_to_slice(self.0, &mut text).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for LineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LineKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn usage(account: &str, hour: u32) -> UsageKey {
        UsageKey {
            vendor_account_id: account.into(),
            service: "Compute".into(),
            meter: "vm.small".into(),
            region: "za-north-1".into(),
            window_start: Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap(),
        }
    }

    #[test]
    fn keys_identify_lines_and_cluster_by_account_and_hour() {
        let a = LineKey::of(7, "pa_1", &usage("sim-1", 3));
        assert_eq!(a, LineKey::of(7, "pa_1", &usage("sim-1", 3)));
        assert_ne!(a, LineKey::of(7, "pa_1", &usage("sim-2", 3)));
        assert_ne!(a, LineKey::of(7, "pa_2", &usage("sim-1", 3)));
        // Same account and hour: same group, whatever the vendor account.
        assert_eq!(
            a.group(),
            LineKey::of(7, "pa_1", &usage("sim-2", 3)).group()
        );
        assert_ne!(
            a.group(),
            LineKey::of(7, "pa_1", &usage("sim-1", 4)).group()
        );
        assert_ne!(
            a.group(),
            LineKey::of(8, "pa_1", &usage("sim-1", 3)).group()
        );
        let (low, high) = a.group();
        assert!(low <= a && a < high);
    }

    #[test]
    fn a_window_range_holds_exactly_its_hours() {
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 11, 1, 5, 0, 0).unwrap();
        let (low, high) = LineKey::range(7, start, end);
        for (hour, inside) in [(2, false), (3, true), (4, true), (5, false)] {
            let key = LineKey::of(7, "pa_1", &usage("sim-1", hour));
            assert_eq!(low <= key && key < high, inside, "hour {hour}");
        }
        // Another account's lines of the same hours are outside.
        let other = LineKey::of(8, "pa_1", &usage("sim-1", 3));
        assert!(!(low <= other && other < high));
    }

    #[test]
    fn hex_round_trips() {
        let key = LineKey::of(1, "pa_1", &usage("sim-1", 0));
        let text = key.to_string();
        assert_eq!(text.len(), 48);
        assert_eq!(LineKey::parse_hex(&text), Some(key));
        assert_eq!(LineKey::parse_hex("abc"), None);
        assert_eq!(LineKey::parse_hex(&"zz".repeat(24)), None);
    }
}
