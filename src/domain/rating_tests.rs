//! Rating: rule precedence, effective dates, FX, currencies with 0 and 3 minor digits, and
//! precision down to 1e-10.
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::money::Currency;
use super::pricing::{FxRate, PriceKind, PriceRule, RuleScope};
use super::rating::{Chargee, PriceBook, UnratedReason, rate};
use super::usage::{UsageKey, UsageLine};
use super::vendor::Vendor;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn cur(code: &str) -> Currency {
    Currency::parse("c", code).unwrap()
}

fn line(cost: &str, quantity: &str) -> UsageLine {
    UsageLine {
        key: UsageKey {
            vendor_account_id: "111122223333".into(),
            service: "Compute".into(),
            meter: "vm.small".into(),
            region: "eu-west-1".into(),
            window_start: t("2026-11-10T10:00:00Z"),
        },
        window_end: t("2026-11-10T11:00:00Z"),
        meter_name: String::new(),
        quantity: d(quantity),
        unit: "Hrs".into(),
        cost: d(cost),
        list_cost: None,
        currency: "USD".into(),
        estimated: false,
    }
}

fn rule(id: &str, scope: RuleScope, kind: PriceKind, value: &str) -> PriceRule {
    PriceRule {
        id: id.into(),
        scope,
        kind,
        value: d(value),
        currency: None,
        effective_from: t("2026-01-01T00:00:00Z"),
        effective_to: None,
        created_at: t("2026-01-01T00:00:00Z"),
    }
}

fn chargee(currency: &str) -> Chargee {
    Chargee {
        customer_id: "cus_1".into(),
        currency: cur(currency),
    }
}

fn usd_book<'a>(rules: &'a [PriceRule], fx: &'a [FxRate]) -> PriceBook<'a> {
    PriceBook { rules, fx }
}

#[test]
fn most_specific_rule_wins() {
    let rules = [
        rule("tenant", RuleScope::default(), PriceKind::Markup, "0.10"),
        rule(
            "vendor",
            RuleScope {
                vendor: Some(Vendor::Aws),
                ..Default::default()
            },
            PriceKind::Markup,
            "0.20",
        ),
        rule(
            "meter",
            RuleScope {
                meter: Some("vm.small".into()),
                ..Default::default()
            },
            PriceKind::Markup,
            "0.30",
        ),
        rule(
            "customer",
            RuleScope {
                customer_id: Some("cus_1".into()),
                ..Default::default()
            },
            PriceKind::Markup,
            "0.40",
        ),
        rule(
            "customer+meter",
            RuleScope {
                customer_id: Some("cus_1".into()),
                meter: Some("vm.small".into()),
                ..Default::default()
            },
            PriceKind::Markup,
            "0.50",
        ),
        rule(
            "other customer",
            RuleScope {
                customer_id: Some("cus_2".into()),
                ..Default::default()
            },
            PriceKind::Markup,
            "9",
        ),
    ];
    let l = line("100", "1");
    let pick = |n: usize| {
        rate(
            &l,
            Vendor::Aws,
            Decimal::ZERO,
            Some(&chargee("USD")),
            &usd_book(&rules[..n], &[]),
        )
        .unwrap()
    };
    assert_eq!(pick(1).rule_id, "tenant");
    assert_eq!(pick(2).rule_id, "vendor");
    assert_eq!(pick(3).rule_id, "meter");
    assert_eq!(pick(4).rule_id, "customer");
    let best = pick(6);
    assert_eq!(best.rule_id, "customer+meter");
    assert_eq!(best.amount, d("150"));
    // Another vendor's usage falls back to the tenant rule when only vendor rules differ.
    let gcp = rate(
        &l,
        Vendor::Microsoft,
        Decimal::ZERO,
        Some(&chargee("USD")),
        &usd_book(&rules[..2], &[]),
    )
    .unwrap();
    assert_eq!(gcp.rule_id, "tenant");
}

#[test]
fn rules_apply_only_while_in_force() {
    let mut old = rule("old", RuleScope::default(), PriceKind::Markup, "0.10");
    old.effective_to = Some(t("2026-11-10T00:00:00Z"));
    let mut new = rule("new", RuleScope::default(), PriceKind::Markup, "0.25");
    new.effective_from = t("2026-11-10T00:00:00Z");
    let mut future = rule("future", RuleScope::default(), PriceKind::Markup, "0.99");
    future.effective_from = t("2026-12-01T00:00:00Z");
    let rules = vec![old, new, future];
    let l = line("100", "1");
    let rated = rate(
        &l,
        Vendor::Aws,
        Decimal::ZERO,
        Some(&chargee("USD")),
        &usd_book(&rules, &[]),
    )
    .unwrap();
    assert_eq!(rated.rule_id, "new");
    let mut before = l.clone();
    before.key.window_start = t("2026-11-09T23:00:00Z");
    let rated = rate(
        &before,
        Vendor::Aws,
        Decimal::ZERO,
        Some(&chargee("USD")),
        &usd_book(&rules, &[]),
    )
    .unwrap();
    assert_eq!(rated.rule_id, "old");
    let mut ancient = l;
    ancient.key.window_start = t("2025-06-01T00:00:00Z");
    let err = rate(
        &ancient,
        Vendor::Aws,
        Decimal::ZERO,
        Some(&chargee("USD")),
        &usd_book(&rules, &[]),
    )
    .unwrap_err();
    assert_eq!(err, UnratedReason::NoPriceRule);
}

#[test]
fn list_minus_discount_and_fixed_prices() {
    // Partner discount 20 %: list = 80 / 0.8 = 100; passing 5 % on: 95.
    let rules = vec![rule(
        "list",
        RuleScope::default(),
        PriceKind::ListMinusDiscount,
        "0.05",
    )];
    let l = line("80", "4");
    let rated = rate(
        &l,
        Vendor::Aws,
        d("0.20"),
        Some(&chargee("USD")),
        &usd_book(&rules, &[]),
    )
    .unwrap();
    assert_eq!(rated.amount, d("95"));
    let mut stated = l.clone();
    stated.list_cost = Some(d("120"));
    let rated = rate(
        &stated,
        Vendor::Aws,
        d("0.20"),
        Some(&chargee("USD")),
        &usd_book(&rules, &[]),
    )
    .unwrap();
    assert_eq!(rated.amount, d("114"));

    let mut fixed = rule(
        "fixed",
        RuleScope::default(),
        PriceKind::FixedUnitPrice,
        "12.5",
    );
    fixed.currency = Some(cur("ZAR"));
    let rated = rate(
        &l,
        Vendor::Aws,
        d("0.20"),
        Some(&chargee("ZAR")),
        &usd_book(&[fixed], &[]),
    )
    .unwrap();
    assert_eq!(rated.amount, d("50"));
    assert_eq!(rated.currency, cur("ZAR"));
}

#[test]
fn fx_converts_at_the_rate_in_force_and_zero_and_three_digit_currencies_keep_precision() {
    let rules = vec![rule("tenant", RuleScope::default(), PriceKind::Markup, "0")];
    let fx = vec![
        FxRate {
            from: cur("USD"),
            to: cur("JPY"),
            rate: d("150"),
            effective_from: t("2026-01-01T00:00:00Z"),
        },
        FxRate {
            from: cur("USD"),
            to: cur("JPY"),
            rate: d("155.5"),
            effective_from: t("2026-11-05T00:00:00Z"),
        },
        FxRate {
            from: cur("USD"),
            to: cur("KWD"),
            rate: d("0.307"),
            effective_from: t("2026-01-01T00:00:00Z"),
        },
    ];
    let l = line("1.2345", "1");
    let jpy = rate(
        &l,
        Vendor::Aws,
        Decimal::ZERO,
        Some(&chargee("JPY")),
        &usd_book(&rules, &fx),
    )
    .unwrap();
    // Full precision is kept: rounding to the currency's minor unit happens on invoice lines.
    assert_eq!(jpy.amount, d("191.96475"));
    let kwd = rate(
        &l,
        Vendor::Aws,
        Decimal::ZERO,
        Some(&chargee("KWD")),
        &usd_book(&rules, &fx),
    )
    .unwrap();
    assert_eq!(kwd.amount, d("0.3789915"));
    let err = rate(
        &l,
        Vendor::Aws,
        Decimal::ZERO,
        Some(&chargee("EUR")),
        &usd_book(&rules, &fx),
    )
    .unwrap_err();
    assert_eq!(
        err,
        UnratedReason::NoFxRate {
            from: "USD".into(),
            to: "EUR".into()
        }
    );
}

#[test]
fn tiny_amounts_keep_their_precision() {
    let rules = vec![rule(
        "tenant",
        RuleScope::default(),
        PriceKind::Markup,
        "0.25",
    )];
    let l = line("0.0000000001", "0.0000001");
    let rated = rate(
        &l,
        Vendor::Aws,
        Decimal::ZERO,
        Some(&chargee("USD")),
        &usd_book(&rules, &[]),
    )
    .unwrap();
    assert_eq!(rated.amount, d("0.000000000125"));
}

#[test]
fn unlinked_usage_and_unknown_currencies_are_unrated_with_reasons() {
    let rules = vec![rule(
        "tenant",
        RuleScope::default(),
        PriceKind::Markup,
        "0.1",
    )];
    let l = line("10", "1");
    assert_eq!(
        rate(&l, Vendor::Aws, Decimal::ZERO, None, &usd_book(&rules, &[])).unwrap_err(),
        UnratedReason::UnknownVendorAccount
    );
    let mut odd = l;
    odd.currency = "XXY".into();
    assert!(matches!(
        rate(
            &odd,
            Vendor::Aws,
            Decimal::ZERO,
            Some(&chargee("USD")),
            &usd_book(&rules, &[])
        )
        .unwrap_err(),
        UnratedReason::UnknownCurrency(_)
    ));
}
