//! The Partner Center connector against the local emulator, end to end: Entra token, export,
//! operation polling, manifest, SAS blob downloads, all over TLS through azure_core.
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use msp_gateway::vendors::microsoft::{
    AccountKey, ExportOutcome, PartnerCenterConfig, PartnerCenterSource, RetrySettings,
};
use msp_gateway::vendors::{
    PullOutcome, PullRequest, RequestCount, UsageSource, VendorError, VendorPeriod,
};
use rust_decimal::Decimal;

mod through_the_gateway;

use crate::partner_center_emulator::{
    Blob, CLIENT_ID, CLIENT_SECRET, Emulator, Script, TENANT, gzip,
};

const S1: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const S2: &str = "22222222-aaaa-4bbb-8ccc-000000000002";
const C1: &str = "c1c1c1c1-0000-4000-8000-00000000000c";
const C2: &str = "c2c2c2c2-0000-4000-8000-00000000000c";
const VM_METER: &str = "9e2a8a47-6d3c-4c3e-a2b5-3f0c2d1e9b01";
const BLOB_METER: &str = "d5e1b6f0-2c7a-4b9d-8e3f-71a6c9b2e402";
const RATE: &str = "0.9234567891";

/// The emulator plus a connector configured for it; the credentials file lives as long as this.
struct Fixture {
    emulator: Emulator,
    config: PartnerCenterConfig,
    _credentials: tempfile::TempDir,
}

impl Fixture {
    async fn start(script: Script) -> Self {
        Self::with_secret(script, CLIENT_SECRET).await
    }

    async fn with_secret(script: Script, secret: &str) -> Self {
        let emulator = Emulator::start(script).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partner-center.json");
        std::fs::write(
            &path,
            serde_json::json!({
                "tenant_id": TENANT,
                "client_id": CLIENT_ID,
                "client_secret": secret,
            })
            .to_string(),
        )
        .unwrap();
        let mut config =
            PartnerCenterConfig::new(TENANT, &format!("file:{}", path.display()), "EUR");
        config.api_base_url = emulator.api_base_url();
        config.authority_host = emulator.authority_host();
        config.extra_root_ca_pem = Some(emulator.ca_pem.clone());
        config.poll_interval = Duration::from_millis(10);
        config.max_poll_attempts = 20;
        config.max_wait = Duration::from_secs(5);
        config.max_throttle_retries = 3;
        config.retry = RetrySettings::None;
        Fixture {
            emulator,
            config,
            _credentials: dir,
        }
    }

    fn source(&self) -> PartnerCenterSource {
        PartnerCenterSource::new(self.config.clone()).expect("source")
    }
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap()
}

fn december() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
}

/// November's billing period, as the current one.
fn window(previous_version: Option<&str>) -> PullRequest {
    PullRequest {
        start: day(1),
        end: december(),
        period: VendorPeriod::Current,
        previous_version: previous_version.map(str::to_string),
    }
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// One row of the export. Numbers are JSON literals, written digit for digit.
#[derive(Clone)]
struct Row {
    customer: &'static str,
    subscription: &'static str,
    entitlement: &'static str,
    meter: &'static str,
    meter_name: &'static str,
    category: &'static str,
    location: Option<&'static str>,
    usage_date: &'static str,
    quantity: &'static str,
    unit_price: &'static str,
    cost: &'static str,
    pricing_total: &'static str,
    pricing_currency: &'static str,
    rate: &'static str,
}

/// A virtual machine row of plan S1 on 3 November, priced in USD and billed in EUR.
fn vm_row() -> Row {
    Row {
        customer: C1,
        subscription: S1,
        entitlement: "e-1",
        meter: VM_METER,
        meter_name: "D2 v3",
        category: "Virtual Machines",
        location: Some("westeurope"),
        usage_date: "2026-11-03T00:00:00",
        quantity: "1",
        unit_price: "0.1234567890123",
        cost: "1",
        pricing_total: "1",
        pricing_currency: "USD",
        rate: RATE,
    }
}

impl Row {
    /// The JSON line, with the other fields a full-attribute export carries.
    fn json(&self) -> String {
        let text = |v: &str| serde_json::Value::from(v).to_string();
        let mut fields = vec![
            ("PartnerId", text(TENANT)),
            ("PartnerName", text("Fabrikam ISP")),
            ("CustomerId", text(self.customer)),
            ("CustomerName", text("Contoso")),
            ("SubscriptionId", text(self.subscription)),
            ("EntitlementId", text(self.entitlement)),
            ("ProductName", text("Azure plan")),
            ("MeterId", text(self.meter)),
            ("MeterName", text(self.meter_name)),
            ("MeterCategory", text(self.category)),
            ("MeterRegion", text("EU West")),
            ("UsageDate", text(self.usage_date)),
            ("ChargeType", text("new")),
            ("Quantity", self.quantity.to_string()),
            ("UnitOfMeasure", text("1 Hour")),
            ("UnitPrice", self.unit_price.to_string()),
            ("EffectiveUnitPrice", "0.1111111111111".to_string()),
            ("BillingPreTaxTotal", self.cost.to_string()),
            ("BillingCurrency", text("EUR")),
            ("PricingPreTaxTotal", self.pricing_total.to_string()),
            ("PricingCurrency", text(self.pricing_currency)),
            ("PCToBCExchangeRate", self.rate.to_string()),
            ("PCToBCExchangeRateDate", text("2026-11-01T00:00:00Z")),
        ];
        if let Some(location) = self.location {
            fields.push(("ResourceLocation", text(location)));
        }
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    }
}

/// Two blobs: two rows of one key (two Azure subscriptions of plan S1), a storage row, a row
/// of plan S2, and a blank line.
fn usage_script(etag: &str) -> Script {
    let s2 = Row {
        customer: C2,
        subscription: S2,
        entitlement: "e-3",
        usage_date: "2026-11-04T00:00:00",
        ..vm_row()
    };
    Script {
        etag: etag.into(),
        polls_before_done: 2,
        blobs: vec![
            Blob::new(
                "part-00000-6f1c.c000.json.gz",
                vec![
                    Row {
                        quantity: "24.000000000001",
                        cost: "2.66666666666667",
                        pricing_total: "3.0000000000001",
                        ..vm_row()
                    }
                    .json(),
                    Row {
                        entitlement: "e-2",
                        quantity: "0.5000000000005",
                        cost: "0.0555555555556",
                        pricing_total: "0.0625000000001",
                        ..vm_row()
                    }
                    .json(),
                    Row {
                        meter: BLOB_METER,
                        meter_name: "Hot LRS",
                        category: "Storage",
                        location: None,
                        usage_date: "2026-11-04T00:00:00",
                        quantity: "1.1234567890123",
                        cost: "0.0112345678901",
                        pricing_total: "0.0112345678901",
                        pricing_currency: "EUR",
                        rate: "1",
                        ..vm_row()
                    }
                    .json(),
                ],
            ),
            Blob::new(
                "part-00001-6f1c.c000.json.gz",
                vec![
                    Row {
                        quantity: "48",
                        cost: "5.3333333333333412",
                        pricing_total: "6.0000000000000001",
                        ..s2
                    }
                    .json(),
                    String::new(),
                ],
            ),
        ],
        ..Script::default()
    }
}

fn data(outcome: PullOutcome) -> msp_gateway::vendors::Pull {
    match outcome {
        PullOutcome::Data(pull) => pull,
        PullOutcome::Unchanged => panic!("expected data, got Unchanged"),
    }
}

#[tokio::test]
async fn microsoft_export_end_to_end_with_exact_decimals() {
    let fx = Fixture::start(usage_script("etag-nov-25")).await;
    let source = fx.source();
    assert_eq!(
        source.vendor(),
        msp_gateway::domain::vendor::Vendor::Microsoft
    );

    let (outcome, count) = source
        .pull(&window(None))
        .await
        .into_result()
        .expect("pull");
    let pull = data(outcome);
    assert_eq!(pull.version.as_deref(), Some("etag-nov-25"));
    assert_eq!((pull.start, pull.end), (day(1), december()));

    let got: Vec<_> = pull
        .lines
        .iter()
        .map(|l| {
            (
                l.key.vendor_account_id.as_str(),
                l.key.service.as_str(),
                l.key.meter.as_str(),
                l.key.region.as_str(),
                l.key.window_start,
                l.window_end,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (S1, "Storage", BLOB_METER, "EU West", day(4), day(5)),
            (
                S1,
                "Virtual Machines",
                VM_METER,
                "westeurope",
                day(3),
                day(4)
            ),
            (
                S2,
                "Virtual Machines",
                VM_METER,
                "westeurope",
                day(4),
                day(5)
            ),
        ]
    );

    let storage = &pull.lines[0];
    assert_eq!(storage.meter_name, "Hot LRS");
    assert_eq!(storage.quantity, dec("1.1234567890123"));
    assert_eq!(storage.cost, dec("0.0112345678901"));
    // List = UnitPrice × Quantity (same pricing and billing currency), not the charged total.
    assert_eq!(storage.list_cost, Some(dec("0.13869836776552755800955129")));

    // Two rows of one key, merged; list = UnitPrice × Quantity converted from USD at
    // PCToBCExchangeRate: each product needs 35 and 36 fractional digits, so it keeps 28 (the
    // exact sum is 2.793171744360591611460245842077…).
    let vm_s1 = &pull.lines[1];
    assert_eq!(vm_s1.meter_name, "D2 v3");
    assert_eq!(vm_s1.quantity.to_string(), "24.5000000000015");
    assert_eq!(vm_s1.cost.to_string(), "2.72222222222227");
    assert_eq!(
        vm_s1.list_cost.map(|d| d.to_string()).as_deref(),
        Some("2.7931717443605916114602458421")
    );
    assert_eq!(vm_s1.unit, "1 Hour");

    let vm_s2 = &pull.lines[2];
    assert_eq!(vm_s2.quantity, dec("48"));
    assert_eq!(vm_s2.cost.to_string(), "5.3333333333333412");
    assert_eq!(
        vm_s2.list_cost.map(|d| d.to_string()).as_deref(),
        Some("5.47233647874694648348464")
    );
    for line in &pull.lines {
        assert_eq!(line.currency, "EUR");
        assert!(line.estimated, "unbilled usage is an estimate");
    }

    // export + 3 operation polls (2 running) + manifest + 2 blobs.
    assert_eq!(count, RequestCount(7));
    let seen = fx.emulator.seen();
    assert_eq!(seen.token_requests, 1);
    assert_eq!(seen.exports, 1);
    assert_eq!(seen.operation_polls, 3);
    assert_eq!(seen.manifest_reads, 1);
    assert_eq!(seen.blob_downloads, 2);
    assert_eq!(seen.unauthorized, 0);
    assert_eq!(
        seen.blob_requests_with_authorization, 0,
        "the API token must not reach blob storage"
    );
    let export_body = serde_json::json!({
        "currencyCode": "EUR",
        "billingPeriod": "current",
        "attributeSet": "full",
    });
    assert_eq!(seen.export_bodies[0], export_body);

    // The detailed export keeps the Partner Center ids the usage key leaves out; a second pull
    // reuses the cached token.
    let outcome = source.export(&window(None)).await.0.expect("export");
    let ExportOutcome::Data { rows, etag, .. } = outcome else {
        panic!("expected data");
    };
    assert_eq!(etag, "etag-nov-25");
    assert_eq!(rows.len(), 4, "every row, before merging");
    assert!(rows.iter().all(|r| r.latent_from.is_none()));
    let s2_row = rows.iter().find(|r| r.subscription_id == S2).unwrap();
    assert_eq!(s2_row.customer_id, C2);
    assert_eq!(s2_row.entitlement_id.as_deref(), Some("e-3"));
    assert_eq!(s2_row.pc_to_bc_exchange_rate, Some(dec(RATE)));
    assert_eq!(
        s2_row.pricing_pre_tax_total.unwrap().to_string(),
        "6.0000000000000001"
    );
    assert_eq!(fx.emulator.seen().token_requests, 1);
}

#[tokio::test]
async fn microsoft_account_key_can_be_the_customer_tenant() {
    let mut fx = Fixture::start(usage_script("etag-1")).await;
    fx.config.account_key = AccountKey::CustomerTenant;
    let (outcome, _) = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .expect("pull");
    let accounts: Vec<_> = data(outcome)
        .lines
        .iter()
        .map(|l| l.key.vendor_account_id.clone())
        .collect();
    assert_eq!(accounts, vec![C1, C1, C2]);
}

#[tokio::test]
async fn microsoft_inline_manifest_is_read_without_a_manifest_request() {
    let mut script = usage_script("etag-inline");
    script.inline_manifest = true;
    let fx = Fixture::start(script).await;
    let (outcome, count) = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .expect("pull");
    assert_eq!(data(outcome).lines.len(), 3);
    assert_eq!(count, RequestCount(6));
    assert_eq!(fx.emulator.seen().manifest_reads, 0);
}

#[tokio::test]
async fn microsoft_unchanged_etag_downloads_nothing() {
    let fx = Fixture::start(usage_script("etag-a")).await;
    let source = fx.source();
    let (first, _) = source
        .pull(&window(None))
        .await
        .into_result()
        .expect("first pull");
    let version = data(first).version.expect("a version");
    assert_eq!(fx.emulator.seen().blob_downloads, 2);

    let (second, count) = source
        .pull(&window(Some(&version)))
        .await
        .into_result()
        .expect("second pull");
    assert_eq!(second, PullOutcome::Unchanged);
    // export + 3 polls + manifest; no blob.
    assert_eq!(count, RequestCount(5));
    assert_eq!(fx.emulator.seen().blob_downloads, 2, "no blob downloaded");

    // New data, new eTag: the same previous version now yields data.
    fx.emulator.script(|s| s.etag = "etag-b".into());
    let (third, _) = source
        .pull(&window(Some(&version)))
        .await
        .into_result()
        .expect("third");
    assert_eq!(data(third).version.as_deref(), Some("etag-b"));
    assert_eq!(fx.emulator.seen().blob_downloads, 4);
}

#[tokio::test]
async fn microsoft_throttling_honours_retry_after_then_succeeds() {
    let mut script = usage_script("etag-t");
    script.throttle = 2;
    script.throttle_retry_after = Some(1);
    let fx = Fixture::start(script).await;
    let started = Instant::now();
    let (outcome, count) = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .expect("pull");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited out two Retry-After: 1 ({:?})",
        started.elapsed()
    );
    assert_eq!(data(outcome).lines.len(), 3);
    assert_eq!(fx.emulator.seen().throttled, 2);
    assert_eq!(count, RequestCount(9), "the two 429s are requests too");
}

#[tokio::test]
async fn microsoft_pipeline_retries_transient_failures_but_not_429() {
    let mut script = usage_script("etag-r");
    script.unavailable = 2;
    let mut fx = Fixture::start(script).await;
    fx.config.retry = RetrySettings::Exponential {
        max_retries: 3,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(1),
        max_total_elapsed: Duration::from_secs(10),
    };
    let source = fx.source();
    let (outcome, count) = source
        .pull(&window(None))
        .await
        .into_result()
        .expect("pull");
    assert_eq!(data(outcome).lines.len(), 3);
    assert_eq!(fx.emulator.seen().unavailable, 2);
    assert_eq!(count, RequestCount(9), "the retried 503s are requests too");

    // 429s are the connector's to handle: the pipeline must not retry them on top.
    fx.emulator.script(|s| {
        s.throttle = 100;
        s.throttle_retry_after = Some(0);
    });
    let error = source.pull(&window(None)).await.into_result().unwrap_err();
    assert!(matches!(error, VendorError::Throttled { .. }), "{error:?}");
    assert_eq!(fx.emulator.seen().throttled, 4);

    // 503s that outlast the pipeline's retries are reported as unavailable.
    fx.emulator.script(|s| {
        s.throttle = 0;
        s.unavailable = 100;
    });
    let error = source.pull(&window(None)).await.into_result().unwrap_err();
    assert!(matches!(error, VendorError::Unavailable(_)), "{error:?}");
    assert_eq!(fx.emulator.seen().unavailable, 2 + 4);
}

#[tokio::test]
async fn microsoft_throttling_past_the_limit_is_reported() {
    let mut script = usage_script("etag-t");
    script.throttle = 100;
    script.throttle_retry_after = Some(0);
    let fx = Fixture::start(script).await;
    let error = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .unwrap_err();
    assert!(
        matches!(error, VendorError::Throttled { retry_after: Some(d) } if d == Duration::ZERO),
        "{error:?}"
    );
    // The first try and max_throttle_retries (3) more.
    assert_eq!(fx.emulator.seen().throttled, 4);

    // A Retry-After beyond max_wait is handed back at once instead of holding the poller.
    fx.emulator.script(|s| s.throttle_retry_after = Some(3600));
    let started = Instant::now();
    let error = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .unwrap_err();
    assert!(
        matches!(error, VendorError::Throttled { retry_after: Some(d) }
            if d == Duration::from_secs(3600)),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(fx.emulator.seen().throttled, 5);
}

#[tokio::test]
async fn microsoft_polling_honours_retry_after() {
    let mut script = usage_script("etag-p");
    script.polls_before_done = 1;
    script.poll_retry_after = Some(1);
    let fx = Fixture::start(script).await;
    let started = Instant::now();
    let (outcome, count) = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .expect("pull");
    // Retry-After: 1 on the 202 and on the one running answer; poll_interval is 10 ms.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(data(outcome).lines.len(), 3);
    assert_eq!(count, RequestCount(6));
}

#[tokio::test]
async fn microsoft_operation_on_another_host_gets_no_token() {
    let mut script = usage_script("etag-o");
    script.location_origin = Some("https://attacker.example".into());
    let fx = Fixture::start(script).await;
    let error = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .unwrap_err();
    assert!(
        matches!(&error, VendorError::Malformed(m) if m.contains("attacker.example")),
        "{error:?}"
    );
    assert_eq!(fx.emulator.seen().operation_polls, 0);
}

#[tokio::test]
async fn microsoft_failed_operation_is_a_vendor_failure() {
    let mut script = usage_script("etag-f");
    script.fail_operation = Some(("5000".into(), "No data available".into()));
    let fx = Fixture::start(script).await;
    let error = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .unwrap_err();
    let VendorError::Failed(message) = &error else {
        panic!("expected Failed, got {error:?}");
    };
    assert!(message.contains("No data available"), "{message}");
    assert!(message.contains("5000"), "{message}");
    assert_eq!(fx.emulator.seen().blob_downloads, 0);
}

#[tokio::test]
async fn microsoft_malformed_row_names_blob_line_and_field() {
    let mut script = usage_script("etag-m");
    script.blobs[0].lines[1] = script.blobs[0].lines[1]
        .replace(r#""Quantity":0.5000000000005,"#, r#""Quantity":"a lot","#);
    let fx = Fixture::start(script).await;
    let error = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .unwrap_err();
    let VendorError::Malformed(message) = &error else {
        panic!("expected Malformed, got {error:?}");
    };
    assert!(
        message.contains("part-00000-6f1c.c000.json.gz"),
        "{message}"
    );
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("Quantity"), "{message}");
}

#[tokio::test]
async fn microsoft_malformed_payloads_are_refused() {
    // A blob that claims to be gzip and is not.
    let mut script = usage_script("etag-m");
    let mut corrupt = gzip("{}");
    corrupt.truncate(12);
    script.blobs[0].raw = Some(corrupt);
    let fx = Fixture::start(script).await;
    let error = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .unwrap_err();
    assert!(
        matches!(&error, VendorError::Malformed(m) if m.contains("part-00000-6f1c.c000.json.gz")),
        "{error:?}"
    );

    // A line that is not JSON.
    fx.emulator.script(|s| {
        s.blobs[0].raw = None;
        s.blobs[0].lines[2] = "{\"CustomerId\": ".into();
    });
    let error = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .unwrap_err();
    assert!(
        matches!(&error, VendorError::Malformed(m) if m.contains("line 3")),
        "{error:?}"
    );

    // A manifest without its eTag.
    fx.emulator.script(|s| {
        s.manifest_override =
            Some(r#"{"rootDirectory":"https://x","sasToken":"sig=1","blobs":[]}"#.into())
    });
    let error = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .unwrap_err();
    assert!(
        matches!(&error, VendorError::Malformed(m) if m.contains("eTag")),
        "{error:?}"
    );
}

#[tokio::test]
async fn microsoft_refused_secret_is_a_credentials_error() {
    let fx = Fixture::with_secret(usage_script("etag-c"), "not the secret").await;
    let error = fx
        .source()
        .pull(&window(None))
        .await
        .into_result()
        .unwrap_err();
    let VendorError::Credentials(message) = &error else {
        panic!("expected Credentials, got {error:?}");
    };
    assert!(
        !message.contains("not the secret"),
        "the secret leaked: {message}"
    );
    let seen = fx.emulator.seen();
    assert_eq!(seen.tokens_refused, 1);
    assert_eq!(seen.exports, 0);
}

#[tokio::test]
async fn microsoft_credentials_document_is_checked() {
    let fx = Fixture::start(usage_script("etag-c")).await;
    let mut config = fx.config.clone();
    config.partner_tenant_id = "99999999-0000-4000-8000-000000000000".into();
    let error = PartnerCenterSource::new(config).unwrap_err();
    assert!(matches!(error, VendorError::Credentials(_)), "{error:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, "client_secret=hunter2").unwrap();
    let mut config = fx.config.clone();
    config.credentials_ref = format!("file:{}", path.display());
    let error = PartnerCenterSource::new(config).unwrap_err();
    let VendorError::Credentials(message) = &error else {
        panic!("expected Credentials, got {error:?}");
    };
    assert!(!message.contains("hunter2"), "{message}");
}

/// The export through the real poller into the ledger: rated once, and an unchanged eTag appends
/// nothing and downloads nothing.
async fn microsoft_usage_reaches_the_ledger_once(backend: crate::harness::Backend) {
    use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
    use msp_gateway::poller::{PollOutcome, PollerSettings, poll_with};
    use rust_decimal::Decimal;

    let Some(gw) = crate::harness::TestGateway::start(backend).await else {
        return;
    };
    let fx = Fixture::start(usage_script("etag-ledger")).await;
    let account = gw
        .vendor_customer(
            Vendor::Microsoft,
            TENANT,
            "EUR",
            VendorAccountKind::MicrosoftSubscription,
            S1,
            Decimal::new(10, 2),
        )
        .await;

    let settings = PollerSettings {
        owner: "replica".into(),
        ..Default::default()
    };
    let source = fx.source();
    let PollOutcome::Recorded(first) =
        poll_with(&gw.ledger, &account, &source, (day(1), day(30)), &settings)
            .await
            .unwrap()
    else {
        panic!("the first poll records data")
    };
    assert!(first.events_appended > 0, "{first:?}");
    let high = gw.ledger.high_water_mark(&gw.tenant_id).await.unwrap();
    let downloads = fx.emulator.seen().blob_downloads;

    let second = poll_with(&gw.ledger, &account, &source, (day(1), day(30)), &settings)
        .await
        .unwrap();
    assert_eq!(second, PollOutcome::Unchanged);
    assert_eq!(
        gw.ledger.high_water_mark(&gw.tenant_id).await.unwrap(),
        high
    );
    assert_eq!(
        fx.emulator.seen().blob_downloads,
        downloads,
        "no blob downloaded"
    );
    let status = gw.store.poll_status(&account.id).await.unwrap();
    assert_eq!(
        status
            .version_tags
            .get(&day(1).to_rfc3339())
            .map(String::as_str),
        Some("etag-ledger")
    );
    gw.stop().await;
}

crate::both_backends!(microsoft_usage_reaches_the_ledger_once);
