//! Partner Center through partner accounts made with the API and the gateway's own poller
//! (its source, windows, back-off and token cache), against the emulator: list prices from
//! UnitPrice and the below-cost guard, the partner account's billing currency, latent usage and
//! the last billing period, Retry-After and cached tokens.
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use msp_gateway::domain::charges::{ChargeEvent, ChargeFilter};
use msp_gateway::domain::partner_account::PartnerAccount;
use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
use msp_gateway::poller::{PollOutcome, PollerSettings, poll_once_at};
use msp_gateway::proto::v1;
use rust_decimal::Decimal;

use super::{BLOB_METER, C1, C2, Row, S1, S2, VM_METER, dec, vm_row};
use crate::harness::{Backend, TestGateway, assert_violation};
use crate::partner_center_emulator::{
    Blob, CLIENT_ID, CLIENT_SECRET, Emulator, LastPeriod, Script, TENANT,
};

/// A gateway, the emulator, and the Entra app's credentials on file.
struct Gateway {
    gw: TestGateway,
    emulator: Emulator,
    credentials: tempfile::TempDir,
    settings: PollerSettings,
}

impl Gateway {
    async fn start(backend: Backend, mut script: Script) -> Option<Self> {
        let gw = TestGateway::start(backend).await?;
        // Operations settle at once: the connector waits out Retry-After, not its 30 s default.
        script.poll_retry_after = Some(0);
        let emulator = Emulator::start(script).await;
        let credentials = tempfile::tempdir().unwrap();
        std::fs::write(
            credentials.path().join("partner-center.json"),
            serde_json::json!({
                "tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            })
            .to_string(),
        )
        .unwrap();
        // The gateway's vendor_ca_file: the emulator's CA.
        let settings = PollerSettings {
            owner: "replica".into(),
            extra_root_ca_pem: Some(emulator.ca_pem.clone()),
            ..Default::default()
        };
        Some(Gateway {
            gw,
            emulator,
            credentials,
            settings,
        })
    }

    /// The partner account as a create request: the emulator as Graph and as the authority.
    fn request(&self, microsoft_settings: v1::MicrosoftSettings) -> v1::PartnerAccount {
        v1::PartnerAccount {
            vendor: v1::Vendor::Microsoft.into(),
            display_name: "Partner tenant".into(),
            vendor_account_id: TENANT.into(),
            partner_discount_rate: "0".into(),
            credentials_ref: format!(
                "file:{}",
                self.credentials
                    .path()
                    .join("partner-center.json")
                    .display()
            ),
            endpoint_url: self.emulator.api_base_url(),
            poll_interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            enabled: true,
            microsoft_settings: Some(v1::MicrosoftSettings {
                authority_host: self.emulator.authority_host(),
                ..microsoft_settings
            }),
            ..Default::default()
        }
    }

    async fn create(&self, account: v1::PartnerAccount) -> v1::PartnerAccount {
        self.gw
            .partner_accounts(&self.gw.admin_key)
            .await
            .create_partner_account(v1::CreatePartnerAccountRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                partner_account: Some(account),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// A partner account billed in EUR, and a customer billed in EUR that plan S1 is linked to.
    async fn eur_partner_with_s1_linked(&self) -> PartnerAccount {
        let created = self.create(self.request(eur())).await;
        self.gw
            .linked_customer(
                Vendor::Microsoft,
                VendorAccountKind::MicrosoftSubscription,
                S1,
                "EUR",
            )
            .await;
        self.account(&created.id).await
    }

    async fn account(&self, id: &str) -> PartnerAccount {
        self.gw
            .store
            .partner_account(&self.gw.admin(), id)
            .await
            .unwrap()
    }

    /// One poll as the gateway's poller makes it (its source for the account, the windows
    /// due), as if at `now`.
    async fn poll_at(
        &self,
        account: &PartnerAccount,
        now: DateTime<Utc>,
    ) -> msp_gateway::domain::error::Result<PollOutcome> {
        poll_once_at(&self.gw.ledger, account, &self.settings, now).await
    }

    /// The gateway's poller, running as `serve` runs it.
    fn run_poller(&self) -> RunningPoller {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(msp_gateway::poller::run(
            self.gw.ledger.clone(),
            self.settings.clone(),
            stopped,
        ));
        RunningPoller { stop, task }
    }

    /// The account's poll status as the API shows it.
    async fn poll_status(&self, id: &str) -> v1::PollStatus {
        self.gw
            .partner_accounts(&self.gw.admin_key)
            .await
            .get_partner_account(v1::GetPartnerAccountRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
            .poll_status
            .unwrap()
    }

    async fn charges(&self) -> Vec<ChargeEvent> {
        self.gw
            .ledger
            .list_charges(&self.gw.admin(), &ChargeFilter::default(), 0, 1000)
            .await
            .unwrap()
            .0
    }

    async fn high_water_mark(&self) -> i64 {
        self.gw
            .ledger
            .high_water_mark(&self.gw.tenant_id)
            .await
            .unwrap()
    }

    async fn update(&self, id: &str, account: v1::PartnerAccount, paths: &[&str]) {
        self.gw
            .partner_accounts(&self.gw.admin_key)
            .await
            .update_partner_account(v1::UpdatePartnerAccountRequest {
                partner_account: Some(v1::PartnerAccount {
                    id: id.into(),
                    ..account
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                }),
                request_id: uuid::Uuid::new_v4().to_string(),
            })
            .await
            .unwrap();
    }
}

struct RunningPoller {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningPoller {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

fn eur() -> v1::MicrosoftSettings {
    v1::MicrosoftSettings {
        billing_currency: "EUR".into(),
        ..Default::default()
    }
}

/// A row of plan S1 billed in EUR and priced in EUR (rate 1).
fn eur_row(meter: &'static str, category: &'static str, usage_date: &'static str) -> Row {
    Row {
        meter,
        category,
        usage_date,
        pricing_currency: "EUR",
        rate: "1",
        ..vm_row()
    }
}

fn blob(rows: &[Row]) -> Vec<Blob> {
    vec![Blob::new(
        "part-00000.json.gz",
        rows.iter().map(Row::json).collect(),
    )]
}

async fn price_rule(gw: &TestGateway, id: &str, service: Option<&str>, discount: Decimal) {
    use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
    use msp_gateway::domain::pricing::NewPriceRule;
    use msp_gateway::domain::pricing::{PriceKind, RuleScope};
    let rule = NewPriceRule {
        scope: RuleScope {
            service: service.map(str::to_string),
            ..Default::default()
        },
        kind: PriceKind::ListMinusDiscount,
        value: discount,
        currency: None,
        effective_from: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        effective_to: None,
    };
    let key = IdempotencyKey::new(id.into(), "CreatePriceRule", &rule);
    gw.ledger
        .create_price_rule(&gw.admin(), &rule, &Idempotent::unanswered(key))
        .await
        .unwrap();
}

/// List minus 5 % is priced off UnitPrice × Quantity (6.1910, the trial's figures), not off the
/// charged total (5.5393, which made every price fall below cost); a rule that still sells below
/// cost is held unrated as BELOW_COST once the tenant's pricing policy says so, and charged
/// again when it no longer does.
async fn microsoft_list_price_and_the_below_cost_guard(backend: Backend) {
    let vm = Row {
        quantity: "10",
        unit_price: "0.61910",
        cost: "5.5393",
        pricing_total: "5.5393",
        ..eur_row(VM_METER, "Virtual Machines", "2026-11-03T00:00:00")
    };
    // 100 GB at a list 0.02: 2.00; the partner pays 1.80; the MSP's storage rule gives 15 % off.
    let storage = Row {
        quantity: "100",
        unit_price: "0.02",
        cost: "1.80",
        pricing_total: "1.80",
        location: None,
        ..eur_row(BLOB_METER, "Storage", "2026-11-04T00:00:00")
    };
    let script = Script {
        etag: "nov-1".into(),
        blobs: blob(&[vm, storage]),
        ..Script::default()
    };
    let Some(pc) = Gateway::start(backend, script).await else {
        return;
    };
    let account = pc.eur_partner_with_s1_linked().await;
    price_rule(&pc.gw, "list-5", None, Decimal::new(5, 2)).await;
    price_rule(&pc.gw, "storage-15", Some("Storage"), Decimal::new(15, 2)).await;

    let outcome = pc.poll_at(&account, at(2026, 11, 20)).await.expect("poll");
    assert!(matches!(outcome, PollOutcome::Recorded(_)), "{outcome:?}");
    let mut charged: Vec<(String, Decimal)> = pc
        .charges()
        .await
        .iter()
        .map(|c| (c.service.clone(), c.amount))
        .collect();
    charged.sort();
    assert_eq!(
        charged,
        [
            ("Storage".to_string(), dec("1.7")),
            ("Virtual Machines".to_string(), dec("5.88145")),
        ],
        "6.1910 × 0.95, above the cost of 5.5393; the storage rule sells below cost, as allowed"
    );

    // The MSP turns the guard on: the storage line is reversed and held with its reason.
    let mut pricing = pc.gw.pricing(&pc.gw.admin_key).await;
    let hold = |on: bool, etag: &str| v1::UpdatePricingPolicyRequest {
        pricing_policy: Some(v1::PricingPolicy {
            hold_below_cost: on,
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["hold_below_cost".into()],
        }),
        request_id: format!("hold-{on}"),
    };
    let policy = pricing
        .update_pricing_policy(hold(true, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(policy.hold_below_cost);
    let got = pricing
        .get_pricing_policy(v1::GetPricingPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, policy);
    let charges = pc.charges().await;
    let last = charges.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.service.as_str(), last.amount),
        ("REVERSAL", "Storage", dec("-1.7"))
    );
    let unrated = pc
        .gw
        .usage(&pc.gw.admin_key)
        .await
        .list_unrated_usage(v1::ListUnratedUsageRequest::default())
        .await
        .unwrap()
        .into_inner()
        .unrated_usage;
    assert_eq!(unrated.len(), 1, "{unrated:?}");
    assert_eq!(unrated[0].reason_code, "BELOW_COST");
    assert!(unrated[0].reason.contains("below"), "{}", unrated[0].reason);
    assert_eq!(unrated[0].line.as_ref().unwrap().list_cost, "2.00");

    // A stale etag is refused; off again, the line is charged again.
    let stale = pricing.update_pricing_policy(hold(false, "v0")).await;
    assert_eq!(stale.unwrap_err().code(), tonic::Code::Aborted);
    pricing
        .update_pricing_policy(hold(false, &policy.etag))
        .await
        .unwrap();
    let total: Decimal = pc.charges().await.iter().map(|c| c.amount).sum();
    assert_eq!(total, dec("7.58145"));
    pc.gw.stop().await;
}

/// The export is asked for in the partner account's billing currency (by default the tenant's,
/// ZAR here, in which this EUR-billed partner has no usage); a wrong currency is refused when
/// set, and an export that comes back empty where usage was recorded fails the poll instead of
/// reversing every charge.
async fn microsoft_billing_currency_is_the_partner_accounts(backend: Backend) {
    let script = Script {
        etag: "nov-1".into(),
        blobs: blob(&[eur_row(VM_METER, "Virtual Machines", "2026-11-03T00:00:00")]),
        billing_currency: Some("EUR".into()),
        ..Script::default()
    };
    let Some(pc) = Gateway::start(backend, script).await else {
        return;
    };
    let mut accounts = pc.gw.partner_accounts(&pc.gw.admin_key).await;
    for (settings, field) in [
        (
            v1::MicrosoftSettings {
                billing_currency: "EURO".into(),
                ..Default::default()
            },
            "partner_account.microsoft_settings.billing_currency",
        ),
        (
            v1::MicrosoftSettings {
                token_scope: "https://graph.microsoft.com/User.Read".into(),
                ..Default::default()
            },
            "partner_account.microsoft_settings.token_scope",
        ),
    ] {
        let result = accounts
            .create_partner_account(v1::CreatePartnerAccountRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                partner_account: Some(pc.request(settings)),
            })
            .await;
        assert_violation(result, tonic::Code::InvalidArgument, field);
    }
    let mut insecure = pc.request(eur());
    insecure.microsoft_settings.as_mut().unwrap().authority_host = "http://login.example".into();
    let result = accounts
        .create_partner_account(v1::CreatePartnerAccountRequest {
            request_id: "insecure".into(),
            partner_account: Some(insecure),
        })
        .await;
    assert_violation(
        result,
        tonic::Code::InvalidArgument,
        "partner_account.microsoft_settings.authority_host",
    );
    let aws = v1::PartnerAccount {
        vendor: v1::Vendor::Aws.into(),
        vendor_account_id: "999988887777".into(),
        ..pc.request(eur())
    };
    let result = accounts
        .create_partner_account(v1::CreatePartnerAccountRequest {
            request_id: "aws".into(),
            partner_account: Some(aws),
        })
        .await;
    assert_violation(
        result,
        tonic::Code::InvalidArgument,
        "partner_account.microsoft_settings",
    );

    // Created without a currency: the tenant's.
    let created = pc
        .create(pc.request(v1::MicrosoftSettings::default()))
        .await;
    let shown = created.microsoft_settings.clone().unwrap();
    assert_eq!(shown.billing_currency, "ZAR");
    assert_eq!(shown.authority_host, pc.emulator.authority_host());
    pc.gw
        .linked_customer(
            Vendor::Microsoft,
            VendorAccountKind::MicrosoftSubscription,
            S1,
            "EUR",
        )
        .await;
    price_rule(&pc.gw, "list-5", None, Decimal::new(5, 2)).await;
    let account = pc.account(&created.id).await;
    let nov_20 = at(2026, 11, 20);
    pc.poll_at(&account, nov_20).await.expect("an empty export");
    assert_eq!(pc.charges().await.len(), 0);
    assert_eq!(pc.emulator.seen().export_bodies[0]["currencyCode"], "ZAR");

    pc.update(
        &created.id,
        v1::PartnerAccount {
            microsoft_settings: Some(eur()),
            ..Default::default()
        },
        &["microsoft_settings.billing_currency"],
    )
    .await;
    let account = pc.account(&created.id).await;
    assert_eq!(
        account.spec.microsoft.as_ref().unwrap().authority_host,
        pc.emulator.authority_host(),
        "the mask named only the currency"
    );
    pc.poll_at(&account, nov_20).await.expect("EUR usage");
    assert_eq!(pc.emulator.seen().export_bodies[1]["currencyCode"], "EUR");
    assert_eq!(pc.charges().await.len(), 1);
    let high = pc.high_water_mark().await;

    // Back to the wrong currency: the empty export must not reverse the month.
    pc.update(
        &created.id,
        v1::PartnerAccount {
            microsoft_settings: Some(v1::MicrosoftSettings {
                billing_currency: "ZAR".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        &["microsoft_settings.billing_currency"],
    )
    .await;
    let account = pc.account(&created.id).await;
    let error = pc
        .poll_at(&account, nov_20)
        .await
        .expect_err("suspiciously empty");
    assert!(error.to_string().contains("no usage"), "{error}");
    assert_eq!(pc.high_water_mark().await, high, "nothing reversed");
    let status = pc.poll_status(&created.id).await;
    assert!(
        status.last_error.contains("billing_currency"),
        "{}",
        status.last_error
    );
    assert_eq!(status.consecutive_failures, 1);
    pc.gw.stop().await;
}

/// Early in December the poll reads November (`last`) and December (`current`). December's
/// export carries latent November usage: it is charged on 1 December, and no later pull of
/// either period reverses it. November's revisions are charged as they come; unchanged eTags
/// download nothing; once Microsoft has billed November (its export empty) nothing is
/// reversed; after the 10th November is no longer read.
async fn microsoft_latent_usage_and_the_last_period(backend: Backend) {
    let november = Row {
        quantity: "24",
        cost: "2.4",
        unit_price: "0.1",
        ..eur_row(VM_METER, "Virtual Machines", "2026-11-28T00:00:00")
    };
    let latent = Row {
        quantity: "2",
        cost: "0.2",
        unit_price: "0.1",
        ..november.clone()
    };
    let december = Row {
        usage_date: "2026-12-02T00:00:00",
        ..november.clone()
    };
    let script = Script {
        etag: "dec-1".into(),
        blobs: blob(&[latent, december]),
        last: LastPeriod {
            etag: "nov-1".into(),
            blobs: blob(std::slice::from_ref(&november)),
        },
        ..Script::default()
    };
    let Some(pc) = Gateway::start(backend, script).await else {
        return;
    };
    let account = pc.eur_partner_with_s1_linked().await;
    price_rule(&pc.gw, "list-0", None, Decimal::ZERO).await;
    let dec_3 = at(2026, 12, 3);

    pc.poll_at(&account, dec_3).await.expect("first poll");
    let periods: Vec<String> = pc
        .emulator
        .seen()
        .export_bodies
        .iter()
        .map(|b| b["billingPeriod"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(periods, ["last", "current"]);
    let day_of = |c: &ChargeEvent| (c.window_start.format("%m-%d").to_string(), c.quantity);
    let mut charged: Vec<_> = pc.charges().await.iter().map(day_of).collect();
    charged.sort();
    assert_eq!(
        charged,
        [
            ("11-28".to_string(), dec("24")),
            ("12-01".to_string(), dec("2")),
            ("12-02".to_string(), dec("24")),
        ],
        "the latent 2 hours of 28 November are charged on 1 December"
    );

    // Nothing changed: two exports, no download, nothing appended.
    let (downloads, high) = (
        pc.emulator.seen().blob_downloads,
        pc.high_water_mark().await,
    );
    assert_eq!(
        pc.poll_at(&account, dec_3).await.unwrap(),
        PollOutcome::Unchanged
    );
    assert_eq!(pc.emulator.seen().blob_downloads, downloads);

    // November revised; December re-exported under a new eTag with the same rows.
    pc.emulator.script(|s| {
        s.last = LastPeriod {
            etag: "nov-2".into(),
            blobs: blob(&[Row {
                quantity: "25",
                cost: "2.5",
                ..november.clone()
            }]),
        };
        s.etag = "dec-2".into();
    });
    pc.poll_at(&account, dec_3).await.expect("revision");
    let charges = pc.charges().await;
    assert_eq!(charges.len() as i64, high + 1, "one revision, nothing else");
    let revision = charges.last().unwrap();
    assert_eq!(
        (revision.kind.as_str(), day_of(revision)),
        ("REVISION", ("11-28".to_string(), dec("1")))
    );

    // Microsoft bills November: its unbilled export is empty; the month stays as last read.
    pc.emulator.script(|s| {
        s.last = LastPeriod {
            etag: "nov-billed".into(),
            blobs: Vec::new(),
        }
    });
    let high = pc.high_water_mark().await;
    pc.poll_at(&account, dec_3).await.expect("billed November");
    assert_eq!(pc.high_water_mark().await, high);

    // After the 10th only December is read, its latent line still charged.
    let exports = pc.emulator.seen().exports;
    pc.poll_at(&account, at(2026, 12, 11)).await.unwrap();
    let seen = pc.emulator.seen();
    assert_eq!(seen.exports, exports + 1);
    assert_eq!(
        seen.export_bodies.last().unwrap()["billingPeriod"],
        "current"
    );
    let total: Decimal = pc.charges().await.iter().map(|c| c.amount).sum();
    assert_eq!(total, dec("5.1"), "2.5 + 0.2 + 2.4");
    pc.gw.stop().await;
}

/// The running poller carries a 429's Retry-After (600 s, beyond what a poll waits out) into
/// the next poll time, shown on the partner account: the export is not called again every
/// second.
async fn microsoft_retry_after_delays_the_next_poll(backend: Backend) {
    let script = Script {
        throttle: 1000,
        throttle_retry_after: Some(600),
        ..Script::default()
    };
    let Some(pc) = Gateway::start(backend, script).await else {
        return;
    };
    let created = pc.create(pc.request(eur())).await;
    let poller = pc.run_poller();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    poller.stop().await;
    assert_eq!(
        pc.emulator.seen().throttled,
        1,
        "one call, then a 600 s pause"
    );
    let status = pc.poll_status(&created.id).await;
    let pause = status.next_poll_time.unwrap().seconds - status.last_poll_time.unwrap().seconds;
    assert!((599..=601).contains(&pause), "{status:?}");
    assert!(
        status.last_error.contains("throttled"),
        "{}",
        status.last_error
    );
    pc.gw.stop().await;
}

/// The running poller asks Entra ID for a token once and reuses it poll after poll, under the
/// account's own token scope; a token that expires within five minutes is renewed instead.
async fn microsoft_tokens_are_cached_until_shortly_before_expiry(backend: Backend) {
    const PARTNER_CENTER: &str = "https://api.partnercenter.microsoft.com/.default";
    let script = Script {
        scope: PARTNER_CENTER.into(),
        ..Script::default()
    };
    let Some(pc) = Gateway::start(backend, script).await else {
        return;
    };
    let created = pc
        .create(pc.request(v1::MicrosoftSettings {
            token_scope: PARTNER_CENTER.into(),
            ..eur()
        }))
        .await;
    let poller = pc.run_poller();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let seen = pc.emulator.seen();
    assert!(seen.exports >= 3, "polled every second: {seen:?}");
    assert_eq!((seen.token_requests, seen.tokens_refused), (1, 0));

    // Tokens that live four minutes (Entra ID's margin is five): each poll needs a new one. A
    // changed account gets a new poller, which asks for its first.
    pc.emulator.script(|s| s.token_expires_in = 240);
    pc.update(
        &created.id,
        v1::PartnerAccount {
            display_name: "Partner tenant (renamed)".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    poller.stop().await;
    let more = pc.emulator.seen();
    assert!(more.token_requests > 3, "a token a poll: {more:?}");
    assert_eq!(more.tokens_refused, 0);
    pc.gw.stop().await;
}

/// Credentials the gateway cannot read fail the poll before any request, and that failure is
/// shown and backed off like any other.
async fn microsoft_unreadable_credentials_are_a_recorded_failure(backend: Backend) {
    let Some(pc) = Gateway::start(backend, Script::default()).await else {
        return;
    };
    let missing = pc.credentials.path().join("absent.json");
    let created = pc
        .create(v1::PartnerAccount {
            credentials_ref: format!("file:{}", missing.display()),
            ..pc.request(eur())
        })
        .await;
    let account = pc.account(&created.id).await;
    for _ in 0..2 {
        pc.poll_at(&account, at(2026, 11, 20))
            .await
            .expect_err("no credentials");
    }
    let status = pc.poll_status(&created.id).await;
    assert!(status.last_error.contains("absent.json"), "{status:?}");
    assert_eq!(status.consecutive_failures, 2);
    let wait = status.next_poll_time.unwrap().seconds - status.last_poll_time.unwrap().seconds;
    assert!((3..=5).contains(&wait), "1 s × 2²: {status:?}");
    assert_eq!(pc.emulator.seen().token_requests, 0);
    pc.gw.stop().await;
}

/// A customer linked by its Microsoft tenant is charged for every subscription of the tenant
/// (before, usage was matched by SubscriptionId alone and such a customer got nothing); a
/// subscription linked on its own goes to its own customer; a tenant linked later gets the usage
/// that waited for it.
async fn microsoft_tenant_links_attribute_every_subscription(backend: Backend) {
    const S3: &str = "33333333-aaaa-4bbb-8ccc-000000000003";
    let row = |customer, subscription, usage_date| Row {
        customer,
        subscription,
        ..eur_row(VM_METER, "Virtual Machines", usage_date)
    };
    let script = Script {
        etag: "nov-1".into(),
        blobs: blob(&[
            row(C1, S1, "2026-11-03T00:00:00"),
            row(C1, S2, "2026-11-04T00:00:00"),
            row(C2, S3, "2026-11-05T00:00:00"),
        ]),
        ..Script::default()
    };
    let Some(pc) = Gateway::start(backend, script).await else {
        return;
    };
    let created = pc.create(pc.request(eur())).await;
    let account = pc.account(&created.id).await;
    let by_tenant = (Vendor::Microsoft, VendorAccountKind::MicrosoftTenant);
    let by_subscription = (Vendor::Microsoft, VendorAccountKind::MicrosoftSubscription);
    let tenant_customer = pc
        .gw
        .linked_customer(by_tenant.0, by_tenant.1, C1, "EUR")
        .await;
    let subscription_customer = pc
        .gw
        .linked_customer(by_subscription.0, by_subscription.1, S2, "EUR")
        .await;
    price_rule(&pc.gw, "list", None, Decimal::ZERO).await;
    pc.poll_at(&account, at(2026, 11, 20)).await.expect("poll");

    let day = |c: &ChargeEvent| c.window_start.format("%d").to_string();
    let mut charged: Vec<(String, String)> = pc
        .charges()
        .await
        .iter()
        .map(|c| (day(c), c.customer_id.clone()))
        .collect();
    charged.sort();
    assert_eq!(
        charged,
        [
            ("03".to_string(), tenant_customer.clone()),
            ("04".to_string(), subscription_customer),
        ],
        "S1 through the tenant link, S2 through its own link; S3's tenant is not linked"
    );
    let unrated = pc
        .gw
        .usage(&pc.gw.admin_key)
        .await
        .list_unrated_usage(v1::ListUnratedUsageRequest::default())
        .await
        .unwrap()
        .into_inner()
        .unrated_usage;
    assert_eq!(unrated.len(), 1, "{unrated:?}");
    assert_eq!(unrated[0].reason_code, "UNKNOWN_VENDOR_ACCOUNT");
    let line = unrated[0].line.as_ref().unwrap();
    assert_eq!(
        (
            line.vendor_account_id.as_str(),
            line.vendor_tenant_id.as_str()
        ),
        (S3, C2)
    );

    // Linking C2's tenant rates the line that waited for it.
    let late = pc
        .gw
        .linked_customer(by_tenant.0, by_tenant.1, C2, "EUR")
        .await;
    let newest = pc.charges().await.pop().unwrap();
    assert_eq!(
        (day(&newest), newest.customer_id, newest.kind.as_str()),
        ("05".to_string(), late, "NEW")
    );
    pc.gw.stop().await;
}

crate::both_backends!(
    microsoft_list_price_and_the_below_cost_guard,
    microsoft_tenant_links_attribute_every_subscription,
    microsoft_billing_currency_is_the_partner_accounts,
    microsoft_latent_usage_and_the_last_period,
    microsoft_retry_after_delays_the_next_poll,
    microsoft_tokens_are_cached_until_shortly_before_expiry,
    microsoft_unreadable_credentials_are_a_recorded_failure,
);
