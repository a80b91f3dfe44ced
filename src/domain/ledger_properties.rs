//! Property tests of the ledger rules: for any sequence of pulls with revisions, removals,
//! duplicates, pushes, re-rates and late links, the sum of each key's events equals its current
//! rated value, and re-ingesting identical data appends nothing.
use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::ledger::{LedgerLine, LedgerPlan, RatingContext, plan_pull, plan_rerate, plan_upsert};
use super::line_key::{LineKey, LineKeyMap};
use super::money::Currency;
use super::pricing::{FxRate, PriceKind, PriceRule, RuleScope};
use super::rating::{Chargee, PriceBook};
use super::usage::{UsageKey, UsageLine};
use super::vendor::Vendor;

const ACCOUNTS: [&str; 3] = ["acct-a", "acct-b", "acct-c"];
const METERS: [&str; 2] = ["vm", "disk"];
const HOURS: i64 = 6;

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000, 0).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    /// Restate hours [from, to) with these (account, meter, hour, cost in cents, estimated).
    Pull {
        from: i64,
        to: i64,
        lines: Vec<(usize, usize, i64, i64, bool)>,
    },
    /// Repeat the previous pull exactly.
    RepeatLastPull,
    Push {
        lines: Vec<(usize, usize, i64, i64, bool)>,
    },
    /// Change the markup (in percent) and re-rate everything.
    SetMarkup(i64),
    /// Link an account (to customer 0 or 1) and rate what waited for it.
    Link(usize, usize),
}

fn line_strategy() -> impl Strategy<Value = (usize, usize, i64, i64, bool)> {
    (
        0..ACCOUNTS.len(),
        0..METERS.len(),
        0..HOURS,
        -500i64..100_000,
        any::<bool>(),
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..HOURS, 1..=HOURS, prop::collection::vec(line_strategy(), 0..12)).prop_map(|(a, b, lines)| {
            let (from, to) = if a < b { (a, b) } else { (b.min(a), (a + 1).min(HOURS)) };
            Op::Pull { from, to, lines }
        }),
        1 => Just(Op::RepeatLastPull),
        2 => prop::collection::vec(line_strategy(), 0..6).prop_map(|lines| Op::Push { lines }),
        1 => (0i64..60).prop_map(Op::SetMarkup),
        1 => (0..ACCOUNTS.len(), 0..2usize).prop_map(|(a, c)| Op::Link(a, c)),
    ]
}

fn usage(&(account, meter, hour, cents, estimated): &(usize, usize, i64, i64, bool)) -> UsageLine {
    let start = epoch() + Duration::hours(hour);
    UsageLine {
        key: UsageKey {
            vendor_account_id: ACCOUNTS[account].into(),
            service: "Compute".into(),
            meter: METERS[meter].into(),
            region: String::new(),
            window_start: start,
        },
        window_end: start + Duration::hours(1),
        meter_name: String::new(),
        quantity: Decimal::new(cents.abs(), 3),
        unit: "Hrs".into(),
        cost: Decimal::new(cents, 2),
        list_cost: None,
        currency: "USD".into(),
        estimated,
        vendor_tenant_id: None,
    }
}

struct Model {
    lines: LineKeyMap<LedgerLine>,
    events: Vec<(LineKey, Decimal)>,
    rules: Vec<PriceRule>,
    fx: Vec<FxRate>,
    chargees: HashMap<String, Chargee>,
    no_tenants: HashMap<String, Chargee>,
    currencies: HashMap<String, Currency>,
}

impl Model {
    fn new() -> Self {
        let zar = Currency::parse("c", "ZAR").unwrap();
        let usd = Currency::parse("c", "USD").unwrap();
        let mut model = Model {
            lines: LineKeyMap::default(),
            events: Vec::new(),
            rules: Vec::new(),
            fx: vec![FxRate {
                from: usd,
                to: zar,
                rate: Decimal::new(18_2537, 4),
                effective_from: epoch(),
            }],
            chargees: HashMap::new(),
            no_tenants: HashMap::new(),
            currencies: HashMap::from([("cus_0".to_string(), usd), ("cus_1".to_string(), zar)]),
        };
        model.set_markup(10);
        // acct-a starts linked; the others wait for a link.
        model.chargees.insert(
            ACCOUNTS[0].into(),
            Chargee {
                customer_id: "cus_0".into(),
                currency: usd,
            },
        );
        model
    }

    fn set_markup(&mut self, percent: i64) {
        self.rules = vec![PriceRule {
            id: format!("rule-{percent}"),
            scope: RuleScope::default(),
            kind: PriceKind::Markup,
            value: Decimal::new(percent, 2),
            currency: None,
            effective_from: epoch() - Duration::days(1),
            effective_to: None,
            created_at: epoch(),
        }];
    }

    fn ctx(&self) -> RatingContext<'_> {
        RatingContext {
            partner_account_id: "pa_1",
            line_key_prefix: 1,
            vendor: Vendor::Simulator,
            partner_discount_rate: Decimal::ZERO,
            chargees: &self.chargees,
            tenant_chargees: &self.no_tenants,
            chargee_currencies: &self.currencies,
            prices: PriceBook {
                rules: &self.rules,
                fx: &self.fx,
                policy: Default::default(),
            },
        }
    }

    fn apply(&mut self, plan: LedgerPlan) -> usize {
        let appended = plan.events.len();
        for event in plan.events {
            self.events.push((event.line_key, event.amount));
        }
        for line in plan.lines {
            self.lines.insert(line.line_key, line);
        }
        appended
    }

    fn check_sums(&self) -> Result<(), TestCaseError> {
        let mut sums: LineKeyMap<Decimal> = LineKeyMap::default();
        for (key, amount) in &self.events {
            *sums.entry(*key).or_default() += *amount;
        }
        for (key, line) in &self.lines {
            let current = match (&line.rating, line.removed) {
                (Some(r), false) => r.amount,
                _ => Decimal::ZERO,
            };
            let sum = sums.get(key).copied().unwrap_or_default();
            prop_assert_eq!(
                sum,
                current,
                "key {}: events sum to {} but the line is worth {}",
                key,
                sum,
                current
            );
        }
        for key in sums.keys() {
            prop_assert!(
                self.lines.contains_key(key),
                "event for unknown key {}",
                key
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn events_always_sum_to_the_current_rated_value(ops in prop::collection::vec(op_strategy(), 1..25)) {
        let mut model = Model::new();
        let mut last_pull: Option<(i64, i64, Vec<UsageLine>)> = None;
        for op in ops {
            match op {
                Op::Pull { from, to, lines } => {
                    let lines: Vec<UsageLine> = lines.iter().map(usage).collect();
                    let (start, end) = (epoch() + Duration::hours(from), epoch() + Duration::hours(to));
                    let plan = plan_pull(&model.lines, lines.clone(), start, end, &model.ctx());
                    model.apply(plan);
                    // Re-ingesting the identical pull appends nothing and writes nothing.
                    let again = plan_pull(&model.lines, lines.clone(), start, end, &model.ctx());
                    prop_assert!(again.events.is_empty() && again.lines.is_empty(), "re-ingest changed {:?}", again);
                    last_pull = Some((from, to, lines));
                }
                Op::RepeatLastPull => {
                    if let Some((from, to, lines)) = &last_pull {
                        let (start, end) = (epoch() + Duration::hours(*from), epoch() + Duration::hours(*to));
                        let plan = plan_pull(&model.lines, lines.clone(), start, end, &model.ctx());
                        // Prices or links may have changed since; only then may it append.
                        model.apply(plan);
                    }
                }
                Op::Push { lines } => {
                    let lines: Vec<UsageLine> = lines.iter().map(usage).collect();
                    let plan = plan_upsert(&model.lines, lines.clone(), &model.ctx());
                    model.apply(plan);
                    let again = plan_upsert(&model.lines, lines, &model.ctx());
                    prop_assert!(again.events.is_empty(), "re-push appended {:?}", again.events);
                }
                Op::SetMarkup(percent) => {
                    model.set_markup(percent);
                    let lines: Vec<LedgerLine> = model.lines.values().cloned().collect();
                    let plan = plan_rerate(lines.iter(), &model.ctx());
                    model.apply(plan);
                }
                Op::Link(account, customer) => {
                    let currency = model.currencies[&format!("cus_{customer}")];
                    model.chargees.entry(ACCOUNTS[account].into()).or_insert(Chargee {
                        customer_id: format!("cus_{customer}"),
                        currency,
                    });
                    let lines: Vec<LedgerLine> = model.lines.values().cloned().collect();
                    let plan = plan_rerate(lines.iter(), &model.ctx());
                    model.apply(plan);
                }
            }
            model.check_sums()?;
        }
    }
}
