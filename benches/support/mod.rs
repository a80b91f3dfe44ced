//! What the benchmarks that drive the real server share: knobs from the environment, a gateway
//! on an ephemeral port, authorized requests and a simulator partner account.
// Each benchmark includes this module and uses part of it.
#![allow(dead_code)]
pub mod statement_profile;
pub mod usage_fixture;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use msp_gateway::ledger::Ledger;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::partner_account_service_client::PartnerAccountServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// `MSPGW_BENCH_<name>` as a number, else `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(format!("MSPGW_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `message` with the API key as its bearer token.
pub fn authorized<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

/// A gateway serving `ledger` on 127.0.0.1:0 until its task is aborted. (Each benchmark
/// includes this module and reads the fields it needs.)
pub struct Served {
    pub address: SocketAddr,
    pub channel: Channel,
    pub server: tokio::task::JoinHandle<()>,
}

pub async fn serve(ledger: Arc<Ledger>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // Benchmarks measure the gateway, not the per-key rate limiter: calls are unlimited.
    let limits = msp_gateway::server::Limits {
        rate_limit: None,
        ..Default::default()
    };
    let server = tokio::spawn(async move {
        msp_gateway::server::serve_with_limits(
            listener,
            ledger,
            None,
            std::future::pending(),
            Duration::from_secs(1),
            limits,
            None,
        )
        .await
        .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Served {
        address,
        channel,
        server,
    }
}

/// A simulator partner account (10 % partner discount), created through the API.
pub async fn simulator_partner_account(channel: Channel, key: &str) -> v1::PartnerAccount {
    PartnerAccountServiceClient::new(channel)
        .create_partner_account(authorized(
            key,
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
        .into_inner()
}

/// The admin URL of the PostgreSQL benches create their databases on (as for the tests).
pub fn admin_url() -> String {
    std::env::var("MSPGW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty PostgreSQL database `name` (dropped first if left over); its URL.
pub async fn fresh_postgres(name: &str) -> String {
    let admin = admin_url();
    let mut conn = AsyncPgConnection::establish(&admin)
        .await
        .expect("PostgreSQL reachable");
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    format!(
        "{}/{name}",
        admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin)
    )
}

pub async fn drop_postgres(name: &str) {
    let mut conn = AsyncPgConnection::establish(&admin_url()).await.unwrap();
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Records `lines` through the ledger in one push under a fresh request id; how many.
pub async fn write(
    ledger: &Ledger,
    tenant_id: &str,
    account: &msp_gateway::domain::partner_account::PartnerAccount,
    lines: Vec<msp_gateway::domain::usage::UsageLine>,
) -> usize {
    use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
    if lines.is_empty() {
        return 0;
    }
    let count = lines.len();
    ledger
        .ingest_push(
            tenant_id,
            account,
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
        .expect("new request");
    count
}

/// A 15 % markup on everything the tenant sells, in force since 1970.
pub async fn markup_everything(ledger: &Ledger, tenant_id: &str) {
    use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
    use msp_gateway::domain::pricing::{NewPriceRule, PriceKind, RuleScope};
    let rule = NewPriceRule {
        scope: RuleScope::default(),
        kind: PriceKind::Markup,
        value: rust_decimal::Decimal::new(15, 2),
        currency: None,
        effective_from: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        effective_to: None,
    };
    ledger
        .create_price_rule(
            tenant_id,
            &rule,
            &Idempotent::unanswered(IdempotencyKey::new("rule".into(), "CreatePriceRule", &rule)),
        )
        .await
        .unwrap();
}

/// CPU seconds used so far by this process (the gateway: API, ledger code, Diesel, SQLite) and by
/// the whole machine (this process plus PostgreSQL's backends and anything else), from /proc.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    pub process: f64,
    pub machine: f64,
}

pub fn cpu_times() -> CpuTimes {
    // Clock ticks per second: 100 on Linux.
    const TICKS: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15: indexes 11 and 12 after the state.
    let process = (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / TICKS;
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .map(|cpu| {
            let ticks: Vec<f64> = cpu
                .split_whitespace()
                .skip(1)
                .map(|f| f.parse().unwrap_or(0.0))
                .collect();
            // Busy: everything but idle (4th) and iowait (5th).
            ticks.iter().sum::<f64>() - ticks.get(3).unwrap_or(&0.0) - ticks.get(4).unwrap_or(&0.0)
        })
        .unwrap_or(0.0)
        / TICKS;
    CpuTimes { process, machine }
}

impl CpuTimes {
    /// "gateway X s, rest Y s" since `before`.
    pub fn since(self, before: CpuTimes) -> String {
        let process = self.process - before.process;
        let rest = (self.machine - before.machine) - process;
        format!("CPU: gateway process {process:.2} s, rest of the machine {rest:.2} s")
    }
}

/// A plain client of `url`'s database, outside the gateway.
pub async fn postgres(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Statements run one after another on `url`'s database, outside the gateway; the rows the
/// last one changed.
pub async fn execute(url: &str, statements: &[String]) -> u64 {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let (path, statements) = (path.to_string(), statements.to_vec());
        return tokio::task::spawn_blocking(move || {
            use diesel::Connection;
            let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
            let mut changed = 0;
            for statement in &statements {
                changed = diesel::RunQueryDsl::execute(diesel::sql_query(statement), &mut conn)
                    .unwrap() as u64;
            }
            changed
        })
        .await
        .unwrap();
    }
    let client = postgres(url).await;
    let mut changed = 0;
    for statement in statements {
        changed = tokio_postgres::Client::execute(&client, statement.as_str(), &[])
            .await
            .unwrap();
    }
    changed
}
