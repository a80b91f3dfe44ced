//! Charge stream benchmark (prints figures; not a timed test). Run in release:
//!
//! ```sh
//! cargo bench --bench charge_streams
//! ```
//!
//! 1. Latency: `CONSUMERS` streaming consumers (each filtered to one customer, as a per-customer
//!    credit-control or portal consumer would be) on `CONNECTIONS` HTTP/2 connections, while a
//!    writer records `RATE` charges/s through `Store::ingest_push` in batches of `BATCH` lines
//!    (one transaction each) for `SECONDS`. Commit-to-receipt latency per charge: from the moment
//!    the write call returned (commit acknowledged) to the consumer's receipt; also from the
//!    start of the write call (an upper bound that includes the transaction itself).
//! 2. Memory: `IDLE` idle streams against a gateway in a child process; its RSS before and after.
//!
//! Environment: MSPGW_BENCH_DATABASE_URL (default: a temporary SQLite file), and
//! MSPGW_BENCH_{CONSUMERS,CONNECTIONS,RATE,BATCH,SECONDS,IDLE} to change the figures above.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use msp_gateway::domain::access::{Principal, Scope};
use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
use msp_gateway::domain::pricing::NewPriceRule;
use msp_gateway::domain::pricing::{PriceKind, RuleScope};
use msp_gateway::domain::tenant::NewTenant;
use msp_gateway::domain::usage::{UsageKey, UsageLine};
use msp_gateway::ledger::Ledger;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::charge_service_client::ChargeServiceClient;
use msp_gateway::proto::v1::customer_service_client::CustomerServiceClient;
use msp_gateway::proto::v1::partner_account_service_client::PartnerAccountServiceClient;
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use rust_decimal::Decimal;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

fn env(name: &str, default: usize) -> usize {
    std::env::var(format!("MSPGW_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn authorized<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

async fn serve(ledger: Arc<Ledger>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        msp_gateway::server::serve(
            listener,
            ledger,
            None,
            std::future::pending(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    });
    address
}

async fn channel(address: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

struct Fixture {
    ledger: Arc<Ledger>,
    url: String,
    key: String,
    principal: Principal,
    customers: Vec<String>,
    account: msp_gateway::domain::partner_account::PartnerAccount,
    _dir: Option<tempfile::TempDir>,
}

async fn fixture(customers: usize) -> Fixture {
    let (url, dir) = match std::env::var("MSPGW_BENCH_DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            (url, Some(dir))
        }
    };
    migrate::run(&url, Direction::Up).await.unwrap();
    let store = Arc::new(Store::connect(&url, &Default::default()).unwrap());
    let ledger = Arc::new(Ledger::new(store.clone()).unwrap());
    let name = format!("Bench ISP {}", uuid::Uuid::new_v4().simple());
    let (tenant, key) = store
        .create_tenant(NewTenant::parse(&name, "ZAR", "Africa/Johannesburg").unwrap())
        .await
        .unwrap();
    let key = key.token().to_string();
    let principal = Principal {
        tenant_id: tenant.id.clone(),
        key_id: "bench".into(),
        scope: Scope::Admin,
        customer_id: None,
    };
    let address = serve(ledger.clone()).await;
    let ch = channel(address).await;
    let sim = PartnerAccountServiceClient::new(ch.clone())
        .create_partner_account(authorized(
            &key,
            v1::CreatePartnerAccountRequest {
                request_id: "sim".into(),
                partner_account: Some(v1::PartnerAccount {
                    vendor: v1::Vendor::Simulator.into(),
                    display_name: "Simulator".into(),
                    vendor_account_id: "sim-partner".into(),
                    partner_discount_rate: "0.10".into(),
                    enabled: true,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let account = store
        .partner_account(&principal.tenant_id, &sim.id)
        .await
        .unwrap();
    let mut client = CustomerServiceClient::new(ch);
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
            &principal.tenant_id,
            &rule,
            &Idempotent::unanswered(IdempotencyKey::new("rule".into(), "CreatePriceRule", &rule)),
        )
        .await
        .unwrap();
    Fixture {
        ledger,
        url,
        key,
        principal,
        customers: ids,
        account,
        _dir: dir,
    }
}

fn line(customer_id: &str, n: usize, window: DateTime<Utc>) -> UsageLine {
    UsageLine {
        key: UsageKey {
            vendor_account_id: format!("sim-{}", customer_id.trim_start_matches("cus_")),
            service: "Compute".into(),
            meter: format!("m{n}"),
            region: String::new(),
            window_start: window,
        },
        window_end: window + chrono::Duration::hours(1),
        meter_name: "meter".into(),
        quantity: Decimal::ONE,
        unit: "h".into(),
        cost: Decimal::from_str("0.0123456789").unwrap(),
        list_cost: None,
        currency: "ZAR".into(),
        estimated: true,
        vendor_tenant_id: None,
    }
}

/// (first sequence, last sequence, write started, write returned)
type Batch = (i64, i64, Instant, Instant);

async fn latency() {
    let consumers = env("CONSUMERS", 1000);
    let connections = env("CONNECTIONS", 10);
    let rate = env("RATE", 10_000);
    let batch = env("BATCH", 250);
    let seconds = env("SECONDS", 10);
    println!(
        "== latency: {consumers} consumers (one customer each) on {connections} connections, \
         {rate} charges/s in batches of {batch} for {seconds} s"
    );
    let setup = Instant::now();
    let f = fixture(consumers).await;
    println!(
        "   backend {:?}; setup {:.1} s",
        f.ledger.store().kind(),
        setup.elapsed().as_secs_f64()
    );
    let address = serve(f.ledger.clone()).await;
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(channel(address).await);
    }
    let receipts: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let total = rate * seconds;
    let per_consumer = total / consumers;
    let mut tasks = Vec::new();
    for (i, customer) in f.customers.iter().enumerate() {
        let mut client = ChargeServiceClient::new(channels[i % connections].clone());
        let mut stream = client
            .stream_charges(authorized(
                &f.key,
                v1::StreamChargesRequest {
                    after_sequence: 0,
                    customer_ids: vec![customer.clone()],
                    kinds: vec![],
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let receipts = receipts.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(per_consumer + 1);
            while mine.len() < per_consumer {
                match tokio::time::timeout(Duration::from_secs(60), stream.message()).await {
                    Ok(Ok(Some(message))) => {
                        if let Some(v1::stream_charges_response::Event::Charge(c)) = message.event {
                            mine.push((c.sequence, Instant::now()));
                        }
                    }
                    _ => break,
                }
            }
            receipts.lock().unwrap().extend(mine);
        }));
    }
    // Every consumer's stream is open and idle before writing starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let window = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    let mut batches: Vec<Batch> = Vec::new();
    let interval = Duration::from_secs_f64(batch as f64 / rate as f64);
    let started = Instant::now();
    let mut next = started;
    let mut n = 0;
    while n < total {
        let end = (n + batch).min(total);
        let lines: Vec<UsageLine> = (n..end)
            .map(|i| line(&f.customers[i % consumers], i, window))
            .collect();
        let t0 = Instant::now();
        let summary = f
            .ledger
            .ingest_push(
                &f.principal.tenant_id,
                &f.account,
                lines,
                &Idempotent::unanswered(IdempotencyKey::from_bytes(
                    uuid::Uuid::new_v4().to_string(),
                    "IngestUsage",
                    b"",
                )),
            )
            .await
            .unwrap()
            .fresh()
            .expect("a new request id");
        let t1 = Instant::now();
        let last = summary.last_sequence.unwrap();
        batches.push((last - summary.events_appended as i64 + 1, last, t0, t1));
        n = end;
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    let write_secs = started.elapsed().as_secs_f64();
    for task in tasks {
        let _ = task.await;
    }
    let receipts = receipts.lock().unwrap();
    let mut from_commit = Vec::with_capacity(receipts.len());
    let mut from_start = Vec::with_capacity(receipts.len());
    let mut before_return = 0usize;
    for &(sequence, at) in receipts.iter() {
        let i = batches.partition_point(|b| b.1 < sequence);
        let Some(&(first, _, t0, t1)) = batches.get(i) else {
            continue;
        };
        debug_assert!(sequence >= first);
        if at < t1 {
            before_return += 1;
        }
        from_commit.push(at.saturating_duration_since(t1));
        from_start.push(at.saturating_duration_since(t0));
    }
    from_commit.sort();
    from_start.sort();
    let write_ms: Vec<Duration> = {
        let mut w: Vec<Duration> = batches.iter().map(|b| b.3 - b.2).collect();
        w.sort();
        w
    };
    println!(
        "   recorded {total} charges in {write_secs:.2} s = {:.0} charges/s ({} transactions; \
         write call p50 {:?}, p99 {:?})",
        total as f64 / write_secs,
        batches.len(),
        percentile(&write_ms, 0.5),
        percentile(&write_ms, 0.99),
    );
    println!(
        "   received {} of {total} ({} before the write call returned, counted as 0)",
        receipts.len(),
        before_return
    );
    println!(
        "   commit-to-receipt: p50 {:?}  p99 {:?}  max {:?}",
        percentile(&from_commit, 0.5),
        percentile(&from_commit, 0.99),
        from_commit.last().copied().unwrap_or_default()
    );
    println!(
        "   write-start-to-receipt (upper bound): p50 {:?}  p99 {:?}",
        percentile(&from_start, 0.5),
        percentile(&from_start, 0.99)
    );
    let stats = f.ledger.feed().stats();
    println!(
        "   stream pages read from the database (fell behind the ring): {}",
        stats
            .database_pages
            .load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// Child mode: serve `url` on an ephemeral port, print it, serve until killed.
async fn child(url: String) {
    let store = Arc::new(Store::connect(&url, &Default::default()).unwrap());
    let ledger = Arc::new(Ledger::new(store).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("PORT {}", listener.local_addr().unwrap().port());
    msp_gateway::server::serve(
        listener,
        ledger,
        None,
        std::future::pending(),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
}

async fn idle_memory() {
    let idle = env("IDLE", 10_000);
    let per_connection = 100;
    println!("== memory: {idle} idle streams on a gateway in a child process");
    let f = fixture(1).await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("MSPGW_BENCH_CHILD_DB", &f.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let port: u16 = first.trim().trim_start_matches("PORT ").parse().unwrap();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Warm up: one stream, so the tenant's feed and the runtime are in place.
    let warm = channel(address).await;
    let mut warm_stream = ChargeServiceClient::new(warm)
        .stream_charges(authorized(&f.key, v1::StreamChargesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let _ = warm_stream.message().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let mut streams = Vec::with_capacity(idle);
    let mut channels = Vec::new();
    let opened = Instant::now();
    for i in 0..idle {
        if i % per_connection == 0 {
            channels.push(channel(address).await);
        }
        let mut client = ChargeServiceClient::new(channels.last().unwrap().clone());
        let stream = client
            .stream_charges(authorized(&f.key, v1::StreamChargesRequest::default()))
            .await
            .unwrap()
            .into_inner();
        streams.push(stream);
    }
    let open_secs = opened.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    println!(
        "   opened {idle} streams on {} connections in {open_secs:.1} s",
        channels.len()
    );
    println!(
        "   gateway RSS: {:.1} MiB before, {:.1} MiB with {idle} idle streams; \
         {:.1} KiB per stream",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / idle as f64
    );
    drop(streams);
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(url) = std::env::var("MSPGW_BENCH_CHILD_DB") {
        runtime.block_on(child(url));
        return;
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and IDE probes: nothing to run.
    }
    println!(
        "charge_streams benchmark on {} logical CPUs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    runtime.block_on(async {
        if env("SKIP_LATENCY", 0) == 0 {
            latency().await;
        }
        if env("SKIP_MEMORY", 0) == 0 {
            idle_memory().await;
        }
    });
}
