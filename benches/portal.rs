//! Portal and help desk benchmark (prints figures; not a timed test). Run in release:
//!
//! ```sh
//! cargo bench --bench portal
//! ```
//!
//! Two customers of one tenant, in the same run: a large one with `CHARGES` charges (default
//! 1,000,000: 100 meters of 20 services, hourly windows over the last 30 days, restated with a
//! new cost in each pass, so every pass after the first appends a revision per line) and a small
//! one with 10. For each: latency of `GetSpendSummary` (the last 30 days by service and day,
//! through the generated client) and of the portal's overview page (HTTP/1.1 with the session
//! cookie), `REQUESTS` sequential calls after a warm-up, measured at the client on the loopback.
//!
//! Environment: MSPGW_BENCH_BACKEND (`sqlite`, the default: a temporary file; `postgres`: a
//! fresh database on MSPGW_TEST_POSTGRES_URL's server, dropped at the end),
//! MSPGW_BENCH_DATABASE_URL (a database of your own instead), MSPGW_BENCH_CHARGES,
//! MSPGW_BENCH_REQUESTS. Prints p50/p99 per customer and the large customer's ratio to the
//! small one.
#[path = "support/mod.rs"]
mod support;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{authorized, drop_postgres, env, fresh_postgres};

use chrono::{DateTime, DurationRound, Utc};
use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
use msp_gateway::domain::portal::NewPortalSession;
use msp_gateway::domain::pricing::{NewPriceRule, PriceKind, RuleScope};
use msp_gateway::domain::tenant::NewTenant;
use msp_gateway::domain::usage::{UsageKey, UsageLine};
use msp_gateway::ledger::Ledger;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::customer_service_client::CustomerServiceClient;
use msp_gateway::proto::v1::help_desk_service_client::HelpDeskServiceClient;
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use rust_decimal::Decimal;

const SERVICES: usize = 20;
const METERS_PER_SERVICE: usize = 5;
const DAYS: i64 = 30;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn usage(
    customer_id: &str,
    service: usize,
    meter: usize,
    window: DateTime<Utc>,
    cost: Decimal,
) -> UsageLine {
    UsageLine {
        key: UsageKey {
            vendor_account_id: format!("sim-{}", customer_id.trim_start_matches("cus_")),
            service: format!("Service {service:02}"),
            meter: format!("s{service:02}.m{meter}"),
            region: String::new(),
            window_start: window,
        },
        window_end: window + chrono::Duration::hours(1),
        meter_name: "meter".into(),
        quantity: Decimal::ONE,
        unit: "h".into(),
        cost,
        list_cost: None,
        currency: "ZAR".into(),
        estimated: true,
        vendor_tenant_id: None,
    }
}

async fn timed<F, Fut>(requests: usize, mut call: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..requests / 10 + 5 {
        call().await;
    }
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let start = Instant::now();
        call().await;
        samples.push(start.elapsed());
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let charges = env("CHARGES", 1_000_000);
    let requests = env("REQUESTS", 300);
    const POSTGRES_DATABASE: &str = "mspgw_portal_bench";
    let postgres = std::env::var("MSPGW_BENCH_BACKEND").is_ok_and(|b| b == "postgres");
    let (url, _dir) = match std::env::var("MSPGW_BENCH_DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) if postgres => (fresh_postgres(POSTGRES_DATABASE).await, None),
        Err(_) => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            (url, Some(dir))
        }
    };
    let backend = url.split(':').next().unwrap_or_default().to_string();
    migrate::run(&url, Direction::Up).await.unwrap();
    let store = Arc::new(Store::connect(&url, &Default::default()).unwrap());
    let ledger = Arc::new(Ledger::new(store.clone()).unwrap());
    let name = format!("Bench ISP {}", uuid::Uuid::new_v4().simple());
    let (tenant, key) = store
        .create_tenant(NewTenant::parse(&name, "ZAR", "Africa/Johannesburg").unwrap())
        .await
        .unwrap();
    let key = key.token().to_string();
    let support::Served {
        address, channel, ..
    } = support::serve(ledger.clone()).await;
    let sim = support::simulator_partner_account(channel.clone(), &key).await;
    let account = store.partner_account(&tenant.id, &sim.id).await.unwrap();
    let mut customers = CustomerServiceClient::new(channel.clone());
    let mut ids = Vec::new();
    for (i, label) in ["large", "small"].iter().enumerate() {
        let created = customers
            .create_customer(authorized(
                &key,
                v1::CreateCustomerRequest {
                    request_id: format!("c-{i}"),
                    external_ref: format!("B-{label}"),
                    display_name: format!("Bench {label}"),
                    billing_currency: "ZAR".into(),
                    billing_cycle: v1::BillingCycle::Monthly.into(),
                    credit_limit: "1000000.00".into(),
                    enrollments: vec![v1::EnrollmentRequest {
                        vendor: v1::Vendor::Simulator.into(),
                        partner_account_id: String::new(),
                        new_account: None,
                    }],
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        ids.push(created.id);
    }
    let rule = NewPriceRule {
        scope: RuleScope::default(),
        kind: PriceKind::Markup,
        value: Decimal::from_str("0.15").unwrap(),
        currency: None,
        effective_from: DateTime::from_timestamp(0, 0).unwrap(),
        effective_to: None,
    };
    ledger
        .create_price_rule(
            &tenant.id,
            &rule,
            &Idempotent::unanswered(IdempotencyKey::new("rule".into(), "CreatePriceRule", &rule)),
        )
        .await
        .unwrap();

    // The large customer: passes over every (meter, hour) of the last 30 days, each with a new
    // cost, until `charges` charges are recorded.
    let last_hour = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap()
        - chrono::Duration::hours(1);
    let windows: Vec<DateTime<Utc>> = (0..DAYS * 24)
        .map(|h| last_hour - chrono::Duration::hours(h))
        .collect();
    let per_pass = windows.len() * SERVICES * METERS_PER_SERVICE;
    let started = Instant::now();
    let mut recorded = 0usize;
    let mut pass = 0i64;
    while recorded < charges {
        let cost = Decimal::new(123_456_789 + pass, 10);
        let mut batch = Vec::with_capacity(50_000);
        'lines: for window in &windows {
            for s in 0..SERVICES {
                for m in 0..METERS_PER_SERVICE {
                    if recorded + batch.len() >= charges {
                        break 'lines;
                    }
                    batch.push(usage(&ids[0], s, m, *window, cost));
                }
            }
            if batch.len() >= 50_000 {
                recorded +=
                    support::write(&ledger, &tenant.id, &account, std::mem::take(&mut batch)).await;
            }
        }
        recorded += support::write(&ledger, &tenant.id, &account, batch).await;
        pass += 1;
    }
    let ingest = started.elapsed();
    // The small customer: 10 charges.
    let small: Vec<UsageLine> = windows[..10]
        .iter()
        .map(|w| usage(&ids[1], 0, 0, *w, Decimal::new(5, 1)))
        .collect();
    support::write(&ledger, &tenant.id, &account, small).await;
    println!(
        "recorded {recorded} charges for the large customer ({pass} passes over {per_pass} lines) in {:.1} s; 10 for the small one",
        ingest.as_secs_f64()
    );

    let zone: chrono_tz::Tz = "Africa/Johannesburg".parse().unwrap();
    let today = Utc::now().with_timezone(&zone).date_naive();
    let first = today - chrono::Duration::days(DAYS - 1);
    let end = today + chrono::Duration::days(1);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    println!(
        "{backend}\n{:<8} {:>10} {:>22} {:>22}",
        "customer", "charges", "GetSpendSummary p50/p99", "overview page p50/p99"
    );
    let mut figures = Vec::new();
    for (id, label, count) in [(&ids[0], "large", recorded), (&ids[1], "small", 10)] {
        let hd = HelpDeskServiceClient::new(channel.clone());
        let request = v1::GetSpendSummaryRequest {
            customer_id: id.clone(),
            start_date: first.format("%Y-%m-%d").to_string(),
            end_date: end.format("%Y-%m-%d").to_string(),
            group_by: vec![
                v1::SpendDimension::Service.into(),
                v1::SpendDimension::Day.into(),
            ],
        };
        let (s50, s99) = timed(requests, || {
            let mut hd = hd.clone();
            let message = authorized(&key, request.clone());
            async move {
                let summary = hd.get_spend_summary(message).await.unwrap().into_inner();
                assert!(!summary.rows.is_empty());
            }
        })
        .await;
        let new = NewPortalSession {
            customer_id: id.clone(),
            return_url: String::new(),
        };
        let request_key =
            IdempotencyKey::new(format!("bench-{label}"), "CreatePortalSession", &new);
        let (_, token) = store
            .create_portal_session(
                &tenant.id,
                &new,
                &Idempotent::unanswered(request_key),
                Utc::now(),
            )
            .await
            .unwrap()
            .fresh()
            .unwrap();
        let opened = http
            .get(format!("http://{address}/portal/open/{token}"))
            .send()
            .await
            .unwrap();
        let cookie = opened
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_string();
        let page = format!("http://{address}/portal/c/{id}/");
        let (p50, p99) = timed(requests, || {
            let call = http.get(&page).header("cookie", &cookie).send();
            async move {
                let response = call.await.unwrap();
                assert!(response.status().is_success());
                let body = response.text().await.unwrap();
                assert!(body.contains("month-to-date"));
            }
        })
        .await;
        println!(
            "{label:<8} {count:>10} {:>10.2} / {:>6.2} ms {:>10.2} / {:>6.2} ms",
            s50.as_secs_f64() * 1e3,
            s99.as_secs_f64() * 1e3,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
        );
        figures.push([s50, s99, p50, p99]);
    }
    let ratio = |i: usize| figures[0][i].as_secs_f64() / figures[1][i].as_secs_f64();
    println!(
        "{:<8} {:>10} {:>10.2}x / {:>5.2}x {:>10.2}x / {:>5.2}x",
        "ratio",
        "",
        ratio(0),
        ratio(1),
        ratio(2),
        ratio(3)
    );
    drop(ledger);
    drop(store);
    if postgres && std::env::var("MSPGW_BENCH_DATABASE_URL").is_err() {
        drop_postgres(POSTGRES_DATABASE).await;
    }
}
