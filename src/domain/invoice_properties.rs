//! Property tests of invoicing: for random charge histories (new lines, revisions, reversals)
//! with windows across period boundaries and closes interleaved anywhere, per customer:
//!
//! - Σ of all invoices' unrounded lines + the open charges = Σ of the ledger, after every step;
//! - every charge is on exactly one invoice or open;
//! - every invoice's total is the sum of its rounded lines, each rounded by the rule;
//! - closing again, even with later charges in the ledger, gives the same invoice, and so does
//!   assembling it from per-window sums (as the store may read them);
//! - the next close needs no charge below the previous close's `open_from_sequence`;
//! - closing from charges grouped as the store's SQL groups them (`invoice_groups`) gives the
//!   same invoice and `open_from_sequence`.
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::billing_schedule::BillingSchedule;
use super::customer::BillingCycle;
use super::invoice::{
    BilledCustomer, ChargeAmount, InvoiceCharge, InvoiceContext, InvoiceDraft, InvoiceRef,
    PriorInvoice, assemble, close_invoice,
};
use super::invoice_groups::{
    ChargeGroup, CloseBounds, GroupClass, PeriodCharges, close_from_groups,
};
use super::invoice_number::format_invoice_number;
use super::invoice_selection::{
    ClosePoint, FIRST_SEQUENCE, is_open, on_invoice, open_from_sequence,
};
use super::money::Currency;
use super::period::{BillingAnchor, BillingTerms, Period};
use super::period_close::next_period_to_close;
use super::rounding::RoundingRule;
use super::vendor::Vendor;

const CUSTOMERS: usize = 2;
const LINES: usize = 8;
const METERS: [(&str, &str); 3] = [("vm", "Hrs"), ("disk", "GB-Mo"), ("egress", "")];
/// Usage windows fall within this many hours from the origin (about eight months).
const HOURS: i64 = 240 * 24;
const MAX_CLOSES: usize = 9;

fn origin() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap() // 2026-01-01T00:00:00Z
}

/// One usage line of a customer: what it is and when its window starts.
#[derive(Debug, Clone)]
struct LineSpec {
    meter: usize,
    window_hour: i64,
}

#[derive(Debug, Clone)]
enum Op {
    /// The vendor states (or restates) a line's value: a new charge or a revision.
    Set {
        customer: usize,
        line: usize,
        units: i64,
        scale: u32,
    },
    /// The line disappears: a reversal of what it stands at.
    Reverse { customer: usize, line: usize },
    /// Close the customer's next period at the current sequence.
    Close { customer: usize },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..CUSTOMERS, 0..LINES, prop_oneof![-1_000_000_000i64..1_000_000_000, -30i64..30], 0u32..=10)
            .prop_map(|(customer, line, units, scale)| Op::Set { customer, line, units, scale }),
        2 => (0..CUSTOMERS, 0..LINES).prop_map(|(customer, line)| Op::Reverse { customer, line }),
        2 => (0..CUSTOMERS).prop_map(|customer| Op::Close { customer }),
    ]
}

#[derive(Debug, Clone)]
struct Scenario {
    lines: Vec<Vec<LineSpec>>,
    /// When customer 0 asks to switch from monthly to quarterly (hours from the origin).
    cycle_change_hour: Option<i64>,
    /// Customer 1's monthly anchor day.
    anchor_day: u32,
    currency: &'static str,
    rounding: RoundingRule,
    ops: Vec<Op>,
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    let line = (0..METERS.len(), 0..HOURS)
        .prop_map(|(meter, window_hour)| LineSpec { meter, window_hour });
    (
        prop::collection::vec(prop::collection::vec(line, LINES), CUSTOMERS),
        prop::option::of(0..HOURS / 2),
        1u32..=31,
        prop_oneof![Just("ZAR"), Just("JPY"), Just("KWD")],
        prop_oneof![Just(RoundingRule::HalfUp), Just(RoundingRule::HalfEven)],
        prop::collection::vec(op_strategy(), 1..80),
    )
        .prop_map(
            |(lines, cycle_change_hour, anchor_day, currency, rounding, ops)| Scenario {
                lines,
                cycle_change_hour,
                anchor_day,
                currency,
                rounding,
                ops,
            },
        )
}

struct Close {
    previous: Option<ClosePoint>,
    prior: Vec<PriorInvoice>,
    draft: InvoiceDraft,
    open_from: i64,
}

struct CustomerBook {
    id: String,
    schedule: BillingSchedule,
    /// Each line's current (amount, quantity).
    values: Vec<(Decimal, Decimal)>,
    closes: Vec<Close>,
    /// The model's record of which close billed each charge (by sequence).
    billed_by: HashMap<i64, usize>,
}

impl CustomerBook {
    fn last_point(&self) -> Option<ClosePoint> {
        self.closes.last().map(|c| c.draft.close_point())
    }

    fn context<'a>(&'a self, scenario: &Scenario, close: &'a Close) -> InvoiceContext<'a> {
        InvoiceContext {
            customer: close.draft.customer.clone(),
            currency: Currency::parse("c", scenario.currency).unwrap(),
            rounding: scenario.rounding,
            period: close.draft.period,
            close_sequence: close.draft.close_sequence,
            previous: close.previous,
            schedule: &self.schedule,
            prior_invoices: &close.prior,
        }
    }
}

fn books(scenario: &Scenario) -> Vec<CustomerBook> {
    let london = "Europe/London".parse().unwrap();
    let mut first = BillingSchedule::new(BillingTerms::calendar(BillingCycle::Monthly, london));
    if let Some(hour) = scenario.cycle_change_hour {
        first
            .change_terms(
                origin() + Duration::hours(hour),
                BillingTerms::calendar(BillingCycle::Quarterly, london),
            )
            .unwrap();
    }
    let second = BillingSchedule::new(BillingTerms {
        cycle: BillingCycle::Monthly,
        anchor: BillingAnchor::parse("anchor", 1, scenario.anchor_day).unwrap(),
        time_zone: "Asia/Kolkata".parse().unwrap(),
    });
    [first, second]
        .into_iter()
        .enumerate()
        .map(|(i, schedule)| CustomerBook {
            id: format!("cus_{i}"),
            schedule,
            values: vec![(Decimal::ZERO, Decimal::ZERO); LINES],
            closes: Vec::new(),
            billed_by: HashMap::new(),
        })
        .collect()
}

fn charge_for(
    scenario: &Scenario,
    customer: usize,
    line: usize,
    sequence: i64,
    amount: Decimal,
    quantity: Decimal,
) -> InvoiceCharge {
    let spec = &scenario.lines[customer][line];
    let (meter, unit) = METERS[spec.meter];
    InvoiceCharge {
        sequence,
        customer_id: format!("cus_{customer}"),
        charge: ChargeAmount {
            vendor: Vendor::Simulator,
            service: "Compute".into(),
            meter: meter.into(),
            unit: unit.into(),
            quantity,
            amount,
            currency: Currency::parse("c", scenario.currency).unwrap(),
            window_start: origin() + Duration::hours(spec.window_hour),
        },
    }
}

fn check_draft(draft: &InvoiceDraft, rounding: RoundingRule) -> Result<(), TestCaseError> {
    let mut total = Decimal::ZERO;
    let mut unrounded = Decimal::ZERO;
    for line in &draft.lines {
        prop_assert_eq!(
            line.amount,
            rounding.round(line.unrounded_amount, draft.currency)
        );
        prop_assert_eq!(line.amount.scale(), draft.currency.minor_digits());
        if let Some(adjusts) = &line.adjusts {
            prop_assert!(adjusts.end <= draft.period.start);
        }
        total += line.amount;
        unrounded += line.unrounded_amount;
    }
    prop_assert_eq!(draft.total, total);
    prop_assert_eq!(draft.unrounded_total, unrounded);
    prop_assert_eq!(draft.rounding_difference, total - unrounded);
    Ok(())
}

fn check_invariant(book: &CustomerBook, ledger: &[InvoiceCharge]) -> Result<(), TestCaseError> {
    let mine: Vec<&InvoiceCharge> = ledger.iter().filter(|c| c.customer_id == book.id).collect();
    let ledger_sum: Decimal = mine.iter().map(|c| c.charge.amount).sum();
    let unbilled: Decimal = mine
        .iter()
        .filter(|c| !book.billed_by.contains_key(&c.sequence))
        .map(|c| c.charge.amount)
        .sum();
    let invoiced: Decimal = book.closes.iter().map(|c| c.draft.unrounded_total).sum();
    prop_assert_eq!(invoiced + unbilled, ledger_sum, "customer {}", book.id);
    // The selection rule agrees with the model: each charge on the one invoice that billed it,
    // or open.
    let last = book.last_point();
    for c in &mine {
        let (sequence, window) = (c.sequence, c.charge.window_start);
        let on: Vec<usize> = (0..book.closes.len())
            .filter(|&k| {
                let close = &book.closes[k];
                on_invoice(
                    close.previous.as_ref(),
                    &close.draft.close_point(),
                    sequence,
                    window,
                )
            })
            .collect();
        let expected: Vec<usize> = book.billed_by.get(&sequence).copied().into_iter().collect();
        prop_assert_eq!(&on, &expected, "charge {}", sequence);
        prop_assert_eq!(
            is_open(last.as_ref(), sequence, window),
            expected.is_empty()
        );
    }
    Ok(())
}

/// What the invoice must show, from the model: its charges summed per line, adjustments keyed
/// by the start of the period they correct.
type ExpectedLines = BTreeMap<(Option<DateTime<Utc>>, String, String), (Decimal, Decimal)>;

fn expected_lines(
    book: &CustomerBook,
    period: &Period,
    charges: &[&InvoiceCharge],
) -> ExpectedLines {
    let mut lines = ExpectedLines::new();
    for c in charges {
        let w = c.charge.window_start;
        let adjusts = (w < period.start).then(|| {
            book.closes
                .iter()
                .map(|k| k.draft.period)
                .find(|p| p.start <= w && w < p.end)
                .unwrap_or_else(|| book.schedule.period_containing(w).unwrap())
                .start
        });
        let line = lines
            .entry((adjusts, c.charge.meter.clone(), c.charge.unit.clone()))
            .or_default();
        line.0 += c.charge.quantity;
        line.1 += c.charge.amount;
    }
    lines.retain(|_, (quantity, amount)| !(quantity.is_zero() && amount.is_zero()));
    lines
}

fn close_next(
    scenario: &Scenario,
    book: &mut CustomerBook,
    ledger: &[InvoiceCharge],
) -> Result<(), TestCaseError> {
    if book.closes.len() >= MAX_CLOSES {
        return Ok(());
    }
    let previous = book.last_point();
    let period =
        next_period_to_close(&book.schedule, previous.map(|p| p.period_end), origin()).unwrap();
    let prior: Vec<PriorInvoice> = book
        .closes
        .iter()
        .enumerate()
        .map(|(k, c)| PriorInvoice {
            period_start: c.draft.period.start,
            period_end: c.draft.period.end,
            invoice: InvoiceRef {
                id: format!("{}_inv_{k}", book.id),
                number: c.draft.needs_number().then(|| {
                    format_invoice_number("ISP", c.draft.period.first_day(), k as i64 + 1).unwrap()
                }),
            },
        })
        .collect();
    let close_sequence = ledger.len() as i64;
    let ctx = InvoiceContext {
        customer: BilledCustomer {
            id: book.id.clone(),
            external_ref: format!("ext-{}", book.id),
            display_name: book.id.to_uppercase(),
        },
        currency: Currency::parse("c", scenario.currency).unwrap(),
        rounding: scenario.rounding,
        period,
        close_sequence,
        previous,
        schedule: &book.schedule,
        prior_invoices: &prior,
    };
    let mine: Vec<InvoiceCharge> = ledger
        .iter()
        .filter(|c| c.customer_id == book.id)
        .cloned()
        .collect();
    let draft = close_invoice(&ctx, &mine).unwrap();
    check_draft(&draft, scenario.rounding)?;
    // The model: every charge recorded so far, not billed before, whose window starts before
    // the period's end.
    let billed: Vec<&InvoiceCharge> = mine
        .iter()
        .filter(|c| !book.billed_by.contains_key(&c.sequence) && c.charge.window_start < period.end)
        .collect();
    let shown: ExpectedLines = draft
        .lines
        .iter()
        .map(|l| {
            let key = (
                l.adjusts.as_ref().map(|a| a.start),
                l.meter.clone(),
                l.unit.clone(),
            );
            (key, (l.quantity, l.unrounded_amount))
        })
        .collect();
    prop_assert_eq!(shown, expected_lines(book, &period, &billed));
    for line in &draft.lines {
        if let Some(adjusts) = &line.adjusts {
            let named = adjusts.invoice.as_ref().map(|i| i.id.clone());
            let billed_it = prior
                .iter()
                .find(|p| p.period_start == adjusts.start)
                .map(|p| p.invoice.id.clone());
            prop_assert_eq!(named, billed_it);
        }
    }
    let close_index = book.closes.len();
    for c in &billed {
        book.billed_by.insert(c.sequence, close_index);
    }
    // The charges the store would read: from the previous close's open_from_sequence on.
    let read_from = book.closes.last().map_or(FIRST_SEQUENCE, |c| c.open_from);
    let on_this: Vec<&InvoiceCharge> = mine
        .iter()
        .filter(|c| {
            on_invoice(
                previous.as_ref(),
                &draft.close_point(),
                c.sequence,
                c.charge.window_start,
            )
        })
        .collect();
    prop_assert!(on_this.iter().all(|c| c.sequence >= read_from));
    let open_from = open_from_sequence(
        &draft.close_point(),
        mine.iter()
            .filter(|c| c.sequence >= read_from)
            .map(|c| (c.sequence, c.charge.window_start)),
    );
    // Everything below open_from that the close could see is settled by it.
    let settled = mine.iter().filter(|c| c.sequence < open_from).all(|c| {
        draft
            .close_point()
            .covers(c.sequence, c.charge.window_start)
    });
    prop_assert!(
        settled,
        "a charge below open_from {} is still open",
        open_from
    );
    let sums_on_invoice: Decimal = on_this.iter().map(|c| c.charge.amount).sum();
    prop_assert_eq!(draft.unrounded_total, sums_on_invoice);
    let read: Vec<&InvoiceCharge> = mine.iter().filter(|c| c.sequence >= read_from).collect();
    let bounds = CloseBounds::of(&ctx);
    let (grouped, grouped_open_from) = close_from_groups(
        &ctx,
        grouped_like_sql(&bounds, &read),
        PeriodCharges::InGroups,
    )
    .unwrap();
    prop_assert_eq!(&grouped, &draft);
    prop_assert_eq!(grouped_open_from, open_from);
    // The period's charges summed from the customer's whole history, as the daily totals keep
    // them (not only from `read_from` on: none of them is below it), beside the other groups.
    let outside: Vec<ChargeGroup> = grouped_like_sql(&bounds, &read)
        .into_iter()
        .filter(|g| g.class != GroupClass::Period)
        .collect();
    let (from_sums, sums_open_from) = close_from_groups(
        &ctx,
        outside,
        PeriodCharges::Summed(period_sums(&ctx, &mine)),
    )
    .unwrap();
    prop_assert_eq!(&from_sums, &draft);
    prop_assert_eq!(sums_open_from, open_from);
    book.closes.push(Close {
        previous,
        prior,
        draft,
        open_from,
    });
    Ok(())
}

/// The charges a close reads, grouped as the store's close query groups them: by class, the
/// window of adjustments, vendor, service, meter and unit, with the lowest sequence and the
/// earliest window of each group.
fn grouped_like_sql(bounds: &CloseBounds, read: &[&InvoiceCharge]) -> Vec<ChargeGroup> {
    type Key = (
        GroupClass,
        Option<DateTime<Utc>>,
        Vendor,
        String,
        String,
        String,
    );
    let mut groups: BTreeMap<Key, ChargeGroup> = BTreeMap::new();
    for c in read.iter().filter(|c| c.sequence <= bounds.close_sequence) {
        let Some(class) = bounds.class(c.sequence, c.charge.window_start) else {
            continue;
        };
        let window = (class == GroupClass::Adjustment).then_some(c.charge.window_start);
        let ch = &c.charge;
        let key = (
            class,
            window,
            ch.vendor,
            ch.service.clone(),
            ch.meter.clone(),
            ch.unit.clone(),
        );
        let group = groups.entry(key).or_insert_with(|| ChargeGroup {
            class,
            first_sequence: c.sequence,
            amount: ChargeAmount {
                quantity: Decimal::ZERO,
                amount: Decimal::ZERO,
                ..ch.clone()
            },
        });
        group.first_sequence = group.first_sequence.min(c.sequence);
        group.amount.window_start = group.amount.window_start.min(ch.window_start);
        group.amount.quantity += ch.quantity;
        group.amount.amount += ch.amount;
    }
    groups.into_values().collect()
}

/// Every charge of the customer recorded by the close whose window starts in the period,
/// summed per vendor, service, meter and unit, dated the period's start: what the store sums
/// from the daily totals and rollups.
fn period_sums(ctx: &InvoiceContext, mine: &[InvoiceCharge]) -> Vec<ChargeAmount> {
    let mut sums: BTreeMap<(Vendor, String, String, String), ChargeAmount> = BTreeMap::new();
    for c in mine
        .iter()
        .filter(|c| c.sequence <= ctx.close_sequence && ctx.period.contains(c.charge.window_start))
    {
        let ch = &c.charge;
        let key = (
            ch.vendor,
            ch.service.clone(),
            ch.meter.clone(),
            ch.unit.clone(),
        );
        let sum = sums.entry(key).or_insert_with(|| ChargeAmount {
            quantity: Decimal::ZERO,
            amount: Decimal::ZERO,
            window_start: ctx.period.start,
            ..ch.clone()
        });
        sum.quantity += ch.quantity;
        sum.amount += ch.amount;
    }
    sums.into_values().collect()
}

/// The invoice's charges summed per vendor, service, meter, unit and window, as one SQL
/// GROUP BY would return them.
fn summed_per_window(
    close: &Close,
    ledger: &[InvoiceCharge],
    customer_id: &str,
) -> Vec<ChargeAmount> {
    let mut sums: Vec<ChargeAmount> = Vec::new();
    for c in ledger.iter().filter(|c| {
        c.customer_id == customer_id
            && on_invoice(
                close.previous.as_ref(),
                &close.draft.close_point(),
                c.sequence,
                c.charge.window_start,
            )
    }) {
        let same = |s: &&mut ChargeAmount| {
            (s.vendor, &s.service, &s.meter, &s.unit, s.window_start)
                == (
                    c.charge.vendor,
                    &c.charge.service,
                    &c.charge.meter,
                    &c.charge.unit,
                    c.charge.window_start,
                )
        };
        match sums.iter_mut().find(same) {
            Some(sum) => {
                sum.amount += c.charge.amount;
                sum.quantity += c.charge.quantity;
            }
            None => sums.push(c.charge.clone()),
        }
    }
    sums
}

fn run(scenario: &Scenario) -> Result<(), TestCaseError> {
    let mut books = books(scenario);
    let mut ledger: Vec<InvoiceCharge> = Vec::new();
    for op in &scenario.ops {
        match *op {
            Op::Set {
                customer,
                line,
                units,
                scale,
            } => {
                let amount = Decimal::new(units, scale);
                let quantity = Decimal::new(units.abs() % 10_000, 2);
                let (old_amount, old_quantity) = books[customer].values[line];
                let (delta, dq) = (amount - old_amount, quantity - old_quantity);
                if !delta.is_zero() || !dq.is_zero() {
                    let sequence = ledger.len() as i64 + 1;
                    ledger.push(charge_for(scenario, customer, line, sequence, delta, dq));
                    books[customer].values[line] = (amount, quantity);
                }
            }
            Op::Reverse { customer, line } => {
                let (amount, quantity) = books[customer].values[line];
                if !amount.is_zero() || !quantity.is_zero() {
                    let sequence = ledger.len() as i64 + 1;
                    ledger.push(charge_for(
                        scenario, customer, line, sequence, -amount, -quantity,
                    ));
                    books[customer].values[line] = (Decimal::ZERO, Decimal::ZERO);
                }
            }
            Op::Close { customer } => close_next(scenario, &mut books[customer], &ledger)?,
        }
        for book in &books {
            check_invariant(book, &ledger)?;
        }
    }
    // Closing again, with everything recorded since in the ledger, gives the same invoice; so
    // does assembling it from per-window sums.
    for book in &books {
        let mine: Vec<InvoiceCharge> = ledger
            .iter()
            .filter(|c| c.customer_id == book.id)
            .cloned()
            .collect();
        for close in &book.closes {
            let ctx = book.context(scenario, close);
            prop_assert_eq!(&close_invoice(&ctx, &mine).unwrap(), &close.draft);
            let summed = assemble(&ctx, summed_per_window(close, &ledger, &book.id)).unwrap();
            prop_assert_eq!(&summed, &close.draft);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn invoices_and_open_charges_always_add_up_to_the_ledger(scenario in scenario_strategy()) {
        run(&scenario)?;
    }
}
