//! Raw SQL marked `keep_prepared` is prepared once per connection and reused, on both
//! backends' real drivers; unmarked raw SQL is prepared on every call (the cost it removes
//! from the month close: a round trip and a parse per statement on PostgreSQL).
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::connection::InstrumentationEvent;
use diesel::sql_types::Integer;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use msp_gateway::store::prepared::KeepPrepared;

use crate::both_backends;
use crate::harness::{Backend, TestDatabase};

#[derive(diesel::QueryableByName)]
struct Answer {
    #[diesel(sql_type = Integer)]
    n: i32,
}

/// Counts the instrumentation events of `conn` that `counted` picks, from now on.
pub fn count_events<C: AsyncConnection>(
    conn: &mut C,
    counted: fn(&InstrumentationEvent<'_>) -> bool,
) -> Arc<AtomicUsize> {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if counted(&event) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    seen
}

/// Counts the statements `conn` adds to its statement cache from now on.
fn count_cached<C: AsyncConnection>(conn: &mut C) -> Arc<AtomicUsize> {
    count_events(conn, |event| {
        matches!(event, InstrumentationEvent::CacheQuery { .. })
    })
}

/// Runs `$sql` with 1, 2 and 3 on `$conn` (kept prepared when `$keep`), checks the answers,
/// and evaluates to how many statements the connection cached meanwhile.
macro_rules! cached_by_three_calls {
    ($conn:expr, $sql:expr, $keep:expr) => {{
        let cached = count_cached($conn);
        for n in 1..=3 {
            let query = diesel::sql_query($sql).bind::<Integer, _>(n);
            let answer: Answer = if $keep {
                query.keep_prepared().get_result($conn).await.unwrap()
            } else {
                query.get_result($conn).await.unwrap()
            };
            assert_eq!(answer.n, n + 1, "{} with {n}", $sql);
        }
        AtomicUsize::load(&cached, Ordering::SeqCst)
    }};
}

async fn raw_sql_kept_prepared_is_prepared_once(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let (kept, unkept) = (
        "SELECT CAST($1 AS INTEGER) + 1 AS n",
        "SELECT CAST($1 AS INTEGER) + 1 AS n /* not kept */",
    );
    match backend {
        Backend::Postgres => {
            let mut conn = AsyncPgConnection::establish(&database.url).await.unwrap();
            assert_eq!(cached_by_three_calls!(&mut conn, kept, true), 1);
            assert_eq!(cached_by_three_calls!(&mut conn, unkept, false), 0);
            // The server's view of this session: the kept statement stays prepared.
            #[derive(diesel::QueryableByName)]
            struct Held {
                #[diesel(sql_type = diesel::sql_types::Text)]
                statement: String,
            }
            let held: Vec<Held> = diesel::sql_query(
                "SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'SELECT CAST(%'",
            )
            .load(&mut conn)
            .await
            .unwrap();
            let held: Vec<&str> = held.iter().map(|h| h.statement.as_str()).collect();
            assert_eq!(held, [kept]);
        }
        Backend::Sqlite => {
            let path = database.url.strip_prefix("sqlite://").unwrap();
            let mut conn = SyncConnectionWrapper::<diesel::SqliteConnection>::establish(path)
                .await
                .unwrap();
            let (kept, unkept) = (kept.replace("$1", "?"), unkept.replace("$1", "?"));
            assert_eq!(cached_by_three_calls!(&mut conn, &kept, true), 1);
            assert_eq!(cached_by_three_calls!(&mut conn, &unkept, false), 0);
        }
    }
}

both_backends!(raw_sql_kept_prepared_is_prepared_once);
