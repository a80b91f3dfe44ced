//! Service-action benchmark: a bulk credit run suspends 1,000 customers with 3 vendor accounts
//! each (one through each of 3 simulator partner accounts) against the simulator with 50 ms per
//! vendor call, carried out by the real worker on the real store. Prints actions/s, steps/s and
//! the time until the last customer is SUSPENDED (target on the reference machine: 15 s).
//!
//! Run: `cargo bench --bench service_actions` (env: MSPGW_BENCH_CUSTOMERS, default 1000;
//! MSPGW_BENCH_LATENCY_MS, default 50; MSPGW_BENCH_PER_PARTNER, default 16, the worker's
//! per-partner-account concurrency bound; MSPGW_BENCH_DATABASE_URL, default a SQLite file).
//!
//! The per-partner bound: every vendor throttles per partner (AWS Organizations allows a few
//! write calls per second per organization before ThrottlingException; Partner Center limits
//! each partner tenant's requests per minute), so a bulk run must not open thousands of calls at
//! once through one partner account. 16 calls in flight at 50 ms each is ~320 calls/s per partner
//! account, enough for 1,000 customers in about 3 s per partner account while staying a small,
//! fixed load; the worker retries throttling with backoff if a vendor still pushes back.
#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use msp_gateway::domain::customer::{
    BillingCycle, CustomerStatus, NewCustomer, NewVendorAccountLink,
};
use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
use msp_gateway::domain::money::Currency;
use msp_gateway::domain::service_action::{ActionKind, RetryPolicy};
use msp_gateway::domain::tenant::NewTenant;
use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
use msp_gateway::ledger::Ledger;
use msp_gateway::service_worker::{ControlFactory, Worker, WorkerSettings};
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use msp_gateway::store::service_action_runs::ActionOrder;
use msp_gateway::vendors::service_control::ServiceControl;
use msp_gateway::vendors::simulator::control::{SimulatorControl, SimulatorControlConfig};
use rust_decimal::Decimal;

const PARTNER_ACCOUNTS: usize = 3;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Prepared {
    ledger: Arc<Ledger>,
    store: Arc<Store>,
    tenant_id: String,
    key_id: String,
    customers: Vec<String>,
}

async fn prepare(url: &str, customers: usize) -> Prepared {
    migrate::run(url, Direction::Up).await.expect("migrations");
    let store = Arc::new(Store::connect(url, &Default::default()).expect("store"));
    let ledger = Arc::new(Ledger::new(store.clone()).expect("ledger"));
    let (tenant, key) = store
        .create_tenant(NewTenant::parse("Bench ISP", "ZAR", "Africa/Johannesburg").unwrap())
        .await
        .expect("tenant");
    let mut partners = Vec::new();
    for i in 0..PARTNER_ACCOUNTS {
        let account =
            support::usage_fixture::simulator_partner_account(&store, &tenant.id, i, Decimal::ZERO)
                .await;
        partners.push(account.id);
    }
    let zar = Currency::parse("c", "ZAR").unwrap();
    let mut ids = Vec::with_capacity(customers);
    for c in 0..customers {
        let new = NewCustomer {
            external_ref: format!("BENCH-{c}"),
            display_name: format!("Bench customer {c}"),
            billing_currency: zar,
            billing_cycle: BillingCycle::Monthly,
            billing_anchor: Default::default(),
            time_zone: None,
            credit_limit: Decimal::ZERO,
            enrollments: vec![],
        };
        let request = IdempotencyKey::new(format!("c-{c}"), "CreateCustomer", &new);
        let customer = store
            .create_customer(
                &tenant.id,
                &tenant.time_zone,
                &new,
                None,
                &Idempotent::unanswered(request),
            )
            .await
            .unwrap()
            .fresh()
            .unwrap();
        for (p, partner) in partners.iter().enumerate() {
            let link = NewVendorAccountLink::parse(
                "v",
                Vendor::Simulator,
                VendorAccountKind::SimulatorAccount,
                &format!("bench-{c}-{p}"),
                partner,
            )
            .unwrap();
            ledger
                .link_vendor_account(&tenant.id, &customer.id, &link, None)
                .await
                .unwrap();
        }
        ids.push(customer.id);
    }
    Prepared {
        ledger,
        store,
        tenant_id: tenant.id,
        key_id: key.id.clone(),
        customers: ids,
    }
}

struct Figures {
    requested: Duration,
    all_suspended: Duration,
}

async fn suspend_all(p: &Prepared, latency: Duration, per_partner: usize) -> Figures {
    let control: Arc<dyn ServiceControl> = Arc::new(
        SimulatorControl::new(SimulatorControlConfig {
            latency,
            polls_before_enrolled: 0,
            ..Default::default()
        })
        .unwrap(),
    );
    let factory: ControlFactory = Arc::new(move |_| Ok(control.clone()));
    let settings = WorkerSettings {
        owner: "bench".into(),
        per_partner_concurrency: per_partner,
        max_actions: 1024,
        poll: Duration::from_millis(100),
        retry: RetryPolicy::default(),
        ..Default::default()
    };
    let worker = Worker::new(p.ledger.clone(), settings, factory);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));

    let start = Instant::now();
    for (i, customer) in p.customers.iter().enumerate() {
        let order = ActionOrder {
            customer_id: customer,
            kind: ActionKind::Suspend,
            reason: "bulk credit run",
            confirm_external_ref: "",
            key_id: &p.key_id,
            closure_budgets: &[],
        };
        let request = IdempotencyKey::new(format!("s-{i}"), "SuspendCustomer", &customer);
        p.store
            .request_service_action(&p.tenant_id, &order, &Idempotent::unanswered(request))
            .await
            .expect("suspend");
        p.store.committed();
    }
    let requested = start.elapsed();
    let mut waiting: Vec<&String> = p.customers.iter().collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for customer in waiting {
            let status = p
                .store
                .customer(&p.tenant_id, customer)
                .await
                .unwrap()
                .status;
            if status != CustomerStatus::Suspended {
                still.push(customer);
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "{} customers not suspended after 10 minutes",
            waiting.len()
        );
    }
    let all_suspended = start.elapsed();
    let _ = stop.send(true);
    let _ = running.await;
    Figures {
        requested,
        all_suspended,
    }
}

fn main() {
    let customers = env_usize("MSPGW_BENCH_CUSTOMERS", 1000);
    let latency = Duration::from_millis(env_usize("MSPGW_BENCH_LATENCY_MS", 50) as u64);
    let per_partner = env_usize("MSPGW_BENCH_PER_PARTNER", 16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("MSPGW_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    println!(
        "service-action benchmark: suspend {customers} customers x {PARTNER_ACCOUNTS} vendor \
         accounts (one per simulator partner account), {} ms per vendor call, at most \
         {per_partner} calls at once per partner account; {} cores; database {}",
        latency.as_millis(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        url.split(':').next().unwrap_or("?"),
    );
    let prepared = runtime.block_on(prepare(&url, customers));
    let f = runtime.block_on(suspend_all(&prepared, latency, per_partner));
    let steps = customers * PARTNER_ACCOUNTS;
    let secs = f.all_suspended.as_secs_f64();
    println!(
        "requests recorded in {:.2} s; last customer SUSPENDED after {secs:.2} s",
        f.requested.as_secs_f64()
    );
    println!(
        "{:.0} actions/s, {:.0} steps/s (vendor-bound floor: {:.2} s)",
        customers as f64 / secs,
        steps as f64 / secs,
        (customers as f64 * latency.as_secs_f64()) / per_partner as f64,
    );
    println!(
        "target: all suspended within 15 s: {}",
        if secs <= 15.0 { "met" } else { "NOT met" }
    );
}
