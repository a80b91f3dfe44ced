//! The gRPC server: our services behind the auth layer, plus health and reflection (v1 and
//! v1alpha), optional TLS, and graceful shutdown.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::api::auth::AuthLayer;
use crate::api::metrics_layer::MetricsLayer;
use crate::api::rate_limits::{RateLimit, RateLimits};
use crate::api::read_routing::ReadRoutingLayer;
use crate::api::services;
use crate::api::{Gateway, PortalSite};
use crate::config::Config;
use crate::ledger::Ledger;

/// The TLS settings of `config`, if TLS is configured.
pub fn tls_config(config: &Config) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        _ => anyhow::bail!("tls_cert and tls_key must be set together"),
    };
    let cert = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    // aws-lc-rs (through the AWS SDK) and ring (through tonic) are both linked, so rustls cannot
    // pick a process-wide provider by itself and would panic on the first handshake: choose ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &config.tls_client_ca {
        let ca = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(Some(tls))
}

/// What the server allows a connection and a call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request message; larger answers RESOURCE_EXHAUSTED.
    pub max_request_bytes: usize,
    /// HTTP/2 ping interval on idle connections (a dead peer is dropped after one unanswered
    /// ping plus [`KEEPALIVE_TIMEOUT`]).
    pub http2_keepalive: Option<Duration>,
    /// Longest a unary or client-streaming call runs before it is cancelled.
    pub request_timeout: Option<Duration>,
    /// Server streams one tenant may hold open (0: no cap).
    pub max_streams_per_tenant: usize,
    /// Each API key's call budget (`None`: unlimited).
    pub rate_limit: Option<RateLimit>,
}

/// How long a keepalive ping may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for Limits {
    fn default() -> Self {
        Limits::of(&Config::default())
    }
}

impl Limits {
    pub fn of(config: &Config) -> Self {
        let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Limits {
            max_request_bytes: config.max_request_bytes,
            http2_keepalive: seconds(config.http2_keepalive_secs),
            request_timeout: seconds(config.request_timeout_secs),
            max_streams_per_tenant: config.max_streams_per_tenant,
            rate_limit: RateLimit::new(config.rate_limit_per_key_per_sec, config.rate_limit_burst),
        }
    }
}

/// Serves the gateway on `listener` until `shutdown` resolves, then gives in-flight calls
/// `grace` to finish, with the default [`Limits`].
pub async fn serve(
    listener: TcpListener,
    ledger: Arc<Ledger>,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    serve_with_limits(
        listener,
        ledger,
        tls,
        shutdown,
        grace,
        Limits::default(),
        None,
    )
    .await
}

/// [`serve`] with `limits` and the portal at `portal_url` (see [`portal_site`]).
pub async fn serve_with_limits(
    listener: TcpListener,
    ledger: Arc<Ledger>,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    limits: Limits,
    portal_url: Option<String>,
) -> anyhow::Result<()> {
    // Installed before the first call is counted (a no-op after the first server).
    crate::telemetry::metrics::handle();
    let site = portal_site(&listener, tls.is_some(), portal_url)?;
    let gw = Gateway::new(ledger)
        .with_portal(site)
        .with_stream_cap(limits.max_streams_per_tenant);
    let (routes, health) = services::routes(&gw, limits.max_request_bytes).await?;
    let health_watch = tokio::spawn(services::watch_health(
        health,
        gw.store.clone(),
        services::HEALTH_CHECK_INTERVAL,
    ));
    let mut builder = Server::builder()
        .http2_keepalive_interval(limits.http2_keepalive)
        .http2_keepalive_timeout(limits.http2_keepalive.map(|_| KEEPALIVE_TIMEOUT));
    if let Some(timeout) = limits.request_timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    // HTTP/1.1 for the portal's pages in browsers; gRPC stays on HTTP/2.
    let router = builder
        .accept_http1(true)
        .trace_fn(|request| tracing::info_span!("grpc", path = %request.uri().path(), tenant = tracing::field::Empty))
        .layer(MetricsLayer)
        .layer(
            AuthLayer::new(gw.store.clone())
                .with_rate_limits(limits.rate_limit.map(RateLimits::new)),
        )
        // Inside the auth layer: a key is looked up on the primary whatever the call.
        .layer(ReadRoutingLayer)
        .add_routes(routes);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signalled = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let mut stop_wait = stop_rx.clone();
    // Without TCP_NODELAY a small response waits for the peer's delayed ACK (~40 ms a call).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = router.serve_with_incoming_shutdown(incoming, signalled);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        _ = async {
            let _ = stop_wait.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_secs = grace.as_secs(), "calls still open after the grace period; closing them");
        }
    }
    health_watch.abort();
    Ok(())
}

/// The portal at `portal_url` (the configuration's `portal_url`, checked by
/// [`Config::portal_base_url`]) when a proxy or a name fronts the gateway, else at the address
/// it listens on (an unspecified address, 0.0.0.0, is reached through the loopback).
pub fn portal_site(
    listener: &TcpListener,
    tls: bool,
    portal_url: Option<String>,
) -> anyhow::Result<PortalSite> {
    let scheme = if tls { "https" } else { "http" };
    let base_url = match portal_url {
        Some(url) if !url.is_empty() => url.trim_end_matches('/').to_string(),
        _ => {
            let mut address = listener.local_addr()?;
            if address.ip().is_unspecified() {
                address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("{scheme}://{address}")
        }
    };
    Ok(PortalSite {
        secure: tls || base_url.starts_with("https://"),
        base_url,
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received; shutting down"),
        _ = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
