//! The usage pipeline through the API: pushed usage is validated, rated and recorded exactly
//! once; unrated usage waits with its reason; the ledger sequence is gap-free.
use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use msp_gateway::domain::charges::ChargeFilter;
use msp_gateway::proto::v1;
use rust_decimal::Decimal;
use tonic::Code;

use crate::customers::{new_customer, simulator_account_at};
use msp_gateway::proto::v1::customer_service_client::CustomerServiceClient;
use msp_gateway::proto::v1::pricing_service_client::PricingServiceClient;
use tonic::transport::Channel;

use crate::harness::{Backend, Bearer, TestGateway, assert_violation, field_violations};

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

pub fn hour(h: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + Duration::hours(h)
}

pub fn usage_line(account: &str, meter: &str, h: i64, cost: &str) -> v1::UsageLine {
    v1::UsageLine {
        vendor_account_id: account.into(),
        service: "Compute".into(),
        meter: meter.into(),
        region: "af-south-1".into(),
        window_start: Some(ts(hour(h))),
        window_end: Some(ts(hour(h + 1))),
        meter_name: String::new(),
        quantity: "1.5".into(),
        unit: "Hrs".into(),
        cost: cost.into(),
        list_cost: String::new(),
        currency: "USD".into(),
        estimated: false,
        vendor_tenant_id: String::new(),
    }
}

/// A tenant with a simulator partner account, a ZAR customer linked to `sim-linked`, a 20 %
/// markup and a USD->ZAR rate of 18.5.
pub struct Priced {
    pub partner_account_id: String,
    pub customer_id: String,
}

/// Links simulator account `account_id` to the customer, through the gateway at `channel`,
/// billed through `partner_account_id` (empty: the tenant's one enabled simulator account).
pub async fn link_simulator_account(
    channel: Channel,
    key: &str,
    customer_id: &str,
    account_id: &str,
    partner_account_id: &str,
) {
    CustomerServiceClient::with_interceptor(channel, Bearer::new(key))
        .link_vendor_account(v1::LinkVendorAccountRequest {
            customer_id: customer_id.into(),
            vendor_account: Some(v1::VendorAccount {
                vendor: v1::Vendor::Simulator.into(),
                kind: v1::VendorAccountKind::SimulatorAccount.into(),
                account_id: account_id.into(),
                partner_account_id: partner_account_id.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
}

/// Sets the USD->ZAR rate effective from hour `from`, through the gateway at `channel`.
async fn set_usd_zar(channel: Channel, key: &str, rate: &str, from: i64) {
    PricingServiceClient::with_interceptor(channel, Bearer::new(key))
        .set_fx_rate(v1::SetFxRateRequest {
            fx_rate: Some(v1::FxRate {
                from_currency: "USD".into(),
                to_currency: "ZAR".into(),
                rate: rate.into(),
                effective_from: Some(ts(hour(from))),
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
}

pub async fn priced_tenant(gw: &TestGateway) -> Priced {
    priced_tenant_at(gw.channel().await, &gw.admin_key).await
}

/// [`priced_tenant`] through the gateway at `channel` (one this process does not run).
pub async fn priced_tenant_at(channel: Channel, key: &str) -> Priced {
    let sim = simulator_account_at(channel.clone(), key).await;
    let customer = CustomerServiceClient::with_interceptor(channel.clone(), Bearer::new(key))
        .create_customer(new_customer("cust", "PRICED-1"))
        .await
        .unwrap()
        .into_inner();
    link_simulator_account(channel.clone(), key, &customer.id, "sim-linked", "").await;
    PricingServiceClient::with_interceptor(channel.clone(), Bearer::new(key))
        .create_price_rule(v1::CreatePriceRuleRequest {
            request_id: "markup".into(),
            price_rule: Some(v1::PriceRule {
                kind: v1::PriceRuleKind::Markup.into(),
                value: "0.20".into(),
                effective_from: Some(ts(hour(-1000))),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    set_usd_zar(channel, key, "18.5", -1000).await;
    Priced {
        partner_account_id: sim.id,
        customer_id: customer.id,
    }
}

pub async fn push(
    gw: &TestGateway,
    request_id: &str,
    partner_account_id: &str,
    batches: Vec<Vec<v1::UsageLine>>,
) -> Result<v1::IngestUsageResponse, tonic::Status> {
    let messages: Vec<v1::IngestUsageRequest> = batches
        .into_iter()
        .enumerate()
        .map(|(i, lines)| v1::IngestUsageRequest {
            request_id: if i == 0 {
                request_id.into()
            } else {
                String::new()
            },
            partner_account_id: if i == 0 {
                partner_account_id.into()
            } else {
                String::new()
            },
            lines,
        })
        .collect();
    gw.usage(&gw.admin_key)
        .await
        .ingest_usage(tokio_stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

async fn charges(gw: &TestGateway) -> Vec<msp_gateway::domain::charges::ChargeEvent> {
    gw.ledger
        .list_charges(&gw.admin(), &ChargeFilter::default(), 0, 100_000)
        .await
        .unwrap()
        .0
}

async fn pushed_usage_is_rated_once(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = priced_tenant(&gw).await;
    let lines = vec![
        usage_line("sim-linked", "vm.small", 0, "10.00"),
        usage_line("sim-linked", "vm.large", 0, "2.5"),
        usage_line("sim-linked", "vm.small", 1, "0.0000000001"),
    ];
    let first = push(
        &gw,
        "push-1",
        &priced.partner_account_id,
        vec![lines.clone()],
    )
    .await
    .unwrap();
    assert_eq!(
        (
            first.lines_received,
            first.lines_written,
            first.events_appended
        ),
        (3, 3, 3)
    );
    let recorded = charges(&gw).await;
    let amounts: Vec<String> = recorded.iter().map(|c| c.amount.to_string()).collect();
    // cost x 1.20 x 18.5, exact.
    let mut expected = vec![
        "222".to_string(),
        "55.5".to_string(),
        "0.00000000222".to_string(),
    ];
    let mut sorted = amounts.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    assert!(
        recorded
            .iter()
            .all(|c| c.customer_id == priced.customer_id && c.currency.code() == "ZAR")
    );

    // The same data again, under a new request id, appends nothing.
    let again = push(
        &gw,
        "push-2",
        &priced.partner_account_id,
        vec![lines.clone()],
    )
    .await
    .unwrap();
    assert_eq!((again.lines_written, again.events_appended), (0, 0));
    // A retry of the first request id answers the first response (tests/integration/replays.rs
    // checks it byte for byte).
    let replay = push(
        &gw,
        "push-1",
        &priced.partner_account_id,
        vec![lines.clone()],
    )
    .await
    .unwrap();
    assert_eq!(replay, first);
    // A revision appends the delta.
    let mut revised = lines.clone();
    revised[0].cost = "12.00".into();
    let rev = push(&gw, "push-3", &priced.partner_account_id, vec![revised])
        .await
        .unwrap();
    assert_eq!(rev.events_appended, 1);
    let all = charges(&gw).await;
    let last = all.last().unwrap();
    assert_eq!(last.kind.as_str(), "REVISION");
    assert_eq!(last.amount, Decimal::new(444, 1)); // (12 - 10) x 1.2 x 18.5
    let sequences: Vec<i64> = all.iter().map(|c| c.sequence).collect();
    assert_eq!(sequences, (1..=all.len() as i64).collect::<Vec<_>>());
    gw.stop().await;
}

async fn unrated_usage_waits_for_its_fix(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = priced_tenant(&gw).await;
    push(
        &gw,
        "u-1",
        &priced.partner_account_id,
        vec![vec![usage_line("sim-orphan", "vm.small", 3, "4.00")]],
    )
    .await
    .unwrap();
    let mut usage = gw.usage(&gw.admin_key).await;
    let unrated = usage
        .list_unrated_usage(v1::ListUnratedUsageRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unrated.unrated_usage.len(), 1);
    assert_eq!(
        unrated.unrated_usage[0].reason_code,
        "UNKNOWN_VENDOR_ACCOUNT"
    );
    assert!(charges(&gw).await.is_empty());

    // A EUR customer without a USD->EUR rate: linked, but still unrated, now for FX.
    let mut customers = gw.customers(&gw.admin_key).await;
    let mut request = new_customer("eur", "EUR-1");
    request.billing_currency = "EUR".into();
    let eur = customers
        .create_customer(request)
        .await
        .unwrap()
        .into_inner();
    link_simulator_account(gw.channel().await, &gw.admin_key, &eur.id, "sim-orphan", "").await;
    let unrated = usage
        .list_unrated_usage(v1::ListUnratedUsageRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unrated.unrated_usage[0].reason_code, "NO_FX_RATE");
    assert_eq!(unrated.unrated_usage[0].customer_id, eur.id);

    gw.pricing(&gw.admin_key)
        .await
        .set_fx_rate(v1::SetFxRateRequest {
            fx_rate: Some(v1::FxRate {
                from_currency: "USD".into(),
                to_currency: "EUR".into(),
                rate: "0.9".into(),
                effective_from: Some(ts(hour(-1000))),
            }),
            request_id: "fx-eur".into(),
        })
        .await
        .unwrap();
    let unrated = usage
        .list_unrated_usage(v1::ListUnratedUsageRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(unrated.unrated_usage.is_empty());
    let recorded = charges(&gw).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].customer_id, eur.id);
    assert_eq!(recorded[0].amount, Decimal::new(432, 2)); // 4 x 1.2 x 0.9
    gw.stop().await;
}

async fn bad_pushed_usage_writes_nothing(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = priced_tenant(&gw).await;
    let pa = priced.partner_account_id.as_str();
    type Mutation = fn(&mut v1::UsageLine);
    let cases: Vec<(Mutation, &str)> = vec![
        (|l| l.quantity = "-1".into(), "lines[1].quantity"),
        (|l| l.quantity = "1e".into(), "lines[1].quantity"),
        (|l| l.cost = "12,50".into(), "lines[1].cost"),
        (|l| l.cost = "NaN".into(), "lines[1].cost"),
        (|l| l.currency = "usd".into(), "lines[1].currency"),
        (|l| l.currency = "ABC".into(), "lines[1].currency"),
        (|l| l.window_end = l.window_start, "lines[1].window_end"),
        (|l| l.window_start = None, "lines[1].window_start"),
        (
            |l| l.vendor_account_id.clear(),
            "lines[1].vendor_account_id",
        ),
        (|l| l.service.clear(), "lines[1].service"),
        (|l| l.list_cost = "cheap".into(), "lines[1].list_cost"),
    ];
    for (i, (mutate, field)) in cases.into_iter().enumerate() {
        let good = usage_line("sim-linked", "vm.small", 5, "1.00");
        let mut bad = usage_line("sim-linked", "vm.large", 5, "1.00");
        mutate(&mut bad);
        let result = push(&gw, &format!("bad-{i}"), pa, vec![vec![good, bad]]).await;
        assert_violation(result, Code::InvalidArgument, field);
    }
    assert_violation(
        push(&gw, "", pa, vec![vec![]]).await,
        Code::InvalidArgument,
        "request_id",
    );
    assert_violation(
        push(&gw, "no-pa", "", vec![vec![]]).await,
        Code::InvalidArgument,
        "partner_account_id",
    );
    let status = push(
        &gw,
        "ghost-pa",
        "pa_doesnotexist",
        vec![vec![usage_line("sim-linked", "x", 1, "1")]],
    )
    .await
    .expect_err("unknown partner account");
    assert_eq!(status.code(), Code::NotFound);

    // Oversized: more lines than one transaction may carry, across several messages.
    let big: Vec<Vec<v1::UsageLine>> = (0..11)
        .map(|m| {
            (0..10_000)
                .map(|i| usage_line("sim-linked", &format!("m{m}-{i}"), 1, "1"))
                .collect()
        })
        .collect();
    let status = push(&gw, "too-big", pa, big)
        .await
        .expect_err("oversized batch");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        field_violations(&status).iter().any(|(f, _)| f == "lines"),
        "{status:?}"
    );

    assert!(
        charges(&gw).await.is_empty(),
        "nothing of a refused batch is written"
    );
    let unrated = gw
        .usage(&gw.admin_key)
        .await
        .list_unrated_usage(v1::ListUnratedUsageRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(unrated.unrated_usage.is_empty());
    gw.stop().await;
}

async fn concurrent_pushes_keep_the_sequence_gap_free(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = priced_tenant(&gw).await;
    let gw = std::sync::Arc::new(gw);
    let pushes = (0..8).map(|p| {
        let gw = gw.clone();
        let pa = priced.partner_account_id.clone();
        tokio::spawn(async move {
            let lines = (0..25)
                .map(|i| usage_line("sim-linked", &format!("p{p}-m{i}"), i, "1.00"))
                .collect();
            push(&gw, &format!("concurrent-{p}"), &pa, vec![lines])
                .await
                .unwrap()
        })
    });
    for result in futures::future::join_all(pushes).await {
        assert_eq!(result.unwrap().events_appended, 25);
    }
    let all = charges(&gw).await;
    let sequences: Vec<i64> = all.iter().map(|c| c.sequence).collect();
    assert_eq!(
        sequences,
        (1..=200).collect::<Vec<_>>(),
        "gap-free and in order"
    );
    assert_eq!(gw.ledger.high_water_mark(&gw.tenant_id).await.unwrap(), 200);
    // Each line's charges sum to its rated value.
    let account = gw
        .store
        .partner_account(&gw.admin(), &priced.partner_account_id)
        .await
        .unwrap();
    let lines = gw
        .ledger
        .usage_lines_in_window(&gw.tenant_id, &account, hour(-10), hour(100))
        .await
        .unwrap();
    let mut sums: HashMap<_, Decimal> = HashMap::new();
    for c in &all {
        *sums.entry(c.line_key).or_default() += c.amount;
    }
    for (key, line) in lines {
        assert_eq!(
            sums.get(&key).copied().unwrap_or_default(),
            line.rating.unwrap().amount
        );
    }
    match std::sync::Arc::try_unwrap(gw) {
        Ok(gw) => gw.stop().await,
        Err(_) => panic!("gateway still shared"),
    }
}

/// The NEW charge of the line metered as `meter`.
async fn new_charge_of(gw: &TestGateway, meter: &str) -> msp_gateway::domain::charges::ChargeEvent {
    let all = charges(gw).await;
    let mut found = all
        .into_iter()
        .filter(|c| c.meter == meter && c.kind.as_str() == "NEW");
    let charge = found.next().expect("a NEW charge for the meter");
    assert!(found.next().is_none(), "one NEW charge per line");
    charge
}

/// A gateway keeps each tenant's prices in memory between ledger writes; a rule, rate or link
/// changed through another replica must reach its very next write.
async fn pricing_changed_on_another_replica_reaches_the_next_push(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = priced_tenant(&gw).await;
    let account = priced.partner_account_id.clone();
    let one = |meter: &str, h: i64| vec![usage_line("sim-linked", meter, h, "1.00")];
    push(&gw, "p-1", &account, vec![one("first", 0)])
        .await
        .unwrap();
    assert_eq!(
        new_charge_of(&gw, "first").await.amount,
        Decimal::new(222, 1)
    ); // 1 x 1.2 x 18.5

    let replica = gw.replica().await;
    let key = gw.admin_key.clone();
    let mut pricing =
        PricingServiceClient::with_interceptor(replica.channel().await, Bearer::new(&key));
    pricing
        .create_price_rule(v1::CreatePriceRuleRequest {
            request_id: "compute-markup".into(),
            price_rule: Some(v1::PriceRule {
                kind: v1::PriceRuleKind::Markup.into(),
                value: "0.50".into(),
                service: "Compute".into(),
                effective_from: Some(ts(hour(-1000))),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    push(&gw, "p-2", &account, vec![one("after-rule", 1)])
        .await
        .unwrap();
    assert_eq!(
        new_charge_of(&gw, "after-rule").await.amount,
        Decimal::new(2775, 2)
    ); // 1 x 1.5 x 18.5

    set_usd_zar(replica.channel().await, &key, "20", -500).await;
    push(&gw, "p-3", &account, vec![one("after-fx", 2)])
        .await
        .unwrap();
    assert_eq!(
        new_charge_of(&gw, "after-fx").await.amount,
        Decimal::new(30, 0)
    ); // 1 x 1.5 x 20

    // A vendor account linked through the replica is charged by the next push here.
    link_simulator_account(
        replica.channel().await,
        &key,
        &priced.customer_id,
        "sim-linked-later",
        "",
    )
    .await;
    let later = vec![usage_line("sim-linked-later", "after-link", 3, "1.00")];
    push(&gw, "p-4", &account, vec![later]).await.unwrap();
    let charge = new_charge_of(&gw, "after-link").await;
    assert_eq!(
        (charge.customer_id.as_str(), charge.amount),
        (priced.customer_id.as_str(), Decimal::new(30, 0))
    );
    replica.stop().await;
    gw.stop().await;
}

/// Setting a rate again at the same instant replaces it and re-rates (it once failed on SQLite
/// with INTERNAL: the upsert fought the pricing-version trigger).
async fn an_fx_rate_set_again_at_its_instant_is_replaced(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = priced_tenant(&gw).await;
    push(
        &gw,
        "fx-push",
        &priced.partner_account_id,
        vec![vec![usage_line("sim-linked", "vm.small", 0, "10")]],
    )
    .await
    .unwrap();
    // priced_tenant set 18.5 from hour -1000; the same instant again, twice.
    set_usd_zar(gw.channel().await, &gw.admin_key, "20", -1000).await;
    set_usd_zar(gw.channel().await, &gw.admin_key, "20", -1000).await;
    let rates = gw
        .pricing(&gw.admin_key)
        .await
        .list_fx_rates(v1::ListFxRatesRequest {})
        .await
        .unwrap()
        .into_inner()
        .fx_rates;
    assert_eq!(rates.len(), 1);
    assert_eq!(rates[0].rate, "20");
    let recorded = charges(&gw).await;
    let kinds: Vec<&str> = recorded.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["NEW", "RERATE"], "the second rate re-rated once");
    let total: Decimal = recorded.iter().map(|c| c.amount).sum();
    assert_eq!(total, Decimal::new(240, 0), "10 x 1.20 x 20");
    gw.stop().await;
}

/// What Python's `str(Decimal)` and Java's `BigDecimal.toString()` write for small and large
/// values is read exactly: "1E-10" is the same line as "0.0000000001".
async fn scientific_notation_is_read_exactly(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = priced_tenant(&gw).await;
    let mut line = usage_line("sim-linked", "vm.small", 0, "1E-10");
    line.quantity = "1.5E+3".into();
    line.list_cost = "2e-10".into();
    let first = push(&gw, "sci-1", &priced.partner_account_id, vec![vec![line]])
        .await
        .unwrap();
    assert_eq!((first.lines_written, first.events_appended), (1, 1));
    let recorded = charges(&gw).await;
    assert_eq!(recorded.len(), 1);
    // 1E-10 x 1.20 x 18.5, exact.
    assert_eq!(recorded[0].amount, Decimal::new(222, 11));
    // The same line in plain notation is the same data: nothing new.
    let mut plain = usage_line("sim-linked", "vm.small", 0, "0.0000000001");
    plain.quantity = "1500".into();
    plain.list_cost = "0.0000000002".into();
    let again = push(&gw, "sci-2", &priced.partner_account_id, vec![vec![plain]])
        .await
        .unwrap();
    assert_eq!((again.lines_written, again.events_appended), (0, 0));
    // An exponent beyond 28 digits after the point is refused, naming the field.
    let tiny = usage_line("sim-linked", "vm.small", 1, "1E-29");
    crate::harness::assert_violation(
        push(&gw, "sci-3", &priced.partner_account_id, vec![vec![tiny]]).await,
        tonic::Code::InvalidArgument,
        "lines[0].cost",
    );
    gw.stop().await;
}

crate::both_backends!(
    scientific_notation_is_read_exactly,
    an_fx_rate_set_again_at_its_instant_is_replaced,
    pricing_changed_on_another_replica_reaches_the_next_push,
    pushed_usage_is_rated_once,
    unrated_usage_waits_for_its_fix,
    bad_pushed_usage_writes_nothing,
    concurrent_pushes_keep_the_sequence_gap_free
);
