//! Appending planned charge events to a tenant's ledger: numbering them, and what the append
//! leaves besides the events themselves.
//!
//! Within one ledger write, each chunk's events are numbered customer by customer, so every
//! customer's events form runs of consecutive sequences: a customer's charges are found through
//! its runs instead of an index entry per event. The same write keeps daily totals per
//! customer, vendor, service and meter (for the open period and the run rate;
//! `add_daily_totals`, known before the events are numbered, so they are written before the
//! ledger lock) and each customer's change of exposure (for credit control).
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::ledger::NewChargeEvent;
use super::line_key::LineKey;
use super::vendor::Vendor;

/// A charge event with its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberedEvent {
    pub sequence: i64,
    pub event: NewChargeEvent,
}

/// Consecutive sequences `[first_sequence, last_sequence]` that all belong to one customer,
/// with the earliest and latest usage window start among them: a close skips the runs that
/// hold nothing outside the period it bills (see `ledger::invoice_charges`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRun {
    pub customer_id: String,
    pub first_sequence: i64,
    pub last_sequence: i64,
    pub first_window: DateTime<Utc>,
    pub last_window: DateTime<Utc>,
}

/// What a daily total adds up: one customer's charges for one vendor, service and meter, over
/// usage windows starting on one day in the customer's time zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TotalKey {
    pub customer_id: String,
    pub usage_date: NaiveDate,
    pub vendor: Vendor,
    pub service: String,
    pub meter: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Total {
    pub amount: Decimal,
    pub quantity: Decimal,
    /// The charge events summed: not stored with the daily total, but counted by the rollups
    /// (see `spend_rollup`), where it tells a key without charges in a range from one whose
    /// charges sum to zero.
    pub events: i64,
    /// The line key of one of the charges summed: stored with the monthly rollup per meter,
    /// where a close finds an invoice line's unit through it when the row keeps no `unit` (a
    /// close sums the rollups instead of reading the charges; see `ledger::invoice_charges`).
    pub line_key: Option<LineKey>,
    /// The unit of one of the charges summed, as recorded with it (None: not known, as for
    /// totals rebuilt from stored events, which keep no unit): stored with the monthly rollup
    /// per meter, where a close takes it instead of looking up `line_key`'s usage line (a
    /// probe per meter: ~1 ms of a 100-line close; BENCHMARKS.md, session 15).
    pub unit: Option<String>,
}

impl Total {
    pub fn add(
        &mut self,
        amount: Decimal,
        quantity: Decimal,
        line_key: LineKey,
        unit: Option<&str>,
    ) {
        self.amount += amount;
        self.quantity += quantity;
        self.events += 1;
        self.line_key.get_or_insert(line_key);
        if self.unit.is_none() {
            self.unit = unit.map(str::to_string);
        }
    }
}

/// The day a usage window starts on in `zone`.
pub fn usage_date(window_start: DateTime<Utc>, zone: Tz) -> NaiveDate {
    window_start.with_timezone(&zone).date_naive()
}

/// Everything an append leaves besides the events.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Appended {
    /// The last sequence handed out (the one the ledger lock returned when nothing was appended).
    pub last_sequence: i64,
    pub events: usize,
    pub runs: Vec<CustomerRun>,
    /// Each touched customer's change of open charges.
    pub exposure: BTreeMap<String, Decimal>,
}

/// Adds the change of each daily total that `events` make to `totals`, each on its usage day
/// in its customer's time zone (`zones`; a customer not in it counts its days in UTC). It
/// depends on the events alone, not on their sequences: a write sums it chunk by chunk as it
/// plans, and adds it to the stored totals before it takes the ledger lock (see `ledger::tx`).
pub fn add_daily_totals(
    totals: &mut BTreeMap<TotalKey, Total>,
    events: &[NewChargeEvent],
    zones: &HashMap<String, Tz>,
) {
    let mut day: Option<(&str, DateTime<Utc>, NaiveDate)> = None;
    for event in events {
        // Neighbouring events mostly share customer and window: convert the time once.
        let date = match day {
            Some((customer, at, date))
                if customer == event.customer_id && at == event.window_start =>
            {
                date
            }
            _ => {
                let zone = zones.get(&event.customer_id).copied().unwrap_or(Tz::UTC);
                let date = usage_date(event.window_start, zone);
                day = Some((event.customer_id.as_str(), event.window_start, date));
                date
            }
        };
        let key = TotalKey {
            customer_id: event.customer_id.clone(),
            usage_date: date,
            vendor: event.vendor,
            service: event.service.clone(),
            meter: event.meter.clone(),
        };
        totals.entry(key).or_default().add(
            event.amount,
            event.quantity,
            event.line_key,
            Some(&event.unit),
        );
    }
}

/// Numbers events after `last_sequence`, chunk by chunk.
pub struct Appender {
    appended: Appended,
}

impl Appender {
    pub fn new(last_sequence: i64) -> Self {
        Appender {
            appended: Appended {
                last_sequence,
                ..Appended::default()
            },
        }
    }

    /// Numbers one chunk's events customer by customer (and by line key within a customer),
    /// continuing the sequence, and records their runs and exposure.
    pub fn append(&mut self, mut events: Vec<NewChargeEvent>) -> Vec<NumberedEvent> {
        events.sort_by(|a, b| {
            a.customer_id
                .cmp(&b.customer_id)
                .then(a.line_key.cmp(&b.line_key))
        });
        let mut numbered = Vec::with_capacity(events.len());
        for event in events {
            let a = &mut self.appended;
            a.last_sequence += 1;
            a.events += 1;
            let sequence = a.last_sequence;
            match a.runs.last_mut() {
                Some(run)
                    if run.customer_id == event.customer_id
                        && run.last_sequence + 1 == sequence =>
                {
                    run.last_sequence = sequence;
                    run.first_window = run.first_window.min(event.window_start);
                    run.last_window = run.last_window.max(event.window_start);
                }
                _ => a.runs.push(CustomerRun {
                    customer_id: event.customer_id.clone(),
                    first_sequence: sequence,
                    last_sequence: sequence,
                    first_window: event.window_start,
                    last_window: event.window_start,
                }),
            }
            match a.exposure.get_mut(&event.customer_id) {
                Some(sum) => *sum += event.amount,
                None => {
                    a.exposure.insert(event.customer_id.clone(), event.amount);
                }
            }
            numbered.push(NumberedEvent { sequence, event });
        }
        numbered
    }

    pub fn finish(self) -> Appended {
        let a = self.appended;
        // Sequences are gap-free: the runs tile the appended range, one after the other.
        debug_assert!(
            a.runs
                .windows(2)
                .all(|w| w[1].first_sequence == w[0].last_sequence + 1)
                && a.runs
                    .last()
                    .is_none_or(|r| r.last_sequence == a.last_sequence)
                && a.runs
                    .iter()
                    .map(|r| r.last_sequence - r.first_sequence + 1)
                    .sum::<i64>()
                    == a.events as i64,
            "runs {:?} do not tile the {} events appended up to {}",
            a.runs,
            a.events,
            a.last_sequence
        );
        a
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::ledger::ChargeKind;
    use crate::domain::money::Currency;
    use crate::domain::usage::UsageKey;

    fn event(customer: &str, account: &str, at: DateTime<Utc>, amount: i64) -> NewChargeEvent {
        let key = UsageKey {
            vendor_account_id: account.into(),
            service: "Compute".into(),
            meter: "vm".into(),
            region: String::new(),
            window_start: at,
        };
        NewChargeEvent {
            line_key: LineKey::of(1, "pa_1", &key),
            customer_id: customer.into(),
            kind: ChargeKind::New,
            amount: Decimal::from(amount),
            currency: Currency::parse("c", "ZAR").unwrap(),
            quantity: Decimal::ONE,
            vendor: Vendor::Simulator,
            service: key.service,
            meter: key.meter,
            unit: "h".into(),
            window_start: at,
        }
    }

    #[test]
    fn chunks_are_numbered_by_customer_into_runs_with_exposure() {
        let mut appender = Appender::new(10);
        let late = Utc.with_ymd_and_hms(2026, 11, 1, 23, 30, 0).unwrap();
        let early = Utc.with_ymd_and_hms(2026, 10, 30, 8, 0, 0).unwrap();
        let first = appender.append(vec![
            event("cus_b", "b1", late, 5),
            event("cus_a", "a1", late, 1),
            event("cus_b", "b2", late, 7),
            event("cus_a", "a2", early, 2),
        ]);
        let order: Vec<(i64, &str)> = first
            .iter()
            .map(|n| (n.sequence, n.event.customer_id.as_str()))
            .collect();
        assert_eq!(
            order,
            vec![(11, "cus_a"), (12, "cus_a"), (13, "cus_b"), (14, "cus_b")]
        );
        // The next chunk continues the sequence; cus_b's run goes on across the chunks.
        let second = appender.append(vec![event("cus_b", "b3", early, -3)]);
        assert_eq!(second[0].sequence, 15);
        let appended = appender.finish();
        assert_eq!(appended.last_sequence, 15);
        assert_eq!(appended.events, 5);
        assert_eq!(
            appended.runs,
            vec![
                CustomerRun {
                    customer_id: "cus_a".into(),
                    first_sequence: 11,
                    last_sequence: 12,
                    first_window: early,
                    last_window: late,
                },
                // The window bounds span both chunks too.
                CustomerRun {
                    customer_id: "cus_b".into(),
                    first_sequence: 13,
                    last_sequence: 15,
                    first_window: early,
                    last_window: late,
                },
            ]
        );
        assert_eq!(appended.exposure["cus_a"], Decimal::from(3));
        assert_eq!(appended.exposure["cus_b"], Decimal::from(9));
    }

    #[test]
    fn daily_totals_sum_each_customers_local_day() {
        let zones = HashMap::from([("cus_b".to_string(), Tz::Africa__Johannesburg)]);
        // 23:30 UTC is already the next day in Johannesburg (UTC+2).
        let late = Utc.with_ymd_and_hms(2026, 11, 1, 23, 30, 0).unwrap();
        let early = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap();
        let events = [
            event("cus_b", "b1", late, 5),
            event("cus_a", "a1", late, 1),
            event("cus_b", "b2", late, 7),
            event("cus_a", "a2", late, 2),
            event("cus_b", "b3", late, -3),
            event("cus_b", "b4", early, 4),
        ];
        let mut totals = BTreeMap::new();
        add_daily_totals(&mut totals, &events[..2], &zones);
        add_daily_totals(&mut totals, &events[2..], &zones);
        let days: Vec<(String, String, Decimal, i64)> = totals
            .into_iter()
            .map(|(k, t)| (k.customer_id, k.usage_date.to_string(), t.amount, t.events))
            .collect();
        assert_eq!(
            days,
            vec![
                ("cus_a".into(), "2026-11-01".into(), Decimal::from(3), 2),
                ("cus_b".into(), "2026-11-01".into(), Decimal::from(4), 1),
                ("cus_b".into(), "2026-11-02".into(), Decimal::from(9), 3),
            ]
        );
    }

    #[test]
    fn nothing_appended_keeps_the_sequence() {
        let mut appender = Appender::new(4);
        assert!(appender.append(Vec::new()).is_empty());
        let appended = appender.finish();
        assert_eq!((appended.last_sequence, appended.events), (4, 0));
        assert!(appended.runs.is_empty() && appended.exposure.is_empty());
    }
}
