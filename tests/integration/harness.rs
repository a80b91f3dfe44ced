//! Test harness: a real gateway on 127.0.0.1:0 over a fresh database, called through the
//! generated tonic clients.
//!
//! Every test runs on both backends (see [`both_backends!`]). SQLite uses a temporary file;
//! PostgreSQL gets its own database, created at start and dropped at the end (even when the test
//! fails). PostgreSQL is at `MSPGW_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unreachable the PostgreSQL half
//! fails, unless `MSPGW_TEST_SKIP_POSTGRES=1` says to skip it (the README's test script sets that
//! only after telling you PostgreSQL is down).
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use msp_gateway::domain::access::MintedKey;
use msp_gateway::domain::tenant::NewTenant;
use msp_gateway::ledger::Ledger;
use msp_gateway::proto::v1::customer_service_client::CustomerServiceClient;
use msp_gateway::proto::v1::partner_account_service_client::PartnerAccountServiceClient;
use msp_gateway::proto::v1::pricing_service_client::PricingServiceClient;
use msp_gateway::proto::v1::tenant_service_client::TenantServiceClient;
use msp_gateway::proto::v1::usage_service_client::UsageServiceClient;
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` test once per backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}

fn postgres_admin_url() -> String {
    std::env::var("MSPGW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
    /// A database the test made and removes itself (e.g. on a cluster of its own).
    Owner,
}

impl TestDatabase {
    /// A database at `url` that the caller created and will remove.
    #[allow(dead_code)]
    pub fn external(url: String) -> Self {
        TestDatabase {
            url,
            cleanup: Cleanup::Owner,
        }
    }

    /// None when PostgreSQL is unreachable and skipping was asked for.
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
                Some(TestDatabase {
                    url,
                    cleanup: Cleanup::Sqlite(dir),
                })
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let mut admin = match AsyncPgConnection::establish(&admin_url).await {
                    Ok(conn) => conn,
                    Err(error) => {
                        if std::env::var("MSPGW_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
                            eprintln!("PostgreSQL unreachable ({error}); PostgreSQL half SKIPPED");
                            return None;
                        }
                        panic!(
                            "PostgreSQL is unreachable at {admin_url}: {error}. Start it, set \
                             MSPGW_TEST_POSTGRES_URL, or run scripts/test.sh, which skips the \
                             PostgreSQL half only when it is down and says so."
                        );
                    }
                };
                let name = format!("mspgw_test_{}", uuid::Uuid::new_v4().simple());
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .unwrap_or(&admin_url);
                Some(TestDatabase {
                    url: format!("{base}/{name}"),
                    cleanup: Cleanup::Postgres { admin_url, name },
                })
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; drop the database from a thread of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cleanup runtime");
                runtime.block_on(async {
                    if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url).await {
                        let _ = diesel::sql_query(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        ))
                        .execute(&mut admin)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running gateway with one tenant and its admin key.
pub struct TestGateway {
    pub address: SocketAddr,
    pub store: Arc<Store>,
    pub ledger: Arc<Ledger>,
    pub admin_key: String,
    pub tenant_id: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Dropped with the gateway: removes the database.
    _database: TestDatabase,
}

/// Another gateway process's worth of state on the same database: its own store and ledger
/// (pools, live feeds and, on PostgreSQL, LISTEN connection) and its own server.
pub struct Replica {
    pub address: SocketAddr,
    pub ledger: Arc<Ledger>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Replica {
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .expect("connect to replica")
    }

    /// Stops the server (open streams are cut after the grace period).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

async fn spawn_server(
    ledger: Arc<Ledger>,
    limits: msp_gateway::server::Limits,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        msp_gateway::server::serve_with_limits(
            listener,
            ledger,
            None,
            async {
                let _ = rx.await;
            },
            Duration::from_millis(200),
            limits,
            None,
        )
        .await
        .expect("server");
    });
    (address, tx, server)
}

impl TestGateway {
    pub async fn start(backend: Backend) -> Option<Self> {
        Some(Self::start_on(TestDatabase::create(backend).await?).await)
    }

    /// A gateway on `database` (migrated here).
    pub async fn start_on(database: TestDatabase) -> Self {
        migrate::run(&database.url, Direction::Up)
            .await
            .expect("migrations");
        let store =
            Arc::new(Store::connect(&database.url, &Default::default()).expect("connect store"));
        let ledger = Arc::new(Ledger::new(store.clone()).expect("ledger"));
        let (tenant, key) = store
            .create_tenant(NewTenant::parse("Test ISP", "ZAR", "Africa/Johannesburg").unwrap())
            .await
            .expect("tenant");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_ledger = ledger.clone();
        let server = tokio::spawn(async move {
            msp_gateway::server::serve(
                listener,
                server_ledger,
                None,
                async {
                    let _ = rx.await;
                },
                Duration::from_secs(1),
            )
            .await
            .expect("server");
        });
        TestGateway {
            address,
            store,
            ledger,
            admin_key: key.token().to_string(),
            tenant_id: tenant.id,
            shutdown: Some(tx),
            server: Some(server),
            _database: database,
        }
    }

    /// A second gateway on this gateway's database.
    #[allow(dead_code)]
    pub async fn replica(&self) -> Replica {
        self.replica_with(Default::default()).await
    }

    /// A second gateway on this gateway's database, serving with `limits`.
    #[allow(dead_code)]
    pub async fn replica_with(&self, limits: msp_gateway::server::Limits) -> Replica {
        let store =
            Arc::new(Store::connect(&self._database.url, &Default::default()).expect("connect"));
        let ledger = Arc::new(Ledger::new(store.clone()).expect("ledger"));
        let (address, tx, server) = spawn_server(ledger.clone(), limits).await;
        Replica {
            address,
            ledger,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// A second gateway on this gateway's database whose allowed reads go to the standby at
    /// `read_url` while it is at most `max_lag` behind (PostgreSQL only).
    #[allow(dead_code)]
    pub async fn replica_reading_from(&self, read_url: &str, max_lag: Duration) -> Replica {
        let options = msp_gateway::store::read_replica::ReplicaOptions {
            url: read_url.to_string(),
            max_lag,
        };
        let store = Store::connect(&self._database.url, &Default::default())
            .and_then(|store| store.with_read_replica(&options))
            .expect("connect with a read replica");
        let ledger = Arc::new(Ledger::new(Arc::new(store)).expect("ledger"));
        let (address, tx, server) = spawn_server(ledger.clone(), Default::default()).await;
        Replica {
            address,
            ledger,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// The database URL this gateway runs on.
    #[allow(dead_code)]
    pub fn database_url(&self) -> &str {
        &self._database.url
    }

    /// Runs `sql` on the gateway's database behind its back (to set up a state no API makes,
    /// such as a corrupt row); the rows it changed.
    #[allow(dead_code)]
    pub async fn execute_sql(&self, sql: &str) -> usize {
        if let Some(path) = self._database.url.strip_prefix("sqlite://") {
            let (path, sql) = (path.to_string(), sql.to_string());
            return tokio::task::spawn_blocking(move || {
                use diesel::Connection;
                let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
                let mut run = |sql: &str| {
                    diesel::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn).unwrap()
                };
                run("PRAGMA busy_timeout = 10000");
                run(&sql)
            })
            .await
            .unwrap();
        }
        let mut conn = AsyncPgConnection::establish(&self._database.url)
            .await
            .unwrap();
        diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn)
            .await
            .unwrap()
    }

    #[allow(dead_code)]
    pub fn backend(&self) -> Backend {
        if self._database.url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// A second tenant and its admin key, for isolation tests.
    pub async fn other_tenant(&self) -> String {
        let (_, key): (_, MintedKey) = self
            .store
            .create_tenant(NewTenant::parse("Other ISP", "USD", "America/New_York").unwrap())
            .await
            .expect("second tenant");
        key.token().to_string()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .expect("connect to gateway")
    }

    pub async fn customers(
        &self,
        key: &str,
    ) -> CustomerServiceClient<InterceptedService<Channel, Bearer>> {
        CustomerServiceClient::with_interceptor(self.channel().await, Bearer::new(key))
    }

    pub async fn partner_accounts(
        &self,
        key: &str,
    ) -> PartnerAccountServiceClient<InterceptedService<Channel, Bearer>> {
        PartnerAccountServiceClient::with_interceptor(self.channel().await, Bearer::new(key))
    }

    pub async fn tenants(
        &self,
        key: &str,
    ) -> TenantServiceClient<InterceptedService<Channel, Bearer>> {
        TenantServiceClient::with_interceptor(self.channel().await, Bearer::new(key))
    }

    pub async fn pricing(
        &self,
        key: &str,
    ) -> PricingServiceClient<InterceptedService<Channel, Bearer>> {
        PricingServiceClient::with_interceptor(self.channel().await, Bearer::new(key))
    }

    pub async fn usage(
        &self,
        key: &str,
    ) -> UsageServiceClient<InterceptedService<Channel, Bearer>> {
        UsageServiceClient::with_interceptor(self.channel().await, Bearer::new(key))
    }

    /// The test tenant, for calling the store and the ledger directly.
    pub fn admin(&self) -> String {
        self.tenant_id.clone()
    }

    /// A partner account of `vendor`, a customer billed in `currency` whose vendor account
    /// `account_id` (of `kind`) is linked through it, and a tenant-wide markup of `markup`.
    pub async fn vendor_customer(
        &self,
        vendor: msp_gateway::domain::vendor::Vendor,
        vendor_account_id: &str,
        currency: &str,
        kind: msp_gateway::domain::vendor::VendorAccountKind,
        account_id: &str,
        markup: rust_decimal::Decimal,
    ) -> msp_gateway::domain::partner_account::PartnerAccount {
        use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
        use msp_gateway::domain::money::Currency;
        use msp_gateway::domain::partner_account::PartnerAccountSpec;
        use msp_gateway::domain::pricing::NewPriceRule;
        use msp_gateway::domain::pricing::{PriceKind, RuleScope};
        let admin = self.admin();
        let spec = PartnerAccountSpec {
            vendor,
            display_name: format!("{vendor} partner"),
            vendor_account_id: vendor_account_id.into(),
            partner_discount_rate: rust_decimal::Decimal::ZERO,
            credentials_ref: "env:UNUSED_IN_THIS_TEST".into(),
            poll_interval_secs: 900,
            enabled: true,
            endpoint_url: String::new(),
            aws: None,
            microsoft: (vendor == msp_gateway::domain::vendor::Vendor::Microsoft).then(|| {
                msp_gateway::domain::microsoft_settings::MicrosoftSettings::billed_in(
                    Currency::parse("c", currency).unwrap(),
                )
            }),
        };
        let key = IdempotencyKey::new("pa".into(), "CreatePartnerAccount", &spec);
        let account = self
            .store
            .create_partner_account(&admin, &spec, &Idempotent::unanswered(key))
            .await
            .unwrap()
            .fresh()
            .unwrap()
            .0;
        self.linked_customer(vendor, kind, account_id, currency)
            .await;
        let rule = NewPriceRule {
            scope: RuleScope::default(),
            kind: PriceKind::Markup,
            value: markup,
            currency: None,
            effective_from: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            effective_to: None,
        };
        let key = IdempotencyKey::new("rule".into(), "CreatePriceRule", &rule);
        self.ledger
            .create_price_rule(&admin, &rule, &Idempotent::unanswered(key))
            .await
            .unwrap();
        account
    }

    /// A customer billed in `currency` with the vendor account `account_id` (of `kind`)
    /// linked; its id.
    pub async fn linked_customer(
        &self,
        vendor: msp_gateway::domain::vendor::Vendor,
        kind: msp_gateway::domain::vendor::VendorAccountKind,
        account_id: &str,
        currency: &str,
    ) -> String {
        use msp_gateway::domain::customer::{BillingCycle, NewCustomer, NewVendorAccountLink};
        use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
        use msp_gateway::domain::money::Currency;
        let admin = self.admin();
        let new = NewCustomer {
            external_ref: format!("{vendor}-{account_id}"),
            display_name: "Vendor customer".into(),
            billing_currency: Currency::parse("c", currency).unwrap(),
            billing_cycle: BillingCycle::Monthly,
            billing_anchor: Default::default(),
            time_zone: None,
            credit_limit: rust_decimal::Decimal::ZERO,
            enrollments: vec![],
        };
        let key = IdempotencyKey::new(format!("c-{account_id}"), "CreateCustomer", &new);
        let customer = self
            .store
            .create_customer(&admin, "UTC", &new, None, &Idempotent::unanswered(key))
            .await
            .unwrap()
            .fresh()
            .unwrap();
        let link = NewVendorAccountLink::parse("v", vendor, kind, account_id, "").unwrap();
        self.ledger
            .link_vendor_account(&admin, &customer.id, &link, None)
            .await
            .unwrap();
        customer.id
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// Adds `authorization: Bearer <key>` to every call; an empty key sends none.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    pub fn new(key: &str) -> Self {
        Bearer((!key.is_empty()).then(|| format!("Bearer {key}").parse().expect("ascii key")))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The field violations of a status, as (field, description) pairs.
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts `result` failed with `code` and a field violation naming `field`.
#[track_caller]
pub fn assert_violation<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: tonic::Code,
    field: &str,
) {
    let status = result.expect_err("call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    let violations = field_violations(&status);
    assert!(
        violations.iter().any(|(f, _)| f == field),
        "expected a violation of {field}, got {violations:?} ({})",
        status.message()
    );
}

/// A request id never used before, for store calls that need one.
pub fn fresh_request<T>() -> msp_gateway::domain::idempotency::Idempotent<'static, T> {
    msp_gateway::domain::idempotency::Idempotent::unanswered(
        msp_gateway::domain::idempotency::IdempotencyKey::from_bytes(
            uuid::Uuid::new_v4().to_string(),
            "IngestUsage",
            b"",
        ),
    )
}
