//! Configuration: defaults, then a TOML file, then `MSPGW_*` environment variables.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The file read when `--config` and `MSPGW_CONFIG` are absent, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "msp-gateway.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Address of the operations endpoint (`/metrics`, `/healthz`, `/readyz`), kept off the API
    /// port so scrapers and probes need no key and never reach the API (port 0: any free port).
    pub ops_listen: SocketAddr,
    /// `postgres://…` for PostgreSQL; `sqlite://path` or a path for embedded SQLite.
    pub database_url: String,
    /// `postgres://…` of a streaming standby of `database_url`'s primary that serves the reads
    /// of lists, help-desk calls and portal pages while it is at most
    /// `database_read_max_lag_ms` behind (see the README's read replica section); unset: every
    /// read on the primary. PostgreSQL only.
    pub database_read_url: Option<String>,
    /// Staleness bound of the read replica: a read goes to the standby only while the standby
    /// is known to hold every commit older than this; otherwise it goes to the primary.
    pub database_read_max_lag_ms: u64,
    /// Connection pool size (readers, on SQLite; writes use one connection there).
    pub database_max_connections: usize,
    /// Seconds to wait for a pooled connection before answering UNAVAILABLE.
    pub database_acquire_timeout_secs: u64,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// PEM certificate chain; TLS is on when this and `tls_key` are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    pub tls_client_ca: Option<PathBuf>,
    /// Seconds in-flight calls get to finish after SIGINT/SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Run the vendor pollers in this process (turn off for API-only replicas).
    pub pollers: bool,
    /// Milliseconds between heartbeats on an idle charge or credit stream.
    pub stream_heartbeat_ms: u64,
    /// PEM bundle of root CAs the vendor connections trust besides the system's (a
    /// TLS-inspecting proxy's CA, a private cloud's); Partner Center connections only (see the
    /// README for AWS and for `SSL_CERT_FILE` / `HTTPS_PROXY`).
    pub vendor_ca_file: Option<PathBuf>,
    /// Largest request message, in bytes; a larger one answers RESOURCE_EXHAUSTED.
    pub max_request_bytes: usize,
    /// Seconds between passes of the automatic closer, which closes billing periods whose grace
    /// has passed (runs where the pollers run).
    pub close_check_secs: u64,
    /// Seconds a purchase may stay sent to Partner Center and unrecorded before the pending-order
    /// sweeper finishes it (runs where the pollers run).
    pub pending_order_age_secs: u64,
    /// Days a request id and its first answer are kept; a retry after that runs as a new call
    /// (at least 1; where `pollers` is on, forgotten hourly).
    pub idempotency_retention_days: u32,
    /// Seconds a replica's hold on a service action lasts without renewal (renewed every third
    /// of it): how long an action whose replica died waits before another replica (or this one,
    /// restarted) takes it over. At least 3.
    pub service_action_lease_secs: u64,
    /// Seconds between HTTP/2 pings on idle connections, so a stream consumer that died without
    /// closing its connection is noticed and its stream freed (0: off).
    pub http2_keepalive_secs: u64,
    /// Longest a unary or client-streaming call may run (server streams are not cut); a
    /// client's shorter `grpc-timeout` wins (0: no server limit).
    pub request_timeout_secs: u64,
    /// Server streams one tenant may hold open at once (0: no cap); one more answers
    /// RESOURCE_EXHAUSTED with a RetryInfo.
    pub max_streams_per_tenant: usize,
    /// Calls a second each API key may make, sustained (0: no limit); one more answers
    /// RESOURCE_EXHAUSTED with a RetryInfo saying when to retry. A stream counts once.
    pub rate_limit_per_key_per_sec: u32,
    /// Calls an API key may make at once above its sustained rate (at least 1).
    pub rate_limit_burst: u32,
    /// Where browsers reach the cost portal (`https://portal.isp.example`), used in the links
    /// `CreatePortalSession` hands out, when a proxy or a DNS name fronts the gateway; unset:
    /// the address the gateway listens on (`http://`, or `https://` with TLS).
    pub portal_url: Option<String>,
}

/// Open server streams a tenant may hold unless configured. Per-customer consumers (one stream
/// per customer) are a designed use, so the cap is high; an idle stream costs about 12 KiB
/// (BENCHMARKS.md), so this bounds one tenant's streams at about 120 MiB.
pub const DEFAULT_MAX_STREAMS_PER_TENANT: usize = 10_000;

/// Calls a second per API key unless configured: well above what a BSS job needs (the service
/// action benchmark's bulk suspend makes ~70 a second), low enough that one client's runaway
/// loop leaves most of a small gateway's capacity (a few thousand calls a second on 2 cores) to
/// the others.
pub const DEFAULT_RATE_LIMIT_PER_KEY_PER_SEC: u32 = 1_000;

/// Calls at once above the sustained rate: a client starting a batch of parallel calls.
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 2_000;

/// The read replica's staleness bound unless configured: long enough that a healthy standby
/// on a busy primary (replay typically milliseconds behind) stays in use through a checkpoint or
/// a burst of pushes, short enough that a help-desk agent or a portal page is never more than a
/// few seconds behind what the BSS wrote.
pub const DEFAULT_READ_MAX_LAG_MS: u64 = 5_000;

/// The smallest staleness bound accepted: the replica's lag is checked every quarter of the
/// bound, and checks much more often than every 25 ms would load both servers for nothing.
pub const MIN_READ_MAX_LAG_MS: u64 = 100;

/// gRPC's customary limit (and tonic's default): 4 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every key of [`Config`], as `MSPGW_<KEY>` reads them.
const CONFIG_KEYS: &[&str] = &[
    "listen",
    "ops_listen",
    "database_url",
    "database_read_url",
    "database_read_max_lag_ms",
    "database_max_connections",
    "database_acquire_timeout_secs",
    "log_format",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "shutdown_grace_secs",
    "pollers",
    "stream_heartbeat_ms",
    "vendor_ca_file",
    "max_request_bytes",
    "close_check_secs",
    "pending_order_age_secs",
    "idempotency_retention_days",
    "service_action_lease_secs",
    "http2_keepalive_secs",
    "request_timeout_secs",
    "max_streams_per_tenant",
    "rate_limit_per_key_per_sec",
    "rate_limit_burst",
    "portal_url",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            database_url: "sqlite://data/msp-gateway.db".into(),
            database_read_url: None,
            database_read_max_lag_ms: DEFAULT_READ_MAX_LAG_MS,
            database_max_connections: 16,
            database_acquire_timeout_secs: 10,
            log_format: LogFormat::Text,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            shutdown_grace_secs: 10,
            pollers: true,
            stream_heartbeat_ms: 15_000,
            vendor_ca_file: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            close_check_secs: 600,
            pending_order_age_secs: 300,
            idempotency_retention_days: 7,
            service_action_lease_secs: 30,
            http2_keepalive_secs: 30,
            request_timeout_secs: 120,
            max_streams_per_tenant: DEFAULT_MAX_STREAMS_PER_TENANT,
            rate_limit_per_key_per_sec: DEFAULT_RATE_LIMIT_PER_KEY_PER_SEC,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            portal_url: None,
        }
    }
}

impl Config {
    /// Loads the configuration. `file` is the `--config` argument; without it `MSPGW_CONFIG`,
    /// then `msp-gateway.toml` if present.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let explicit = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("MSPGW_CONFIG").map(PathBuf::from));
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match explicit {
            Some(path) => {
                if !path.exists() {
                    return Err(Box::new(figment::Error::from(format!(
                        "configuration file {} does not exist",
                        path.display()
                    ))));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file(DEFAULT_CONFIG_FILE)),
        }
        // Only the gateway's own keys: other MSPGW_* variables (the test suite's, the clients')
        // must not stop it from starting, while a typo in the file still does.
        figment
            .merge(Env::prefixed("MSPGW_").only(CONFIG_KEYS))
            .extract()
            .map_err(Box::new)
    }

    /// The PEM text of `vendor_ca_file`, checked to hold at least one certificate.
    pub fn vendor_ca_pem(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.vendor_ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("vendor_ca_file {}: {e}", path.display()))?;
        crate::vendors::check_ca_bundle(&pem)
            .map_err(|e| format!("vendor_ca_file {}: {e}", path.display()))?;
        Ok(Some(pem))
    }

    /// `portal_url` checked (an absolute http:// or https:// URL, without a query or a
    /// fragment) and without its trailing slash; None when unset or empty.
    pub fn portal_base_url(&self) -> Result<Option<String>, String> {
        let Some(url) = self.portal_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        crate::domain::portal::parse_return_url("portal_url", url)
            .map_err(|v| format!("{v} (portal_url {url:?})"))?;
        if url.contains(['?', '#']) {
            return Err(format!(
                "portal_url {url:?} must not have a query or a fragment: links are made by appending /portal/…"
            ));
        }
        Ok(Some(url.trim_end_matches('/').to_string()))
    }

    /// The read replica's settings, checked: None when `database_read_url` is unset or empty;
    /// an error when it is set but the database is SQLite (which has no standby to read from),
    /// is not a PostgreSQL URL, or the staleness bound is below [`MIN_READ_MAX_LAG_MS`].
    pub fn read_replica(
        &self,
    ) -> Result<Option<crate::store::read_replica::ReplicaOptions>, String> {
        let Some(url) = self.database_read_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        use crate::store::BackendKind;
        if BackendKind::of_url(&self.database_url) == BackendKind::Sqlite {
            return Err(
                "database_read_url is set, but database_url is SQLite: a read replica is a \
                 PostgreSQL streaming standby, and SQLite has none; unset database_read_url"
                    .into(),
            );
        }
        if BackendKind::of_url(url) != BackendKind::Postgres {
            return Err(
                "database_read_url must be a postgres:// URL of a standby of database_url".into(),
            );
        }
        if self.database_read_max_lag_ms < MIN_READ_MAX_LAG_MS {
            return Err(format!(
                "database_read_max_lag_ms is {}; at least {MIN_READ_MAX_LAG_MS}",
                self.database_read_max_lag_ms
            ));
        }
        Ok(Some(crate::store::read_replica::ReplicaOptions {
            url: url.to_string(),
            max_lag: Duration::from_millis(self.database_read_max_lag_ms),
        }))
    }

    pub fn pool_options(&self) -> crate::store::PoolOptions {
        crate::store::PoolOptions {
            max_connections: self.database_max_connections,
            acquire_timeout: Duration::from_secs(self.database_acquire_timeout_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_an_environment_key() {
        let fields = serde_json::to_value(Config::default()).unwrap();
        let mut names: Vec<&str> = fields
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        let mut keys = CONFIG_KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(names, keys);
    }

    #[test]
    fn the_portal_url_is_checked_and_loses_its_trailing_slash() {
        let with = |url: &str| Config {
            portal_url: Some(url.into()),
            ..Config::default()
        };
        assert_eq!(Config::default().portal_base_url(), Ok(None));
        assert_eq!(with("").portal_base_url(), Ok(None));
        assert_eq!(
            with("https://portal.isp.example/").portal_base_url(),
            Ok(Some("https://portal.isp.example".into()))
        );
        for bad in [
            "portal.isp.example",
            "ftp://x",
            "https://x/?a=1",
            "https://x/#f",
        ] {
            let error = with(bad).portal_base_url().unwrap_err();
            assert!(error.contains("portal_url"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_read_replica_needs_postgres_on_both_urls_and_a_sane_bound() {
        let postgres = Config {
            database_url: "postgres://db-primary/mspgw".into(),
            ..Config::default()
        };
        assert_eq!(postgres.read_replica(), Ok(None));
        let with = |read_url: &str, lag_ms: u64| Config {
            database_read_url: Some(read_url.into()),
            database_read_max_lag_ms: lag_ms,
            ..postgres.clone()
        };
        assert_eq!(with("", 5_000).read_replica(), Ok(None));
        let options = with("postgres://db-standby/mspgw", 2_500)
            .read_replica()
            .unwrap()
            .unwrap();
        assert_eq!(options.url, "postgres://db-standby/mspgw");
        assert_eq!(options.max_lag, Duration::from_millis(2_500));
        let sqlite = Config {
            database_read_url: Some("postgres://db-standby/mspgw".into()),
            ..Config::default()
        };
        let error = sqlite.read_replica().unwrap_err();
        assert!(
            error.contains("SQLite") && error.contains("database_read_url"),
            "{error}"
        );
        let error = with("sqlite://copy.db", 5_000).read_replica().unwrap_err();
        assert!(error.contains("database_read_url"), "{error}");
        let error = with("postgres://db-standby/mspgw", 10)
            .read_replica()
            .unwrap_err();
        assert!(error.contains("database_read_max_lag_ms"), "{error}");
    }

    #[test]
    fn the_vendor_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let config = Config {
            vendor_ca_file: Some(path.clone()),
            ..Config::default()
        };
        let error = config.vendor_ca_pem().unwrap_err();
        assert!(error.contains("ca.pem"), "{error}");
        let missing = Config {
            vendor_ca_file: Some(dir.path().join("absent.pem")),
            ..Config::default()
        };
        assert!(missing.vendor_ca_pem().is_err());
        assert_eq!(Config::default().vendor_ca_pem(), Ok(None));
    }
}
