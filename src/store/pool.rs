//! The Diesel connection pools' manager: diesel-async's, whose check-out runs `SELECT 1` on
//! every connection it hands out (`RecyclingMethod::Verified`), less that round trip for a
//! connection checked out within the last [`ALIVE_BYPASS`].
//!
//! A month close checks out a connection per invoice: the check was one of its ~16 round trips
//! (~1,030 `SELECT $1` a 1,000-invoice run; BENCHMARKS.md, session 13). A connection in steady
//! use has just shown it works; one idle for longer is checked as before. A connection the
//! server closed (a restart, `pg_terminate_backend`) is seen closed without a query (its driver
//! reads the close) and dropped either way. What only the query catches is a connection lost
//! without a word (a network partition, a failover that leaves the socket open), and of those
//! one used within the window reaches a caller: its statement fails with UNAVAILABLE (clients
//! retry; `tests/integration/connection_loss`), which marks it broken, and the pool drops it.
//! HikariCP's `aliveBypassWindowMs` makes the same trade with the same 500 ms.
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, PoolableConnection};

/// How recently a connection must have been checked out to skip the check (see the module).
pub const ALIVE_BYPASS: Duration = Duration::from_millis(500);

pub type Pool<C> = deadpool::managed::Pool<Connections<C>>;
pub type Object<C> = deadpool::managed::Object<Connections<C>>;

/// See the module.
pub struct Connections<C: 'static> {
    manager: AsyncDieselConnectionManager<C>,
    alive_bypass: Duration,
}

impl<C> Connections<C> {
    /// `manager`'s connections, checked unless checked out within [`ALIVE_BYPASS`].
    pub fn new(manager: AsyncDieselConnectionManager<C>) -> Self {
        Self::with_alive_bypass(manager, ALIVE_BYPASS)
    }

    /// Checked unless checked out within `alive_bypass` (tests: zero checks every one).
    pub fn with_alive_bypass(
        manager: AsyncDieselConnectionManager<C>,
        alive_bypass: Duration,
    ) -> Self {
        Connections {
            manager,
            alive_bypass,
        }
    }
}

impl<C> Manager for Connections<C>
where
    C: PoolableConnection + Send + 'static,
    AsyncDieselConnectionManager<C>: Manager<Type = C>,
{
    type Type = C;
    type Error = <AsyncDieselConnectionManager<C> as Manager>::Error;

    async fn create(&self) -> Result<C, Self::Error> {
        self.manager.create().await
    }

    async fn recycle(&self, conn: &mut C, metrics: &Metrics) -> RecycleResult<Self::Error> {
        // What diesel-async's recycling checks before its query: a connection left in a
        // transaction, or one a failed statement found broken, is never handed out.
        if std::thread::panicking() || conn.is_broken() {
            return Err(RecycleError::message("broken connection"));
        }
        if metrics.last_used() < self.alive_bypass {
            return Ok(());
        }
        self.manager.recycle(conn, metrics).await
    }
}
