//! Reads of the ledger layout: a customer's charges are found through its runs of consecutive
//! sequences (charge_event_runs), and its open period is summed from daily totals per local day
//! (charge_totals), which follow the customer's time zone when it changes.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Span, DurationRound, TimeZone, Utc};
use msp_gateway::domain::charges::ChargeFilter;
use msp_gateway::domain::ledger::ChargeKind;
use msp_gateway::domain::ledger::IngestSummary;
use msp_gateway::domain::usage::UsageLine;
use msp_gateway::proto::v1;
use rust_decimal::Decimal;

use crate::charge_streams::{Charges, Ledger, charges_client, dec, ledger, line, open, until_mark};
use crate::harness::{Backend, TestGateway, fresh_request};

async fn push(gw: &TestGateway, l: &Ledger, lines: Vec<UsageLine>) -> IngestSummary {
    gw.ledger
        .ingest_push(&gw.tenant_id, &l.account, lines, &fresh_request())
        .await
        .expect("ingest")
        .fresh()
        .expect("a new request id")
}

/// Every page of ListCharges for `request` (its page_size as given), following
/// next_page_token; checks each page's size and the high-water mark.
async fn list_all(
    client: &mut Charges,
    request: v1::ListChargesRequest,
    hwm: i64,
) -> Vec<v1::Charge> {
    let page_size = request.page_size as usize;
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_charges(v1::ListChargesRequest {
                page_token: token,
                ..request.clone()
            })
            .await
            .expect("list charges")
            .into_inner();
        assert_eq!(page.high_water_mark, hwm);
        assert!(
            page.charges.len() <= page_size,
            "page of {}",
            page.charges.len()
        );
        let last_page = page.next_page_token.is_empty();
        if !last_page {
            assert_eq!(page.charges.len(), page_size, "a short page before the end");
        }
        out.extend(page.charges);
        if last_page {
            return out;
        }
        token = page.next_page_token;
    }
}

fn kind(k: i32) -> ChargeKind {
    match v1::ChargeKind::try_from(k).unwrap() {
        v1::ChargeKind::New => ChargeKind::New,
        v1::ChargeKind::Revision => ChargeKind::Revision,
        v1::ChargeKind::Reversal => ChargeKind::Reversal,
        v1::ChargeKind::Rerate => ChargeKind::Rerate,
        v1::ChargeKind::SubscriptionFee => ChargeKind::SubscriptionFee,
        v1::ChargeKind::Proration => ChargeKind::Proration,
        v1::ChargeKind::Refund => ChargeKind::Refund,
        v1::ChargeKind::Unspecified => panic!("no kind"),
    }
}

fn kind_number(k: ChargeKind) -> i32 {
    match k {
        ChargeKind::New => v1::ChargeKind::New as i32,
        ChargeKind::Revision => v1::ChargeKind::Revision as i32,
        ChargeKind::Reversal => v1::ChargeKind::Reversal as i32,
        ChargeKind::Rerate => v1::ChargeKind::Rerate as i32,
        ChargeKind::SubscriptionFee => v1::ChargeKind::SubscriptionFee as i32,
        ChargeKind::Proration => v1::ChargeKind::Proration as i32,
        ChargeKind::Refund => v1::ChargeKind::Refund as i32,
    }
}

fn sequences(charges: &[v1::Charge]) -> Vec<i64> {
    charges.iter().map(|c| c.sequence).collect()
}

/// A small deterministic generator (the test must be reproducible).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

/// What was recorded: each line's current cost, and per customer how many NEW and REVISION
/// events its pushes implied.
#[derive(Default)]
struct Model {
    costs: BTreeMap<(usize, String), Decimal>,
    new: HashMap<usize, usize>,
    revisions: HashMap<usize, usize>,
}

impl Model {
    /// A line of customer `c` for `meter` at `cost`, counted as a new line or a revision.
    fn line(&mut self, l: &Ledger, c: usize, meter: &str, cost: Decimal) -> UsageLine {
        match self.costs.insert((c, meter.to_string()), cost) {
            None => *self.new.entry(c).or_default() += 1,
            Some(before) => {
                assert_ne!(before, cost, "a revision must change the cost");
                *self.revisions.entry(c).or_default() += 1;
            }
        }
        line(&l.customers[c], meter, &cost.to_string(), l.base)
    }

    /// Customer `c`'s meters so far.
    fn meters(&self, c: usize) -> Vec<String> {
        self.costs
            .keys()
            .filter(|(owner, _)| *owner == c)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

/// A cost with many fractional digits.
fn cost(n: usize) -> Decimal {
    dec(&format!(
        "{}.{:010}",
        n % 17 + 1,
        (n * 7_919_993) % 10_000_000_000
    ))
}

/// Small pushes of one to three lines that interleave four customers (runs of one or two
/// events), new lines and revisions.
async fn small_pushes(
    gw: &TestGateway,
    l: &Ledger,
    model: &mut Model,
    rng: &mut Lcg,
    tag: &str,
    pushes: usize,
) {
    for p in 0..pushes {
        let mut lines = Vec::new();
        let mut in_push: HashSet<(usize, String)> = HashSet::new();
        for i in 0..1 + rng.next(3) {
            let c = rng.next(l.customers.len());
            let meters = model.meters(c);
            let meter = if !meters.is_empty() && rng.next(3) == 0 {
                meters[rng.next(meters.len())].clone()
            } else {
                format!("{tag}{p}-{i}")
            };
            if !in_push.insert((c, meter.clone())) {
                continue;
            }
            let next = match model.costs.get(&(c, meter.clone())) {
                Some(before) => *before + dec("0.0000000003"),
                None => cost(p * 3 + i),
            };
            lines.push(model.line(l, c, &meter, next));
        }
        let count = lines.len();
        assert_eq!(push(gw, l, lines).await.events_appended, count);
    }
}

async fn customer_filtered_reads_follow_runs(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    gw.ledger
        .feed()
        .set_heartbeat_interval(Duration::from_millis(200));
    let l = ledger(&gw, 4, "0").await;
    let mut model = Model::default();
    let mut rng = Lcg(20261130);

    // More than 64 runs per customer (the reader takes runs 64 at a time).
    small_pushes(&gw, &l, &mut model, &mut rng, "a", 160).await;
    // One push of 6,000 lines: several chunks, each numbered customer by customer; every line
    // of the small pushes is revised.
    let mut big = Vec::new();
    let earlier: Vec<((usize, String), Decimal)> =
        model.costs.iter().map(|(k, v)| (k.clone(), *v)).collect();
    for ((c, meter), before) in &earlier {
        big.push(model.line(&l, *c, meter, *before + dec("1.0000000001")));
    }
    for i in big.len()..6_000 {
        // Most of them for customers 2 and 3 (customers 0 and 1 are read in small pages).
        let c = match i % 20 {
            0 => 0,
            1 => 1,
            n => 2 + n % 2,
        };
        big.push(model.line(&l, c, &format!("b{i}"), cost(i)));
    }
    let summary = push(&gw, &l, big).await;
    assert_eq!(summary.events_appended, 6_000);
    small_pushes(&gw, &l, &mut model, &mut rng, "c", 30).await;

    let hwm = gw.ledger.high_water_mark(&gw.tenant_id).await.unwrap();
    let mut client = charges_client(gw.channel().await, &gw.admin_key);
    let all = list_all(
        &mut client,
        v1::ListChargesRequest {
            page_size: 1000,
            ..Default::default()
        },
        hwm,
    )
    .await;
    assert_eq!(sequences(&all), (1..=hwm).collect::<Vec<_>>());
    let events: usize = model.new.values().sum::<usize>() + model.revisions.values().sum::<usize>();
    assert_eq!(all.len(), events);

    let new = v1::ChargeKind::New as i32;
    let revision = v1::ChargeKind::Revision as i32;
    let reversal = v1::ChargeKind::Reversal as i32;
    for (c, customer) in l.customers.iter().enumerate() {
        let mine: Vec<v1::Charge> = all
            .iter()
            .filter(|e| &e.customer_id == customer)
            .cloned()
            .collect();
        // Its events lie in more runs than the reader takes at once.
        let runs = 1 + mine
            .windows(2)
            .filter(|w| w[1].sequence != w[0].sequence + 1)
            .count();
        assert!(runs > 64, "customer {c}'s events form only {runs} runs");
        // What the model says this customer's events are.
        assert_eq!(
            mine.iter().filter(|e| e.kind == new).count(),
            model.new[&c],
            "NEW events of customer {c}"
        );
        assert_eq!(
            mine.iter().filter(|e| e.kind == revision).count(),
            model.revisions[&c],
            "REVISION events of customer {c}"
        );
        let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
        for e in &mine {
            *sums.entry(e.meter.clone()).or_default() += dec(&e.amount);
        }
        let current: BTreeMap<String, Decimal> = model
            .costs
            .iter()
            .filter(|((owner, _), _)| *owner == c)
            .map(|((_, m), cost)| (m.clone(), *cost))
            .collect();
        assert_eq!(
            sums, current,
            "each line's events sum to its cost (customer {c})"
        );

        // ListCharges by customer (and kinds), paged: exactly the filtered unfiltered listing.
        for kinds in [vec![], vec![revision], vec![new, revision], vec![reversal]] {
            let expected: Vec<v1::Charge> = mine
                .iter()
                .filter(|e| kinds.is_empty() || kinds.contains(&e.kind))
                .cloned()
                .collect();
            // (Each call costs tens of milliseconds of transport: small pages where they count.)
            let page_size = if c < 2 && kinds.len() < 2 { 7 } else { 150 };
            let got = list_all(
                &mut client,
                v1::ListChargesRequest {
                    page_size,
                    customer_id: customer.clone(),
                    kinds: kinds.clone(),
                    ..Default::default()
                },
                hwm,
            )
            .await;
            assert_eq!(
                sequences(&got),
                sequences(&expected),
                "customer {c}, kinds {kinds:?}"
            );
            assert_eq!(got, expected, "customer {c}, kinds {kinds:?}");
            // The store's reads in pages of 7, after each page's last sequence.
            let filter = ChargeFilter {
                customer_id: Some(customer.clone()),
                kinds: kinds.iter().map(|&k| kind(k)).collect(),
                ..Default::default()
            };
            let mut read = Vec::new();
            loop {
                let after = read.last().map_or(0, |e: &(i64, String, i32)| e.0);
                let (page, _) = gw
                    .ledger
                    .list_charges(&l.principal.tenant_id, &filter, after, 7)
                    .await
                    .unwrap();
                let full = page.len() == 7;
                read.extend(
                    page.into_iter()
                        .map(|e| (e.sequence, e.customer_id, kind_number(e.kind))),
                );
                if !full {
                    break;
                }
            }
            let wanted: Vec<(i64, String, i32)> = expected
                .iter()
                .map(|e| (e.sequence, e.customer_id.clone(), e.kind))
                .collect();
            assert_eq!(read, wanted, "store pages of customer {c}, kinds {kinds:?}");
        }
        // From a cursor in the middle of the ledger.
        let middle = hwm / 2;
        let got = list_all(
            &mut client,
            v1::ListChargesRequest {
                page_size: 100,
                customer_id: customer.clone(),
                after_sequence: middle,
                ..Default::default()
            },
            hwm,
        )
        .await;
        let expected: Vec<v1::Charge> = mine
            .iter()
            .filter(|e| e.sequence > middle)
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(got, expected, "customer {c} after {middle}");
    }

    // StreamCharges by customer from a cursor in the middle: exactly the rest of its charges
    // (read from the database: the stream's backlog), then a heartbeat at the high-water mark.
    let one = &l.customers[1];
    let ones: Vec<i64> = all
        .iter()
        .filter(|e| &e.customer_id == one)
        .map(|e| e.sequence)
        .collect();
    let middle = ones[ones.len() / 3];
    let filtered = |customers: &[&String], kinds: &[i32]| -> Vec<v1::Charge> {
        all.iter()
            .filter(|e| e.sequence > middle)
            .filter(|e| customers.contains(&&e.customer_id))
            .filter(|e| kinds.is_empty() || kinds.contains(&e.kind))
            .cloned()
            .collect()
    };
    let mut stream = open(&mut client, middle, std::slice::from_ref(one)).await;
    let (got, mark) = until_mark(&mut stream, hwm).await;
    let expected = filtered(&[one], &[]);
    assert!(
        expected.len() > 256,
        "more than one page of backlog: {}",
        expected.len()
    );
    assert_eq!(sequences(&got), sequences(&expected));
    assert_eq!(got, expected);
    assert_eq!(mark, hwm);

    let two = [l.customers[0].clone(), l.customers[3].clone()];
    let mut revisions = client
        .stream_charges(v1::StreamChargesRequest {
            after_sequence: middle,
            customer_ids: two.to_vec(),
            kinds: vec![revision],
        })
        .await
        .expect("stream")
        .into_inner();
    let (got, mark) = until_mark(&mut revisions, hwm).await;
    let expected = filtered(&[&two[0], &two[1]], &[revision]);
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    assert_eq!(mark, hwm);

    // Live: another customer's charge does not reach the filtered stream, this one's does.
    let mut model_live = Model::default();
    let lines = vec![
        model_live.line(&l, 0, "live-0", dec("1.5")),
        model_live.line(&l, 1, "live-1", dec("2.5")),
    ];
    let summary = push(&gw, &l, lines).await;
    assert_eq!(summary.last_sequence, Some(hwm + 2));
    let (got, mark) = until_mark(&mut stream, hwm + 2).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].customer_id, *one);
    assert_eq!(got[0].meter, "live-1");
    assert_eq!(mark, hwm + 2);
    gw.stop().await;
}

/// The first instant of the month containing `at`, in UTC.
fn month_start(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .unwrap()
}

fn time(t: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

/// A customer's open period and line items, checked against its charges: the items are
/// exactly the per-(vendor, service, meter) sums of the charges (amount and quantity) whose
/// window starts in the period, and the total is their sum. Returns (start, end, amount by
/// meter, total).
async fn checked_open_period(
    client: &mut Charges,
    customer: &str,
) -> (
    DateTime<Utc>,
    DateTime<Utc>,
    BTreeMap<String, Decimal>,
    Decimal,
) {
    let open = client
        .list_open_line_items(v1::ListOpenLineItemsRequest {
            customer_id: customer.into(),
        })
        .await
        .expect("open line items")
        .into_inner();
    let (start, end) = (
        time(open.period_start.as_ref().unwrap()),
        time(open.period_end.as_ref().unwrap()),
    );
    let everything = list_all(
        client,
        v1::ListChargesRequest {
            page_size: 1000,
            customer_id: customer.into(),
            ..Default::default()
        },
        open.as_of_sequence,
    )
    .await;
    let in_period: Vec<&v1::Charge> = everything
        .iter()
        .filter(|c| {
            let at = time(c.window_start.as_ref().unwrap());
            at >= start && at < end
        })
        .collect();
    // The window filter of ListCharges agrees.
    let windowed = list_all(
        client,
        v1::ListChargesRequest {
            page_size: 1000,
            customer_id: customer.into(),
            window_start_from: open.period_start,
            window_start_to: open.period_end,
            ..Default::default()
        },
        open.as_of_sequence,
    )
    .await;
    assert_eq!(windowed.iter().collect::<Vec<_>>(), in_period);
    let mut expected: BTreeMap<(i32, String, String), (Decimal, Decimal)> = BTreeMap::new();
    for c in &in_period {
        let sum = expected
            .entry((c.vendor, c.service.clone(), c.meter.clone()))
            .or_default();
        sum.0 += dec(&c.amount);
        sum.1 += dec(&c.quantity);
    }
    let items: BTreeMap<(i32, String, String), (Decimal, Decimal)> = open
        .line_items
        .iter()
        .map(|i| {
            assert_eq!(i.currency, "ZAR");
            (
                (i.vendor, i.service.clone(), i.meter.clone()),
                (dec(&i.amount), dec(&i.quantity)),
            )
        })
        .collect();
    assert_eq!(
        items.len(),
        open.line_items.len(),
        "one item per vendor, service and meter"
    );
    assert_eq!(
        items, expected,
        "open items of {customer} in [{start}, {end})"
    );
    let total: Decimal = expected.values().map(|(a, _)| *a).sum();
    assert_eq!(dec(&open.total), total);
    let by_meter = items
        .into_iter()
        .map(|((_, _, m), (a, _))| (m, a))
        .collect();
    (start, end, by_meter, total)
}

async fn set_time_zone(gw: &TestGateway, customer: &str, zone: &str) {
    let updated = gw
        .customers(&gw.admin_key)
        .await
        .update_customer(v1::UpdateCustomerRequest {
            customer: Some(v1::Customer {
                id: customer.into(),
                time_zone: zone.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["time_zone".into()],
            }),
            request_id: String::new(),
        })
        .await
        .expect("update time zone")
        .into_inner();
    assert_eq!(updated.time_zone, zone);
}

async fn open_period_follows_the_time_zone(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 2, "0").await;
    let (a, b) = (&l.customers[0], &l.customers[1]);
    let now = Utc::now();
    let month = month_start(now);
    let hour = now.duration_trunc(Span::hours(1)).unwrap();
    // Windows around the start of the UTC month, by meter: 00:30 and 03:00 UTC on the 1st,
    // 22:30 UTC the day before (00:30 on the 1st in Johannesburg), and the current hour.
    let windows: HashMap<&str, DateTime<Utc>> = HashMap::from([
        ("m-a", month + Span::minutes(30)),
        ("m-b", month - Span::minutes(90)),
        ("m-c", hour),
        ("m-d", month + Span::hours(3)),
        // Recorded after the customer moved to New York (the evening before in New York).
        ("m-e", month + Span::hours(2)),
        ("m-f", hour),
    ]);
    let at = |m: &str| windows[m];
    // Far enough from the month's ends for the periods below to hold in every zone used.
    let next_month = month_start(month + Span::days(32));
    let settled = now - month > Span::hours(6) && next_month - now > Span::hours(3);

    let mut lines = vec![
        line(a, "m-a", "10.0000000001", at("m-a")),
        line(a, "m-b", "0.3333333333", at("m-b")),
        line(a, "m-c", "7.123456789", at("m-c")),
        line(a, "m-d", "1.1", at("m-d")),
        line(b, "m-a", "3.3333333333", at("m-a")),
    ];
    lines[3].quantity = dec("2.5");
    assert_eq!(push(&gw, &l, lines).await.events_appended, 5);
    // A revision of the 00:30 line.
    assert_eq!(
        push(&gw, &l, vec![line(a, "m-a", "12.5", at("m-a"))])
            .await
            .events_appended,
        1
    );
    let mut client = charges_client(gw.channel().await, &gw.admin_key);

    // In Johannesburg (the tenant's zone, the default): 22:30 UTC the day before counts.
    let (start, _, items, joburg_total) = checked_open_period(&mut client, a).await;
    let (_, _, b_items, b_total) = checked_open_period(&mut client, b).await;
    if settled {
        assert_eq!(start, month - Span::hours(2));
        assert_eq!(
            items.keys().collect::<Vec<_>>(),
            ["m-a", "m-b", "m-c", "m-d"]
        );
        assert_eq!(items["m-a"], dec("12.5"));
        assert_eq!(joburg_total, dec("21.0567901223"));
    }

    // UTC: the period starts at 00:00 UTC; 22:30 the day before is out.
    set_time_zone(&gw, a, "UTC").await;
    let (start, _, items, utc_total) = checked_open_period(&mut client, a).await;
    if settled {
        assert_eq!(start, month);
        assert_eq!(items.keys().collect::<Vec<_>>(), ["m-a", "m-c", "m-d"]);
        assert_eq!(utc_total, dec("20.723456789"));
    }
    assert_ne!(utc_total, joburg_total);

    // New York: 00:30 and 03:00 UTC on the 1st are the evening before, in the previous month.
    set_time_zone(&gw, a, "America/New_York").await;
    let (start, end, items, ny_total) = checked_open_period(&mut client, a).await;
    let ny = chrono_tz::America::New_York;
    assert_eq!(start.with_timezone(&ny).time(), chrono::NaiveTime::MIN);
    assert!(start <= now && now < end);
    if settled {
        assert_eq!(
            start,
            ny.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
                .unwrap()
        );
        assert_eq!(items.keys().collect::<Vec<_>>(), ["m-c"]);
        assert_eq!(ny_total, dec("7.123456789"));
    }
    assert_ne!(ny_total, utc_total);

    // Charges recorded now are bucketed by the customer's new zone.
    assert_eq!(
        push(
            &gw,
            &l,
            vec![
                line(a, "m-e", "4.0000000004", at("m-e")),
                line(a, "m-f", "0.05", at("m-f")),
            ]
        )
        .await
        .events_appended,
        2
    );
    let (_, _, items, ny_total) = checked_open_period(&mut client, a).await;
    if settled {
        assert_eq!(items.keys().collect::<Vec<_>>(), ["m-c", "m-f"]);
        assert_eq!(ny_total, dec("7.173456789"));
    }

    // Back to UTC: everything from 00:00 UTC on the 1st, including the charges recorded while
    // the customer was in New York.
    set_time_zone(&gw, a, "UTC").await;
    let (_, _, items, total) = checked_open_period(&mut client, a).await;
    if settled {
        assert_eq!(
            items.keys().collect::<Vec<_>>(),
            ["m-a", "m-c", "m-d", "m-e", "m-f"]
        );
        assert_eq!(total, dec("24.7734567894"));
    }

    // The other customer's totals did not move.
    let (_, _, b_after, b_total_after) = checked_open_period(&mut client, b).await;
    assert_eq!((b_after, b_total_after), (b_items, b_total));
    gw.stop().await;
}

crate::both_backends!(
    customer_filtered_reads_follow_runs,
    open_period_follows_the_time_zone
);

/// Backends of this test's database waiting for a lock, and what every backend is doing.
async fn lock_waiters(conn: &mut diesel_async::AsyncPgConnection) -> (usize, Vec<String>) {
    #[derive(diesel::QueryableByName)]
    struct Activity {
        #[diesel(sql_type = diesel::sql_types::Text)]
        wait: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        query: String,
    }
    let rows: Vec<Activity> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT coalesce(wait_event_type, '') AS wait, left(query, 100) AS query \
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ),
        conn,
    )
    .await
    .unwrap();
    let waiting = rows.iter().filter(|r| r.wait == "Lock").count();
    (
        waiting,
        rows.into_iter()
            .map(|r| format!("{}: {}", r.wait, r.query))
            .collect(),
    )
}

async fn wait_for_lock_waiters(conn: &mut diesel_async::AsyncPgConnection, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (waiting, activity) = lock_waiters(conn).await;
        if waiting >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} lock waiters never showed up: {activity:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A push racing a customer's time-zone change (PostgreSQL, where pushes of one tenant write
/// side by side): the change commits first, while the push waits for the ledger lock. The
/// push's charge must still be totalled on its day in the customer's new zone.
///
/// The interleaving is forced: a third session holds the tenant's ledger row, UpdateCustomer
/// (time zone) queues for it first, then the push queues behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_racing_a_time_zone_change_is_totalled_in_the_new_zone() {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let Some(gw) = TestGateway::start(Backend::Postgres).await else {
        return;
    };
    let l = ledger(&gw, 1, "0").await;
    let a = l.customers[0].clone();
    set_time_zone(&gw, &a, "UTC").await;
    let now = Utc::now();
    let ny = chrono_tz::America::New_York;
    let local = now.with_timezone(&ny);
    // The start of the current month in New York; 30 minutes before it is still the 1st in
    // UTC, but the last day of the previous month in New York.
    let ny_month = ny
        .with_ymd_and_hms(local.year(), local.month(), 1, 0, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let hour = now.duration_trunc(Span::hours(1)).unwrap();
    // A first push, so the writer's pricing (with the customer's zone) is loaded.
    push(&gw, &l, vec![line(&a, "warm", "1.5", hour)]).await;

    let mut holder = diesel_async::AsyncPgConnection::establish(gw.database_url())
        .await
        .unwrap();
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT last_sequence FROM ledger_sequences WHERE tenant_id = '{}' FOR UPDATE",
            gw.tenant_id
        ))
        .await
        .unwrap();
    let mut watcher = diesel_async::AsyncPgConnection::establish(gw.database_url())
        .await
        .unwrap();
    let change = {
        let (customers, a) = (gw.customers(&gw.admin_key).await, a.clone());
        tokio::spawn(async move {
            let mut customers = customers;
            customers
                .update_customer(v1::UpdateCustomerRequest {
                    customer: Some(v1::Customer {
                        id: a,
                        time_zone: "America/New_York".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["time_zone".into()],
                    }),
                    request_id: String::new(),
                })
                .await
                .map(|r| r.into_inner().time_zone)
        })
    };
    wait_for_lock_waiters(&mut watcher, 1).await;
    let racing = {
        let ledger = gw.ledger.clone();
        let (tenant, account) = (gw.tenant_id.clone(), l.account.clone());
        let lines = vec![line(&a, "racing", "2.25", ny_month - Span::minutes(30))];
        tokio::spawn(async move {
            ledger
                .ingest_push(&tenant, &account, lines, &fresh_request())
                .await
        })
    };
    wait_for_lock_waiters(&mut watcher, 2).await;
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(change.await.unwrap().unwrap(), "America/New_York");
    let pushed = racing.await.unwrap().unwrap().fresh().unwrap();
    assert_eq!(pushed.events_appended, 1);

    // The racing charge's window is before the New York period: not an open item.
    let mut client = charges_client(gw.channel().await, &gw.admin_key);
    let (start, _, items, _) = checked_open_period(&mut client, &a).await;
    assert_eq!(start, ny_month);
    assert!(!items.contains_key("racing"), "{items:?}");
    gw.stop().await;
}
