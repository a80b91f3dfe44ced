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
    DB_POOL_CONNECTIONS, LEDGER_HEAD, READY,
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
/// readiness), the pools and the open streams.
async fn sample(ledger: &Ledger) {
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
    let feed = ledger.feed();
    let stats = feed.stats();
    use std::sync::atomic::Ordering::Relaxed;
    metrics::gauge!(CHARGE_STREAMS_OPEN).set(stats.streams.load(Relaxed) as f64);
    metrics::counter!(CHARGE_STREAM_DELIVERED).absolute(stats.delivered.load(Relaxed));
    for (tenant, lag) in feed.stream_lags() {
        metrics::gauge!(CHARGE_STREAM_LAG, "tenant" => tenant).set(lag as f64);
    }
}
