//! Pollers: one task per enabled partner account pulls its vendor's usage on the account's
//! interval and records it in the ledger. On PostgreSQL a lease in `poll_states` lets one
//! replica poll an account at a time; when that replica dies its lease expires and another
//! takes over. Each pull restates a whole window in one transaction, so a poller killed between
//! fetch and commit loses nothing: the next pull restates the same window.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Span, DurationRound, TimeZone, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::domain::aws_settings::{Granularity, HOURLY_LOOKBACK_DAYS};
use crate::domain::error::{Error, Result};
use crate::domain::ledger::IngestSummary;
use crate::domain::partner_account::PollResult;
use crate::domain::partner_account::{PartnerAccount, PartnerAccountSpec};
use crate::domain::vendor::Vendor;
use crate::ledger::Ledger;
use crate::store::Store;
use crate::vendors::aws::{AwsCostExplorer, AwsCostExplorerConfig};
use crate::vendors::microsoft::{PartnerCenterConfig, PartnerCenterSource};
use crate::vendors::simulator::Simulator;
use crate::vendors::{PullOutcome, PullRequest, UsageSource, VendorError};

/// Seed of the simulator's synthetic usage; fixed so demos are reproducible.
pub const SIMULATOR_SEED: u64 = 20_261_125;

#[derive(Debug, Clone)]
pub struct PollerSettings {
    /// This replica's name in leases.
    pub owner: String,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How often the set of enabled partner accounts is re-read.
    pub refresh: Duration,
}

impl Default for PollerSettings {
    fn default() -> Self {
        PollerSettings {
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            lease_ttl: Duration::from_secs(60),
            refresh: Duration::from_secs(10),
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
}

/// The usage source for a partner account, built fresh for each poll so configuration and
/// (for the simulator) newly linked accounts take effect.
async fn source_for(store: &Store, account: &PartnerAccount) -> Result<Box<dyn UsageSource>> {
    let vendor_error = |e: VendorError| {
        Error::precondition(format!("partner account {}", account.id), e.to_string())
    };
    Ok(match account.spec.vendor {
        Vendor::Simulator => {
            let accounts = store.linked_vendor_accounts(&account.id).await?;
            Box::new(Simulator::new(SIMULATOR_SEED, accounts))
        }
        Vendor::Aws => Box::new(
            AwsCostExplorer::new(AwsCostExplorerConfig::for_partner_account(&account.spec))
                .map_err(vendor_error)?,
        ),
        Vendor::Microsoft => {
            let tenant = store.tenant(&account.tenant_id).await?;
            let mut config = PartnerCenterConfig::new(
                &account.spec.vendor_account_id,
                &account.spec.credentials_ref,
                tenant.currency.code(),
            );
            if !account.spec.endpoint_url.is_empty() {
                config.api_base_url = account.spec.endpoint_url.clone();
            }
            Box::new(PartnerCenterSource::new(config).map_err(vendor_error)?)
        }
    })
}

/// The window a partner account's poll restates.
pub fn restatement_window(
    spec: &PartnerAccountSpec,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = Span::days(1);
    let today = now.duration_trunc(day).unwrap_or(now);
    let month_start = |y: i32, m: u32| {
        Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
            .single()
            .unwrap_or(today)
    };
    match spec.vendor {
        Vendor::Simulator => Simulator::new(0, vec![]).at(now).window(),
        // Cost Explorer keeps hourly data for 14 days: restate the whole days within them (a
        // day boundary, so a day polled DAILY before is restated whole, never half-overlapped).
        Vendor::Aws if spec.aws_settings().map(|a| a.granularity) == Some(Granularity::Hourly) => {
            let oldest = now - Span::days(HOURLY_LOOKBACK_DAYS);
            let oldest_day = oldest.duration_trunc(day).unwrap_or(oldest);
            let start = if oldest_day < oldest {
                oldest_day + day
            } else {
                oldest_day
            };
            (start, today + day)
        }
        // AWS revises until the month is closed, a few days into the next: re-read from the
        // start of the previous month.
        Vendor::Aws => {
            let (y, m) = if now.month() == 1 {
                (now.year() - 1, 12)
            } else {
                (now.year(), now.month() - 1)
            };
            (month_start(y, m), today + day)
        }
        // The unbilled export covers the current billing period.
        Vendor::Microsoft => (month_start(now.year(), now.month()), today + day),
    }
}

/// Polls one partner account once: lease, pull, record.
pub async fn poll_once(
    ledger: &Ledger,
    account: &PartnerAccount,
    settings: &PollerSettings,
) -> Result<PollOutcome> {
    let store = ledger.store();
    let source = match source_for(store, account).await {
        Ok(source) => source,
        Err(error) => {
            let message = error.to_string();
            store
                .record_poll(&account.id, 0, &PollResult::Failure { error: &message })
                .await?;
            return Err(error);
        }
    };
    let window = restatement_window(&account.spec, Utc::now());
    poll_with(ledger, account, source.as_ref(), window, settings).await
}

/// Polls `account` through `source` over `window`: lease, pull, record the data and the outcome.
pub async fn poll_with(
    ledger: &Ledger,
    account: &PartnerAccount,
    source: &dyn UsageSource,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    settings: &PollerSettings,
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
    let request = PullRequest {
        start,
        end,
        previous_version: status.version_tag.clone(),
    };
    let pulled = source.pull(&request).await;
    let requests = i64::from(pulled.requests.0);
    match pulled.outcome {
        Ok(PullOutcome::Unchanged) => {
            let tag = status.version_tag.as_deref();
            store
                .record_poll(
                    &account.id,
                    requests,
                    &PollResult::Success { version_tag: tag },
                )
                .await?;
            Ok(PollOutcome::Unchanged)
        }
        Ok(PullOutcome::Data(pull)) => {
            let summary = ledger
                .ingest_pull(&account.tenant_id, account, &pull)
                .await?;
            let tag = pull.version.as_deref();
            store
                .record_poll(
                    &account.id,
                    requests,
                    &PollResult::Success { version_tag: tag },
                )
                .await?;
            Ok(PollOutcome::Recorded(summary))
        }
        Err(error) => {
            let message = error.to_string();
            // The requests of a failed pull were billed too.
            store
                .record_poll(
                    &account.id,
                    requests,
                    &PollResult::Failure { error: &message },
                )
                .await?;
            Err(Error::Unavailable("vendor", message))
        }
    }
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
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    for (_, (handle, stop)) in tasks {
        let _ = stop.send(true);
        let _ = handle.await;
    }
}

/// One account's loop; a changed account (new version) gets a new loop from [`run`].
async fn poll_loop(
    ledger: Arc<Ledger>,
    account: PartnerAccount,
    settings: PollerSettings,
    mut stop: watch::Receiver<bool>,
) {
    let interval = Duration::from_secs(account.spec.poll_interval_secs.max(1) as u64);
    loop {
        match poll_once(&ledger, &account, &settings).await {
            Ok(PollOutcome::Recorded(s)) => tracing::info!(
                partner_account = %account.id,
                lines = s.lines_written,
                charges = s.events_appended,
                "usage recorded"
            ),
            Ok(outcome) => tracing::debug!(partner_account = %account.id, ?outcome, "poll"),
            Err(error) => tracing::warn!(partner_account = %account.id, %error, "poll failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let _ = ledger
        .store()
        .release_partner_account(&account.id, &settings.owner)
        .await;
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::aws_settings::AwsSettings;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn aws(granularity: Granularity) -> PartnerAccountSpec {
        PartnerAccountSpec {
            vendor: Vendor::Aws,
            display_name: "payer".into(),
            vendor_account_id: "111122223333".into(),
            partner_discount_rate: Decimal::ZERO,
            credentials_ref: "env:AWS_PAYER".into(),
            poll_interval_secs: 900,
            enabled: true,
            endpoint_url: String::new(),
            aws: Some(AwsSettings {
                granularity,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn aws_windows_follow_the_granularity() {
        let now = at("2026-11-25T11:30:00Z");
        let tomorrow = at("2026-11-26T00:00:00Z");
        assert_eq!(
            restatement_window(&aws(Granularity::Daily), now),
            (at("2026-10-01T00:00:00Z"), tomorrow)
        );
        // The whole days within the last 14 days: hourly data reaches no further back.
        assert_eq!(
            restatement_window(&aws(Granularity::Hourly), now),
            (at("2026-11-12T00:00:00Z"), tomorrow)
        );
        let midnight = at("2026-11-25T00:00:00Z");
        assert_eq!(
            restatement_window(&aws(Granularity::Hourly), midnight).0,
            at("2026-11-11T00:00:00Z")
        );
        // January restates from December (DAILY).
        assert_eq!(
            restatement_window(&aws(Granularity::Daily), at("2027-01-03T08:00:00Z")).0,
            at("2026-12-01T00:00:00Z")
        );
    }
}
