//! Pollers: one task per enabled partner account pulls its vendor's usage when the account is
//! due and records it in the ledger. On PostgreSQL a lease in `poll_states` lets one replica
//! poll an account at a time; when that replica dies its lease expires and another takes over.
//! Each pull restates a whole window in one transaction, so a poller killed between fetch and
//! commit loses nothing: the next pull restates the same window.
//!
//! When an account is due is kept in `poll_states` (so every replica, and a restarted one,
//! honours it): its interval after a success; after failures an exponential back-off; never
//! before a vendor's `Retry-After` (see [`crate::domain::polling`]).
mod sources;
mod windows;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::sources::{SourceCache, source_for};
pub use self::windows::{LAST_PERIOD_READ_DAYS, restatement_windows};
use crate::domain::error::{Error, Result};
use crate::domain::ledger::IngestSummary;
use crate::domain::partner_account::PartnerAccount;
use crate::domain::partner_account::{PollRecord, PollStatus, VersionTags};
use crate::domain::polling::next_poll_delay;
use crate::domain::vendor::Vendor;
use crate::ledger::Ledger;
use crate::store::Store;
use crate::telemetry::metrics::{POLL_ERRORS, POLL_LAST_SUCCESS, VENDOR_REQUESTS};
use crate::vendors::{PullOutcome, PullRequest, UsageSource, VendorError, VendorPeriod};

/// Seed of the simulator's synthetic usage; fixed so demos are reproducible.
pub const SIMULATOR_SEED: u64 = 20_261_125;

#[derive(Debug, Clone)]
pub struct PollerSettings {
    /// This replica's name in leases.
    pub owner: String,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How often the set of enabled partner accounts is re-read (changes made through this
    /// process are followed at once).
    pub refresh: Duration,
    /// PEM of root CAs vendor connections trust besides the system's (a TLS-inspecting proxy,
    /// a sovereign cloud): the gateway's `vendor_ca_file`. Partner Center only; see the README.
    pub extra_root_ca_pem: Option<String>,
}

impl Default for PollerSettings {
    fn default() -> Self {
        PollerSettings {
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            lease_ttl: Duration::from_secs(60),
            refresh: Duration::from_secs(10),
            extra_root_ca_pem: None,
        }
    }
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// Another replica holds the lease.
    NotLeased,
    /// The vendor said nothing changed since the last pull.
    Unchanged,
    Recorded(IngestSummary),
    /// The poller was stopped (the account disabled or changed) while the vendor answered;
    /// nothing was recorded.
    Stopped,
}

/// The key a window's version tag is kept under: its start.
fn window_key(request: &PullRequest) -> String {
    request.start.to_rfc3339()
}

fn interval_of(account: &PartnerAccount) -> Duration {
    Duration::from_secs(account.spec.poll_interval_secs.max(1).unsigned_abs())
}

/// A failed poll's message and the pause the vendor asked for.
struct Failure {
    message: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn vendor(request: &PullRequest, error: &VendorError) -> Self {
        let retry_after = match error {
            VendorError::Throttled { retry_after } => *retry_after,
            _ => None,
        };
        let message = match request.period {
            VendorPeriod::Current => error.to_string(),
            VendorPeriod::Previous => format!("previous billing period: {error}"),
        };
        Failure {
            message,
            retry_after,
        }
    }

    /// A pull that came back empty for a window holding usage: a partner account asking for
    /// the wrong currency, or a vendor-side glitch; reversing every charge is never the answer.
    fn suspiciously_empty(account: &PartnerAccount, request: &PullRequest, live: usize) -> Self {
        let hint = match account.spec.vendor {
            Vendor::Microsoft => {
                " (is microsoft_settings.billing_currency the currency Partner Center bills this \
                 partner tenant in?)"
            }
            _ => "",
        };
        Failure {
            message: format!(
                "the vendor returned no usage for {} to {}, where {live} usage lines are \
                 recorded; refusing to reverse them{hint}",
                request.start.to_rfc3339(),
                request.end.to_rfc3339()
            ),
            retry_after: None,
        }
    }
}

/// Polls one partner account once with a source built for it: lease, pull, record.
pub async fn poll_once(
    ledger: &Ledger,
    account: &PartnerAccount,
    settings: &PollerSettings,
) -> Result<PollOutcome> {
    poll_once_at(ledger, account, settings, Utc::now()).await
}

/// [`poll_once`] restating the windows due at `now` (tests of other days than today).
pub async fn poll_once_at(
    ledger: &Ledger,
    account: &PartnerAccount,
    settings: &PollerSettings,
    now: DateTime<Utc>,
) -> Result<PollOutcome> {
    let mut sources = SourceCache::default();
    poll_cached(ledger, account, settings, &mut sources, now, None).await
}

async fn poll_cached(
    ledger: &Ledger,
    account: &PartnerAccount,
    settings: &PollerSettings,
    sources: &mut SourceCache,
    now: DateTime<Utc>,
    stop: Option<&mut watch::Receiver<bool>>,
) -> Result<PollOutcome> {
    let store = ledger.store();
    let source = match sources.get(store, account, settings).await {
        Ok(source) => source,
        Err(error) => {
            // Recorded (and backed off) like any failed poll, by the replica holding the lease.
            let ttl = settings.lease_ttl.as_secs() as i64;
            if store
                .lease_partner_account(&account.tenant_id, &account.id, &settings.owner, ttl)
                .await?
            {
                let status = store.poll_status(&account.id).await?;
                let failure = Failure {
                    message: error.to_string(),
                    retry_after: None,
                };
                let tags = status.version_tags.clone();
                record(store, account, &status, 0, tags, Some(&failure)).await?;
            }
            return Err(error);
        }
    };
    let windows = restatement_windows(&account.spec, now);
    let outcome = poll_windows(ledger, account, source.as_ref(), windows, settings, stop).await;
    if outcome.is_err() {
        sources.forget();
    }
    outcome
}

/// Polls `account` through `source` over one window of its current period: see
/// [`poll_windows`].
pub async fn poll_with(
    ledger: &Ledger,
    account: &PartnerAccount,
    source: &dyn UsageSource,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    settings: &PollerSettings,
) -> Result<PollOutcome> {
    let windows = vec![PullRequest::current(start, end)];
    poll_windows(ledger, account, source, windows, settings, None).await
}

/// Polls `account` through `source` over `windows` (each pulled with the version tag its last
/// pull left): lease, pull each, record the data and the outcome. An empty pull of a window
/// that holds usage is refused (a failed poll), except for a previous period, which the vendor
/// empties once it has billed it: its lines stay as last read. The first failure ends the
/// poll; windows recorded before it stay recorded.
pub async fn poll_windows(
    ledger: &Ledger,
    account: &PartnerAccount,
    source: &dyn UsageSource,
    windows: Vec<PullRequest>,
    settings: &PollerSettings,
    mut stop: Option<&mut watch::Receiver<bool>>,
) -> Result<PollOutcome> {
    let store = ledger.store();
    let ttl = settings.lease_ttl.as_secs() as i64;
    if !store
        .lease_partner_account(&account.tenant_id, &account.id, &settings.owner, ttl)
        .await?
    {
        return Ok(PollOutcome::NotLeased);
    }
    let status = store.poll_status(&account.id).await?;
    let keys: BTreeSet<String> = windows.iter().map(window_key).collect();
    let mut tags: VersionTags = status.version_tags.clone();
    tags.retain(|key, _| keys.contains(key));
    let (mut requests, mut recorded, mut failure) = (0i64, None::<IngestSummary>, None);
    for mut request in windows {
        let key = window_key(&request);
        request.previous_version = tags.get(&key).cloned();
        let pulled = match stop.as_deref_mut() {
            Some(stop) => tokio::select! {
                pulled = source.pull(&request) => pulled,
                _ = stop.wait_for(|stopped| *stopped) => return Ok(PollOutcome::Stopped),
            },
            None => source.pull(&request).await,
        };
        requests += i64::from(pulled.requests.0);
        let pull = match pulled.outcome {
            Ok(PullOutcome::Unchanged) => continue,
            Ok(PullOutcome::Data(pull)) => pull,
            Err(error) => {
                failure = Some(Failure::vendor(&request, &error));
                break;
            }
        };
        if pull.lines.is_empty() {
            let live = ledger
                .live_usage_lines(account, pull.start, pull.end)
                .await?;
            if live > 0 && request.period == VendorPeriod::Previous {
                tracing::info!(
                    partner_account = %account.id,
                    period_start = %request.start,
                    "the previous period's export is empty: billed; its usage stays as last read"
                );
                continue;
            }
            if live > 0 {
                failure = Some(Failure::suspiciously_empty(account, &request, live));
                break;
            }
        }
        let summary = ledger
            .ingest_pull(&account.tenant_id, account, &pull)
            .await?;
        recorded = Some(add(recorded, summary));
        match pull.version {
            Some(version) => tags.insert(key, version),
            None => tags.remove(&key),
        };
    }
    record(store, account, &status, requests, tags, failure.as_ref()).await?;
    match failure {
        Some(failure) => Err(Error::Unavailable("vendor", failure.message)),
        None => Ok(recorded.map_or(PollOutcome::Unchanged, PollOutcome::Recorded)),
    }
}

fn add(total: Option<IngestSummary>, next: IngestSummary) -> IngestSummary {
    let total = total.unwrap_or_default();
    IngestSummary {
        lines_written: total.lines_written + next.lines_written,
        events_appended: total.events_appended + next.events_appended,
        last_sequence: next.last_sequence.or(total.last_sequence),
    }
}

/// Records a poll's outcome and when the account is due next. The requests of a failed poll
/// were billed too.
async fn record(
    store: &Store,
    account: &PartnerAccount,
    before: &PollStatus,
    requests: i64,
    version_tags: VersionTags,
    failure: Option<&Failure>,
) -> Result<()> {
    let failures = match failure {
        Some(_) => before.consecutive_failures.saturating_add(1),
        None => 0,
    };
    let delay = next_poll_delay(
        interval_of(account),
        failures,
        failure.and_then(|f| f.retry_after),
    );
    let next_poll_at =
        Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    store
        .record_poll(
            &account.id,
            &PollRecord {
                requests,
                error: failure.map(|f| f.message.as_str()),
                version_tags: &version_tags,
                next_poll_at,
                consecutive_failures: failures,
            },
        )
        .await?;
    let account_id = account.id.clone();
    metrics::counter!(VENDOR_REQUESTS, "partner_account" => account_id.clone())
        .increment(requests.max(0) as u64);
    match failure {
        Some(_) => metrics::counter!(POLL_ERRORS, "partner_account" => account_id).increment(1),
        None => metrics::gauge!(POLL_LAST_SUCCESS, "partner_account" => account_id)
            .set(Utc::now().timestamp() as f64),
    }
    Ok(())
}

/// Runs a poller per enabled partner account until `shutdown` turns true.
pub async fn run(
    ledger: Arc<Ledger>,
    settings: PollerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let store = ledger.store();
    let mut tasks: HashMap<String, (JoinHandle<()>, watch::Sender<bool>)> = HashMap::new();
    loop {
        match store.enabled_partner_accounts().await {
            Ok(accounts) => {
                let wanted: HashMap<String, PartnerAccount> = accounts
                    .into_iter()
                    .map(|a| (format!("{}@v{}", a.id, a.version), a))
                    .collect();
                tasks.retain(|key, (handle, stop)| {
                    let keep = wanted.contains_key(key) && !handle.is_finished();
                    if !keep {
                        let _ = stop.send(true);
                    }
                    keep
                });
                for (key, account) in wanted {
                    if tasks.contains_key(&key) {
                        continue;
                    }
                    let (stop_tx, stop_rx) = watch::channel(false);
                    let handle = tokio::spawn(poll_loop(
                        ledger.clone(),
                        account,
                        settings.clone(),
                        stop_rx,
                    ));
                    tasks.insert(key, (handle, stop_tx));
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list partner accounts to poll"),
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.refresh) => {}
            _ = store.partner_account_changed() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    for (_, (handle, stop)) in tasks {
        let _ = stop.send(true);
        let _ = handle.await;
    }
}

/// Whether `account` is still what its poller was started for: enabled, and not changed since
/// (a changed account gets a poller of its own from [`run`]). A failed read says yes: the poll
/// itself will tell.
async fn still_current(store: &Store, account: &PartnerAccount) -> bool {
    match store
        .partner_account_in(&account.tenant_id, &account.id)
        .await
    {
        Ok(now) => now.version == account.version && now.spec.enabled,
        Err(Error::NotFound { .. }) => false,
        Err(_) => true,
    }
}

/// One account's loop: waits until the account is due, checks it is still enabled and
/// unchanged, polls. A changed account (new version) gets a new loop from [`run`].
async fn poll_loop(
    ledger: Arc<Ledger>,
    account: PartnerAccount,
    settings: PollerSettings,
    mut stop: watch::Receiver<bool>,
) {
    let store = ledger.store();
    let interval = interval_of(&account);
    let mut sources = SourceCache::default();
    let mut first = true;
    loop {
        let due = store
            .poll_status(&account.id)
            .await
            .ok()
            .and_then(|s| s.next_poll_at);
        let wait = match due.map(|at| (at - Utc::now()).to_std()) {
            Some(Ok(wait)) => wait,
            // Due already (or never polled): at once, unless the last poll could not record
            // when it is due next.
            _ if first => Duration::ZERO,
            _ => interval,
        };
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if !still_current(store, &account).await {
            break;
        }
        let outcome = poll_cached(
            &ledger,
            &account,
            &settings,
            &mut sources,
            Utc::now(),
            Some(&mut stop),
        )
        .await;
        match outcome {
            Ok(PollOutcome::Recorded(s)) => tracing::info!(
                partner_account = %account.id,
                lines = s.lines_written,
                charges = s.events_appended,
                "usage recorded"
            ),
            Ok(PollOutcome::Stopped) => break,
            Ok(outcome) => tracing::debug!(partner_account = %account.id, ?outcome, "poll"),
            Err(error) => tracing::warn!(partner_account = %account.id, %error, "poll failed"),
        }
    }
    let _ = store
        .release_partner_account(&account.id, &settings.owner)
        .await;
}
