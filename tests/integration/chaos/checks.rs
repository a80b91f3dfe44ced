//! The invariants checked from outside after every round: through the API, and through the
//! ledger's own reads of the test database (usage lines as stored).
//!
//! - sequences 1..N with no gap, and the charge stream's consumer saw each once, in order;
//! - per usage key Σ charges = its latest truth: for pushed lines the latest cost pushed,
//!   priced; for every stored line (polled ones too) its current rated amount;
//! - the pushes' first answers account for every charge of pushed usage (none applied twice or
//!   in part);
//! - every charge on exactly one invoice or open: each customer's charges assigned to the first
//!   close that covers them (docs/invoicing.md) add up to each invoice's unrounded total, and
//!   the rest to the open charges the gateway keeps (so Σ invoices + open = Σ ledger);
//!   invoice totals exact; one invoice per customer and period; numbers gap-free per tenant;
//! - every service action finished once, and the customers' status is the last action's.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use chrono::DateTime;
use msp_gateway::ledger::Ledger;
use msp_gateway::proto::v1;
use rust_decimal::Decimal;

use super::client::{Api, all_actions, all_charges, all_invoices};
use super::followers::{ActionStates, Follower, Sequences, terminal};
use super::plan::{LineId, METERS};
use super::setup::{Books, PREFIX};
use super::work::Acted;

/// The priced tenant's 20 % markup and USD→ZAR rate of 18.5.
const PRICE_FACTOR: Decimal = Decimal::from_parts(222, 0, 0, false, 1);
/// Reads of a moving ledger (the poller writes when it likes) are repeated until a read sees
/// the same head and invoices before and after; at most this often.
const CONSISTENT_READS: usize = 20;

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|_| panic!("{text:?} is not a decimal"))
}

fn seconds(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().expect("a timestamp").seconds
}

/// What the run did so far, as its clients know it.
pub struct Known<'a> {
    pub books: &'a Books,
    pub tenant_id: &'a str,
    /// Each pushed line's latest cost.
    pub latest: &'a HashMap<LineId, Decimal>,
    pub answers: &'a [v1::IngestUsageResponse],
    pub actions: &'a [Acted],
    pub suspended: &'a [bool],
}

/// One consistent read of the books.
struct Snapshot {
    charges: Vec<v1::Charge>,
    invoices: Vec<v1::Invoice>,
    open: HashMap<String, Decimal>,
}

async fn head(api: &Api) -> i64 {
    api.retried("ListCharges (head)", |api| async move {
        let page = api
            .charges()
            .list_charges(v1::ListChargesRequest {
                page_size: 1,
                ..Default::default()
            })
            .await?;
        Ok(page.into_inner().high_water_mark)
    })
    .await
}

async fn snapshot(api: &Api, customers: &[String]) -> Snapshot {
    for _ in 0..CONSISTENT_READS {
        let before = (head(api).await, all_invoices(api).await.len());
        let charges = all_charges(api).await;
        let invoices = all_invoices(api).await;
        let mut open = HashMap::new();
        for customer in customers {
            let position = api
                .retried(format!("GetCreditPosition {customer}"), |api| {
                    let customer_id = customer.clone();
                    async move {
                        let position = api
                            .credit()
                            .get_credit_position(v1::GetCreditPositionRequest { customer_id })
                            .await?;
                        Ok(position.into_inner())
                    }
                })
                .await;
            open.insert(customer.clone(), dec(&position.open_charges));
        }
        let after = (head(api).await, all_invoices(api).await.len());
        let seen = (charges.last().map_or(0, |c| c.sequence), invoices.len());
        if before == after && after == seen {
            return Snapshot {
                charges,
                invoices,
                open,
            };
        }
    }
    panic!("the ledger never held still for {CONSISTENT_READS} reads");
}

pub async fn after_round(
    api: &Api,
    ledger: &Ledger,
    known: &Known<'_>,
    stream: &mut Follower<Sequences>,
    actions: &mut Follower<ActionStates>,
) -> Summary {
    let books = known.books;
    let mut customers = books.customers.clone();
    customers.push(books.polled_customer.clone());
    let snapshot = snapshot(api, &customers).await;
    let charges = &snapshot.charges;

    // Sequences 1..N with no gap; the stream's consumer saw each once, in order.
    let head = charges.len() as i64;
    for (n, charge) in charges.iter().enumerate() {
        assert_eq!(charge.sequence, n as i64 + 1, "sequences 1..N with no gap");
    }
    stream
        .until(|received| received.last().copied().unwrap_or(0) >= head)
        .await;
    assert_eq!(
        stream.state().len() as i64,
        stream.state().last().copied().unwrap_or(0),
        "the stream delivered every sequence once"
    );

    // Pushed lines: Σ charges = latest cost, priced; the first answers count every charge.
    let index: HashMap<&str, usize> = books
        .customers
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut pushed: HashMap<LineId, Decimal> = HashMap::new();
    let mut pushed_charges = 0;
    for charge in charges {
        let Some(&customer) = index.get(charge.customer_id.as_str()) else {
            continue;
        };
        let meter = METERS
            .iter()
            .find(|m| **m == charge.meter)
            .unwrap_or_else(|| panic!("a charge of a meter never pushed: {charge:?}"));
        let id = (customer, *meter, seconds(&charge.window_start));
        *pushed.entry(id).or_default() += dec(&charge.amount);
        pushed_charges += 1;
    }
    let expected: HashMap<LineId, Decimal> = known
        .latest
        .iter()
        .map(|(id, cost)| (*id, cost * PRICE_FACTOR))
        .collect();
    assert_eq!(
        pushed, expected,
        "per pushed line Σ charges = its latest cost × 1.2 × 18.5"
    );
    let answered: i64 = known.answers.iter().map(|a| a.events_appended).sum();
    assert_eq!(
        answered, pushed_charges,
        "the pushes' first answers count every charge of pushed usage"
    );

    // Every stored line (pushed and polled): Σ charges = what it is charged now.
    let mut by_key: HashMap<&str, Decimal> = HashMap::new();
    for charge in charges {
        *by_key.entry(charge.line_key.as_str()).or_default() += dec(&charge.amount);
    }
    let mut lines = 0;
    let mut polled_lines = 0;
    for account_id in [&books.pushed_account_id, &books.polled_account_id] {
        let account = ledger
            .store()
            .partner_account(known.tenant_id, account_id)
            .await
            .expect("partner account");
        let stored = ledger
            .usage_lines_in_window(
                known.tenant_id,
                &account,
                DateTime::from_timestamp(0, 0).unwrap(),
                DateTime::from_timestamp(4_102_444_800, 0).unwrap(), // 2100
            )
            .await
            .expect("usage lines");
        for line in stored.values() {
            let charged = match (&line.rating, line.removed) {
                (Some(rating), false) => rating.amount,
                _ => Decimal::ZERO,
            };
            let key = line.line_key.to_string();
            let sum = by_key.remove(key.as_str()).unwrap_or_default();
            assert_eq!(sum, charged, "line {key}: Σ charges = its rated amount");
            lines += 1;
            if account_id == &books.polled_account_id {
                polled_lines += 1;
            }
        }
    }
    assert!(by_key.is_empty(), "charges of no stored line: {by_key:?}");

    let invoices = check_invoices(&snapshot);
    let finished = check_actions(api, known, actions).await;
    Summary {
        charges: head,
        lines,
        polled_lines,
        invoices,
        actions: finished,
    }
}

/// What a round's check saw.
pub struct Summary {
    pub charges: i64,
    pub lines: usize,
    pub polled_lines: usize,
    pub invoices: usize,
    pub actions: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} charges of {} usage lines ({} polled), {} invoices, {} service actions",
            self.charges, self.lines, self.polled_lines, self.invoices, self.actions
        )
    }
}

fn check_invoices(snapshot: &Snapshot) -> usize {
    let invoices = &snapshot.invoices;
    // One invoice per customer and period; totals exact.
    let mut periods = HashSet::new();
    for invoice in invoices {
        assert!(
            periods.insert((&invoice.customer_id, seconds(&invoice.period_start))),
            "a period closed twice: {invoice:?}"
        );
        let total: Decimal = invoice.lines.iter().map(|l| dec(&l.amount)).sum();
        let unrounded: Decimal = invoice.lines.iter().map(|l| dec(&l.unrounded_amount)).sum();
        assert_eq!(total, dec(&invoice.total), "total = Σ rounded lines");
        assert_eq!(
            unrounded,
            dec(&invoice.unrounded_total),
            "Σ unrounded lines"
        );
    }
    // Numbers gap-free per tenant: counters 1..K, each number naming its counter.
    let mut counters: Vec<i64> = invoices
        .iter()
        .filter(|i| i.number_counter > 0)
        .map(|i| i.number_counter)
        .collect();
    counters.sort_unstable();
    assert_eq!(
        counters,
        (1..=counters.len() as i64).collect::<Vec<_>>(),
        "invoice numbers gap-free"
    );
    for invoice in invoices {
        let numbered = invoice.number_counter > 0;
        assert_eq!(!invoice.number.is_empty(), numbered, "{invoice:?}");
        if numbered {
            assert!(
                invoice.number.starts_with(PREFIX)
                    && invoice
                        .number
                        .ends_with(&format!("-{:06}", invoice.number_counter)),
                "{} for counter {}",
                invoice.number,
                invoice.number_counter
            );
        }
    }
    // Every charge on exactly one invoice or open: the first close (in close order) that covers
    // it billed it.
    let mut by_customer: BTreeMap<&str, Vec<&v1::Invoice>> = BTreeMap::new();
    for invoice in invoices {
        by_customer
            .entry(invoice.customer_id.as_str())
            .or_default()
            .push(invoice);
    }
    for closes in by_customer.values_mut() {
        closes.sort_by_key(|i| (i.close_sequence, seconds(&i.period_start)));
    }
    let mut billed: HashMap<&str, Decimal> = HashMap::new();
    let mut open: HashMap<&str, Decimal> = HashMap::new();
    let mut ledger: HashMap<&str, Decimal> = HashMap::new();
    for charge in &snapshot.charges {
        let amount = dec(&charge.amount);
        *ledger.entry(charge.customer_id.as_str()).or_default() += amount;
        let start = seconds(&charge.window_start);
        let close = by_customer
            .get(charge.customer_id.as_str())
            .and_then(|closes| {
                closes
                    .iter()
                    .find(|i| charge.sequence <= i.close_sequence && start < seconds(&i.period_end))
            });
        match close {
            Some(invoice) => *billed.entry(invoice.id.as_str()).or_default() += amount,
            None => *open.entry(charge.customer_id.as_str()).or_default() += amount,
        }
    }
    for invoice in invoices {
        assert_eq!(
            billed.get(invoice.id.as_str()).copied().unwrap_or_default(),
            dec(&invoice.unrounded_total),
            "invoice {} bills exactly the charges its close covers first",
            invoice.id
        );
    }
    for (customer, kept) in &snapshot.open {
        let open = open.get(customer.as_str()).copied().unwrap_or_default();
        assert_eq!(
            *kept, open,
            "customer {customer}: the open charges the gateway keeps = the charges no close covers"
        );
        let invoiced: Decimal = by_customer
            .get(customer.as_str())
            .map(|closes| closes.iter().map(|i| dec(&i.unrounded_total)).sum())
            .unwrap_or_default();
        assert_eq!(
            invoiced + kept,
            ledger.get(customer.as_str()).copied().unwrap_or_default(),
            "customer {customer}: Σ invoices' unrounded lines + open = Σ ledger"
        );
    }
    invoices.len()
}

async fn check_actions(
    api: &Api,
    known: &Known<'_>,
    follower: &mut Follower<ActionStates>,
) -> usize {
    let ids: Vec<&str> = known.actions.iter().map(|a| a.action.id.as_str()).collect();
    follower
        .until(|seen| ids.iter().all(|id| seen.finished(id)))
        .await;
    // One action per request: retries answered the action their first attempt recorded.
    let listed = all_actions(api).await;
    let mut listed_ids: Vec<&str> = listed.iter().map(|a| a.id.as_str()).collect();
    let mut requested = ids.clone();
    listed_ids.sort_unstable();
    requested.sort_unstable();
    assert_eq!(listed_ids, requested, "one action per request");
    for action in &listed {
        assert_eq!(
            action.status(),
            v1::ServiceActionStatus::Succeeded,
            "{action:?}"
        );
        assert!(action.finish_time.is_some(), "{action:?}");
        assert!(
            action
                .steps
                .iter()
                .all(|s| s.status() == v1::ServiceActionStatus::Succeeded),
            "{action:?}"
        );
        let states = &follower.state().by_id[&action.id];
        let finished = states.iter().filter(|(_, s)| terminal(*s)).count();
        assert_eq!(
            finished, 1,
            "action {} finished once: {states:?}",
            action.id
        );
    }
    // Each customer acted on is where its last action left it.
    for (c, suspended) in known.suspended.iter().enumerate() {
        let id = &known.books.customers[c];
        if !known.actions.iter().any(|a| &a.customer_id == id) {
            continue;
        }
        let customer = api
            .retried(format!("GetCustomer {id}"), |api| {
                let id = id.clone();
                async move {
                    let customer = api
                        .customers()
                        .get_customer(v1::GetCustomerRequest { id })
                        .await?;
                    Ok(customer.into_inner())
                }
            })
            .await;
        let expected = if *suspended {
            v1::CustomerStatus::Suspended
        } else {
            v1::CustomerStatus::Active
        };
        assert_eq!(customer.status(), expected, "{customer:?}");
    }
    listed.len()
}
