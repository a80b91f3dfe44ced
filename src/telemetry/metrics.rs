//! The gateway's Prometheus series: every name, its help text and its unit in one catalogue
//! (the README's operations section lists the same), and the process-wide recorder that
//! `GET /metrics` renders. Recording sites use the `metrics` macros with these names; a series
//! recorded under a name missing here would still be exported, without help text, so the test
//! of `/metrics` checks the catalogue against what is scraped.
use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// gRPC calls finished, by `method` (`/package.Service/Method`) and `code` (gRPC status name).
pub const RPC_REQUESTS: &str = "mspgw_rpc_requests_total";
/// Time from a call's arrival to its last byte (streams: their whole life), by `method`.
pub const RPC_DURATION: &str = "mspgw_rpc_duration_seconds";
/// Calls in progress, by `method` (open streams included).
pub const RPC_IN_FLIGHT: &str = "mspgw_rpc_in_flight";
/// The last sequence of each `tenant`'s charge ledger (read from the database at scrape time).
pub const LEDGER_HEAD: &str = "mspgw_ledger_head_sequence";
/// Usage lines written (inserted or revised) by pulls and pushes, by `source` (`pull`, `push`).
pub const USAGE_LINES_WRITTEN: &str = "mspgw_ledger_usage_lines_written_total";
/// Charge events appended by pulls, pushes and re-rates, by `source`.
pub const CHARGES_APPENDED: &str = "mspgw_ledger_charges_appended_total";
/// Unix time of each `partner_account`'s last successful poll.
pub const POLL_LAST_SUCCESS: &str = "mspgw_poll_last_success_timestamp_seconds";
/// Failed polls, by `partner_account`.
pub const POLL_ERRORS: &str = "mspgw_poll_errors_total";
/// Vendor requests spent by polls (AWS Cost Explorer bills each), by `partner_account`.
pub const VENDOR_REQUESTS: &str = "mspgw_vendor_requests_total";
/// Charge streams open in this process.
pub const CHARGE_STREAMS_OPEN: &str = "mspgw_charge_streams_open";
/// Per `tenant`: sequences between the ledger head this process has seen and the slowest open
/// charge stream's cursor (0 when every stream is caught up).
pub const CHARGE_STREAM_LAG: &str = "mspgw_charge_stream_lag_sequences";
/// Charge events handed to stream consumers.
pub const CHARGE_STREAM_DELIVERED: &str = "mspgw_charge_stream_delivered_total";
/// Database connections per `pool` and `state` (`in_use`, `idle`, `waiting` callers).
pub const DB_POOL_CONNECTIONS: &str = "mspgw_db_pool_connections";
/// Open service actions, by `tenant` and `status` (`pending`, `running`).
pub const SERVICE_ACTIONS_OPEN: &str = "mspgw_service_actions_open";
/// Age of each `tenant`'s oldest open service action (0 when none is open).
pub const SERVICE_ACTION_OLDEST_AGE: &str = "mspgw_service_action_oldest_open_seconds";
/// Close runs (`CloseBillingPeriods`) not finished: running, or interrupted and waiting to be
/// resumed.
pub const CLOSE_RUNS_UNFINISHED: &str = "mspgw_close_runs_unfinished";
/// Customers those runs have still to close.
pub const CLOSE_RUN_CUSTOMERS_REMAINING: &str = "mspgw_close_run_customers_remaining";
/// Invoices the automatic closer finalized.
pub const AUTOMATIC_CLOSES: &str = "mspgw_automatic_close_invoices_total";
/// Customers the automatic closer could not close in its last pass (retried the next pass).
pub const AUTOMATIC_CLOSE_FAILURES: &str = "mspgw_automatic_close_failing_customers";
/// Unix time the automatic closer last finished a pass with every due period closed.
pub const AUTOMATIC_CLOSE_LAST_SUCCESS: &str =
    "mspgw_automatic_close_last_success_timestamp_seconds";
/// Calls refused by a key's rate limit (`rate_limit_per_key_per_sec`), by `tenant`.
pub const RATE_LIMITED: &str = "mspgw_rate_limited_total";
/// 1 while the database answers and every migration is applied, else 0.
pub const READY: &str = "mspgw_ready";
/// 1 while the read replica serves the reads routed to it (configured, answering, and within
/// `database_read_max_lag_ms`), else 0 (none configured, or its reads are on the primary).
pub const READ_REPLICA_IN_USE: &str = "mspgw_read_replica_in_use";
/// How far behind the primary the read replica is known to be at most: the time since the
/// moment up to which it last held every commit (0 when none is configured). Grows while the
/// replica is unreachable.
pub const READ_REPLICA_LAG: &str = "mspgw_read_replica_lag_seconds";
/// Reads of the calls routed to the read replica, by `served_by` (`replica`, or `primary` when
/// it was behind or failing).
pub const READ_REPLICA_READS: &str = "mspgw_read_replica_reads_total";

/// Every series above, for the test that scrapes `/metrics`.
pub const ALL: &[&str] = &[
    RPC_REQUESTS,
    RPC_DURATION,
    RPC_IN_FLIGHT,
    LEDGER_HEAD,
    USAGE_LINES_WRITTEN,
    CHARGES_APPENDED,
    POLL_LAST_SUCCESS,
    POLL_ERRORS,
    VENDOR_REQUESTS,
    CHARGE_STREAMS_OPEN,
    CHARGE_STREAM_LAG,
    CHARGE_STREAM_DELIVERED,
    DB_POOL_CONNECTIONS,
    SERVICE_ACTIONS_OPEN,
    SERVICE_ACTION_OLDEST_AGE,
    CLOSE_RUNS_UNFINISHED,
    CLOSE_RUN_CUSTOMERS_REMAINING,
    AUTOMATIC_CLOSES,
    AUTOMATIC_CLOSE_FAILURES,
    AUTOMATIC_CLOSE_LAST_SUCCESS,
    RATE_LIMITED,
    READY,
    READ_REPLICA_IN_USE,
    READ_REPLICA_LAG,
    READ_REPLICA_READS,
];

/// Latency buckets (seconds): unary calls take milliseconds, pushes of large batches seconds.
const RPC_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide recorder, installed on first use; `None` when another recorder was
/// installed first (an embedder's), in which case `/metrics` says so.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(RPC_DURATION.into()), RPC_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    describe_counter!(
        RPC_REQUESTS,
        "gRPC calls finished, by method and status code"
    );
    describe_histogram!(RPC_DURATION, Unit::Seconds, "gRPC call duration, by method");
    describe_gauge!(RPC_IN_FLIGHT, "gRPC calls in progress, by method");
    describe_gauge!(LEDGER_HEAD, "Last charge ledger sequence, by tenant");
    describe_counter!(USAGE_LINES_WRITTEN, "Usage lines written, by source");
    describe_counter!(CHARGES_APPENDED, "Charge events appended, by source");
    describe_gauge!(
        POLL_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful poll, by partner account"
    );
    describe_counter!(POLL_ERRORS, "Failed polls, by partner account");
    describe_counter!(VENDOR_REQUESTS, "Vendor API requests spent by polls");
    describe_gauge!(CHARGE_STREAMS_OPEN, "Charge streams open in this process");
    describe_gauge!(
        CHARGE_STREAM_LAG,
        "Sequences the slowest open charge stream is behind the ledger head, by tenant"
    );
    describe_counter!(
        CHARGE_STREAM_DELIVERED,
        "Charge events delivered to streams"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database connections by pool and state (in_use, idle, waiting)"
    );
    describe_gauge!(
        SERVICE_ACTIONS_OPEN,
        "Open service actions, by tenant and status (pending, running)"
    );
    describe_gauge!(
        SERVICE_ACTION_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest open service action, by tenant"
    );
    describe_gauge!(
        CLOSE_RUNS_UNFINISHED,
        "Close runs not finished (running or interrupted)"
    );
    describe_gauge!(
        CLOSE_RUN_CUSTOMERS_REMAINING,
        "Customers unfinished close runs have still to close"
    );
    describe_counter!(
        AUTOMATIC_CLOSES,
        "Invoices finalized by the automatic closer"
    );
    describe_gauge!(
        AUTOMATIC_CLOSE_FAILURES,
        "Customers the automatic closer could not close in its last pass"
    );
    describe_gauge!(
        AUTOMATIC_CLOSE_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the automatic closer's last pass with every due period closed"
    );
    describe_counter!(
        RATE_LIMITED,
        "Calls refused by an API key's rate limit, by tenant"
    );
    describe_gauge!(
        READY,
        "1 when the database answers and migrations are applied"
    );
    describe_gauge!(
        READ_REPLICA_IN_USE,
        "1 while the read replica serves the reads routed to it"
    );
    describe_gauge!(
        READ_REPLICA_LAG,
        Unit::Seconds,
        "How far behind the primary the read replica is known to be at most"
    );
    describe_counter!(
        READ_REPLICA_READS,
        "Reads of calls routed to the read replica, by where they were served"
    );
}
