//! The Diesel pools (`store::pool`) hand a connection checked out within the alive-bypass
//! window out again without the check query (a round trip per transaction on PostgreSQL),
//! check one idle for longer, and never hand out one left in a transaction: on both backends'
//! real drivers.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool::managed::Manager;
use diesel::connection::InstrumentationEvent;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncConnection, AsyncPgConnection, TransactionManager};
use msp_gateway::store::SqliteConn;
use msp_gateway::store::pool::{Connections, Object, Pool};

use crate::both_backends;
use crate::harness::{Backend, TestDatabase};

/// Counts the statements `conn` starts from now on.
fn count_queries<C: AsyncConnection>(conn: &mut C) -> Arc<AtomicUsize> {
    crate::prepared_statements::count_events(conn, |event| {
        matches!(event, InstrumentationEvent::StartQuery { .. })
    })
}

/// Statements a second check-out of the pool's one connection ran, with the window given.
async fn second_check_out_queries<C>(url: &str, alive_bypass: Duration) -> usize
where
    C: AsyncConnection + 'static,
    Connections<C>: Manager<Type = C>,
    <Connections<C> as Manager>::Error: std::fmt::Debug,
{
    let pool: Pool<C> = one_connection(url, alive_bypass);
    let started = count_queries(&mut *pool.get().await.unwrap());
    let again: Object<C> = pool.get().await.unwrap();
    assert_eq!(
        Object::metrics(&again).recycle_count,
        1,
        "the same connection"
    );
    started.load(Ordering::SeqCst)
}

fn one_connection<C>(url: &str, alive_bypass: Duration) -> Pool<C>
where
    C: AsyncConnection + 'static,
    Connections<C>: Manager<Type = C>,
{
    let manager = AsyncDieselConnectionManager::<C>::new(url);
    Pool::builder(Connections::with_alive_bypass(manager, alive_bypass))
        .max_size(1)
        .build()
        .unwrap()
}

/// A connection returned inside a transaction is dropped, not handed out, even within the
/// window; the next check-out gets a new one.
async fn left_in_transaction_is_replaced<C>(url: &str)
where
    C: AsyncConnection + 'static,
    Connections<C>: Manager<Type = C>,
    <Connections<C> as Manager>::Error: std::fmt::Debug,
{
    let pool: Pool<C> = one_connection(url, Duration::from_secs(3600));
    {
        let mut conn = pool.get().await.unwrap();
        C::TransactionManager::begin_transaction(&mut *conn)
            .await
            .unwrap();
    }
    let next = pool.get().await.unwrap();
    assert_eq!(
        (Object::metrics(&next).recycle_count, pool.status().size),
        (0, 1),
        "a new connection in place of the one left in a transaction"
    );
}

async fn checks_only_connections_idle_beyond_the_window(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let (within, beyond) = match backend {
        Backend::Postgres => {
            let url = database.url.as_str();
            left_in_transaction_is_replaced::<AsyncPgConnection>(url).await;
            (
                second_check_out_queries::<AsyncPgConnection>(url, Duration::from_secs(3600)).await,
                second_check_out_queries::<AsyncPgConnection>(url, Duration::ZERO).await,
            )
        }
        Backend::Sqlite => {
            let path = database.url.strip_prefix("sqlite://").unwrap();
            left_in_transaction_is_replaced::<SqliteConn>(path).await;
            (
                second_check_out_queries::<SqliteConn>(path, Duration::from_secs(3600)).await,
                second_check_out_queries::<SqliteConn>(path, Duration::ZERO).await,
            )
        }
    };
    assert_eq!(
        (within, beyond),
        (0, 1),
        "checked out within the window: no check query; beyond it: one"
    );
}

both_backends!(checks_only_connections_idle_beyond_the_window);
