//! Tenants: one MSP each. Every other object belongs to exactly one tenant.
use chrono::{DateTime, Utc};

use super::error::{Result, Violations};
use super::money::Currency;
use super::text;

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub currency: Currency,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: String,
    pub currency: Currency,
    pub time_zone: String,
}

impl NewTenant {
    pub fn parse(name: &str, currency: &str, time_zone: &str) -> Result<Self> {
        let mut v = Violations::new();
        let name = v.check(text::display_name("name", name, text::NAME_MAX));
        let currency = v.check(Currency::parse("currency", currency));
        let time_zone = v.check(text::time_zone("time_zone", time_zone));
        v.into_result()?;
        Ok(NewTenant {
            name: name.expect("checked"),
            currency: currency.expect("checked"),
            time_zone: time_zone.expect("checked"),
        })
    }
}
