//! The operations endpoint, on a port of its own (`ops_listen`) so that scrapers and probes
//! never share the API's port, auth or limits: `GET /metrics` (Prometheus text), `GET /healthz`
//! (liveness: the process answers) and `GET /readyz` (readiness: the database answers and every
//! migration this binary carries is applied; 503 with the reason otherwise).
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::ledger::Ledger;
use crate::telemetry::metrics::{
    self as names, CHARGE_STREAM_DELIVERED, CHARGE_STREAM_LAG, CHARGE_STREAMS_OPEN,
    CLOSE_RUN_CUSTOMERS_REMAINING, CLOSE_RUNS_UNFINISHED, DB_POOL_CONNECTIONS, LEDGER_HEAD,
    READ_REPLICA_IN_USE, READ_REPLICA_LAG, READ_REPLICA_READS, READY, SERVICE_ACTION_OLDEST_AGE,
    SERVICE_ACTIONS_OPEN,
};

pub fn router(ledger: Arc<Ledger>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ledger)
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ledger: Arc<Ledger>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(ledger))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(ledger): State<Arc<Ledger>>) -> impl IntoResponse {
    match ledger.store().ready().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

async fn metrics(State(ledger): State<Arc<Ledger>>) -> impl IntoResponse {
    let Some(handle) = names::handle() else {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "another metrics recorder is installed in this process\n".to_string(),
        );
    };
    sample(&ledger).await;
    (StatusCode::OK, handle.render())
}

/// Sets the gauges that are read rather than counted: the database's view (ledger heads,
/// readiness, work queues), the pools and the open streams.
async fn sample(ledger: &Ledger) {
    sample_queues(ledger).await;
    let store = ledger.store();
    let ready = store.ready().await.is_ok();
    metrics::gauge!(READY).set(if ready { 1.0 } else { 0.0 });
    if let Ok(heads) = store.ledger_heads().await {
        for (tenant, head) in heads {
            metrics::gauge!(LEDGER_HEAD, "tenant" => tenant).set(head as f64);
        }
    }
    for pool in store.pool_usage() {
        let in_use = pool.size.saturating_sub(pool.idle);
        for (state, value) in [
            ("in_use", in_use),
            ("idle", pool.idle),
            ("waiting", pool.waiting),
        ] {
            metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => pool.pool, "state" => state)
                .set(value as f64);
        }
    }
    sample_read_replica(store);
    let feed = ledger.feed();
    let stats = feed.stats();
    use std::sync::atomic::Ordering::Relaxed;
    metrics::gauge!(CHARGE_STREAMS_OPEN).set(stats.streams.load(Relaxed) as f64);
    metrics::counter!(CHARGE_STREAM_DELIVERED).absolute(stats.delivered.load(Relaxed));
    for (tenant, lag) in feed.stream_lags() {
        metrics::gauge!(CHARGE_STREAM_LAG, "tenant" => tenant).set(lag as f64);
    }
}

/// The read replica's state; without one, not in use and no lag (so the series exist for
/// dashboards and alerts whatever the configuration).
fn sample_read_replica(store: &crate::store::Store) {
    let status = store.read_replica_status();
    let (in_use, lag, on_replica, on_primary) = match status {
        Some(s) => (
            s.in_use,
            s.lag.as_secs_f64(),
            s.reads_on_replica,
            s.reads_on_primary,
        ),
        None => (false, 0.0, 0, 0),
    };
    metrics::gauge!(READ_REPLICA_IN_USE).set(if in_use { 1.0 } else { 0.0 });
    metrics::gauge!(READ_REPLICA_LAG).set(lag);
    metrics::counter!(READ_REPLICA_READS, "served_by" => "replica").absolute(on_replica);
    metrics::counter!(READ_REPLICA_READS, "served_by" => "primary").absolute(on_primary);
}

/// The work queues as the database holds them, so every replica reports the same. A tenant
/// whose actions all ended since the last scrape is set to 0, not left at its old value.
async fn sample_queues(ledger: &Ledger) {
    let store = ledger.store();
    if let Ok(queues) = store.service_action_queues().await {
        let now = chrono::Utc::now();
        let mut seen = SEEN_ACTION_TENANTS
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for tenant in seen.iter() {
            if !queues.iter().any(|q| &q.tenant_id == tenant) {
                for status in ["pending", "running"] {
                    metrics::gauge!(SERVICE_ACTIONS_OPEN, "tenant" => tenant.clone(), "status" => status).set(0.0);
                }
                metrics::gauge!(SERVICE_ACTION_OLDEST_AGE, "tenant" => tenant.clone()).set(0.0);
            }
        }
        seen.clear();
        for queue in queues {
            let tenant = queue.tenant_id;
            for (status, count) in [("pending", queue.pending), ("running", queue.running)] {
                metrics::gauge!(SERVICE_ACTIONS_OPEN, "tenant" => tenant.clone(), "status" => status)
                    .set(count as f64);
            }
            let age = queue.oldest_open_since.map_or(0.0, |since| {
                (now - since).num_milliseconds().max(0) as f64 / 1000.0
            });
            metrics::gauge!(SERVICE_ACTION_OLDEST_AGE, "tenant" => tenant.clone()).set(age);
            seen.insert(tenant);
        }
    }
    // Close runs are few (a month close per tenant), so one total: an unfinished run that
    // stays is an interrupted one waiting for its request id to be resumed.
    if let Ok(queues) = store.close_run_queues().await {
        let runs: i64 = queues.iter().map(|q| q.runs).sum();
        let remaining: i64 = queues.iter().map(|q| q.customers_remaining).sum();
        metrics::gauge!(CLOSE_RUNS_UNFINISHED).set(runs as f64);
        metrics::gauge!(CLOSE_RUN_CUSTOMERS_REMAINING).set(remaining as f64);
    }
}

/// Tenants with open actions at the last scrape (to zero their gauges when they empty).
static SEEN_ACTION_TENANTS: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());
