//! Rating: rule precedence, effective dates, FX, currencies with 0 and 3 minor digits, and
//! precision down to 1e-10.
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::money::Currency;
use super::pricing::{FxRate, PriceKind, PriceRule, PricingPolicy, RuleScope};
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
        vendor_tenant_id: None,
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
    PriceBook {
        rules,
        fx,
        policy: PricingPolicy::default(),
    }
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

fn guarded<'a>(rules: &'a [PriceRule], fx: &'a [FxRate]) -> PriceBook<'a> {
    PriceBook {
        rules,
        fx,
        policy: PricingPolicy {
            hold_below_cost: true,
        },
    }
}

#[test]
fn the_below_cost_guard_holds_what_would_sell_at_a_loss() {
    // Microsoft's figures from the trial: cost 5.5393, list from UnitPrice 6.1910.
    let discount = vec![rule(
        "list-5",
        RuleScope::default(),
        PriceKind::ListMinusDiscount,
        "0.05",
    )];
    let mut l = line("5.5393", "1");
    l.list_cost = Some(d("6.1910"));
    let rated = rate(
        &l,
        Vendor::Microsoft,
        Decimal::ZERO,
        Some(&chargee("USD")),
        &guarded(&discount, &[]),
    )
    .unwrap();
    assert_eq!(rated.amount, d("5.88145"));

    // A list below cost (PricingPreTaxTotal taken as list): 5.5393 x 0.95 < 5.5393.
    l.list_cost = Some(d("5.5393"));
    assert_eq!(
        rate(
            &l,
            Vendor::Microsoft,
            Decimal::ZERO,
            Some(&chargee("USD")),
            &guarded(&discount, &[])
        )
        .unwrap_err(),
        UnratedReason::BelowCost {
            rule_id: "list-5".into()
        }
    );
    // Without the guard the loss is billed, as the MSP chose.
    assert!(
        rate(
            &l,
            Vendor::Microsoft,
            Decimal::ZERO,
            Some(&chargee("USD")),
            &usd_book(&discount, &[])
        )
        .is_ok()
    );

    // A fixed price in another currency is compared in the customer's: 1 x 100 ZAR against
    // 10 USD x 18.25.
    let mut fixed = rule(
        "fixed",
        RuleScope::default(),
        PriceKind::FixedUnitPrice,
        "100",
    );
    fixed.currency = Some(cur("ZAR"));
    let fixed = [fixed];
    let usd_zar = [FxRate {
        from: cur("USD"),
        to: cur("ZAR"),
        rate: d("18.25"),
        effective_from: t("2026-01-01T00:00:00Z"),
    }];
    let ten = line("10", "1");
    assert_eq!(
        rate(
            &ten,
            Vendor::Aws,
            Decimal::ZERO,
            Some(&chargee("ZAR")),
            &guarded(&fixed, &usd_zar)
        )
        .unwrap_err(),
        UnratedReason::BelowCost {
            rule_id: "fixed".into()
        }
    );
    // ...which needs the vendor-to-customer rate even though the price needs none.
    assert_eq!(
        rate(
            &ten,
            Vendor::Aws,
            Decimal::ZERO,
            Some(&chargee("ZAR")),
            &guarded(&fixed, &[])
        )
        .unwrap_err(),
        UnratedReason::NoFxRate {
            from: "USD".into(),
            to: "ZAR".into()
        }
    );
}

mod below_cost_properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// With the guard on, whatever is charged is at least the vendor's cost (in the vendor's
        /// currency, the customer's here); with it off, the same line is charged either way.
        #[test]
        fn a_guarded_charge_never_undercuts_cost(
            cost_cents in -1_000_000i64..1_000_000,
            list_cents in proptest::option::of(0i64..2_000_000),
            value_permille in 0i64..1_500,
            kind in prop_oneof![Just(PriceKind::Markup), Just(PriceKind::ListMinusDiscount)],
            partner_permille in 0i64..900,
        ) {
            let mut l = line("0", "1");
            l.cost = Decimal::new(cost_cents, 2);
            l.list_cost = list_cents.map(|c| Decimal::new(c, 2));
            let value = Decimal::new(value_permille, 3);
            let rules = vec![PriceRule { value, ..rule("r", RuleScope::default(), kind, "0") }];
            let partner = Decimal::new(partner_permille, 3);
            let unguarded = rate(&l, Vendor::Aws, partner, Some(&chargee("USD")), &usd_book(&rules, &[]));
            match rate(&l, Vendor::Aws, partner, Some(&chargee("USD")), &guarded(&rules, &[])) {
                Ok(rated) => {
                    prop_assert!(rated.amount >= l.cost);
                    prop_assert_eq!(Ok(rated), unguarded);
                }
                Err(UnratedReason::BelowCost { .. }) => {
                    prop_assert!(unguarded.unwrap().amount < l.cost);
                }
                Err(other) => prop_assert_eq!(Err(other), unguarded),
            }
        }
    }
}
