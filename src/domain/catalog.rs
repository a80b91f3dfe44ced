//! The catalogue's rules: what a SKU is sold as (term and billing frequency), how its catalogue
//! id is spelt, which unit cost is in force, and how many seats a subscription may hold.
//!
//! Microsoft's New Commerce Experience keys a licence as `product:sku:availability` and sells
//! it for a term (P1M, P1Y, P3Y) billed monthly, annually or, for three-year terms, triennially.
//! A billing period never outlasts its term and a term is a whole number of them, so the
//! combinations are: P1M monthly; P1Y monthly or annual; P3Y monthly, annual or triennial. A
//! SKU offers a subset of those (its `offers`); the MSP's own items choose theirs the same way.
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::error::FieldViolation;
use super::money::Currency;
use super::vendor::Vendor;

/// How long a subscription commits for before it renews.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Term {
    P1M,
    P1Y,
    P3Y,
}

impl Term {
    pub const ALL: [Term; 3] = [Term::P1M, Term::P1Y, Term::P3Y];

    pub fn months(self) -> u32 {
        match self {
            Term::P1M => 1,
            Term::P1Y => 12,
            Term::P3Y => 36,
        }
    }

    /// The ISO 8601 duration Partner Center spells it with.
    pub fn as_str(self) -> &'static str {
        match self {
            Term::P1M => "P1M",
            Term::P1Y => "P1Y",
            Term::P3Y => "P3Y",
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Term {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Term::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a term (P1M, P1Y or P3Y)"))
    }
}

/// How often a subscription's fee is charged (in advance, for the period ahead).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum BillingFrequency {
    Monthly,
    Annual,
    Triennial,
}

impl BillingFrequency {
    pub const ALL: [BillingFrequency; 3] = [
        BillingFrequency::Monthly,
        BillingFrequency::Annual,
        BillingFrequency::Triennial,
    ];

    pub fn months(self) -> u32 {
        match self {
            BillingFrequency::Monthly => 1,
            BillingFrequency::Annual => 12,
            BillingFrequency::Triennial => 36,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BillingFrequency::Monthly => "MONTHLY",
            BillingFrequency::Annual => "ANNUAL",
            BillingFrequency::Triennial => "TRIENNIAL",
        }
    }
}

impl fmt::Display for BillingFrequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BillingFrequency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BillingFrequency::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a billing frequency"))
    }
}

/// A term with the frequency its fee is charged at.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Offer {
    pub term: Term,
    pub billing: BillingFrequency,
}

impl Offer {
    /// The combination, when any vendor could offer it: the billing period fits the term a
    /// whole number of times.
    pub fn new(term: Term, billing: BillingFrequency) -> Result<Offer, String> {
        if billing.months() > term.months() || !term.months().is_multiple_of(billing.months()) {
            return Err(format!(
                "a {term} term cannot be billed {}: a billing period never outlasts its term",
                billing.as_str().to_lowercase()
            ));
        }
        Ok(Offer { term, billing })
    }

    /// Billing periods in one term.
    pub fn periods_per_term(self) -> u32 {
        self.term.months() / self.billing.months()
    }
}

impl fmt::Display for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} billed {}",
            self.term,
            self.billing.as_str().to_lowercase()
        )
    }
}

/// Checks that `offer` is among a SKU's `offers`, saying what the SKU does offer.
pub fn check_offered(field: &str, offers: &[Offer], offer: Offer) -> Result<(), FieldViolation> {
    if offers.contains(&offer) {
        return Ok(());
    }
    let listed: Vec<String> = offers.iter().map(Offer::to_string).collect();
    Err(FieldViolation::new(
        field,
        format!(
            "the SKU is not sold as {offer}; it is sold as: {}",
            listed.join(", ")
        ),
    ))
}

/// Microsoft's catalogue id of a licence: `product:sku:availability`, e.g.
/// `CFQ7TTC0LH18:0001:CFQ7TTC0K5DL`, or `product:sku` as a price sheet keys it. A price sheet
/// names no availability: Partner Center's availabilities are per market and segment and are
/// what an order (cart line) names, so they are looked up when ordering, not part of the price.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CatalogItemId {
    pub product: String,
    pub sku: String,
    pub availability: Option<String>,
}

impl CatalogItemId {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        let parts: Vec<&str> = text.split(':').collect();
        let valid = |p: &str| {
            !p.is_empty() && p.len() <= 64 && p.chars().all(|c| c.is_ascii_alphanumeric())
        };
        match parts.as_slice() {
            [product, sku, rest @ ..]
                if valid(product)
                    && valid(sku)
                    && rest.len() <= 1
                    && rest.iter().all(|a| valid(a)) =>
            {
                Ok(CatalogItemId {
                    product: product.to_string(),
                    sku: sku.to_string(),
                    availability: rest.first().map(|a| a.to_string()),
                })
            }
            _ => Err(FieldViolation::new(
                field,
                format!(
                    "{text:?} is not a catalogue id: expected product:sku:availability or \
                     product:sku, each part letters and digits (e.g. CFQ7TTC0LH18:0001:CFQ7TTC0K5DL)"
                ),
            )),
        }
    }

    /// The `product:sku` it prices by (a price sheet's key).
    pub fn priced_as(&self) -> String {
        format!("{}:{}", self.product, self.sku)
    }
}

impl fmt::Display for CatalogItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.product, self.sku)?;
        match &self.availability {
            Some(availability) => write!(f, ":{availability}"),
            None => Ok(()),
        }
    }
}

/// The most seats one subscription holds. Partner Center's own ceiling per subscription is in
/// the hundreds of thousands; a million keeps every product of a price and seat-seconds within
/// Decimal's 28 digits (10^6 seats × 3 years ≈ 9.5 × 10^13 seat-seconds).
pub const MAX_SEATS: u32 = 1_000_000;

/// A requested seat count: 1 to [`MAX_SEATS`].
pub fn check_quantity(field: &str, quantity: i64) -> Result<u32, FieldViolation> {
    if (1..=i64::from(MAX_SEATS)).contains(&quantity) {
        Ok(quantity as u32)
    } else {
        Err(FieldViolation::new(
            field,
            format!("{quantity} seats: a subscription holds 1 to {MAX_SEATS} seats"),
        ))
    }
}

/// What one seat costs the MSP for one billing period of `offer`, in `currency`, from the first
/// day of `effective_month` until a later month's cost replaces it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnitCost {
    pub offer: Offer,
    pub currency: Currency,
    /// The first day of the month the cost takes effect.
    pub effective_month: NaiveDate,
    pub unit_cost: Decimal,
    /// The vendor's list (ERP) price, where it states one: list-minus-discount rules use it.
    pub list_price: Option<Decimal>,
    /// The vendor's market (ISO country) the cost was priced for, as a price sheet states it;
    /// empty where none was stated (the MSP's own items).
    pub market: String,
}

/// The first day of `month` ("2026-12") as the month a cost takes effect.
pub fn parse_effective_month(field: &str, month: &str) -> Result<NaiveDate, FieldViolation> {
    NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").map_err(|_| {
        FieldViolation::new(
            field,
            format!("{month:?} is not a month (YYYY-MM, e.g. 2026-12)"),
        )
    })
}

/// The cost of `offer` in force at `at` (by the UTC month: price sheets are monthly and
/// global), preferring `currency`.
pub fn cost_in_force(
    costs: &[UnitCost],
    offer: Offer,
    currency: Option<Currency>,
    at: DateTime<Utc>,
) -> Option<&UnitCost> {
    let month = NaiveDate::from_ymd_opt(at.year(), at.month(), 1)?;
    costs
        .iter()
        .filter(|c| c.offer == offer && c.effective_month <= month)
        .max_by_key(|c| {
            (
                currency.is_some_and(|want| want == c.currency),
                c.effective_month,
            )
        })
}

/// A catalogue item as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogItem {
    pub id: String,
    pub vendor: Vendor,
    /// Microsoft: `product:sku:availability`; the MSP: its own code.
    pub catalog_item_id: String,
    pub product: String,
    pub unit: String,
    pub offers: Vec<Offer>,
    pub unit_costs: Vec<UnitCost>,
    pub created_at: DateTime<Utc>,
}

/// Whether seats of `item` can be bought through the gateway: the MSP's own items (no vendor)
/// and Microsoft's licences (ordered through Partner Center's cart and checkout before they are
/// billed, see `seat_order`).
pub fn check_orderable(field: &str, item: &CatalogItem) -> Result<(), super::error::Error> {
    match item.vendor {
        Vendor::Msp | Vendor::Microsoft => Ok(()),
        vendor => Err(super::error::Error::precondition(
            field,
            format!("{vendor} sells no seats through the gateway"),
        )),
    }
}

/// A validated new catalogue item (its id and creation time are the store's).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NewCatalogItem {
    pub vendor: Vendor,
    pub catalog_item_id: String,
    pub product: String,
    pub unit: String,
    pub offers: Vec<Offer>,
    pub unit_costs: Vec<UnitCost>,
}

/// The vendors a catalogue item may have: Microsoft's licences and the MSP's own items.
pub fn check_item_vendor(field: &str, vendor: Vendor) -> Result<(), FieldViolation> {
    match vendor {
        Vendor::Microsoft | Vendor::Msp => Ok(()),
        other => Err(FieldViolation::new(
            field,
            format!("{other} sells no seats; the catalogue holds MICROSOFT licences and MSP items"),
        )),
    }
}

/// An item's code: Microsoft's `product:sku:availability` (or `product:sku`), or the MSP's own (1 to 64 letters,
/// digits, `-`, `_`, `:` or `.`).
pub fn check_item_code(field: &str, vendor: Vendor, code: &str) -> Result<String, FieldViolation> {
    if vendor == Vendor::Microsoft {
        return CatalogItemId::parse(field, code).map(|id| id.to_string());
    }
    let valid = !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c));
    if valid {
        Ok(code.to_string())
    } else {
        Err(FieldViolation::new(
            field,
            format!("{code:?} is not an item code: 1 to 64 letters, digits, '-', '_', ':' or '.'"),
        ))
    }
}

/// The stored form of offers: `P1Y:MONTHLY,P1Y:ANNUAL`.
pub fn encode_offers(offers: &[Offer]) -> String {
    offers
        .iter()
        .map(|o| format!("{}:{}", o.term, o.billing))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode_offers(stored: &str) -> Result<Vec<Offer>, String> {
    stored
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (term, billing) = part
                .split_once(':')
                .ok_or_else(|| format!("stored offer {part:?}"))?;
            Offer::new(term.parse()?, billing.parse()?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_offers_any_vendor_could_make() {
        let valid: Vec<String> = Term::ALL
            .into_iter()
            .flat_map(|t| BillingFrequency::ALL.into_iter().map(move |b| (t, b)))
            .filter_map(|(t, b)| Offer::new(t, b).ok())
            .map(|o| o.to_string())
            .collect();
        assert_eq!(
            valid,
            [
                "P1M billed monthly",
                "P1Y billed monthly",
                "P1Y billed annual",
                "P3Y billed monthly",
                "P3Y billed annual",
                "P3Y billed triennial"
            ]
        );
        let p3y = Offer::new(Term::P3Y, BillingFrequency::Annual).unwrap();
        assert_eq!(p3y.periods_per_term(), 3);
        let error = Offer::new(Term::P1M, BillingFrequency::Annual).unwrap_err();
        assert!(error.contains("never outlasts"), "{error}");
    }

    #[test]
    fn an_offer_the_sku_does_not_make_names_those_it_does() {
        let offers = [Offer::new(Term::P1Y, BillingFrequency::Annual).unwrap()];
        let asked = Offer::new(Term::P1M, BillingFrequency::Monthly).unwrap();
        let v = check_offered("billing_frequency", &offers, asked).unwrap_err();
        assert_eq!(v.field, "billing_frequency");
        assert!(v.description.contains("P1Y billed annual"), "{v}");
    }

    #[test]
    fn catalogue_ids_and_quantities() {
        let id = CatalogItemId::parse("sku_id", "CFQ7TTC0LH18:0001:CFQ7TTC0K5DL").unwrap();
        assert_eq!(id.to_string(), "CFQ7TTC0LH18:0001:CFQ7TTC0K5DL");
        assert_eq!(id.priced_as(), "CFQ7TTC0LH18:0001");
        let priced = CatalogItemId::parse("sku_id", "CFQ7TTC0LH18:0001").unwrap();
        assert_eq!(
            (priced.availability.clone(), priced.to_string()),
            (None, "CFQ7TTC0LH18:0001".into())
        );
        for bad in ["", "CFQ7TTC0LH18", "a:b:c:d", "a::c", "a:b:c d", "a:b:"] {
            assert!(CatalogItemId::parse("sku_id", bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_quantity("quantity", 1).unwrap(), 1);
        assert_eq!(check_quantity("quantity", 1_000_000).unwrap(), MAX_SEATS);
        for bad in [0, -1, 1_000_000_001, 1_000_001] {
            assert_eq!(
                check_quantity("quantity", bad).unwrap_err().field,
                "quantity"
            );
        }
    }

    #[test]
    fn the_cost_in_force_is_the_latest_month_not_after_the_date() {
        let offer = Offer::new(Term::P1Y, BillingFrequency::Monthly).unwrap();
        let usd = Currency::parse("c", "USD").unwrap();
        let eur = Currency::parse("c", "EUR").unwrap();
        let cost = |month: &str, currency, amount: i64| UnitCost {
            offer,
            currency,
            effective_month: parse_effective_month("m", month).unwrap(),
            unit_cost: Decimal::from(amount),
            list_price: None,
            market: String::new(),
        };
        let costs = [
            cost("2026-01", usd, 10),
            cost("2026-12", usd, 12),
            cost("2026-06", eur, 9),
        ];
        let at = |m: u32, d: u32| Utc.with_ymd_and_hms(2026, m, d, 12, 0, 0).unwrap();
        let pick = |currency, at| cost_in_force(&costs, offer, currency, at).map(|c| c.unit_cost);
        assert_eq!(pick(Some(usd), at(11, 30)), Some(Decimal::from(10)));
        assert_eq!(pick(Some(usd), at(12, 1)), Some(Decimal::from(12)));
        assert_eq!(pick(Some(eur), at(12, 1)), Some(Decimal::from(9)));
        let too_early = Utc.with_ymd_and_hms(2025, 12, 31, 0, 0, 0).unwrap();
        assert_eq!(pick(Some(usd), too_early), None);
        assert!(parse_effective_month("effective_month", "2026-13").is_err());
    }
}
