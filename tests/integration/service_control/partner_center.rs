//! Partner Center service control against the TLS emulator: customers created idempotently,
//! subscriptions suspended, resumed and deleted under If-Match, and the faults Partner Center
//! answers with (stale etags, 429 with Retry-After, 5xx, a subscription refusing deletion).
use std::time::{Duration, Instant};

use msp_gateway::domain::service_action::RetryPolicy;
use msp_gateway::domain::service_control::{
    Change, Contact, ControlError, ControlReport, ControlTarget, EnrollmentDetails,
    EnrollmentOrder, EnrollmentProgress, MicrosoftEnrollment, PostalAddress,
};
use msp_gateway::domain::vendor::VendorAccountKind;
use msp_gateway::vendors::microsoft::control::{PartnerCenterControl, PartnerCenterControlConfig};
use msp_gateway::vendors::service_control::ServiceControl;

use crate::partner_center_emulator::{CLIENT_ID, CLIENT_SECRET, Emulator, Script, TENANT};

pub const CUSTOMER: &str = "c0ffee00-0000-4000-8000-0000000000c1";
pub const S1: &str = "51515151-0000-4000-8000-000000000001";
pub const S2: &str = "52525252-0000-4000-8000-000000000002";
pub const S3: &str = "53535353-0000-4000-8000-000000000003";

pub struct Fixture {
    pub emulator: Emulator,
    config: PartnerCenterControlConfig,
    _credentials: tempfile::TempDir,
}

impl Fixture {
    /// The emulator with one customer holding three active subscriptions.
    pub async fn start() -> Fixture {
        let emulator = Emulator::start(Script::default()).await;
        emulator.add_subscriptions(
            CUSTOMER,
            &[
                (S1, "Microsoft 365 Business Basic", "active"),
                (S2, "Microsoft 365 E3", "active"),
                (S3, "Azure plan", "active"),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partner-center.json");
        let secret = serde_json::json!({
            "tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        });
        std::fs::write(&path, secret.to_string()).unwrap();
        let mut config =
            PartnerCenterControlConfig::new(TENANT, &format!("file:{}", path.display()));
        config.api_base_url = format!("https://{}/v1", emulator.addr);
        config.authority_host = emulator.authority_host();
        config.extra_root_ca_pem = Some(emulator.ca_pem.clone());
        config.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        };
        config.max_wait = Duration::from_secs(2);
        Fixture {
            emulator,
            config,
            _credentials: dir,
        }
    }

    pub fn control(&self) -> PartnerCenterControl {
        PartnerCenterControl::new(self.config.clone()).expect("adapter")
    }

    pub fn statuses(&self) -> Vec<String> {
        [S1, S2, S3]
            .iter()
            .map(|s| self.emulator.subscription_status(s))
            .collect()
    }
}

fn tenant() -> ControlTarget {
    ControlTarget::new(VendorAccountKind::MicrosoftTenant, CUSTOMER)
}

fn subscription(id: &str) -> ControlTarget {
    ControlTarget {
        tenant_id: Some(CUSTOMER.into()),
        ..ControlTarget::new(VendorAccountKind::MicrosoftSubscription, id)
    }
}

fn changes(report: &ControlReport) -> Vec<(&str, Change)> {
    report
        .resources
        .iter()
        .map(|r| (r.resource_id.as_str(), r.change))
        .collect()
}

#[tokio::test]
async fn a_tenant_is_suspended_and_resumed_subscription_by_subscription() {
    let f = Fixture::start().await;
    let control = f.control();
    let report = control.suspend(&tenant()).await.expect("suspend");
    assert_eq!(
        changes(&report),
        [
            (S1, Change::Applied),
            (S2, Change::Applied),
            (S3, Change::Applied)
        ]
    );
    assert_eq!(f.statuses(), ["suspended"; 3]);
    let seen = f.emulator.customers_seen();
    assert_eq!(seen.patched_statuses, ["suspended"; 3]);

    let again = control.suspend(&tenant()).await.expect("suspend again");
    assert!(
        changes(&again)
            .iter()
            .all(|(_, c)| *c == Change::AlreadyInState)
    );
    assert_eq!(
        f.emulator.customers_seen().patches,
        3,
        "nothing patched twice"
    );

    let resumed = control.resume(&tenant()).await.expect("resume");
    assert!(changes(&resumed).iter().all(|(_, c)| *c == Change::Applied));
    assert_eq!(f.statuses(), ["active"; 3]);
}

#[tokio::test]
async fn one_subscription_under_its_tenant() {
    let f = Fixture::start().await;
    let control = f.control();
    let report = control.suspend(&subscription(S2)).await.expect("suspend");
    assert_eq!(changes(&report), [(S2, Change::Applied)]);
    assert_eq!(f.statuses(), ["active", "suspended", "active"]);

    let orphan = ControlTarget::new(VendorAccountKind::MicrosoftSubscription, S2);
    let reason = control.suspend(&orphan).await.unwrap_err();
    assert!(
        !reason.is_transient() && reason.reason().contains("customer tenant"),
        "{reason}"
    );
    let unknown = subscription("99999999-0000-4000-8000-000000000009");
    let reason = control.resume(&unknown).await.unwrap_err();
    assert!(reason.reason().contains("no such subscription"), "{reason}");
    let aws = ControlTarget::new(VendorAccountKind::AwsAccount, "444455556666");
    assert!(!control.suspend(&aws).await.unwrap_err().is_transient());
}

#[tokio::test]
async fn a_stale_etag_is_read_again_and_retried() {
    let f = Fixture::start().await;
    f.emulator.customers_script(|s| s.stale_etags = 2);
    let report = f
        .control()
        .suspend(&subscription(S1))
        .await
        .expect("suspend");
    assert_eq!(changes(&report), [(S1, Change::Applied)]);
    let seen = f.emulator.customers_seen();
    assert_eq!(
        (seen.stale_etag_answers, seen.patches, seen.reads),
        (2, 3, 3)
    );

    // Changed under every attempt: transient, for the caller to retry later.
    f.emulator.customers_script(|s| s.stale_etags = 10);
    let error = f.control().suspend(&subscription(S2)).await.unwrap_err();
    assert!(
        error.is_transient() && error.reason().contains("412"),
        "{error}"
    );
    assert_eq!(f.emulator.subscription_status(S2), "active");
}

#[tokio::test]
async fn throttling_waits_out_retry_after() {
    let f = Fixture::start().await;
    f.emulator.customers_script(|s| {
        s.throttle = 2;
        s.throttle_retry_after = Some(1);
    });
    let start = Instant::now();
    f.control()
        .suspend(&subscription(S1))
        .await
        .expect("suspend");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(f.emulator.customers_seen().throttled, 2);
    assert_eq!(f.emulator.subscription_status(S1), "suspended");

    // Longer than the adapter may wait: handed to the caller with the vendor's hint.
    f.emulator.customers_script(|s| {
        s.throttle = 1;
        s.throttle_retry_after = Some(30);
    });
    let start = Instant::now();
    let error = f.control().resume(&subscription(S1)).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(
        error,
        ControlError::Transient {
            reason: format!("reading subscription {S1}: throttled by Partner Center (HTTP 429)"),
            retry_after: Some(Duration::from_secs(30)),
        }
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_as_transient() {
    let f = Fixture::start().await;
    f.emulator.customers_script(|s| s.unavailable = 2);
    f.control()
        .suspend(&subscription(S3))
        .await
        .expect("suspend after two 503s");
    assert_eq!(f.emulator.customers_seen().unavailable, 2);
    assert_eq!(f.emulator.subscription_status(S3), "suspended");

    f.emulator.customers_script(|s| s.unavailable = 10);
    let error = f.control().resume(&subscription(S3)).await.unwrap_err();
    assert!(
        error.is_transient() && error.reason().contains("HTTP 503"),
        "{error}"
    );
    assert_eq!(
        f.emulator.customers_seen().unavailable,
        2 + 3,
        "max_attempts"
    );
}

#[tokio::test]
async fn purge_deletes_what_it_may_and_names_the_subscription_that_refuses() {
    let f = Fixture::start().await;
    f.emulator.refuse_deletion(S2);
    let control = f.control();
    control.suspend(&tenant()).await.expect("suspend first");
    let error = control.purge(&tenant()).await.unwrap_err();
    let ControlError::Permanent { reason } = &error else {
        panic!("a refusal is permanent: {error:?}");
    };
    assert!(
        reason.contains(&format!(
            "1 of 3 subscriptions of customer {CUSTOMER} could not be cancelled (2 done)"
        )) && reason.contains(&format!("subscription {S2}:"))
            && reason.contains("168-hour cancellation window")
            && !reason.contains(&format!("subscription {S1}:")),
        "{reason}"
    );
    assert_eq!(f.statuses(), ["deleted", "suspended", "deleted"]);

    // A deleted subscription is passed over by a tenant-wide resume, refused on its own.
    let report = control.resume(&tenant()).await.expect("resume the rest");
    assert_eq!(
        changes(&report),
        [
            (S1, Change::Skipped),
            (S2, Change::Applied),
            (S3, Change::Skipped)
        ]
    );
    let refused = control.resume(&subscription(S1)).await.unwrap_err();
    assert!(refused.reason().contains("cannot be resumed"), "{refused}");
}

fn order(key: &str, domain: &str) -> EnrollmentOrder {
    EnrollmentOrder {
        idempotency_key: key.into(),
        details: EnrollmentDetails::Microsoft(Box::new(MicrosoftEnrollment {
            domain: format!("{domain}.onmicrosoft.com"),
            company_name: "Acme Mining".into(),
            contact: Contact {
                first_name: "Thandi".into(),
                last_name: "Nkosi".into(),
                email: "it@acme.example".into(),
                phone: "+27 11 555 0100".into(),
            },
            address: PostalAddress {
                country: "ZA".into(),
                region: "Gauteng".into(),
                city: "Johannesburg".into(),
                address_line1: "1 Main Road".into(),
                address_line2: String::new(),
                postal_code: "2001".into(),
            },
            culture: "en-US".into(),
            language: "en".into(),
        })),
    }
}

#[tokio::test]
async fn enrollment_creates_the_customer_once_and_reports_a_taken_domain() {
    let f = Fixture::start().await;
    let control = f.control();
    let first = order("sva_enroll_ms_1", "acmemining");
    let EnrollmentProgress::Enrolled { kind, account_id } =
        control.enroll(&first).await.expect("enroll")
    else {
        panic!("Partner Center answers at once");
    };
    assert_eq!(kind, VendorAccountKind::MicrosoftTenant);
    assert_eq!(
        f.emulator.customers()["acmemining.onmicrosoft.com"],
        account_id
    );
    let body = &f.emulator.customers_seen().create_bodies[0];
    assert_eq!(body["BillingProfile"]["DefaultAddress"]["Country"], "ZA");
    assert_eq!(body["BillingProfile"]["Email"], "it@acme.example");

    // The same order again (a retry after a crash): the same tenant, no second customer.
    assert_eq!(
        control.enroll(&first).await.unwrap(),
        EnrollmentProgress::Enrolled {
            kind,
            account_id: account_id.clone()
        }
    );
    assert_eq!(f.emulator.customers_seen().creates, 2);
    assert_eq!(
        f.emulator.customers().len(),
        2,
        "the fixture's customer and this one"
    );

    // Another order for the same domain: Partner Center's refusal, as the enrollment's outcome.
    let EnrollmentProgress::Failed { reason } = control
        .enroll(&order("sva_enroll_ms_2", "acmemining"))
        .await
        .unwrap()
    else {
        panic!("a taken domain fails the enrollment");
    };
    assert!(
        reason.contains("HTTP 409") && reason.contains("already in use"),
        "{reason}"
    );
    assert!(control.poll_enrollment("anything").await.is_err());
}

#[tokio::test]
async fn a_wrong_secret_is_a_permanent_failure() {
    let f = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.json");
    let secret = serde_json::json!({"client_id": CLIENT_ID, "client_secret": "not the secret"});
    std::fs::write(&path, secret.to_string()).unwrap();
    let mut config = f.config.clone();
    config.credentials_ref = format!("file:{}", path.display());
    let error = PartnerCenterControl::new(config)
        .unwrap()
        .suspend(&tenant())
        .await
        .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(error.reason().contains("credentials"), "{error}");
    assert_eq!(f.statuses(), ["active"; 3]);
}
