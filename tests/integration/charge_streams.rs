//! ChargeService: StreamCharges (backlog then live, cursors, reconnects, many streams, slow
//! consumers, replicas, restarts), ListCharges and ListOpenLineItems. Charges are recorded
//! through the store (`ingest_push`) with simulator-linked customers.
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use msp_gateway::domain::access::{Principal, Scope};
use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
use msp_gateway::domain::partner_account::PartnerAccount;
use msp_gateway::domain::pricing::NewPriceRule;
use msp_gateway::domain::pricing::{PriceKind, RuleScope};
use msp_gateway::domain::usage::{UsageKey, UsageLine};
use msp_gateway::ledger::Ledger as GatewayLedger;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::charge_service_client::ChargeServiceClient;
use rust_decimal::Decimal;
use tonic::Streaming;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::customers::{new_customer, simulator_account};
use crate::harness::{Backend, Bearer, TestGateway, assert_violation};

pub type Charges = ChargeServiceClient<InterceptedService<Channel, Bearer>>;

pub fn charges_client(channel: Channel, key: &str) -> Charges {
    ChargeServiceClient::with_interceptor(channel, Bearer::new(key))
}

/// Every charge of the key's tenant, in sequence order, through ListCharges.
pub async fn all_charges(channel: Channel, key: &str) -> Vec<v1::Charge> {
    let mut client = charges_client(channel, key);
    let mut charges = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_charges(v1::ListChargesRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .expect("list charges")
            .into_inner();
        charges.extend(page.charges);
        if page.next_page_token.is_empty() {
            return charges;
        }
        page_token = page.next_page_token;
    }
}

/// A tenant ready to record charges: a simulator partner account, customers linked to it, and
/// a zero markup (price = cost, in ZAR).
pub struct Ledger {
    pub principal: Principal,
    pub account: PartnerAccount,
    pub customers: Vec<String>,
    pub base: DateTime<Utc>,
}

pub async fn ledger(gw: &TestGateway, customers: usize, credit_limit: &str) -> Ledger {
    let principal = Principal {
        tenant_id: gw.tenant_id.clone(),
        key_id: "test".into(),
        scope: Scope::Admin,
        customer_id: None,
    };
    let sim = simulator_account(gw).await;
    let account = gw
        .store
        .partner_account(&principal.tenant_id, &sim.id)
        .await
        .expect("partner account");
    let mut client = gw.customers(&gw.admin_key).await;
    let mut ids = Vec::new();
    for i in 0..customers {
        let mut request = new_customer(&format!("c-{i}"), &format!("ISP-{i:04}"));
        request.credit_limit = credit_limit.into();
        request.enrollments = vec![v1::EnrollmentRequest {
            vendor: v1::Vendor::Simulator.into(),
            partner_account_id: String::new(),
            new_account: None,
        }];
        ids.push(
            client
                .create_customer(request)
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    let rule = NewPriceRule {
        scope: RuleScope::default(),
        kind: PriceKind::Markup,
        value: Decimal::ZERO,
        currency: None,
        effective_from: DateTime::from_timestamp(0, 0).unwrap(),
        effective_to: None,
    };
    gw.ledger
        .create_price_rule(
            &principal.tenant_id,
            &rule,
            &Idempotent::unanswered(IdempotencyKey::new(
                "rule-0".into(),
                "CreatePriceRule",
                &rule,
            )),
        )
        .await
        .expect("price rule");
    let base = Utc::now().duration_trunc(Span::hours(1)).unwrap() - Span::hours(1);
    Ledger {
        principal,
        account,
        customers: ids,
        base,
    }
}

pub fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// A usage line of `customer_id` for `meter` with its usage window starting at `window`.
pub fn line(customer_id: &str, meter: &str, cost: &str, window: DateTime<Utc>) -> UsageLine {
    UsageLine {
        key: UsageKey {
            vendor_account_id: format!("sim-{}", customer_id.trim_start_matches("cus_")),
            service: "Compute".into(),
            meter: meter.into(),
            region: String::new(),
            window_start: window,
        },
        window_end: window + Span::hours(1),
        meter_name: meter.into(),
        quantity: Decimal::ONE,
        unit: "h".into(),
        cost: dec(cost),
        list_cost: None,
        currency: "ZAR".into(),
        estimated: true,
        vendor_tenant_id: None,
    }
}

impl Ledger {
    /// Records `count` new charges (one per new meter) in batches of `batch`, spread over the
    /// customers; returns the last sequence.
    pub async fn record(
        &self,
        ledger: &GatewayLedger,
        first: usize,
        count: usize,
        batch: usize,
    ) -> i64 {
        let mut last = 0;
        let mut n = first;
        while n < first + count {
            let end = (n + batch).min(first + count);
            let lines = (n..end)
                .map(|i| {
                    let customer = &self.customers[i % self.customers.len()];
                    line(customer, &format!("m{i}"), "1.25", self.base)
                })
                .collect();
            let summary = ledger
                .ingest_push(
                    &self.principal.tenant_id,
                    &self.account,
                    lines,
                    &crate::harness::fresh_request(),
                )
                .await
                .expect("ingest")
                .fresh()
                .expect("a new request id");
            assert_eq!(summary.events_appended, end - n);
            last = summary.last_sequence.unwrap();
            n = end;
        }
        last
    }
}

pub async fn open(
    client: &mut Charges,
    after: i64,
    customers: &[String],
) -> Streaming<v1::StreamChargesResponse> {
    client
        .stream_charges(v1::StreamChargesRequest {
            after_sequence: after,
            customer_ids: customers.to_vec(),
            kinds: vec![],
        })
        .await
        .expect("stream")
        .into_inner()
}

/// The next `n` charges, skipping heartbeats.
pub async fn take(stream: &mut Streaming<v1::StreamChargesResponse>, n: usize) -> Vec<v1::Charge> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {n} charges", out.len()))
            .expect("stream error")
            .expect("stream ended");
        if let Some(v1::stream_charges_response::Event::Charge(c)) = message.event {
            out.push(c);
        }
    }
    out
}

/// Charges until a heartbeat says the stream is up to date with `mark` (or beyond), and the
/// heartbeat's high-water mark.
pub(crate) async fn until_mark(
    stream: &mut Streaming<v1::StreamChargesResponse>,
    mark: i64,
) -> (Vec<v1::Charge>, i64) {
    let mut charges = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("timed out waiting for a heartbeat")
            .expect("stream error")
            .expect("stream ended");
        match message.event {
            Some(v1::stream_charges_response::Event::Charge(c)) => charges.push(c),
            Some(v1::stream_charges_response::Event::Heartbeat(h)) if h.high_water_mark >= mark => {
                return (charges, h.high_water_mark);
            }
            Some(v1::stream_charges_response::Event::Heartbeat(_)) => {}
            None => {}
        }
    }
}

/// Waits for the next heartbeat and returns its high-water mark (charges before it are
/// returned too).
async fn heartbeat(stream: &mut Streaming<v1::StreamChargesResponse>) -> (Vec<v1::Charge>, i64) {
    until_mark(stream, i64::MIN).await
}

pub fn sequences(charges: &[v1::Charge]) -> Vec<i64> {
    charges.iter().map(|c| c.sequence).collect()
}

async fn opened_before_receives_all_in_order(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 3, "0").await;
    let mut client = charges_client(gw.channel().await, &gw.admin_key);
    let mut stream = open(&mut client, 0, &[]).await;
    let ledger = gw.ledger.clone();
    let recorder = tokio::spawn(async move {
        let last = l.record(&ledger, 0, 60, 7).await;
        (l, last)
    });
    let got = take(&mut stream, 60).await;
    let (l, last) = recorder.await.unwrap();
    assert_eq!(last, 60);
    assert_eq!(sequences(&got), (1..=60).collect::<Vec<_>>());
    assert!(
        got.iter()
            .all(|c| c.amount == "1.25" && c.currency == "ZAR")
    );
    assert!(got.iter().all(|c| c.kind == v1::ChargeKind::New as i32));
    assert!(got.iter().all(|c| l.customers.contains(&c.customer_id)));
    gw.stop().await;
}

async fn cursor_in_the_middle_receives_exactly_the_rest(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    gw.ledger
        .feed()
        .set_heartbeat_interval(Duration::from_millis(200));
    let l = ledger(&gw, 2, "0").await;
    l.record(&gw.ledger, 0, 30, 10).await;
    let mut client = charges_client(gw.channel().await, &gw.admin_key);
    let mut stream = open(&mut client, 12, &[]).await;
    let (got, hwm) = heartbeat(&mut stream).await;
    assert_eq!(sequences(&got), (13..=30).collect::<Vec<_>>());
    assert_eq!(hwm, 30);

    // Filtered by customer: only its charges, and the heartbeat still says "up to date".
    let mut only = open(&mut client, 0, &l.customers[1..2]).await;
    let (got, hwm) = heartbeat(&mut only).await;
    assert_eq!(got.len(), 15);
    assert!(got.iter().all(|c| c.customer_id == l.customers[1]));
    assert_eq!(hwm, 30);
    // Live, filtered: a charge of the other customer does not arrive, one of this one does.
    l.record(&gw.ledger, 30, 2, 2).await;
    let next = take(&mut only, 1).await;
    assert!(next[0].sequence > 30);
    assert_eq!(next[0].customer_id, l.customers[1]);

    // Kinds: nothing but revisions, and none exist yet.
    let mut revisions = client
        .stream_charges(v1::StreamChargesRequest {
            after_sequence: 0,
            customer_ids: vec![],
            kinds: vec![v1::ChargeKind::Revision.into()],
        })
        .await
        .unwrap()
        .into_inner();
    let (got, hwm) = heartbeat(&mut revisions).await;
    assert!(got.is_empty());
    assert_eq!(hwm, 32);
    let revised = line(&l.customers[0], "m0", "2.00", l.base);
    gw.ledger
        .ingest_push(
            &gw.tenant_id,
            &l.account,
            vec![revised],
            &crate::harness::fresh_request(),
        )
        .await
        .unwrap()
        .fresh()
        .expect("a new request id");
    let got = take(&mut revisions, 1).await;
    assert_eq!(got[0].sequence, 33);
    assert_eq!(got[0].amount, "0.75");

    // Bad requests.
    let bad = |after: i64, customers: Vec<String>, kinds: Vec<i32>| v1::StreamChargesRequest {
        after_sequence: after,
        customer_ids: customers,
        kinds,
    };
    assert_violation(
        client.stream_charges(bad(-1, vec![], vec![])).await,
        tonic::Code::InvalidArgument,
        "after_sequence",
    );
    assert_violation(
        client
            .stream_charges(bad(0, vec!["no such!".into()], vec![]))
            .await,
        tonic::Code::InvalidArgument,
        "customer_ids[0]",
    );
    assert_violation(
        client.stream_charges(bad(0, vec![], vec![0])).await,
        tonic::Code::InvalidArgument,
        "kinds[0]",
    );
    assert_violation(
        client.stream_charges(bad(0, vec![], vec![99])).await,
        tonic::Code::InvalidArgument,
        "kinds[0]",
    );
    gw.stop().await;
}

async fn reconnect_loses_nothing(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 2, "0").await;
    l.record(&gw.ledger, 0, 40, 8).await;
    let mut client = charges_client(gw.channel().await, &gw.admin_key);
    let mut seen = Vec::new();
    let mut cursor = 0;
    // Read a few, drop the stream while charges keep coming, reconnect from the cursor.
    for round in 0..4 {
        let mut stream = open(&mut client, cursor, &[]).await;
        let got = take(&mut stream, 10).await;
        cursor = got.last().unwrap().sequence;
        seen.extend(sequences(&got));
        drop(stream);
        l.record(&gw.ledger, 40 + round * 5, 5, 5).await;
    }
    let mut stream = open(&mut client, cursor, &[]).await;
    let rest = take(&mut stream, 60 - seen.len()).await;
    seen.extend(sequences(&rest));
    assert_eq!(seen, (1..=60).collect::<Vec<_>>());
    gw.stop().await;
}

async fn two_hundred_concurrent_streams_each_receive_everything(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 4, "0").await;
    l.record(&gw.ledger, 0, 20, 20).await;
    // A few connections, many HTTP/2 streams on each.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(gw.channel().await);
    }
    let mut streams = Vec::new();
    for i in 0..200 {
        let mut client = charges_client(channels[i % 4].clone(), &gw.admin_key);
        streams.push(open(&mut client, 0, &[]).await);
    }
    assert!(gw.ledger.feed().stats().streams.load(Ordering::Relaxed) >= 200);
    l.record(&gw.ledger, 20, 100, 25).await;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| tokio::spawn(async move { sequences(&take(&mut s, 120).await) }))
        .collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), (1..=120).collect::<Vec<_>>());
    }
    gw.stop().await;
}

async fn slow_consumer_drains_from_the_database_with_bounded_memory(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    // A small shared ring, so the stalled consumer falls behind it.
    gw.ledger.feed().set_ring_capacity(200);
    let l = ledger(&gw, 2, "0").await;
    // A consumer with a 64 KiB HTTP/2 window (tonic's default is megabytes).
    let channel = Channel::from_shared(format!("http://{}", gw.address))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut client = charges_client(channel, &gw.admin_key);
    let mut stream = open(&mut client, 0, &[]).await;
    l.record(&gw.ledger, 0, 1, 1).await;
    assert_eq!(take(&mut stream, 1).await[0].sequence, 1);
    // Stop reading while 3,000 more are recorded.
    let total = 3001;
    l.record(&gw.ledger, 1, total - 1, 500).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = gw.ledger.feed().stats();
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let buffered = stats.buffered.load(Ordering::Relaxed);
    // The server stopped reading when HTTP/2 flow control filled: what it took from the
    // database is bounded by the window, plus at most one page held by the stream.
    assert!(
        delivered < total as u64 / 2,
        "the server kept reading for a stalled consumer: {delivered} handed to the transport"
    );
    assert!(
        buffered <= msp_gateway::ledger::feed::PAGE,
        "{buffered} buffered"
    );
    // Drain: everything arrives, in order, partly from the database.
    let rest = take(&mut stream, total - 1).await;
    assert_eq!(sequences(&rest), (2..=total as i64).collect::<Vec<_>>());
    assert!(stats.database_pages.load(Ordering::Relaxed) > 0);
    gw.stop().await;
}

async fn restarted_gateway_resumes_from_cursors(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 2, "0").await;
    let first = gw.replica().await;
    let mut client = charges_client(first.channel().await, &gw.admin_key);
    let mut stream = open(&mut client, 0, &[]).await;
    l.record(&first.ledger, 0, 25, 5).await;
    let got = take(&mut stream, 18).await;
    let cursor = got.last().unwrap().sequence;
    first.stop().await;
    // (In one test process the stopped server's open connections outlive it; a real process
    // takes them down. The consumer moves on either way.)
    drop(stream);

    let second = gw.replica().await;
    l.record(&second.ledger, 25, 10, 5).await;
    let mut client = charges_client(second.channel().await, &gw.admin_key);
    let mut stream = open(&mut client, cursor, &[]).await;
    let rest = take(&mut stream, 35 - cursor as usize).await;
    let mut all = sequences(&got);
    all.extend(sequences(&rest));
    assert_eq!(all, (1..=35).collect::<Vec<_>>());
    second.stop().await;
    gw.stop().await;
}

async fn list_charges_and_open_line_items(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 2, "0").await;
    let c = &l.customers[0];
    let lines = vec![
        line(c, "vm", "10.0000000001", l.base),
        line(c, "vm", "5", l.base - Span::hours(1)),
        line(c, "disk", "0.3", l.base),
        line(&l.customers[1], "vm", "7", l.base),
    ];
    gw.ledger
        .ingest_push(
            &gw.tenant_id,
            &l.account,
            lines,
            &crate::harness::fresh_request(),
        )
        .await
        .unwrap()
        .fresh()
        .expect("a new request id");
    // A revision and a charge in a previous period (not open).
    gw.ledger
        .ingest_push(
            &gw.tenant_id,
            &l.account,
            vec![line(c, "disk", "0.1", l.base)],
            &crate::harness::fresh_request(),
        )
        .await
        .unwrap()
        .fresh()
        .expect("a new request id");
    gw.ledger
        .ingest_push(
            &gw.tenant_id,
            &l.account,
            vec![line(c, "vm", "100", l.base - Span::days(70))],
            &crate::harness::fresh_request(),
        )
        .await
        .unwrap()
        .fresh()
        .expect("a new request id");

    let mut client = charges_client(gw.channel().await, &gw.admin_key);
    let open = client
        .list_open_line_items(v1::ListOpenLineItemsRequest {
            customer_id: c.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.currency, "ZAR");
    assert_eq!(open.as_of_sequence, 6);
    let items: HashMap<&str, (&str, &str)> = open
        .line_items
        .iter()
        .map(|i| (i.meter.as_str(), (i.amount.as_str(), i.quantity.as_str())))
        .collect();
    assert_eq!(items["vm"], ("15.0000000001", "2"));
    assert_eq!(items["disk"], ("0.10", "1"));
    assert_eq!(open.total, "15.1000000001");
    // The total is the sum of the period's charge events.
    let all = client
        .list_charges(v1::ListChargesRequest {
            customer_id: c.clone(),
            window_start_from: open.period_start,
            window_start_to: open.period_end,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sum: Decimal = all.charges.iter().map(|c| dec(&c.amount)).sum();
    assert_eq!(sum, dec(&open.total));
    assert_eq!(all.high_water_mark, 6);

    // Paging by sequence.
    let first = client
        .list_charges(v1::ListChargesRequest {
            page_size: 4,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sequences(&first.charges), vec![1, 2, 3, 4]);
    let second = client
        .list_charges(v1::ListChargesRequest {
            page_size: 4,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sequences(&second.charges), vec![5, 6]);
    assert!(second.next_page_token.is_empty());
    assert_violation(
        client
            .list_open_line_items(v1::ListOpenLineItemsRequest {
                customer_id: String::new(),
            })
            .await,
        tonic::Code::InvalidArgument,
        "customer_id",
    );
    let missing = client
        .list_open_line_items(v1::ListOpenLineItemsRequest {
            customer_id: "cus_missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    gw.stop().await;
}

crate::both_backends!(
    opened_before_receives_all_in_order,
    cursor_in_the_middle_receives_exactly_the_rest,
    reconnect_loses_nothing,
    two_hundred_concurrent_streams_each_receive_everything,
    slow_consumer_drains_from_the_database_with_bounded_memory,
    restarted_gateway_resumes_from_cursors,
    list_charges_and_open_line_items,
);

/// Two gateways on one PostgreSQL: a charge recorded through one reaches a stream served by
/// the other, woken by the database's notification (not by polling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_recorded_on_one_replica_reaches_streams_on_another() {
    let Some(gw) = TestGateway::start(Backend::Postgres).await else {
        return;
    };
    let l = ledger(&gw, 2, "0").await;
    let a = gw.replica().await;
    let b = gw.replica().await;
    let mut client = charges_client(b.channel().await, &gw.admin_key);
    let mut stream = open(&mut client, 0, &[]).await;
    // Let B's LISTEN connection come up (it starts with the first stream).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..5 {
        let started = std::time::Instant::now();
        l.record(&a.ledger, round * 3, 3, 3).await;
        let got = take(&mut stream, 3).await;
        assert_eq!(
            sequences(&got),
            ((round * 3 + 1) as i64..=(round * 3 + 3) as i64).collect::<Vec<_>>()
        );
        eprintln!("replica round {round}: {:?}", started.elapsed());
    }
    assert!(
        b.ledger
            .feed()
            .stats()
            .notifications
            .load(Ordering::Relaxed)
            >= 5
    );
    // And B's own writes reach a stream on A.
    let mut on_a = open(
        &mut charges_client(a.channel().await, &gw.admin_key),
        15,
        &[],
    )
    .await;
    l.record(&b.ledger, 15, 2, 2).await;
    assert_eq!(sequences(&take(&mut on_a, 2).await), vec![16, 17]);
    a.stop().await;
    b.stop().await;
    gw.stop().await;
}
