//! Month-close benchmark (prints figures; not a timed test). Run in release:
//!
//! ```sh
//! cargo bench --bench month_close
//! ```
//!
//! One tenant with `CUSTOMERS` customers (default 1,000, UTC, monthly) and `PER_CUSTOMER`
//! charges each (default 1,000: 20 services x 5 meters x 10 days of last month), 1,000,000
//! charges in all, recorded through the ledger (`ingest_push`, 50,000 lines a push), then the
//! database analyzed (as autovacuum keeps a production one) and checkpointed. Then, in the same
//! run and on the same rows:
//!
//! - **GROUP BY baseline**: one plain SQL `GROUP BY customer, vendor, service, meter` over the
//!   month's charge events, every row fetched (PostgreSQL: exact `SUM` of NUMERIC; SQLite: `SUM`
//!   over `CAST(amount AS REAL)`, inexact and so cheaper than the exact sums the gateway keeps:
//!   a strict baseline);
//! - **month close**: the tenant-wide close run (`Ledger::close_run`, what `CloseBillingPeriods`
//!   runs), one transaction per invoice with its lines, numbers, adjustments lookup and credit.
//!
//! Prints invoices/s, total time and the ratio close / GROUP BY, for PostgreSQL (a fresh
//! database) then SQLite (a temporary file).
//!
//! Environment: MSPGW_BENCH_CUSTOMERS, MSPGW_BENCH_PER_CUSTOMER, MSPGW_BENCH_HOURLY=1 (windows an
//! hour apart instead of a day, for customers with more charges each), MSPGW_BENCH_PROFILE=1 (prints
//! where the close's statements spend their time: `support::statement_profile`), MSPGW_BENCH_SQLITE=0 or
//! MSPGW_BENCH_POSTGRES=0 to skip a backend, MSPGW_BENCH_ANALYZE=0 to measure without statistics, MSPGW_BENCH_KEEP_SQLITE=1 / MSPGW_BENCH_KEEP_POSTGRES=1 to keep the database, MSPGW_TEST_POSTGRES_URL (an admin URL, as for the
//! tests).
#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{authorized, drop_postgres, env, fresh_postgres};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use diesel::{Connection, QueryableByName};
use msp_gateway::domain::invoice_settings::InvoiceSettings;
use msp_gateway::domain::period_close::Grace;
use msp_gateway::domain::tenant::NewTenant;
use msp_gateway::domain::usage::{UsageKey, UsageLine};
use msp_gateway::ledger::Ledger;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::customer_service_client::CustomerServiceClient;
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use rust_decimal::Decimal;

const SERVICES: usize = 20;
const METERS_PER_SERVICE: usize = 5;

/// The first instant of last month (UTC).
fn last_month() -> DateTime<Utc> {
    let today = Utc::now().date_naive();
    let first = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap();
    let previous = first - chrono::Duration::days(1);
    NaiveDate::from_ymd_opt(previous.year(), previous.month(), 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

fn usage(customer_id: &str, service: usize, meter: usize, window: DateTime<Utc>) -> UsageLine {
    UsageLine {
        key: UsageKey {
            vendor_account_id: format!("sim-{}", customer_id.trim_start_matches("cus_")),
            service: format!("Service {service:02}"),
            meter: format!("s{service:02}.m{meter}"),
            region: String::new(),
            window_start: window,
        },
        window_end: window + chrono::Duration::hours(1),
        meter_name: format!("s{service:02}.m{meter}"),
        quantity: Decimal::ONE,
        unit: "h".into(),
        cost: Decimal::new(123_456_789 + (service * 10 + meter) as i64, 9),
        list_cost: None,
        currency: "ZAR".into(),
        estimated: false,
        vendor_tenant_id: None,
    }
}

struct Figures {
    charges: usize,
    ingest: Duration,
    group_rows: usize,
    group_by: Duration,
    invoices: i32,
    close: Duration,
}

#[derive(QueryableByName)]
#[allow(dead_code)]
struct SqliteGroup {
    #[diesel(sql_type = diesel::sql_types::Text)]
    customer_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    meter: String,
    #[diesel(sql_type = diesel::sql_types::Double)]
    amount: f64,
    #[diesel(sql_type = diesel::sql_types::Double)]
    quantity: f64,
}

async fn group_by(url: &str, tenant_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.to_string();
        let tenant_id = tenant_id.to_string();
        return tokio::task::spawn_blocking(move || {
            use diesel::RunQueryDsl;
            let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
            let rows: Vec<SqliteGroup> = diesel::sql_query(
                "SELECT customer_id, vendor || service || meter AS meter, \
                        SUM(CAST(amount AS REAL)) AS amount, SUM(CAST(quantity AS REAL)) AS quantity \
                   FROM charge_events \
                  WHERE tenant_id = ? AND window_start >= ? AND window_start < ? \
                  GROUP BY customer_id, vendor, service, meter",
            )
            .bind::<diesel::sql_types::Text, _>(&tenant_id)
            .bind::<diesel::sql_types::BigInt, _>(from.timestamp_micros())
            .bind::<diesel::sql_types::BigInt, _>(to.timestamp_micros())
            .load(&mut conn)
            .unwrap();
            rows.len()
        })
        .await
        .unwrap();
    }
    let client = support::postgres(url).await;
    let rows = client
        .query(
            "SELECT customer_id, vendor, service, meter, SUM(amount)::text, SUM(quantity)::text \
               FROM charge_events \
              WHERE tenant_id = $1 AND window_start >= $2 AND window_start < $3 \
              GROUP BY customer_id, vendor, service, meter",
            &[&tenant_id, &from, &to],
        )
        .await
        .unwrap();
    rows.len()
}

/// Σ of the tenant's charge events' amounts and Σ of its invoices' unrounded totals, exactly
/// (decimal text summed here, as SQLite's SUM would go through floats).
async fn ledger_and_invoiced(url: &str, tenant_id: &str) -> (Decimal, Decimal) {
    const EVENTS: &str = "SELECT amount AS v FROM charge_events WHERE tenant_id = $1";
    const INVOICED: &str = "SELECT unrounded_total AS v FROM invoices WHERE tenant_id = $1";
    let sum = |texts: Vec<String>| -> Decimal {
        texts
            .iter()
            .map(|t| Decimal::from_str_exact(t).unwrap())
            .sum()
    };
    if let Some(path) = url.strip_prefix("sqlite://") {
        let (path, tenant_id) = (path.to_string(), tenant_id.to_string());
        return tokio::task::spawn_blocking(move || {
            use diesel::RunQueryDsl;
            #[derive(QueryableByName)]
            struct Text {
                #[diesel(sql_type = diesel::sql_types::Text)]
                v: String,
            }
            let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
            let mut texts = |sql: &str| -> Vec<String> {
                diesel::sql_query(sql.replace("$1", "?"))
                    .bind::<diesel::sql_types::Text, _>(&tenant_id)
                    .load::<Text>(&mut conn)
                    .unwrap()
                    .into_iter()
                    .map(|t| t.v)
                    .collect()
            };
            (sum(texts(EVENTS)), sum(texts(INVOICED)))
        })
        .await
        .unwrap();
    }
    let client = support::postgres(url).await;
    let mut sums = Vec::new();
    for sql in [EVENTS, INVOICED] {
        let rows = client
            .query(&format!("SELECT v::text FROM ({sql}) s"), &[&tenant_id])
            .await
            .unwrap();
        sums.push(sum(rows.iter().map(|r| r.get::<_, String>(0)).collect()));
    }
    (sums[0], sums[1])
}

async fn run(url: &str, customers: usize, per_customer: usize) -> Figures {
    migrate::run(url, Direction::Up).await.unwrap();
    let store = Arc::new(Store::connect(url, &Default::default()).unwrap());
    let ledger = Arc::new(Ledger::new(store.clone()).unwrap());
    let name = format!("Bench ISP {}", uuid::Uuid::new_v4().simple());
    let (tenant, key) = store
        .create_tenant(NewTenant::parse(&name, "ZAR", "UTC").unwrap())
        .await
        .unwrap();
    let key = key.token().to_string();
    // Last month closes now whatever the day.
    let settings = InvoiceSettings {
        grace: Grace::days("grace_days", 0).unwrap(),
        ..Default::default()
    };
    store
        .put_invoice_settings(&tenant.id, &settings)
        .await
        .unwrap();
    let served = support::serve(ledger.clone()).await;
    let (channel, server) = (served.channel, served.server);
    let sim = support::simulator_partner_account(channel.clone(), &key).await;
    let account = store.partner_account(&tenant.id, &sim.id).await.unwrap();
    let mut client = CustomerServiceClient::new(channel.clone());
    let mut ids = Vec::with_capacity(customers);
    for i in 0..customers {
        let created = client
            .create_customer(authorized(
                &key,
                v1::CreateCustomerRequest {
                    request_id: format!("c-{i}"),
                    external_ref: format!("B-{i:05}"),
                    display_name: format!("Bench customer {i}"),
                    billing_currency: "ZAR".into(),
                    billing_cycle: v1::BillingCycle::Monthly.into(),
                    time_zone: "UTC".into(),
                    credit_limit: "100000000.00".into(),
                    enrollments: vec![v1::EnrollmentRequest {
                        vendor: v1::Vendor::Simulator.into(),
                        partner_account_id: String::new(),
                        new_account: None,
                    }],
                    billing_anchor: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        ids.push(created.id);
    }
    support::markup_everything(&ledger, &tenant.id).await;

    let month = last_month();
    // Windows a day apart at 10:00, or with MSPGW_BENCH_HOURLY=1 an hour apart (as AWS's
    // hourly usage comes: a customer's month then holds up to 720 windows per meter).
    let step = if env("HOURLY", 0) == 1 {
        chrono::Duration::hours(1)
    } else {
        chrono::Duration::days(1)
    };
    let days = per_customer.div_ceil(SERVICES * METERS_PER_SERVICE).max(1);
    let started = Instant::now();
    let mut recorded = 0;
    let mut batch = Vec::with_capacity(50_000);
    for id in &ids {
        let mut n = 0;
        'lines: for day in 0..days {
            let window = month + step * day as i32 + chrono::Duration::hours(10);
            for s in 0..SERVICES {
                for m in 0..METERS_PER_SERVICE {
                    if n == per_customer {
                        break 'lines;
                    }
                    batch.push(usage(id, s, m, window));
                    n += 1;
                }
            }
        }
        if batch.len() >= 50_000 {
            recorded +=
                support::write(&ledger, &tenant.id, &account, std::mem::take(&mut batch)).await;
        }
    }
    recorded += support::write(&ledger, &tenant.id, &account, batch).await;
    let ingest = started.elapsed();

    // A production ledger has statistics (autovacuum keeps them); without them the planner
    // guesses, and plans the close's grouping read, and the baseline, on guesses.
    if env("ANALYZE", 1) == 1 {
        support::execute(url, &["ANALYZE".to_string()]).await;
    }
    // The ingest's writes flushed before anything is timed: a checkpoint the ingest's WAL
    // started otherwise runs on into the phases timed next in some runs and not in others
    // (the close's PostgreSQL CPU varied 4.8-7.1 s between runs of one build without this).
    let flush = if url.starts_with("sqlite://") {
        "PRAGMA wal_checkpoint(TRUNCATE)"
    } else {
        "CHECKPOINT"
    };
    support::execute(url, &[flush.to_string()]).await;
    let end = month + chrono::Duration::days(40);
    let started = Instant::now();
    let group_rows = group_by(url, &tenant.id, month, end).await;
    let group_by = started.elapsed();

    let profiling = support::statement_profile::install_was_requested();
    if profiling {
        support::statement_profile::start();
    }
    // Marks the start for a profiler watching the output (e.g. `perf record -a` from here on).
    println!("month close: closing {} customers", ids.len());
    let (started, cpu) = (Instant::now(), support::cpu_times());
    let closed = ledger
        .close_run(&tenant.id, "bench-close", Utc::now(), |_| {})
        .await
        .unwrap();
    let close = started.elapsed();
    println!("month close {}", support::cpu_times().since(cpu));
    if profiling {
        support::statement_profile::report("month close", 25);
    }
    assert_eq!(closed.status.as_str(), "SUCCEEDED", "{closed:?}");
    // Every charge (all of last month) on an invoice, exactly: a fast close must be a right one.
    let (ledger_sum, invoiced) = ledger_and_invoiced(url, &tenant.id).await;
    assert_eq!(invoiced, ledger_sum, "invoiced against the ledger");
    server.abort();
    Figures {
        charges: recorded,
        ingest,
        group_rows,
        group_by,
        invoices: closed.invoices_closed,
        close,
    }
}

fn report(backend: &str, f: &Figures) {
    let close = f.close.as_secs_f64();
    let group = f.group_by.as_secs_f64();
    println!(
        "{backend:<10} charges {:>9} (recorded in {:.1} s) | GROUP BY: {:>7} rows in {:>7.3} s | \
         close: {:>5} invoices in {:>7.3} s = {:>8.1} invoices/s | close / GROUP BY = {:.1}x",
        f.charges,
        f.ingest.as_secs_f64(),
        f.group_rows,
        group,
        f.invoices,
        close,
        f64::from(f.invoices) / close,
        close / group
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    support::statement_profile::install();
    let customers = env("CUSTOMERS", 1_000);
    let per_customer = env("PER_CUSTOMER", 1_000);
    println!(
        "month close: {customers} customers x {per_customer} charges = {} charges",
        customers * per_customer
    );
    if env("POSTGRES", 1) == 1 {
        let name = format!("mspgw_bench_close_{}", std::process::id());
        let url = fresh_postgres(&name).await;
        let figures = run(&url, customers, per_customer).await;
        report("PostgreSQL", &figures);
        if env("KEEP_POSTGRES", 0) == 1 {
            println!("PostgreSQL database kept: {name}");
        } else {
            drop_postgres(&name).await;
        }
    }
    if env("SQLITE", 1) == 1 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let figures = run(&url, customers, per_customer).await;
        report("SQLite", &figures);
        if env("KEEP_SQLITE", 0) == 1 {
            println!(
                "SQLite database kept: {}",
                dir.keep().join("bench.db").display()
            );
        }
    }
}
