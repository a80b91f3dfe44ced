//! Object ids: a short type prefix and a UUIDv7, so ids sort by creation time (which keyset
//! pagination relies on) and say what they name.
use uuid::Uuid;

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

pub const TENANT: &str = "ten";
pub const API_KEY: &str = "key";
pub const PARTNER_ACCOUNT: &str = "pa";
pub const CUSTOMER: &str = "cus";
pub const PRICE_RULE: &str = "pr";
pub const CATALOG_ITEM: &str = "cat";
pub const SUBSCRIPTION: &str = "sub";
pub const INVOICE: &str = "inv";
pub const PAYMENT: &str = "pay";
pub const CLOSE_RUN: &str = "run";
