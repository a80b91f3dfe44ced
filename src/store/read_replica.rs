//! The optional read replica: a streaming standby of the PostgreSQL primary that serves the
//! reads of calls which tolerate bounded staleness. Which calls those are is the API's to say
//! (`api::read_routing`): it runs them inside [`allow`]; [`super::dispatch!`]'s `read` then
//! takes a standby connection while the standby is caught up (see [`ReadReplica::connection`]),
//! and `fresh` and `write` always take the primary's.
//!
//! The staleness bound. A monitor samples the primary's WAL write position every
//! `max_lag / 4`, noting the moment it sampled it, and asks the standby how far it has replayed.
//! Once the standby has replayed past a sample taken at `t`, it holds every transaction
//! committed before `t`. A read may go to the standby only while `now - t <= max_lag`, so a read
//! the standby serves sees every write acknowledged more than `max_lag` before it. `t` ages
//! between checks, so a standby that stops replaying or answering is left within the bound
//! without waiting for a check to notice. Positions rather than
//! `now() - pg_last_xact_replay_timestamp()`: that grows while the primary is idle, and would
//! send reads to the primary exactly when the standby is perfectly current.
//!
//! A standby that is unreachable, refuses a connection, or is no longer in recovery (promoted,
//! so no longer following this primary) is not used until a check finds it caught up again;
//! a read it fails (the connection broke) or answers NOT_FOUND (the row may be newer than its
//! replay) is run again on the primary.
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;

use super::pool::{Object, Pool};
use super::{PoolOptions, build_pool, checkout};
use crate::domain::error::{Error, Result};

/// What the read replica is: the standby's URL and how stale its reads may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaOptions {
    /// `postgres://…` of a streaming standby of the primary (one server: the lag is checked on
    /// the connection the monitor holds, and a URL naming several could give a read another).
    pub url: String,
    pub max_lag: Duration,
}

tokio::task_local! {
    /// Set while a call whose reads may be served by the replica runs (see [`allow`]).
    static REPLICA_ALLOWED: ();
}

/// Runs `call` with its `read`s allowed on the read replica. Tasks it spawns are not (they
/// default to the primary), nor is anything outside it: streams' bodies, background work.
pub async fn allow<F: Future>(call: F) -> F::Output {
    REPLICA_ALLOWED.scope((), call).await
}

/// Whether the running call may read from the replica.
fn allowed() -> bool {
    REPLICA_ALLOWED.try_with(|_| ()).is_ok()
}

/// How often the lag is checked: four times per bound, so a healthy standby is re-verified well
/// before its last verification ages out; at most once a second (a long bound needs no more).
fn check_interval(max_lag: Duration) -> Duration {
    (max_lag / 4).clamp(Duration::from_millis(25), Duration::from_secs(1))
}

/// Longest one check may take before the standby counts as not answering.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a read waits to open a standby connection before it goes to the primary instead.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Primary positions kept while the standby has not replayed past them (one per check: at most
/// this many checks' worth; dropping the oldest only makes the measured lag larger).
const MAX_SAMPLES: usize = 1024;

/// The replica's state as operators and tests see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaStatus {
    /// Reads allowed on the replica go to it now.
    pub in_use: bool,
    /// How far behind the standby is known to be at most: the time since the moment up to
    /// which it was last found to hold every commit (since start when it never was).
    pub lag: Duration,
    /// Reads allowed on the replica that it served, and that went to the primary because it
    /// was behind or failing (retries on the primary not counted), since start.
    pub reads_on_replica: u64,
    pub reads_on_primary: u64,
}

pub(crate) struct ReadReplica {
    pool: Pool<AsyncPgConnection>,
    state: std::sync::Arc<State>,
    monitor: tokio::task::JoinHandle<()>,
}

struct State {
    started: Instant,
    max_lag: Duration,
    /// Nanoseconds after `started` up to which the standby is known to hold every commit the
    /// primary had (0: not yet known).
    caught_up: AtomicU64,
    /// Set when a check or a read found the standby failing; cleared by the next good check.
    failing: AtomicBool,
    /// Whether the replica was in use at the last check, to log only the changes.
    was_in_use: Mutex<bool>,
    on_replica: AtomicU64,
    on_primary: AtomicU64,
}

impl State {
    fn new(started: Instant, max_lag: Duration) -> Self {
        State {
            started,
            max_lag,
            caught_up: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            was_in_use: Mutex::new(false),
            on_replica: AtomicU64::new(0),
            on_primary: AtomicU64::new(0),
        }
    }

    fn caught_up_at(&self) -> Option<Instant> {
        match self.caught_up.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.started + Duration::from_nanos(nanos)),
        }
    }

    fn status(&self) -> ReplicaStatus {
        let since = self.caught_up_at().unwrap_or(self.started);
        let lag = since.elapsed();
        ReplicaStatus {
            in_use: !self.failing.load(Ordering::Acquire)
                && self.caught_up_at().is_some()
                && lag <= self.max_lag,
            lag,
            reads_on_replica: self.on_replica.load(Ordering::Relaxed),
            reads_on_primary: self.on_primary.load(Ordering::Relaxed),
        }
    }

    fn caught_up_to(&self, at: Instant) {
        // At least 1: 0 means "not known".
        let nanos = (at.saturating_duration_since(self.started).as_nanos() as u64).max(1);
        self.caught_up.fetch_max(nanos, Ordering::AcqRel);
        self.failing.store(false, Ordering::Release);
    }

    fn fail(&self, reason: &str) {
        if !self.failing.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                reason,
                "read replica failing; its reads go to the primary until it is caught up again"
            );
        }
    }

    /// Logs a change of whether the replica is in use.
    fn report(&self) {
        let status = self.status();
        let mut was = self.was_in_use.lock().unwrap_or_else(|e| e.into_inner());
        if status.in_use != *was {
            if status.in_use {
                tracing::info!(
                    lag_ms = status.lag.as_millis() as u64,
                    "read replica caught up; serving list, help-desk and portal reads"
                );
            } else if !self.failing.load(Ordering::Acquire) {
                tracing::warn!(
                    lag_ms = status.lag.as_millis() as u64,
                    max_lag_ms = self.max_lag.as_millis() as u64,
                    "read replica behind its staleness bound; its reads go to the primary"
                );
            }
            *was = status.in_use;
        }
    }
}

impl ReadReplica {
    /// Opens the standby's pool (lazily) and starts the monitor, which checks it against
    /// `primary`. Must be called inside a Tokio runtime.
    pub(crate) fn start(
        primary: Pool<AsyncPgConnection>,
        options: &ReplicaOptions,
        pool: &PoolOptions,
    ) -> Result<Self> {
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(&options.url);
        let replica_pool = build_pool(
            manager,
            pool.max_connections,
            &PoolOptions {
                max_connections: pool.max_connections,
                acquire_timeout: pool.acquire_timeout.min(CONNECT_TIMEOUT),
            },
        )?;
        let state = std::sync::Arc::new(State::new(Instant::now(), options.max_lag));
        let monitor = tokio::spawn(monitor(
            primary,
            replica_pool.clone(),
            state.clone(),
            check_interval(options.max_lag),
        ));
        Ok(ReadReplica {
            pool: replica_pool,
            state,
            monitor,
        })
    }

    /// A standby connection for a read of the running call, when the call allows it and the
    /// standby is within the bound; None sends the read to the primary.
    pub(crate) async fn connection(&self) -> Option<Object<AsyncPgConnection>> {
        if !allowed() {
            return None;
        }
        if !self.state.status().in_use {
            self.state.on_primary.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match checkout(&self.pool).await {
            Ok(conn) => {
                self.state.on_replica.fetch_add(1, Ordering::Relaxed);
                Some(conn)
            }
            Err(error) => {
                self.state.fail(&error.to_string());
                self.state.on_primary.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Whether a read the standby answered with `result` is to be run again on the primary: a
    /// broken connection (the standby is then not used until checked), or NOT_FOUND, which on a
    /// standby may only mean "created after its replay" (a get after a create).
    pub(crate) fn retry_on_primary<T>(&self, result: &Result<T>) -> bool {
        match result {
            Err(Error::Unavailable(_, reason)) => {
                self.state.fail(reason);
                true
            }
            Err(Error::NotFound { .. }) => true,
            _ => false,
        }
    }

    pub(crate) fn status(&self) -> ReplicaStatus {
        self.state.status()
    }

    pub(crate) fn pool(&self) -> &Pool<AsyncPgConnection> {
        &self.pool
    }
}

impl Drop for ReadReplica {
    fn drop(&mut self) {
        self.monitor.abort();
    }
}

async fn monitor(
    primary: Pool<AsyncPgConnection>,
    replica: Pool<AsyncPgConnection>,
    state: std::sync::Arc<State>,
    every: Duration,
) {
    let mut samples = VecDeque::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::time::timeout(CHECK_TIMEOUT, check(&primary, &replica, &mut samples)).await {
            Ok(Ok(Some(at))) => state.caught_up_to(at),
            // Behind every position sampled: its lag keeps growing from the last one it passed.
            Ok(Ok(None)) => {}
            Ok(Err(reason)) => state.fail(&reason),
            Err(_) => state.fail("the lag check timed out"),
        }
        state.report();
    }
}

#[derive(QueryableByName)]
struct PrimaryPosition {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    lsn: i64,
}

#[derive(QueryableByName)]
struct StandbyPosition {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    in_recovery: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    lsn: Option<i64>,
}

/// One check: samples the primary's position, then finds the newest sample the standby has
/// replayed past and returns when it was taken (None: it has passed none of them yet).
async fn check(
    primary: &Pool<AsyncPgConnection>,
    replica: &Pool<AsyncPgConnection>,
    samples: &mut VecDeque<(Instant, i64)>,
) -> std::result::Result<Option<Instant>, String> {
    // Here only: its `load` would shadow the atomics'.
    use diesel_async::RunQueryDsl;
    // Taken before asking: every commit acknowledged before this instant ends at or before the
    // position the primary then reports.
    let sampled_at = Instant::now();
    let mut conn = checkout(primary)
        .await
        .map_err(|e| format!("primary: {e}"))?;
    let position: PrimaryPosition =
        diesel::sql_query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS lsn")
            .get_result(&mut conn)
            .await
            .map_err(|e| format!("primary: {e}"))?;
    drop(conn);
    samples.push_back((sampled_at, position.lsn));
    while samples.len() > MAX_SAMPLES {
        samples.pop_front();
    }
    let mut conn = checkout(replica)
        .await
        .map_err(|e| format!("standby: {e}"))?;
    let standby: StandbyPosition = diesel::sql_query(
        "SELECT pg_is_in_recovery() AS in_recovery, \
         pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint AS lsn",
    )
    .get_result(&mut conn)
    .await
    .map_err(|e| format!("standby: {e}"))?;
    if !standby.in_recovery {
        return Err(
            "database_read_url is not a standby (promoted?): it no longer follows the primary"
                .into(),
        );
    }
    let replayed = standby
        .lsn
        .ok_or_else(|| "the standby has replayed nothing yet".to_string())?;
    Ok(newest_passed(samples, replayed))
}

/// The time of the newest sample at or below `replayed`, dropping the samples before it (the
/// standby's replay only moves forward).
fn newest_passed(samples: &mut VecDeque<(Instant, i64)>, replayed: i64) -> Option<Instant> {
    let newest = samples.iter().rposition(|(_, lsn)| *lsn <= replayed)?;
    samples.drain(..newest);
    samples.front().map(|(at, _)| *at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_measured_from_the_newest_position_replayed() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut samples: VecDeque<_> = [(at(0), 100), (at(250), 180), (at(500), 300)].into();
        // Replayed nothing new: none passed, all kept.
        assert_eq!(newest_passed(&mut samples, 99), None);
        assert_eq!(samples.len(), 3);
        // Between two samples: it holds everything committed before the earlier one.
        assert_eq!(newest_passed(&mut samples, 200), Some(at(250)));
        assert_eq!(samples.len(), 2);
        // An idle primary: the standby is exactly at the newest position.
        assert_eq!(newest_passed(&mut samples, 300), Some(at(500)));
        assert_eq!(samples.len(), 1);
    }

    #[test]
    fn a_standby_is_used_only_while_it_is_known_to_be_within_the_bound() {
        let state = State::new(
            Instant::now() - Duration::from_secs(10),
            Duration::from_secs(2),
        );
        // Never checked: not used, its lag counts from the start.
        assert!(!state.status().in_use);
        assert!(state.status().lag >= Duration::from_secs(10));
        state.caught_up_to(Instant::now() - Duration::from_millis(500));
        assert!(state.status().in_use);
        // An older verification never moves the moment back.
        state.caught_up_to(Instant::now() - Duration::from_secs(5));
        assert!(state.status().in_use);
        state.fail("connection refused");
        assert!(!state.status().in_use);
        state.caught_up_to(Instant::now());
        assert!(state.status().in_use);
        // Aged past the bound without a new check: back to the primary.
        let stale = State::new(
            Instant::now() - Duration::from_secs(10),
            Duration::from_secs(2),
        );
        stale.caught_up_to(Instant::now() - Duration::from_secs(3));
        assert!(!stale.status().in_use);
        assert!(stale.status().lag >= Duration::from_secs(3));
    }

    #[test]
    fn the_check_runs_four_times_per_bound_within_limits() {
        assert_eq!(
            check_interval(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            check_interval(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
        assert_eq!(
            check_interval(Duration::from_millis(100)),
            Duration::from_millis(25)
        );
    }
}
