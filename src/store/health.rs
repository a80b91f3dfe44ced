//! What operators watch of the database: whether it answers, whether this binary's migrations
//! are all applied, how busy the pools are, and each tenant's ledger head.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::ledger_sequences;
use super::{Backend, Store, dispatch, for_each_backend};
use crate::domain::error::{Error, Result};

/// One connection pool's occupancy, as its last checkout left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// `"postgres"`, `"postgres_read_replica"`, `"sqlite_readers"` or `"sqlite_writer"`.
    pub pool: &'static str,
    pub max_size: usize,
    /// Connections open (in use or idle).
    pub size: usize,
    /// Connections open and idle.
    pub idle: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

#[derive(QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

for_each_backend! {
    /// The versions recorded as applied (diesel's own bookkeeping table).
    pub async fn applied_versions(conn: &mut Conn) -> Result<Vec<String>> {
        let rows: Vec<AppliedVersion> =
            diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
                .load(conn)
                .await?;
        Ok(rows.into_iter().map(|r| r.version).collect())
    }

    /// Every tenant's last ledger sequence.
    pub async fn ledger_heads(conn: &mut Conn) -> Result<Vec<(String, i64)>> {
        Ok(ledger_sequences::table
            .select((ledger_sequences::tenant_id, ledger_sequences::last_sequence))
            .load(conn)
            .await?)
    }
}

impl Store {
    /// Answers when the database does and every migration this binary carries is applied; a
    /// replica started before its migrations ran (or against a database another version
    /// reverted) is not ready.
    pub async fn ready(&self) -> Result<()> {
        let applied = dispatch!(self, fresh, self::applied_versions())?;
        let pending = super::migrate::pending(self.kind(), &applied);
        if pending.is_empty() {
            Ok(())
        } else {
            Err(Error::Unavailable(
                "database",
                format!(
                    "{} migration(s) not applied: {}",
                    pending.len(),
                    pending.join(", ")
                ),
            ))
        }
    }

    pub async fn ledger_heads(&self) -> Result<Vec<(String, i64)>> {
        dispatch!(self, read, self::ledger_heads())
    }

    /// Occupancy of every pool of this store.
    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        fn usage<M: deadpool::managed::Manager>(
            pool: &'static str,
            p: &deadpool::managed::Pool<M>,
        ) -> PoolUsage {
            let status = p.status();
            PoolUsage {
                pool,
                max_size: status.max_size,
                size: status.size,
                idle: status.available,
                waiting: status.waiting,
            }
        }
        match &self.backend {
            Backend::Postgres(pool) => {
                let mut pools = vec![usage("postgres", pool)];
                if let Some(replica) = &self.replica {
                    pools.push(usage("postgres_read_replica", replica.pool()));
                }
                pools
            }
            Backend::Sqlite { readers, writer } => vec![
                usage("sqlite_readers", readers),
                usage("sqlite_writer", writer),
            ],
        }
    }
}
