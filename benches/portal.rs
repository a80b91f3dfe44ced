//! Portal and help desk benchmark (prints figures; not a timed test). Run in release:
//!
//! ```sh
//! cargo bench --bench portal
//! ```
//!
//! Three customers of one tenant, in the same run: a large one with `CHARGES` charges (default
//! 1,000,000: 100 meters of 20 services, hourly windows over the last 30 days, restated with a
//! new cost in each pass, so every pass after the first appends a revision per line), a small
//! one with 10, and a control with 600 (one per service and day: the large customer's answer by
//! service and day, row for row, from a few hundred charges). For each: latency of
//! `GetSpendSummary` over the last 30 days by service (the help desk's "where does the money
//! go": 20 rows for the large customer, 1 for the small) and by service and day (600 rows for
//! the large customer and the control, 1-2 for the small), through the generated client, and of
//! the portal's overview page (HTTP/1.1 with the session cookie); `REQUESTS` sequential calls
//! of each after a warm-up, interleaved (round by round, each customer's reads in turn),
//! measured at the client on the loopback (so the figures include the client's decoding: an
//! upper bound on the server's time).
//!
//! The ratios: large / small is the target (within 2×) for the overview and the summary by
//! service. By service and day the answers differ 300-fold in size, so large / small there
//! measures encoding 600 rows, not charges; large / control (same answer, 1,000,000 against 600
//! charges) is the ratio that shows whether the number of charges matters.
//!
//! Environment: MSPGW_BENCH_BACKEND (`sqlite`, the default: a temporary file; `postgres`: a
//! fresh database on MSPGW_TEST_POSTGRES_URL's server, dropped at the end),
//! MSPGW_BENCH_DATABASE_URL (a database of your own instead), MSPGW_BENCH_CHARGES,
//! MSPGW_BENCH_REQUESTS. Prints p50/p99 per customer and the large customer's ratio to the
//! small one.
#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{authorized, drop_postgres, env, fresh_postgres};

use chrono::{DateTime, DurationRound, Utc};
use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
use msp_gateway::domain::portal::NewPortalSession;
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

/// One customer's reads: its two summaries and its overview page.
struct Subject {
    label: &'static str,
    count: usize,
    summaries: [v1::GetSpendSummaryRequest; 2],
    /// Rows each summary answers (checked on every call).
    rows: [usize; 2],
    page: String,
    cookie: String,
}

impl Subject {
    /// Read 0 and 1: the summaries; 2: the overview page.
    async fn read(
        &self,
        read: usize,
        hd: &HelpDeskServiceClient<tonic::transport::Channel>,
        http: &reqwest::Client,
        key: &str,
    ) {
        if read < 2 {
            let request = authorized(key, self.summaries[read].clone());
            let summary = hd
                .clone()
                .get_spend_summary(request)
                .await
                .unwrap()
                .into_inner();
            assert_eq!(summary.rows.len(), self.rows[read]);
        } else {
            let response = http
                .get(&self.page)
                .header("cookie", &self.cookie)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            let body = response.text().await.unwrap();
            assert!(body.contains("month-to-date"));
        }
    }
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
    for (i, label) in ["large", "small", "control"].iter().enumerate() {
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
    support::markup_everything(&ledger, &tenant.id).await;

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
    // The control: one charge per service and day.
    let control: Vec<UsageLine> = (0..SERVICES)
        .flat_map(|s| (0..DAYS).map(move |d| (s, d)))
        .map(|(s, d)| {
            usage(
                &ids[2],
                s,
                0,
                windows[(d * 24) as usize],
                Decimal::new(5, 1),
            )
        })
        .collect();
    let control_charges = control.len();
    support::write(&ledger, &tenant.id, &account, control).await;
    println!(
        "recorded {recorded} charges for the large customer ({pass} passes over {per_pass} lines) in {:.1} s; 10 for the small one, {control_charges} for the control",
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
        "{backend}\n{:<8} {:>9} {:>27} {:>31} {:>22}",
        "customer",
        "charges",
        "summary by service p50/p99",
        "by service and day p50/p99",
        "overview page p50/p99"
    );
    let by_service = vec![v1::SpendDimension::Service.into()];
    let by_service_and_day = vec![
        v1::SpendDimension::Service.into(),
        v1::SpendDimension::Day.into(),
    ];
    let customers = [
        (&ids[0], "large", recorded),
        (&ids[1], "small", 10),
        (&ids[2], "control", control_charges),
    ];
    // Each customer's two summaries and its overview page (with a session cookie of its own).
    let hd = HelpDeskServiceClient::new(channel.clone());
    let mut subjects = Vec::new();
    for (id, label, count) in customers {
        let summaries =
            [&by_service, &by_service_and_day].map(|group_by| v1::GetSpendSummaryRequest {
                customer_id: id.clone(),
                start_date: first.format("%Y-%m-%d").to_string(),
                end_date: end.format("%Y-%m-%d").to_string(),
                group_by: group_by.clone(),
            });
        let mut rows = [0usize; 2];
        for (i, request) in summaries.iter().enumerate() {
            rows[i] = hd
                .clone()
                .get_spend_summary(authorized(&key, request.clone()))
                .await
                .unwrap()
                .into_inner()
                .rows
                .len();
            assert!(rows[i] > 0);
        }
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
        subjects.push(Subject {
            label,
            count,
            summaries,
            rows,
            page: format!("http://{address}/portal/c/{id}/"),
            cookie,
        });
    }
    // Round by round, every customer's three reads in turn, so all customers meet the same
    // machine (a checkpoint or another process's burst lands on all of them alike, not on
    // whichever happened to be measured then).
    let warm_up = requests / 10 + 5;
    let mut samples = vec![[const { Vec::new() }; 3]; subjects.len()];
    for round in 0..warm_up + requests {
        for (subject, samples) in subjects.iter().zip(samples.iter_mut()) {
            for (read, taken) in samples.iter_mut().enumerate() {
                let started = Instant::now();
                subject.read(read, &hd, &http, &key).await;
                if round >= warm_up {
                    taken.push(started.elapsed());
                }
            }
        }
    }
    let mut figures = Vec::new();
    for (subject, samples) in subjects.iter().zip(samples) {
        let [s, sd, page] = samples.map(|mut xs| {
            xs.sort();
            (percentile(&xs, 0.5), percentile(&xs, 0.99))
        });
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{:<8} {:>9} {:>7.2} / {:>6.2} ms {:>4} rows {:>7.2} / {:>6.2} ms {:>4} rows {:>10.2} / {:>6.2} ms",
            subject.label,
            subject.count,
            ms(s.0),
            ms(s.1),
            subject.rows[0],
            ms(sd.0),
            ms(sd.1),
            subject.rows[1],
            ms(page.0),
            ms(page.1),
        );
        figures.push([s.0, s.1, sd.0, sd.1, page.0, page.1]);
    }
    let ratio = |of: usize, to: usize, i: usize| {
        format!(
            "{:.2}x",
            figures[of][i].as_secs_f64() / figures[to][i].as_secs_f64()
        )
    };
    for (label, to) in [("large/small", 1), ("large/control", 2)] {
        println!(
            "{label:<14} {:>11} / {:>6} {:>14} / {:>6} {:>19} / {:>6}",
            ratio(0, to, 0),
            ratio(0, to, 1),
            ratio(0, to, 2),
            ratio(0, to, 3),
            ratio(0, to, 4),
            ratio(0, to, 5),
        );
    }
    drop(ledger);
    drop(store);
    if postgres && std::env::var("MSPGW_BENCH_DATABASE_URL").is_err() {
        drop_postgres(POSTGRES_DATABASE).await;
    }
}
