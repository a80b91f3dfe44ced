//! Reading a Partner Center licence-based (new commerce) price sheet: the CSV Partner Center
//! serves per market ("New commerce license-based price list", the `updatedlicensebased` view),
//! one row per SKU, term, billing plan and effective date, with columns ProductTitle, ProductId,
//! SkuId, SkuTitle, Publisher, SkuDescription, UnitOfMeasure, TermDuration, BillingPlan, Market,
//! Currency, UnitPrice, PricingTierRangeMin, PricingTierRangeMax, EffectiveStartDate,
//! EffectiveEndDate, Tags, ERP Price and Segment. Columns are found by name (any order, any
//! case; others are ignored), so a sheet that gains a column still imports.
//!
//! What becomes of it:
//! - one catalogue item per ProductId and SkuId, keyed `ProductId:SkuId` (the sheet names no
//!   availability; see [`CatalogItemId`]), with the TermDuration and BillingPlan pairs of its
//!   rows as its offers;
//! - one unit cost per offer, currency and effective month: UnitPrice (what the partner pays for
//!   one seat for one billing period) and ERP Price as the list price; the month is the one
//!   EffectiveStartDate falls in, as the catalogue prices by month (Microsoft changes prices on
//!   the first of a month; a SKU launched mid-month is priced from its launch month, before
//!   which nobody could buy it);
//! - Commercial rows only: other segments (Education, Government, Nonprofit) price customers the
//!   gateway cannot yet tell apart, so their rows are skipped and counted;
//! - an offer priced in several tiers (PricingTierRangeMin/Max) is skipped and reported: the
//!   catalogue holds one price per seat, and the lowest tier's price would misprice the rest.
//!
//! All or nothing: any bad row refuses the whole sheet, each problem named by its line in the
//! file (the header is line 1) and its column, so a half-imported price list never prices seats.
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;

use super::catalog::{BillingFrequency, CatalogItemId, Offer, Term, UnitCost};
use super::csv_records::{Record, records};
use super::error::{Error, FieldViolation, Result, Violations};
use super::money::{Currency, parse_decimal};
use super::text;

/// The largest sheet read, in bytes: a market's licence-based price list is a few megabytes; the
/// gRPC request limit (`max_request_bytes`) applies before this one.
pub const MAX_SHEET_BYTES: usize = 64 * 1024 * 1024;

/// The most rows read from one sheet.
pub const MAX_SHEET_ROWS: usize = 200_000;

/// The most row problems reported (the rest are counted): enough to see a pattern.
pub const MAX_REPORTED_PROBLEMS: usize = 50;

/// The most skipped groups listed in the answer (all are counted).
pub const MAX_REPORTED_SKIPS: usize = 100;

/// The only segment imported.
pub const SEGMENT: &str = "Commercial";

/// The field the sheet's problems are reported on.
const FIELD: &str = "csv";

/// An item of the sheet, ready to upsert.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SheetItem {
    /// `ProductId:SkuId`.
    pub priced_as: String,
    pub product: String,
    pub unit: String,
    pub offers: Vec<Offer>,
    pub unit_costs: Vec<UnitCost>,
}

/// Rows left out, grouped by why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub first_line: usize,
    pub rows: usize,
    pub reason: String,
}

/// A sheet read and checked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PriceSheet {
    pub market: String,
    pub items: Vec<SheetItem>,
    pub rows_read: usize,
    pub skipped: Vec<Skipped>,
}

impl PriceSheet {
    pub fn rows_skipped(&self) -> usize {
        self.skipped.iter().map(|s| s.rows).sum()
    }
}

/// A market: an ISO 3166-1 alpha-2 code, as Partner Center names its markets.
pub fn parse_market(field: &str, market: &str) -> std::result::Result<String, FieldViolation> {
    if market.len() == 2 && market.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(market.to_string())
    } else {
        Err(FieldViolation::new(
            field,
            format!("{market:?} is not a market: a two-letter country code such as \"US\""),
        ))
    }
}

/// The columns read, by name.
const REQUIRED: [&str; 10] = [
    "ProductTitle",
    "ProductId",
    "SkuId",
    "TermDuration",
    "BillingPlan",
    "Market",
    "Currency",
    "UnitPrice",
    "EffectiveStartDate",
    "Segment",
];
const OPTIONAL: [&str; 6] = [
    "SkuTitle",
    "UnitOfMeasure",
    "PricingTierRangeMin",
    "PricingTierRangeMax",
    "EffectiveEndDate",
    "ERP Price",
];

/// Where each read column is in a record.
struct Columns(BTreeMap<&'static str, usize>);

impl Columns {
    fn from_header(header: &Record) -> std::result::Result<Columns, Vec<FieldViolation>> {
        let mut found = BTreeMap::new();
        for name in REQUIRED.iter().chain(OPTIONAL.iter()) {
            if let Some(at) = header
                .fields
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
            {
                found.insert(*name, at);
            }
        }
        let missing: Vec<FieldViolation> = REQUIRED
            .iter()
            .filter(|name| !found.contains_key(*name))
            .map(|name| {
                FieldViolation::new(
                    FIELD,
                    format!(
                        "the header (line {}) has no {name} column: is this a Partner Center \
                         new commerce licence-based price list?",
                        header.line
                    ),
                )
            })
            .collect();
        if missing.is_empty() {
            Ok(Columns(found))
        } else {
            Err(missing)
        }
    }

    fn get<'r>(&self, record: &'r Record, name: &str) -> &'r str {
        self.0
            .get(name)
            .and_then(|&at| record.fields.get(at))
            .map(|s| s.trim())
            .unwrap_or("")
    }
}

/// The violation field of a cell: `csv[line 7].UnitPrice`.
pub fn cell(line: usize, column: &str) -> String {
    format!("{FIELD}[line {line}].{column}")
}

/// A row, checked: its key, offer, month and prices.
struct Row {
    line: usize,
    priced_as: String,
    product: String,
    unit: String,
    offer: Offer,
    currency: Currency,
    month: NaiveDate,
    unit_price: Decimal,
    list_price: Option<Decimal>,
    tier: (String, String),
}

/// Reads `csv` as the price sheet of `market`.
pub fn parse(market: &str, csv: &[u8]) -> Result<PriceSheet> {
    let market = parse_market("market", market).map_err(|v| Error::InvalidArgument(vec![v]))?;
    if csv.len() > MAX_SHEET_BYTES {
        return Err(Error::invalid(
            FIELD,
            format!(
                "is {} bytes; a price sheet of at most {MAX_SHEET_BYTES} bytes is read",
                csv.len()
            ),
        ));
    }
    let text = std::str::from_utf8(csv).map_err(|e| {
        Error::invalid(
            FIELD,
            format!(
                "is not UTF-8 text (byte {}): save the sheet as CSV UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    let all = records(text).map_err(|e| Error::invalid(FIELD, e))?;
    let Some((header, rows)) = all.split_first() else {
        return Err(Error::invalid(
            FIELD,
            "is empty: a header and rows are expected",
        ));
    };
    if rows.len() > MAX_SHEET_ROWS {
        return Err(Error::invalid(
            FIELD,
            format!(
                "has {} rows; at most {MAX_SHEET_ROWS} are read at once (split the sheet)",
                rows.len()
            ),
        ));
    }
    let columns = Columns::from_header(header).map_err(Error::InvalidArgument)?;
    let mut v = Violations::new();
    let mut problems = 0usize;
    let mut segments: BTreeMap<String, Skipped> = BTreeMap::new();
    let mut checked = Vec::new();
    for record in rows {
        if record.fields.len() != header.fields.len() {
            // A shifted row (an unquoted comma in a price) would read every later cell wrong.
            problems += 1;
            if v.len() < MAX_REPORTED_PROBLEMS {
                v.add(
                    format!("{FIELD}[line {}]", record.line),
                    format!(
                        "has {} cells where the header has {}: a cell holding a comma must be quoted",
                        record.fields.len(),
                        header.fields.len()
                    ),
                );
            }
            continue;
        }
        let segment = columns.get(record, "Segment");
        if !segment.eq_ignore_ascii_case(SEGMENT) {
            segments
                .entry(segment.to_string())
                .or_insert_with(|| Skipped {
                    first_line: record.line,
                    rows: 0,
                    reason: format!("Segment {segment:?}: only {SEGMENT} prices are imported"),
                })
                .rows += 1;
            continue;
        }
        let mut row_v = Violations::new();
        let row = check_row(&mut row_v, &columns, record, &market);
        problems += row_v.len();
        if v.len() < MAX_REPORTED_PROBLEMS {
            v.extend(row_v);
        }
        if let Some(row) = row {
            checked.push(row);
        }
    }
    let (mut items, tiered) = group(&mut v, &mut problems, checked);
    for cost in items.iter_mut().flat_map(|i| i.unit_costs.iter_mut()) {
        cost.market = market.clone();
    }
    if problems > v.len() {
        v.add(
            FIELD,
            format!(
                "{} more problems in other rows are not listed",
                problems - v.len()
            ),
        );
    }
    v.into_result()?;
    let mut skipped: Vec<Skipped> = segments.into_values().collect();
    skipped.extend(tiered);
    skipped.sort_by_key(|s| s.first_line);
    Ok(PriceSheet {
        market,
        items,
        rows_read: rows.len(),
        skipped,
    })
}

fn check_row(v: &mut Violations, columns: &Columns, record: &Record, market: &str) -> Option<Row> {
    let line = record.line;
    let get = |name| columns.get(record, name);
    let at = |name: &str| cell(line, name);
    let product_id = get("ProductId");
    let sku_id = get("SkuId");
    let priced_as = v
        .check(
            CatalogItemId::parse(&at("ProductId"), &format!("{product_id}:{sku_id}")).map_err(
                |_| {
                    FieldViolation::new(
                        at(
                            if product_id.is_empty()
                                || !product_id.chars().all(|c| c.is_ascii_alphanumeric())
                            {
                                "ProductId"
                            } else {
                                "SkuId"
                            },
                        ),
                        format!(
                            "{product_id:?} / {sku_id:?}: a product id and SKU id are letters \
                             and digits (e.g. CFQ7TTC0LH18 and 0001)"
                        ),
                    )
                },
            ),
        )
        .map(|id| id.priced_as());
    let product = v.check(text::display_name(
        &at("ProductTitle"),
        get("ProductTitle"),
        256,
    ));
    let unit = match get("UnitOfMeasure") {
        "" => Some("seat".to_string()),
        unit => v.check(text::display_name(&at("UnitOfMeasure"), unit, 64)),
    };
    let term = v.check(
        get("TermDuration")
            .parse::<Term>()
            .map_err(|e| FieldViolation::new(at("TermDuration"), e)),
    );
    let billing = v.check(billing_plan(&at("BillingPlan"), get("BillingPlan")));
    let offer = match (term, billing) {
        (Some(term), Some(billing)) => v.check(
            Offer::new(term, billing).map_err(|e| FieldViolation::new(at("BillingPlan"), e)),
        ),
        _ => None,
    };
    let row_market = get("Market");
    if row_market != market {
        v.add(
            at("Market"),
            format!(
                "{row_market:?}: the sheet is imported as market {market}; import one market's \
                 sheet at a time"
            ),
        );
    }
    let currency = v.check(Currency::parse(&at("Currency"), get("Currency")));
    let unit_price = v.check(price(&at("UnitPrice"), get("UnitPrice")));
    let list_price = match get("ERP Price") {
        "" => Some(None),
        text => v.check(price(&at("ERP Price"), text)).map(Some),
    };
    let start = v.check(date(&at("EffectiveStartDate"), get("EffectiveStartDate")));
    let end = match get("EffectiveEndDate") {
        "" => None,
        text => v.check(date(&at("EffectiveEndDate"), text)),
    };
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        v.add(
            at("EffectiveEndDate"),
            format!("{end} is before EffectiveStartDate {start}"),
        );
    }
    let month = start.and_then(|s| NaiveDate::from_ymd_opt(s.year(), s.month(), 1));
    Some(Row {
        line,
        priced_as: priced_as?,
        product: product?,
        unit: unit?,
        offer: offer?,
        currency: currency?,
        month: month?,
        unit_price: unit_price?,
        list_price: list_price?,
        tier: (
            get("PricingTierRangeMin").to_string(),
            get("PricingTierRangeMax").to_string(),
        ),
    })
}

/// Partner Center's BillingPlan: Monthly, Annual or Triennial.
fn billing_plan(field: &str, text: &str) -> std::result::Result<BillingFrequency, FieldViolation> {
    BillingFrequency::ALL
        .into_iter()
        .find(|b| b.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            FieldViolation::new(
                field,
                format!("{text:?} is not a billing plan (Monthly, Annual or Triennial)"),
            )
        })
}

/// An exact price, 0 or more (the sheet's decimals as written; never through a float).
fn price(field: &str, text: &str) -> std::result::Result<Decimal, FieldViolation> {
    let value = parse_decimal(field, text)?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(FieldViolation::new(field, format!("{text} is negative")));
    }
    Ok(value.abs())
}

/// A date as price sheets write it: `2026-12-01`, `2026-12-01T00:00:00Z` (or with an offset or
/// fraction), or the US form Excel saves, `12/1/2026` or `12/1/2026 12:00:00 AM`. The date as
/// written is taken, with no time-zone conversion: prices change on a calendar day.
fn date(field: &str, text: &str) -> std::result::Result<NaiveDate, FieldViolation> {
    let parsed = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|d| d.date_naive())
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|d| d.date())
        })
        .or_else(|| NaiveDate::parse_from_str(text, "%m/%d/%Y").ok())
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%m/%d/%Y %I:%M:%S %p")
                .ok()
                .map(|d| d.date())
        });
    parsed.ok_or_else(|| {
        FieldViolation::new(
            field,
            format!("{text:?} is not a date (e.g. 2026-12-01 or 2026-12-01T00:00:00Z)"),
        )
    })
}

/// The rows as items: duplicates that agree are one, those that disagree are refused, and offers
/// priced in several tiers are left out (returned as skipped).
fn group(
    v: &mut Violations,
    problems: &mut usize,
    rows: Vec<Row>,
) -> (Vec<SheetItem>, Vec<Skipped>) {
    type CostKey = (String, Offer, &'static str, NaiveDate);
    let mut by_cost: BTreeMap<CostKey, Vec<Row>> = BTreeMap::new();
    for row in rows {
        by_cost
            .entry((
                row.priced_as.clone(),
                row.offer,
                row.currency.code(),
                row.month,
            ))
            .or_default()
            .push(row);
    }
    let mut items: BTreeMap<String, SheetItem> = BTreeMap::new();
    let mut skipped = Vec::new();
    for ((priced_as, offer, currency, month), rows) in by_cost {
        let first = &rows[0];
        let tiers: std::collections::BTreeSet<&(String, String)> =
            rows.iter().map(|r| &r.tier).collect();
        if tiers.len() > 1 {
            skipped.push(Skipped {
                first_line: first.line,
                rows: rows.len(),
                reason: format!(
                    "{priced_as} {offer} in {currency} from {}: priced in {} tiers \
                     (PricingTierRangeMin/Max); the catalogue holds one price per seat",
                    month.format("%Y-%m"),
                    tiers.len()
                ),
            });
            continue;
        }
        for other in &rows[1..] {
            for (column, mine, theirs) in [
                ("UnitPrice", Some(first.unit_price), Some(other.unit_price)),
                ("ERP Price", first.list_price, other.list_price),
            ] {
                if mine != theirs {
                    *problems += 1;
                    if v.len() < MAX_REPORTED_PROBLEMS {
                        v.add(
                            cell(other.line, column),
                            format!(
                                "{priced_as} {offer} in {currency} from {} is priced \
                                 differently on line {}",
                                month.format("%Y-%m"),
                                first.line
                            ),
                        );
                    }
                }
            }
        }
        let item = items.entry(priced_as.clone()).or_insert_with(|| SheetItem {
            priced_as: priced_as.clone(),
            product: first.product.clone(),
            unit: first.unit.clone(),
            offers: Vec::new(),
            unit_costs: Vec::new(),
        });
        if !item.offers.contains(&offer) {
            item.offers.push(offer);
        }
        item.unit_costs.push(UnitCost {
            offer,
            currency: first.currency,
            effective_month: month,
            unit_cost: first.unit_price,
            list_price: first.list_price,
            market: String::new(),
        });
    }
    if skipped.len() > MAX_REPORTED_SKIPS {
        let rest: usize = skipped[MAX_REPORTED_SKIPS..].iter().map(|s| s.rows).sum();
        let count = skipped.len() - MAX_REPORTED_SKIPS;
        skipped.truncate(MAX_REPORTED_SKIPS);
        skipped.push(Skipped {
            first_line: 0,
            rows: rest,
            reason: format!("{count} more tiered offers"),
        });
    }
    let mut items: Vec<SheetItem> = items.into_values().collect();
    for item in &mut items {
        item.offers.sort();
    }
    (items, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "ProductTitle,ProductId,SkuId,SkuTitle,Publisher,SkuDescription,UnitOfMeasure,TermDuration,BillingPlan,Market,Currency,UnitPrice,PricingTierRangeMin,PricingTierRangeMax,EffectiveStartDate,EffectiveEndDate,Tags,ERP Price,Segment";

    fn sheet(rows: &[&str]) -> Vec<u8> {
        let mut text = String::from(HEADER);
        for row in rows {
            text.push_str("\r\n");
            text.push_str(row);
        }
        text.into_bytes()
    }

    const BASIC_P1Y_ANNUAL: &str = "Microsoft 365 Business Basic,CFQ7TTC0LH18,0001,Microsoft 365 Business Basic,Microsoft Corporation,\"Email, calendar\",1 License,P1Y,Annual,US,USD,72.00,,,2026-12-01T00:00:00Z,9999-12-31T00:00:00Z,License,72.00,Commercial";
    const BASIC_P1M_MONTHLY: &str = "Microsoft 365 Business Basic,CFQ7TTC0LH18,0001,Microsoft 365 Business Basic,Microsoft Corporation,,1 License,P1M,Monthly,US,USD,7.20,,,2026-12-01T00:00:00Z,,License,7.20,Commercial";

    fn violations(result: Result<PriceSheet>) -> Vec<(String, String)> {
        match result {
            Err(Error::InvalidArgument(v)) => {
                v.into_iter().map(|v| (v.field, v.description)).collect()
            }
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn rows_become_items_with_offers_and_costs_by_month() {
        let education = BASIC_P1Y_ANNUAL.replace("Commercial", "Education");
        let parsed = parse(
            "US",
            &sheet(&[
                BASIC_P1Y_ANNUAL,
                BASIC_P1M_MONTHLY,
                &education,
                BASIC_P1Y_ANNUAL,
            ]),
        )
        .unwrap();
        assert_eq!(parsed.rows_read, 4);
        assert_eq!(parsed.items.len(), 1);
        let item = &parsed.items[0];
        assert_eq!(item.priced_as, "CFQ7TTC0LH18:0001");
        assert_eq!(item.product, "Microsoft 365 Business Basic");
        assert_eq!(item.unit, "1 License");
        assert_eq!(item.offers.len(), 2);
        let annual = item
            .unit_costs
            .iter()
            .find(|c| c.offer.billing == BillingFrequency::Annual)
            .unwrap();
        assert_eq!(annual.unit_cost.to_string(), "72.00");
        assert_eq!(annual.effective_month.to_string(), "2026-12-01");
        assert_eq!(parsed.skipped.len(), 1);
        assert_eq!(parsed.skipped[0].first_line, 4);
        assert!(parsed.skipped[0].reason.contains("Education"));
    }

    #[test]
    fn bad_cells_are_named_by_line_and_column() {
        let bad_price = BASIC_P1M_MONTHLY.replace("7.20,,,", "7,20,,,");
        let float_price = BASIC_P1M_MONTHLY.replace("7.20,,,", "NaN,,,");
        let bad_plan = BASIC_P1M_MONTHLY.replace("P1M,Monthly", "P1M,Annual");
        let bad_market = BASIC_P1M_MONTHLY.replace(",US,", ",DE,");
        let got = violations(parse(
            "US",
            &sheet(&[BASIC_P1Y_ANNUAL, &bad_plan, &float_price, &bad_market]),
        ));
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "csv[line 3].BillingPlan",
                "csv[line 4].UnitPrice",
                "csv[line 5].Market"
            ],
            "{got:?}"
        );
        // "7,20" splits into two cells, shifting the rest: refused, on its line.
        let got = violations(parse("US", &sheet(&[BASIC_P1Y_ANNUAL, &bad_price])));
        assert_eq!(got[0].0, "csv[line 3]", "{got:?}");
    }

    #[test]
    fn disagreeing_duplicates_are_refused_and_tiers_skipped() {
        let dearer = BASIC_P1M_MONTHLY.replace("7.20,,,", "8.00,,,");
        let got = violations(parse("US", &sheet(&[BASIC_P1M_MONTHLY, &dearer])));
        assert_eq!(got[0].0, "csv[line 3].UnitPrice", "{got:?}");
        let tier1 = BASIC_P1M_MONTHLY.replace("7.20,,,", "7.20,1,300,");
        let tier2 = BASIC_P1M_MONTHLY.replace("7.20,,,", "6.50,301,,");
        let parsed = parse("US", &sheet(&[&tier1, &tier2, BASIC_P1Y_ANNUAL])).unwrap();
        assert_eq!(parsed.items[0].offers.len(), 1);
        assert_eq!(parsed.skipped[0].rows, 2);
        assert!(
            parsed.skipped[0].reason.contains("2 tiers"),
            "{:?}",
            parsed.skipped
        );
    }

    #[test]
    fn a_sheet_that_is_not_a_price_list() {
        let got = violations(parse("US", b"Name,Amount\nx,1"));
        assert!(
            got.iter().any(|(_, d)| d.contains("no UnitPrice column")),
            "{got:?}"
        );
        assert_eq!(violations(parse("USA", &sheet(&[])))[0].0, "market");
        assert_eq!(violations(parse("US", b""))[0].0, "csv");
        assert_eq!(violations(parse("US", b"\xff\xfe"))[0].0, "csv");
    }

    #[test]
    fn dates_in_the_forms_sheets_use() {
        for text in [
            "2026-12-01",
            "2026-12-01T00:00:00Z",
            "2026-12-01T00:00:00.0000000Z",
            "2026-12-01T00:00:00",
            "12/1/2026",
            "12/1/2026 12:00:00 AM",
        ] {
            assert_eq!(date("d", text).unwrap().to_string(), "2026-12-01", "{text}");
        }
        assert!(date("d", "1 Dec 2026").is_err());
    }
}
