//! Persistence of per-table records: Diesel over diesel-async, PostgreSQL in production and
//! SQLite embedded. Imports nothing of the crate but `domain`.
//!
//! Query code is written once per table or concept (`tenants`, `customers`, …) inside
//! [`for_each_backend!`], which compiles it once per backend against the same schema; the
//! [`Store`] methods pick the backend at run time ([`dispatch!`]). Dialect branches live only
//! where the SQL differs. Everything returns domain types and [`crate::domain::Error`]. The
//! charge ledger, which writes several of these tables in one transaction, is `crate::ledger`.
pub mod api_keys;
pub mod catalog;
pub mod catalog_schema;
pub mod close_runs;
pub mod credit;
pub mod credit_schema;
pub mod customer_billing;
pub mod customers;
pub mod errors;
pub mod health;
pub mod idempotency;
pub mod invoice_numbers;
pub mod invoice_settings;
pub mod invoices;
pub mod invoicing_schema;
pub mod ledger_sequences;
pub mod migrate;
pub mod partner_accounts;
pub mod payments;
pub mod pending_seat_orders;
pub mod poll_states;
pub mod pool;
pub mod portal_sessions;
pub mod prepared;
pub mod price_sheets;
pub mod pricing;
pub mod read_replica;
pub mod schema;
pub mod service_action_runs;
pub mod service_action_schema;
pub mod service_action_steps;
pub mod service_actions;
pub mod sql_types;
mod sqlite_functions;
pub mod subscription_batches;
pub mod subscriptions;
pub mod tenants;
mod wal_checkpoint;

use std::time::Duration;

use diesel::SqliteConnection;
use diesel::connection::SimpleConnection;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use futures::FutureExt;

use self::pool::{Connections, Object, Pool};

use crate::domain::error::{Error, Result};

pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// Expands the query functions given to it twice: in `pg` against [`AsyncPgConnection`] and in
/// `sqlite` against [`SqliteConn`]. Inside, `Conn` is the backend's connection type, `q` names
/// the same backend's query modules of the other concepts (the store's, or those given after
/// `queries:`), `Statements` what a function that PostgreSQL may pipeline takes instead of
/// `Conn` ([`PgStatements`]), and `IS_POSTGRES` tells the dialect.
macro_rules! for_each_backend {
    (queries: $pg:path, $sqlite:path; $($item:item)*) => {
        pub mod pg {
            // `use super::*` and `q` serve whichever items need them.
            #![allow(unused_imports)]
            use super::*;
            use $pg as q;
            pub type Conn = diesel_async::AsyncPgConnection;
            pub use $crate::store::PgStatements as Statements;
            pub const IS_POSTGRES: bool = true;
            $($item)*
        }
        pub mod sqlite {
            #![allow(unused_imports)]
            use super::*;
            use $sqlite as q;
            pub type Conn = $crate::store::SqliteConn;
            pub use $crate::store::SqliteStatements as Statements;
            pub const IS_POSTGRES: bool = false;
            $($item)*
        }
    };
    ($($item:item)*) => {
        $crate::store::for_each_backend! {
            queries: $crate::store::pg_queries, $crate::store::sqlite_queries;
            $($item)*
        }
    };
}
pub(crate) use for_each_backend;

/// What a PostgreSQL query function may run its statements on: the connection, or a shared
/// reference to it (`&AsyncPgConnection`), on which diesel-async pipelines statements: a caller
/// that starts several together pays one round trip for all (see `ledger::invoicing::steps`). Query
/// code names it `Statements` (`conn: &mut impl Statements`).
pub trait PgStatements: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg> + Send {}
impl<C: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg> + Send> PgStatements for C {}

/// [`PgStatements`] of SQLite: its connection (one statement at a time on its thread).
pub trait SqliteStatements:
    diesel_async::AsyncConnectionCore<Backend = diesel::sqlite::Sqlite> + Send
{
}
impl<C: diesel_async::AsyncConnectionCore<Backend = diesel::sqlite::Sqlite> + Send> SqliteStatements
    for C
{
}

/// Each table's (or concept's) PostgreSQL query module, for query code that calls across them.
pub mod pg_queries {
    pub use super::api_keys::pg as api_keys;
    pub use super::catalog::pg as catalog;
    pub use super::close_runs::pg as close_runs;
    pub use super::credit::pg as credit;
    pub use super::customer_billing::pg as customer_billing;
    pub use super::customers::pg as customers;
    pub use super::idempotency::pg as idempotency;
    pub use super::invoice_numbers::pg as invoice_numbers;
    pub use super::invoice_settings::pg as invoice_settings;
    pub use super::invoices::pg as invoices;
    pub use super::partner_accounts::pg as partner_accounts;
    pub use super::payments::pg as payments;
    pub use super::pending_seat_orders::pg as pending_seat_orders;
    pub use super::poll_states::pg as poll_states;
    pub use super::pricing::pg as pricing;
    pub use super::service_action_runs::pg as service_action_runs;
    pub use super::service_action_steps::pg as service_action_steps;
    pub use super::service_actions::pg as service_actions;
    pub use super::subscription_batches::pg as subscription_batches;
    pub use super::subscriptions::pg as subscriptions;
    pub use super::tenants::pg as tenants;
}

/// Each table's (or concept's) SQLite query module.
pub mod sqlite_queries {
    pub use super::api_keys::sqlite as api_keys;
    pub use super::catalog::sqlite as catalog;
    pub use super::close_runs::sqlite as close_runs;
    pub use super::credit::sqlite as credit;
    pub use super::customer_billing::sqlite as customer_billing;
    pub use super::customers::sqlite as customers;
    pub use super::idempotency::sqlite as idempotency;
    pub use super::invoice_numbers::sqlite as invoice_numbers;
    pub use super::invoice_settings::sqlite as invoice_settings;
    pub use super::invoices::sqlite as invoices;
    pub use super::partner_accounts::sqlite as partner_accounts;
    pub use super::payments::sqlite as payments;
    pub use super::pending_seat_orders::sqlite as pending_seat_orders;
    pub use super::poll_states::sqlite as poll_states;
    pub use super::pricing::sqlite as pricing;
    pub use super::service_action_runs::sqlite as service_action_runs;
    pub use super::service_action_steps::sqlite as service_action_steps;
    pub use super::service_actions::sqlite as service_actions;
    pub use super::subscription_batches::sqlite as subscription_batches;
    pub use super::subscriptions::sqlite as subscriptions;
    pub use super::tenants::sqlite as tenants;
}

/// Runs `$module::$function(conn, args…)` (a module made by [`for_each_backend!`], named as the
/// caller sees it: `self`, or a module in scope) on the store's backend. `read` takes any
/// pooled connection: on PostgreSQL the read replica's when the running call allows it and the
/// replica is caught up (see [`read_replica`]), else the primary's. `fresh` is a read that must
/// see every commit, the caller's own included (an API key or portal session just created), so
/// always the primary's. `write` on SQLite takes the single writer connection inside `BEGIN
/// IMMEDIATE`, so writers queue instead of failing with SQLITE_BUSY (the query's own transaction
/// nests as a savepoint), and announces the commit (see [`Store::written`]).
macro_rules! dispatch {
    ($store:expr, read, $module:ident :: $function:ident ( $($arg:expr),* $(,)? )) => {
        match $store.backend() {
            $crate::store::Backend::Postgres(pool) => {
                let mut replica = $store.replica_connection().await;
                // At most twice: on the replica, then (see `ReadReplica::retry_on_primary`) on
                // the primary.
                loop {
                    let from_replica = replica.is_some();
                    let mut conn = match replica.take() {
                        Some(conn) => conn,
                        None => $crate::store::checkout(pool).await?,
                    };
                    let result = $module::pg::$function(&mut conn, $($arg),*).await;
                    if from_replica && $store.retry_on_primary(&result) {
                        continue;
                    }
                    break result;
                }
            }
            $crate::store::Backend::Sqlite { readers, .. } => {
                let mut conn = $crate::store::checkout(readers).await?;
                $module::sqlite::$function(&mut conn, $($arg),*).await
            }
        }
    };
    ($store:expr, fresh, $module:ident :: $function:ident ( $($arg:expr),* $(,)? )) => {
        match $store.backend() {
            $crate::store::Backend::Postgres(pool) => {
                let mut conn = $crate::store::checkout(pool).await?;
                $module::pg::$function(&mut conn, $($arg),*).await
            }
            $crate::store::Backend::Sqlite { readers, .. } => {
                let mut conn = $crate::store::checkout(readers).await?;
                $module::sqlite::$function(&mut conn, $($arg),*).await
            }
        }
    };
    ($store:expr, write, $module:ident :: $function:ident ( $($arg:expr),* $(,)? )) => {
        match $store.backend() {
            $crate::store::Backend::Postgres(pool) => {
                let mut conn = $crate::store::checkout(pool).await?;
                $module::pg::$function(&mut conn, $($arg),*).await
            }
            $crate::store::Backend::Sqlite { writer, .. } => {
                let mut conn = $crate::store::checkout(writer).await?;
                let result = conn
                    .immediate_transaction(async |conn| {
                        $module::sqlite::$function(conn, $($arg),*).await
                    })
                    .await;
                drop(conn);
                $store.committed();
                result
            }
        }
    };
}
pub(crate) use dispatch;

#[derive(Clone)]
pub enum Backend {
    Postgres(Pool<AsyncPgConnection>),
    Sqlite {
        readers: Pool<SqliteConn>,
        /// One connection: SQLite has one writer at a time.
        writer: Pool<SqliteConn>,
    },
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Postgres,
    Sqlite,
}

impl BackendKind {
    pub fn of_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            BackendKind::Postgres
        } else {
            BackendKind::Sqlite
        }
    }
}

/// The file path of a SQLite URL (`sqlite://path`, `sqlite:path` or a bare path).
pub fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

pub struct Store {
    backend: Backend,
    /// The PostgreSQL URL, for connections outside the pools (LISTEN, COPY).
    postgres_url: Option<String>,
    options: PoolOptions,
    /// Bumped after every write this process commits on SQLite (see [`Store::written`]).
    written: tokio::sync::watch::Sender<u64>,
    /// SQLite: checkpoints the WAL off the write path (see [`wal_checkpoint`]).
    _checkpointer: Option<wal_checkpoint::Checkpointer>,
    /// Woken when a partner account changes, so this process's pollers follow at once.
    partner_accounts_changed: tokio::sync::Notify,
    /// PostgreSQL: the standby that serves the reads calls allow on it (see [`read_replica`]).
    replica: Option<read_replica::ReadReplica>,
}

#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: usize,
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

impl Store {
    /// Opens connection pools for `url`. Does not run migrations (see [`migrate`]).
    pub fn connect(url: &str, options: &PoolOptions) -> Result<Self> {
        let backend = match BackendKind::of_url(url) {
            BackendKind::Postgres => {
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
                Backend::Postgres(build_pool(manager, options.max_connections, options)?)
            }
            BackendKind::Sqlite => {
                let path = sqlite_path(url);
                if let Some(dir) = std::path::Path::new(path).parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        Error::Unavailable(
                            "database",
                            format!("cannot create {}: {e}", dir.display()),
                        )
                    })?;
                }
                let manager = |auto_checkpoint: bool| {
                    let mut config = ManagerConfig::<SqliteConn>::default();
                    config.custom_setup = Box::new(move |path| {
                        open_sqlite(path.to_string(), auto_checkpoint).boxed()
                    });
                    AsyncDieselConnectionManager::<SqliteConn>::new_with_config(path, config)
                };
                // The writer leaves checkpoints to the background task where one can run.
                let writer_checkpoints = !wal_checkpoint::can_start();
                Backend::Sqlite {
                    readers: build_pool(manager(true), options.max_connections, options)?,
                    writer: build_pool(manager(writer_checkpoints), 1, options)?,
                }
            }
        };
        let postgres_url = matches!(backend, Backend::Postgres(_)).then(|| url.to_string());
        let checkpointer = match &backend {
            Backend::Sqlite { readers, .. } => wal_checkpoint::start(readers.clone()),
            Backend::Postgres(_) => None,
        };
        Ok(Store {
            backend,
            postgres_url,
            options: options.clone(),
            written: tokio::sync::watch::channel(0).0,
            _checkpointer: checkpointer,
            partner_accounts_changed: tokio::sync::Notify::new(),
            replica: None,
        })
    }

    /// Adds a read replica (PostgreSQL only: SQLite has no standby) and starts checking its
    /// lag. Must be called inside a Tokio runtime.
    pub fn with_read_replica(mut self, options: &read_replica::ReplicaOptions) -> Result<Self> {
        let Backend::Postgres(primary) = &self.backend else {
            return Err(Error::Internal(
                "a read replica needs PostgreSQL; this store is SQLite".into(),
            ));
        };
        self.replica = Some(read_replica::ReadReplica::start(
            primary.clone(),
            options,
            &self.options,
        )?);
        Ok(self)
    }

    /// The read replica's state, when one is configured.
    pub fn read_replica_status(&self) -> Option<read_replica::ReplicaStatus> {
        self.replica.as_ref().map(|r| r.status())
    }

    /// A replica connection for a `read` (see [`dispatch!`]); None: the primary's.
    pub(crate) async fn replica_connection(&self) -> Option<Object<AsyncPgConnection>> {
        match &self.replica {
            Some(replica) => replica.connection().await,
            None => None,
        }
    }

    /// Whether a read the replica answered with `result` runs again on the primary.
    pub(crate) fn retry_on_primary<T>(&self, result: &Result<T>) -> bool {
        self.replica
            .as_ref()
            .is_some_and(|r| r.retry_on_primary(result))
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The PostgreSQL URL (None on SQLite), for connections of their own outside the pools.
    pub fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_deref()
    }

    pub fn pool_options(&self) -> &PoolOptions {
        &self.options
    }

    /// Bumped after every SQLite write of this process commits (SQLite has one writing process),
    /// so readers that follow the database (the charge feeds) look again; anyone who learns of a
    /// commit another way (a PostgreSQL notification) may bump it too.
    pub fn written(&self) -> &tokio::sync::watch::Sender<u64> {
        &self.written
    }

    /// Announces a commit (see [`Store::written`]).
    pub fn committed(&self) {
        self.written.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Resolves after a partner account of this process changed (or at once, when one changed
    /// since the last wait).
    pub async fn partner_account_changed(&self) {
        self.partner_accounts_changed.notified().await
    }

    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Postgres(_) => BackendKind::Postgres,
            Backend::Sqlite { .. } => BackendKind::Sqlite,
        }
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        use diesel_async::SimpleAsyncConnection;
        match &self.backend {
            Backend::Postgres(pool) => checkout(pool).await?.batch_execute("SELECT 1").await?,
            Backend::Sqlite { readers, .. } => {
                checkout(readers).await?.batch_execute("SELECT 1").await?
            }
        }
        Ok(())
    }
}

fn build_pool<C>(
    manager: AsyncDieselConnectionManager<C>,
    size: usize,
    options: &PoolOptions,
) -> Result<Pool<C>>
where
    Connections<C>: deadpool::managed::Manager,
{
    Pool::builder(Connections::new(manager))
        .max_size(size.max(1))
        .wait_timeout(Some(options.acquire_timeout))
        .create_timeout(Some(options.acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Internal(format!("cannot build the connection pool: {e}")))
}

pub(crate) async fn checkout<C>(pool: &Pool<C>) -> Result<Object<C>>
where
    Connections<C>: deadpool::managed::Manager,
    <Connections<C> as deadpool::managed::Manager>::Error: std::fmt::Display,
{
    pool.get()
        .await
        .map_err(|e| Error::Unavailable("database", e.to_string()))
}

/// Busy timeout: how long a SQLite connection waits for another process's write lock.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// `auto_checkpoint: false` turns off SQLite's checkpoint inside COMMIT (see [`wal_checkpoint`]).
async fn open_sqlite(path: String, auto_checkpoint: bool) -> diesel::ConnectionResult<SqliteConn> {
    let conn = tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        let mut conn = SqliteConnection::establish(&path)?;
        // 1000 pages is SQLite's default.
        let auto_checkpoint_pages = if auto_checkpoint { 1000 } else { 0 };
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA wal_autocheckpoint = {auto_checkpoint_pages};"
        ))
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
        sqlite_functions::register(&mut conn)
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
        Ok::<_, diesel::ConnectionError>(conn)
    })
    .await
    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))??;
    Ok(SyncConnectionWrapper::new(conn))
}
