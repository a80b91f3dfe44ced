//! Period-boundary benchmark (prints figures; not a timed test). Run in release:
//!
//! ```sh
//! cargo bench --bench subscription_boundaries
//! ```
//!
//! One tenant with `CUSTOMERS` customers (default 10,000) holding `PER_CUSTOMER` subscriptions
//! each (default 10: 100,000 in all) of an MSP item, every one with exactly one billing period
//! ended and not yet charged: six monthly P1M terms that renew, three P1Y terms billed monthly
//! that move to their next period, one annual P1Y that renews. The first customer's
//! subscriptions are bought through the ledger (`Ledger::create_subscription`, a day past
//! their first period); the other customers and their subscriptions are copies made by SQL,
//! so the set-up takes seconds, and the database is then analyzed, as autovacuum keeps a
//! production database. Then, in the same run and on the same rows:
//!
//! - **set-based baseline**: in one transaction (rolled back), one `INSERT … SELECT` writing a
//!   fee row per due subscription (quantity × unit price) and one `UPDATE` moving every period
//!   on: the floor for the same rows touched with none of the gateway's rules (SQLite
//!   multiplies inexact REALs, cheaper than exact decimals: a strict baseline);
//! - **the period-boundary run**: `Ledger::catch_up_due_subscriptions` with the production
//!   batch, what the gateway runs every minute: each due subscription held, priced at its item's
//!   unit cost through the price rules, its new state written and its fee appended to the
//!   ledger (sequenced, daily totals, credit exposure, the stream notification).
//!
//! Prints fees appended per second, total time and the ratio run / baseline, for PostgreSQL (a
//! fresh database) then SQLite (a temporary file), and checks that every due subscription got
//! exactly one fee and that a second run appends none.
//!
//! Environment: MSPGW_BENCH_CUSTOMERS, MSPGW_BENCH_PER_CUSTOMER (at most 10),
//! MSPGW_BENCH_PROFILE=1 (where the run's statements spend their time:
//! `support::statement_profile`), MSPGW_BENCH_SQLITE=0 or MSPGW_BENCH_POSTGRES=0 to skip a
//! backend, MSPGW_TEST_POSTGRES_URL (an admin URL, as for the tests).
#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{authorized, drop_postgres, env, execute, fresh_postgres, postgres};

use chrono::{DateTime, Utc};
use diesel::Connection;
use msp_gateway::domain::catalog::{
    BillingFrequency, NewCatalogItem, Offer, Term, UnitCost, parse_effective_month,
};
use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
use msp_gateway::domain::money::Currency;
use msp_gateway::domain::subscription_record::NewSubscription;
use msp_gateway::domain::tenant::NewTenant;
use msp_gateway::domain::vendor::Vendor;
use msp_gateway::ledger::Ledger;
use msp_gateway::ledger::subscription_boundaries::BOUNDARY_BATCH;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::customer_service_client::CustomerServiceClient;
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use rust_decimal::Decimal;

/// The template customer's subscriptions: (term, billing, days before now it was bought). Each
/// has passed exactly one period boundary by now.
const TEMPLATE: [(Term, BillingFrequency, i64); 10] = [
    (Term::P1M, BillingFrequency::Monthly, 32),
    (Term::P1M, BillingFrequency::Monthly, 33),
    (Term::P1M, BillingFrequency::Monthly, 34),
    (Term::P1M, BillingFrequency::Monthly, 35),
    (Term::P1M, BillingFrequency::Monthly, 36),
    (Term::P1M, BillingFrequency::Monthly, 37),
    (Term::P1Y, BillingFrequency::Monthly, 32),
    (Term::P1Y, BillingFrequency::Monthly, 35),
    (Term::P1Y, BillingFrequency::Monthly, 38),
    (Term::P1Y, BillingFrequency::Annual, 367),
];

struct Figures {
    subscriptions: i64,
    setup: Duration,
    baseline: Duration,
    fees: usize,
    run: Duration,
}

fn offer(term: Term, billing: BillingFrequency) -> Offer {
    Offer::new(term, billing).unwrap()
}

/// Copies the template customer `customers - 1` times and its subscriptions to every copy.
fn copies(tenant_id: &str, template: &str, customers: usize) -> Vec<String> {
    let numbers = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {})",
        customers - 1
    );
    vec![
        format!(
            "INSERT INTO customers (id, tenant_id, external_ref, display_name, billing_currency, \
                billing_cycle, time_zone, credit_limit, status, version, created_at, updated_at, \
                billing_anchor_month, billing_anchor_day) \
             {numbers} SELECT 'cus_bench_' || n.i, c.tenant_id, 'B-' || n.i, c.display_name || ' ' || n.i, \
                c.billing_currency, c.billing_cycle, c.time_zone, c.credit_limit, c.status, c.version, \
                c.created_at, c.updated_at, c.billing_anchor_month, c.billing_anchor_day \
               FROM customers c, n WHERE c.tenant_id = '{tenant_id}' AND c.id = '{template}'"
        ),
        format!(
            "INSERT INTO subscriptions (id, tenant_id, customer_id, item_id, status, quantity, term, \
                billing_frequency, time_zone, currency, term_start, period_index, period_start, \
                period_end, unit_price, seat_seconds, lots, scheduled, auto_renew, ended_at, \
                created_at, updated_at, vendor_subscription_id) \
             SELECT s.id || '_' || c.id, s.tenant_id, c.id, s.item_id, s.status, s.quantity, s.term, \
                s.billing_frequency, s.time_zone, s.currency, s.term_start, s.period_index, \
                s.period_start, s.period_end, s.unit_price, s.seat_seconds, s.lots, s.scheduled, \
                s.auto_renew, s.ended_at, s.created_at, s.updated_at, NULL \
               FROM subscriptions s, customers c \
              WHERE s.tenant_id = '{tenant_id}' AND s.customer_id = '{template}' \
                AND c.tenant_id = '{tenant_id}' AND c.id <> '{template}'"
        ),
    ]
}

/// The set-based floor: a fee row per due subscription and every period moved on, in one
/// transaction that is rolled back.
fn baseline(url: &str, tenant_id: &str, now: DateTime<Utc>) -> Vec<String> {
    let (now, fee, next_end) = if url.starts_with("sqlite://") {
        (
            now.timestamp_micros().to_string(),
            "s.quantity * CAST(s.unit_price AS REAL)",
            "s.period_end + (s.period_end - s.period_start)",
        )
    } else {
        (
            format!("'{}'::timestamptz", now.to_rfc3339()),
            "s.quantity * s.unit_price",
            "s.period_end + (s.period_end - s.period_start)",
        )
    };
    let due =
        format!("s.tenant_id = '{tenant_id}' AND s.status = 'ACTIVE' AND s.period_end <= {now}");
    vec![
        "BEGIN".into(),
        "CREATE TEMPORARY TABLE baseline_fees (tenant_id TEXT, customer_id TEXT, \
            subscription_id TEXT, amount NUMERIC, window_start TEXT)"
            .into(),
        format!(
            "INSERT INTO baseline_fees SELECT s.tenant_id, s.customer_id, s.id, {fee}, \
                CAST(s.period_end AS TEXT) FROM subscriptions s WHERE {due}"
        ),
        format!(
            "UPDATE subscriptions AS s SET period_index = s.period_index + 1, \
                period_start = s.period_end, period_end = {next_end} WHERE {due}"
        ),
        "ROLLBACK".into(),
    ]
}

/// Rows of a query's single count, outside the gateway.
async fn count(url: &str, sql: &str) -> i64 {
    if let Some(path) = url.strip_prefix("sqlite://") {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let (path, sql) = (path.to_string(), sql.to_string());
        return tokio::task::spawn_blocking(move || {
            use diesel::RunQueryDsl;
            let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
            diesel::sql_query(sql)
                .get_result::<Count>(&mut conn)
                .unwrap()
                .n
        })
        .await
        .unwrap();
    }
    let client = postgres(url).await;
    client.query_one(sql, &[]).await.unwrap().get(0)
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
    let started = Instant::now();
    let served = support::serve(ledger.clone()).await;
    let template = CustomerServiceClient::new(served.channel.clone())
        .create_customer(authorized(
            &key,
            v1::CreateCustomerRequest {
                request_id: "template".into(),
                external_ref: "B-0".into(),
                display_name: "Bench customer".into(),
                billing_currency: "ZAR".into(),
                billing_cycle: v1::BillingCycle::Monthly.into(),
                time_zone: "Africa/Johannesburg".into(),
                credit_limit: "100000000.00".into(),
                enrollments: vec![],
                billing_anchor: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    served.server.abort();
    support::markup_everything(&ledger, &tenant.id).await;
    let zar = Currency::parse("currency", "ZAR").unwrap();
    let offers = [
        offer(Term::P1M, BillingFrequency::Monthly),
        offer(Term::P1Y, BillingFrequency::Monthly),
        offer(Term::P1Y, BillingFrequency::Annual),
    ];
    let item = NewCatalogItem {
        vendor: Vendor::Msp,
        catalog_item_id: "BACKUP-50GB".into(),
        product: "Managed backup".into(),
        unit: "50 GB".into(),
        offers: offers.to_vec(),
        unit_costs: offers
            .iter()
            .zip([100, 90, 1_000])
            .map(|(&offer, cost)| UnitCost {
                offer,
                currency: zar,
                effective_month: parse_effective_month("effective_month", "2020-01").unwrap(),
                unit_cost: Decimal::from(cost),
                list_price: None,
                market: String::new(),
            })
            .collect(),
    };
    let item = store
        .create_catalog_item(
            &tenant.id,
            &item,
            &Idempotent::unanswered(IdempotencyKey::new(
                "item".into(),
                "CreateCatalogItem",
                &item,
            )),
        )
        .await
        .unwrap()
        .fresh()
        .unwrap();
    let now = Utc::now();
    for (i, (term, billing, days)) in TEMPLATE.into_iter().take(per_customer).enumerate() {
        let new = NewSubscription {
            customer_id: template.clone(),
            item_id: item.id.clone(),
            quantity: 5 + i as u32,
            offer: offer(term, billing),
        };
        ledger
            .create_subscription(
                &tenant.id,
                &new,
                now - chrono::Duration::days(days),
                &Idempotent::unanswered(IdempotencyKey::new(
                    format!("sub-{i}"),
                    "CreateSubscription",
                    &new,
                )),
            )
            .await
            .unwrap();
    }
    execute(url, &copies(&tenant.id, &template, customers)).await;
    // A production table has statistics (autovacuum keeps them); one filled by a single INSERT
    // a moment ago has none, and PostgreSQL then plans the batch's UPDATE … FROM UNNEST as a
    // scan of every subscription of the tenant instead of a probe per row.
    execute(url, &["ANALYZE".to_string()]).await;
    let setup = started.elapsed();
    let subscriptions = count(
        url,
        &format!(
            "SELECT COUNT(*) AS n FROM subscriptions WHERE tenant_id = '{}'",
            tenant.id
        ),
    )
    .await;

    let now = Utc::now();
    let started = Instant::now();
    execute(url, &baseline(url, &tenant.id, now)).await;
    let baseline = started.elapsed();

    let profiling = support::statement_profile::install_was_requested();
    if profiling {
        support::statement_profile::start();
    }
    let (started, cpu) = (Instant::now(), support::cpu_times());
    let fees = ledger
        .catch_up_due_subscriptions(now, BOUNDARY_BATCH)
        .await
        .unwrap();
    let run = started.elapsed();
    println!("boundary run {}", support::cpu_times().since(cpu));
    if profiling {
        support::statement_profile::report("period-boundary run", 25);
    }
    assert_eq!(fees as i64, subscriptions, "one fee per due subscription");
    let again = ledger
        .catch_up_due_subscriptions(now, BOUNDARY_BATCH)
        .await
        .unwrap();
    assert_eq!(again, 0, "a second run appends nothing");
    let events = count(
        url,
        &format!(
            "SELECT COUNT(*) AS n FROM charge_events WHERE tenant_id = '{}'",
            tenant.id
        ),
    )
    .await;
    // The template's first fees, then one fee per subscription.
    assert_eq!(events, subscriptions + per_customer as i64);
    Figures {
        subscriptions,
        setup,
        baseline,
        fees,
        run,
    }
}

fn report(backend: &str, f: &Figures) {
    let run = f.run.as_secs_f64();
    let baseline = f.baseline.as_secs_f64();
    println!(
        "{backend:<10} subscriptions {:>7} (set up in {:.1} s) | set-based baseline: {:>7.3} s | \
         boundary run: {:>7} fees in {:>7.3} s = {:>8.0} fees/s | run / baseline = {:.1}x",
        f.subscriptions,
        f.setup.as_secs_f64(),
        baseline,
        f.fees,
        run,
        f.fees as f64 / run,
        run / baseline
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    support::statement_profile::install();
    let customers = env("CUSTOMERS", 10_000).max(1);
    let per_customer = env("PER_CUSTOMER", 10).clamp(1, TEMPLATE.len());
    println!(
        "period-boundary run: {customers} customers x {per_customer} subscriptions = {} \
         subscriptions, each one period boundary due",
        customers * per_customer
    );
    if env("POSTGRES", 1) == 1 {
        let name = format!("mspgw_bench_boundaries_{}", std::process::id());
        let url = fresh_postgres(&name).await;
        let figures = run(&url, customers, per_customer).await;
        report("PostgreSQL", &figures);
        drop_postgres(&name).await;
    }
    if env("SQLITE", 1) == 1 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let figures = run(&url, customers, per_customer).await;
        report("SQLite", &figures);
    }
}
