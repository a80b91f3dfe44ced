//! Rated usage rows: one JSON line of an export blob, read without floats, mapped to a
//! [`UsageLine`], and lines with the same [`UsageKey`] merged.
//!
//! Money and quantities are read from the JSON text itself (serde_json `RawValue`), so the
//! vendor's 10+ fractional digits survive exactly; a JSON number never passes through `f64`.
//! Numbers may also arrive as strings; both are accepted. (serde_json's
//! `arbitrary_precision` would keep the digits too, but it changes `Number` for every crate in
//! the build, azure_identity's token parsing included; `raw_value` is additive.)
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::usage::{UsageKey, UsageLine};
use crate::vendors::VendorError;

/// Which Partner Center id identifies the account in [`UsageKey::vendor_account_id`].
///
/// A row carries three: `CustomerId` (the customer's Entra tenant), `SubscriptionId` (the
/// Partner Center Azure-plan subscription, the thing suspended and reactivated through Partner
/// Center) and `EntitlementId` (the Azure subscription inside that plan). The default keys by
/// `SubscriptionId`: it is finer than the tenant (a customer can hold several plans) and it is
/// the id service management acts on; every row keeps the other two in [`RatedUsageRow`], so a
/// customer linked by tenant id can still be found (see [`RatedUsageRow::customer_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKey {
    #[default]
    Subscription,
    CustomerTenant,
    AzureEntitlement,
}

/// One row of the export, as read, with its normalized line.
#[derive(Debug, Clone, PartialEq)]
pub struct RatedUsageRow {
    /// Where it came from, for messages: the blob name and 1-based line number.
    pub blob: String,
    pub line_number: usize,
    /// The customer's Entra tenant id (`CustomerId`).
    pub customer_id: String,
    /// The Partner Center subscription id (`SubscriptionId`).
    pub subscription_id: String,
    /// The Azure subscription id (`EntitlementId`), when the row has one.
    pub entitlement_id: Option<String>,
    pub unit_price: Option<Decimal>,
    pub effective_unit_price: Option<Decimal>,
    /// `PricingPreTaxTotal` in `pricing_currency`, before conversion.
    pub pricing_pre_tax_total: Option<Decimal>,
    pub pricing_currency: Option<String>,
    pub pc_to_bc_exchange_rate: Option<Decimal>,
    /// The row's own `UsageDate` when it is earlier than the export's billing period: latent
    /// usage of an earlier period that Microsoft bills in this one (see [`place_in_period`]).
    pub latent_from: Option<NaiveDate>,
    /// The row alone, keyed per the configured [`AccountKey`].
    pub line: UsageLine,
}

/// The fields of one JSON line, looked up case-insensitively: Microsoft's files and APIs have
/// used both `CustomerId` and `customerId`.
struct Fields<'a> {
    blob: &'a str,
    line_number: usize,
    values: HashMap<String, &'a RawValue>,
}

impl<'a> Fields<'a> {
    fn parse(blob: &'a str, line_number: usize, text: &'a str) -> Result<Self, VendorError> {
        let raw: BTreeMap<String, &'a RawValue> = serde_json::from_str(text).map_err(|e| {
            VendorError::Malformed(format!(
                "blob {blob} line {line_number}: not a JSON object ({e})"
            ))
        })?;
        let values = raw
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Ok(Fields {
            blob,
            line_number,
            values,
        })
    }

    fn error(&self, field: &str, problem: impl std::fmt::Display) -> VendorError {
        VendorError::Malformed(format!(
            "blob {} line {}: field {field}: {problem}",
            self.blob, self.line_number
        ))
    }

    /// The field's text: a JSON string's content or a number's literal; None when absent,
    /// null or blank.
    fn text(&self, field: &str) -> Result<Option<String>, VendorError> {
        let Some(raw) = self.values.get(&field.to_ascii_lowercase()) else {
            return Ok(None);
        };
        let json = raw.get().trim();
        let text = match json.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<String>(json)
                .map_err(|e| self.error(field, format!("bad string ({e})")))?,
            Some(b'-' | b'0'..=b'9') => json.to_string(),
            _ if json == "null" => return Ok(None),
            _ => return Err(self.error(field, "expected a string or a number")),
        };
        let text = text.trim();
        Ok((!text.is_empty()).then(|| text.to_string()))
    }

    fn required_text(&self, field: &str) -> Result<String, VendorError> {
        self.text(field)?
            .ok_or_else(|| self.error(field, "missing or empty"))
    }

    /// The first of `fields` that has a value.
    fn first_text(&self, fields: &[&str]) -> Result<Option<String>, VendorError> {
        for field in fields {
            if let Some(text) = self.text(field)? {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    fn decimal(&self, field: &str) -> Result<Option<Decimal>, VendorError> {
        self.text(field)?
            .map(|text| {
                parse_decimal(&text)
                    .ok_or_else(|| self.error(field, format!("{text:?} is not an exact decimal")))
            })
            .transpose()
    }

    fn required_decimal(&self, field: &str) -> Result<Decimal, VendorError> {
        self.decimal(field)?
            .ok_or_else(|| self.error(field, "missing or empty"))
    }
}

/// Exact decimal from a JSON number literal or numeric string; None when it has more digits
/// than a `Decimal` holds (rounding would silently change money).
pub(crate) fn parse_decimal(text: &str) -> Option<Decimal> {
    let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else {
        return Decimal::from_str_exact(text).ok();
    };
    // Scientific notation: shift the exact mantissa; no rounding either way.
    let mut value = Decimal::from_str_exact(mantissa).ok()?;
    let exponent: i32 = exponent.parse().ok()?;
    if exponent < 0 {
        let scale = value.scale().checked_add(exponent.unsigned_abs())?;
        value.set_scale(scale).ok()?;
    } else {
        for _ in 0..exponent.min(29) {
            value = value.checked_mul(Decimal::TEN)?;
        }
        if exponent > 28 && !value.is_zero() {
            return None;
        }
    }
    Some(value)
}

/// `UsageDate` as a day: `2024-04-01`, `2024-04-01T00:00:00`, or RFC 3339 (the day as written).
fn parse_usage_date(text: &str) -> Option<NaiveDate> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(date);
    }
    if let Ok(datetime) = DateTime::parse_from_rfc3339(text) {
        return Some(datetime.date_naive());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|dt| dt.date())
}

/// Reads one JSON line of blob `blob` (1-based `line_number`).
pub fn parse_row(
    blob: &str,
    line_number: usize,
    text: &str,
    account_key: AccountKey,
) -> Result<RatedUsageRow, VendorError> {
    let f = Fields::parse(blob, line_number, text)?;

    let customer_id = f.required_text("CustomerId")?;
    let subscription_id = f.required_text("SubscriptionId")?;
    let entitlement_id = f.text("EntitlementId")?;
    let vendor_account_id = match account_key {
        AccountKey::Subscription => subscription_id.clone(),
        AccountKey::CustomerTenant => customer_id.clone(),
        AccountKey::AzureEntitlement => f.required_text("EntitlementId")?,
    };

    let meter = f.required_text("MeterId")?;
    let meter_name = f.text("MeterName")?.unwrap_or_default();
    let service = f
        .first_text(&["MeterCategory", "ProductName"])?
        .ok_or_else(|| f.error("MeterCategory", "missing, and so is ProductName"))?;
    let region = f
        .first_text(&["ResourceLocation", "MeterRegion"])?
        .unwrap_or_default();

    let usage_date = f.required_text("UsageDate")?;
    let day = parse_usage_date(&usage_date)
        .ok_or_else(|| f.error("UsageDate", format!("{usage_date:?} is not a date")))?;
    let window_start = day.and_time(chrono::NaiveTime::MIN).and_utc();
    let window_end = day
        .checked_add_days(Days::new(1))
        .ok_or_else(|| f.error("UsageDate", "out of range"))?
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();

    let quantity = f.required_decimal("Quantity")?;
    let unit = f
        .first_text(&["UnitOfMeasure", "Unit"])?
        .unwrap_or_default();
    let unit_price = f.decimal("UnitPrice")?;
    let effective_unit_price = f.decimal("EffectiveUnitPrice")?;
    let cost = f.required_decimal("BillingPreTaxTotal")?;
    let currency = f.required_text("BillingCurrency")?;

    let pricing_pre_tax_total = f.decimal("PricingPreTaxTotal")?;
    let pricing_currency = f.text("PricingCurrency")?;
    let pc_to_bc_exchange_rate = f.decimal("PCToBCExchangeRate")?;
    // The list price is the price list's UnitPrice for the quantity, in the pricing currency;
    // list_cost must be in the billing currency. (PricingPreTaxTotal is the charged total,
    // EffectiveUnitPrice x Quantity, after the partner's discounts: no list.)
    let list_cost = match unit_price {
        None => None,
        Some(price) => {
            let same_currency = pricing_currency
                .as_deref()
                .is_none_or(|p| p.eq_ignore_ascii_case(&currency));
            let rate = match (pc_to_bc_exchange_rate, same_currency) {
                (Some(rate), _) => rate,
                (None, true) => Decimal::ONE,
                (None, false) => {
                    return Err(f.error(
                        "PCToBCExchangeRate",
                        "missing, but PricingCurrency differs from BillingCurrency",
                    ));
                }
            };
            Some(list_total(price, quantity, rate).ok_or_else(|| {
                f.error(
                    "UnitPrice",
                    "UnitPrice x Quantity x PCToBCExchangeRate is out of range",
                )
            })?)
        }
    };

    Ok(RatedUsageRow {
        blob: blob.to_string(),
        line_number,
        customer_id: customer_id.clone(),
        subscription_id,
        entitlement_id,
        unit_price,
        effective_unit_price,
        pricing_pre_tax_total,
        pricing_currency,
        pc_to_bc_exchange_rate,
        latent_from: None,
        line: UsageLine {
            key: UsageKey {
                vendor_account_id,
                service,
                meter,
                region,
                window_start,
            },
            window_end,
            meter_name,
            quantity,
            unit,
            cost,
            list_cost,
            currency,
            // Unbilled usage: Microsoft revises it until the invoice closes.
            estimated: true,
            vendor_tenant_id: Some(customer_id.clone()),
        },
    })
}

/// `UnitPrice × Quantity × PCToBCExchangeRate`. Three vendor figures of 10+ fractional digits
/// each can need more than a decimal's 28: the product keeps as many as fit, far beyond the 16
/// that rated amounts keep (the cost, BillingPreTaxTotal, is never computed: it stays exact).
pub(crate) fn list_total(unit_price: Decimal, quantity: Decimal, rate: Decimal) -> Option<Decimal> {
    unit_price.checked_mul(quantity)?.checked_mul(rate)
}

/// Merges rows with the same key into one line (several resources of one subscription use the
/// same meter on the same day), in key order.
pub fn merge(rows: &[RatedUsageRow]) -> Result<Vec<UsageLine>, VendorError> {
    let mut merged: BTreeMap<&UsageKey, (UsageLine, &RatedUsageRow)> = BTreeMap::new();
    for row in rows {
        let Some((line, first)) = merged.get_mut(&row.line.key) else {
            merged.insert(&row.line.key, (row.line.clone(), row));
            continue;
        };
        let conflict = |field: &str| {
            VendorError::Malformed(format!(
                "blob {} line {} and blob {} line {}: same usage key, different {field}",
                first.blob, first.line_number, row.blob, row.line_number
            ))
        };
        if line.unit != row.line.unit {
            return Err(conflict("UnitOfMeasure"));
        }
        if !line.currency.eq_ignore_ascii_case(&row.line.currency) {
            return Err(conflict("BillingCurrency"));
        }
        let overflow = || {
            VendorError::Malformed(format!(
                "blob {} line {}: totals for its usage key overflow a decimal",
                row.blob, row.line_number
            ))
        };
        line.quantity = line
            .quantity
            .checked_add(row.line.quantity)
            .ok_or_else(overflow)?;
        line.cost = line.cost.checked_add(row.line.cost).ok_or_else(overflow)?;
        // A list total is only stated when every merged row states one.
        line.list_cost = match (line.list_cost, row.line.list_cost) {
            (Some(a), Some(b)) => Some(a.checked_add(b).ok_or_else(overflow)?),
            _ => None,
        };
    }
    Ok(merged.into_values().map(|(line, _)| line).collect())
}

/// Places a row of the export of the billing period `[start, end)` in that period's window.
///
/// Microsoft documents that a period's export can carry "previously uncharged latent usage data
/// (from previous bill cycle)": usage reported too late for the period it happened in, billed in
/// this one. Such a row is charged in the period that bills it, on its first day (its own date is
/// kept in [`RatedUsageRow::latent_from`]): dated in its own, earlier window, it would fall in a
/// window the pulls of that period restate (and reverse it), or collide with that day's regular
/// line of the same key. A row dated after the period is refused: the export is not what it says.
pub fn place_in_period(
    mut row: RatedUsageRow,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<RatedUsageRow, VendorError> {
    let day = row.line.key.window_start;
    if day >= end {
        return Err(VendorError::Malformed(format!(
            "blob {} line {}: UsageDate {} is after the billing period ending {}",
            row.blob,
            row.line_number,
            day.date_naive(),
            end.date_naive()
        )));
    }
    if day < start {
        row.latent_from = Some(day.date_naive());
        row.line.key.window_start = start;
        row.line.window_end = start + chrono::Duration::days(1);
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::TimeZone;

    use super::*;

    const ROW: &str = r#"{"PartnerId":"p","CustomerId":"c1","SubscriptionId":"s1",
        "EntitlementId":"e1","MeterId":"m1","MeterName":"D2 v3","MeterCategory":"Virtual Machines",
        "MeterRegion":"EU West","ResourceLocation":"westeurope","UsageDate":"2026-11-03T00:00:00",
        "Quantity":24.000000000001,"UnitOfMeasure":"1 Hour","UnitPrice":0.1234567890123,
        "EffectiveUnitPrice":0.1111111111111,"BillingPreTaxTotal":2.66666666666667,
        "BillingCurrency":"EUR","PricingPreTaxTotal":3.0000000000001,"PricingCurrency":"USD",
        "PCToBCExchangeRate":0.9234567891}"#;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn numbers_keep_every_digit() {
        let row = parse_row("b", 1, ROW, AccountKey::Subscription).unwrap();
        assert_eq!(row.line.quantity.to_string(), "24.000000000001");
        assert_eq!(row.line.cost.to_string(), "2.66666666666667");
        assert_eq!(row.unit_price.unwrap().to_string(), "0.1234567890123");
        // UnitPrice × Quantity in USD, × PCToBCExchangeRate into EUR: 0.1234567890123 ×
        // 24.000000000001 × 0.9234567891 = 2.73616823937358724875229389471...; 28 fractional digits kept.
        assert_eq!(
            row.line.list_cost.unwrap().to_string(),
            "2.7361682393735872487522938947"
        );
        // The f64 route would have lost digits: the reason for RawValue.
        let via_f64: f64 = serde_json::from_str("0.1234567890123456789").unwrap();
        assert_ne!(via_f64.to_string(), "0.1234567890123456789");
        assert_eq!(
            parse_decimal("0.1234567890123456789").unwrap().to_string(),
            "0.1234567890123456789"
        );
    }

    #[test]
    fn keys_and_windows() {
        let row = parse_row("b", 1, ROW, AccountKey::Subscription).unwrap();
        assert_eq!(row.line.key.vendor_account_id, "s1");
        assert_eq!(row.line.key.region, "westeurope");
        assert_eq!(row.line.key.service, "Virtual Machines");
        assert_eq!(
            row.line.key.window_start.to_rfc3339(),
            "2026-11-03T00:00:00+00:00"
        );
        assert_eq!(
            row.line.window_end.to_rfc3339(),
            "2026-11-04T00:00:00+00:00"
        );
        assert_eq!(row.customer_id, "c1");
        let by_tenant = parse_row("b", 1, ROW, AccountKey::CustomerTenant).unwrap();
        assert_eq!(by_tenant.line.key.vendor_account_id, "c1");
        let by_entitlement = parse_row("b", 1, ROW, AccountKey::AzureEntitlement).unwrap();
        assert_eq!(by_entitlement.line.key.vendor_account_id, "e1");
    }

    #[test]
    fn latent_rows_are_charged_on_the_first_day_of_the_period_that_bills_them() {
        let row = parse_row("b", 1, ROW, AccountKey::Subscription).unwrap();
        let december = (
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
        );
        let latent = place_in_period(row.clone(), december.0, december.1).unwrap();
        assert_eq!(latent.latent_from.unwrap().to_string(), "2026-11-03");
        assert_eq!(latent.line.key.window_start, december.0);
        assert_eq!(
            latent.line.window_end,
            december.0 + chrono::Duration::days(1)
        );
        assert_eq!(latent.line.cost, row.line.cost);

        let november = (
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            december.0,
        );
        assert_eq!(
            place_in_period(row.clone(), november.0, november.1).unwrap(),
            row
        );
        let october = (
            Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(),
            november.0,
        );
        let error = place_in_period(row, october.0, october.1).unwrap_err();
        assert!(
            error.to_string().contains("after the billing period"),
            "{error}"
        );
    }

    #[test]
    fn camel_case_and_string_numbers() {
        let text = r#"{"customerId":"c","subscriptionId":"s","meterId":"m",
            "productName":"Storage","usageDate":"2026-11-03","quantity":"1.5",
            "billingPreTaxTotal":"0.30","billingCurrency":"USD"}"#;
        let row = parse_row("b", 7, text, AccountKey::Subscription).unwrap();
        assert_eq!(row.line.key.service, "Storage");
        assert_eq!(row.line.quantity, d("1.5"));
        assert_eq!(row.line.list_cost, None);
    }

    #[test]
    fn malformed_fields_are_named() {
        let bad = ROW.replace("\"Quantity\":24.000000000001", "\"Quantity\":\"lots\"");
        let err = parse_row("part-1.json.gz", 3, &bad, AccountKey::Subscription).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, VendorError::Malformed(_)));
        assert!(
            msg.contains("part-1.json.gz") && msg.contains("line 3"),
            "{msg}"
        );
        assert!(msg.contains("Quantity"), "{msg}");

        let bad = ROW.replace("2026-11-03T00:00:00", "yesterday");
        let msg = parse_row("b", 1, &bad, AccountKey::Subscription)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("UsageDate"), "{msg}");

        let msg = parse_row("b", 2, "[1,2]", AccountKey::Subscription)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn scientific_and_overlong_numbers() {
        assert_eq!(parse_decimal("1E-05").unwrap(), d("0.00001"));
        assert_eq!(parse_decimal("2.5e2").unwrap(), d("250"));
        assert_eq!(parse_decimal("0e0").unwrap(), Decimal::ZERO);
        assert!(parse_decimal("0.12345678901234567890123456789").is_none());
        assert!(parse_decimal("NaN").is_none());
    }

    #[test]
    fn list_comes_from_unit_price_not_the_charged_total() {
        // The trial's figures: charged 5.5393 (PricingPreTaxTotal 5.5393 at rate 1), list price
        // 0.61910 a unit for 10 units.
        let text = r#"{"CustomerId":"c","SubscriptionId":"s","MeterId":"m","MeterCategory":"VM",
            "UsageDate":"2026-11-03","Quantity":10,"UnitPrice":0.61910,
            "EffectiveUnitPrice":0.55393,"BillingPreTaxTotal":5.5393,"BillingCurrency":"USD",
            "PricingPreTaxTotal":5.5393,"PricingCurrency":"USD","PCToBCExchangeRate":1}"#;
        let row = parse_row("b", 1, text, AccountKey::Subscription).unwrap();
        assert_eq!(row.line.cost, d("5.5393"));
        assert_eq!(row.line.list_cost, Some(d("6.1910")));
        // No UnitPrice: no list; rating falls back to the partner discount.
        let without = text.replace(r#""UnitPrice":0.61910,"#, "");
        let row = parse_row("b", 1, &without, AccountKey::Subscription).unwrap();
        assert_eq!(row.line.list_cost, None);
        // Priced in another currency without a rate: refused, not guessed.
        let foreign = text
            .replace(r#""PricingCurrency":"USD""#, r#""PricingCurrency":"EUR""#)
            .replace(r#","PCToBCExchangeRate":1"#, "");
        let error = parse_row("b", 1, &foreign, AccountKey::Subscription).unwrap_err();
        assert!(error.to_string().contains("PCToBCExchangeRate"), "{error}");
    }
}
