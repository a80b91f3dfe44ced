//! The operations endpoint: `/healthz` answers, `/readyz` follows the database and pending
//! migrations, and `/metrics` carries every documented series, which move as calls, writes,
//! polls and streams happen.

use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
use msp_gateway::proto::v1;
use msp_gateway::store::migrate::{self, Direction};
use msp_gateway::telemetry::metrics as names;
use rust_decimal::Decimal;

use crate::harness::{Backend, Bearer, TestGateway};

/// Serves the operations router for `gw`'s ledger on an ephemeral port; its base URL.
async fn operations(gw: &TestGateway) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let ledger = gw.ledger.clone();
    tokio::spawn(msp_gateway::operations::serve(
        listener,
        ledger,
        std::future::pending(),
    ));
    format!("http://{address}")
}

async fn get(base: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The value of the sample `series` (name and labels exactly as rendered), if present.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

fn requests(scrape: &str, method: &str, code: &str) -> f64 {
    let series = format!(
        "{}{{method=\"{method}\",code=\"{code}\"}}",
        names::RPC_REQUESTS
    );
    sample(scrape, &series).unwrap_or(0.0)
}

async fn operations_endpoint_tells_the_truth(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let base = operations(&gw).await;
    assert_eq!(get(&base, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(get(&base, "/readyz").await, (200, "ready\n".to_string()));

    // Calls: counted by method and code, whatever other tests in this process add meanwhile.
    let list = "/msp.gateway.v1.CustomerService/ListCustomers";
    let get_customer = "/msp.gateway.v1.CustomerService/GetCustomer";
    let (_, before) = get(&base, "/metrics").await;
    let mut customers = gw.customers(&gw.admin_key).await;
    customers
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .unwrap();
    let refused = customers
        .get_customer(v1::GetCustomerRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let unauthenticated = v1::customer_service_client::CustomerServiceClient::with_interceptor(
        gw.channel().await,
        Bearer::new("not-a-key"),
    )
    .list_customers(v1::ListCustomersRequest::default())
    .await
    .unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);

    // Usage pushed, a simulator poll that succeeds, a Microsoft poll that cannot start.
    let simulator = gw
        .vendor_customer(
            Vendor::Simulator,
            "sim-partner",
            "USD",
            VendorAccountKind::SimulatorAccount,
            "sim-ops-1",
            Decimal::new(10, 2),
        )
        .await;
    let settings = msp_gateway::poller::PollerSettings::default();
    let polled = msp_gateway::poller::poll_once(&gw.ledger, &simulator, &settings)
        .await
        .unwrap();
    let msp_gateway::poller::PollOutcome::Recorded(polled) = polled else {
        panic!("the simulator poll recorded nothing: {polled:?}");
    };
    assert!(polled.events_appended > 0, "{polled:?}");
    let microsoft = {
        use msp_gateway::domain::idempotency::IdempotencyKey;
        use msp_gateway::domain::microsoft_settings::MicrosoftSettings;
        use msp_gateway::domain::money::Currency;
        use msp_gateway::domain::partner_account::PartnerAccountSpec;
        let spec = PartnerAccountSpec {
            vendor: Vendor::Microsoft,
            display_name: "Microsoft partner without credentials".into(),
            vendor_account_id: "00000000-0000-0000-0000-0000000000aa".into(),
            partner_discount_rate: Decimal::ZERO,
            credentials_ref: "env:MSPGW_OPERATIONS_TEST_NO_SUCH_VARIABLE".into(),
            poll_interval_secs: 900,
            enabled: true,
            endpoint_url: String::new(),
            aws: None,
            microsoft: Some(MicrosoftSettings::billed_in(
                Currency::parse("c", "ZAR").unwrap(),
            )),
        };
        let key = IdempotencyKey::new("pa-ms".into(), "CreatePartnerAccount", &spec);
        gw.store
            .create_partner_account(
                &gw.admin(),
                &spec,
                &msp_gateway::domain::idempotency::Idempotent::unanswered(key),
            )
            .await
            .unwrap()
            .fresh()
            .unwrap()
            .0
    };
    msp_gateway::poller::poll_once(&gw.ledger, &microsoft, &settings)
        .await
        .unwrap_err();

    // A charge stream open from the start: it lags until it has read what is there.
    let mut charges = v1::charge_service_client::ChargeServiceClient::with_interceptor(
        gw.channel().await,
        Bearer::new(&gw.admin_key),
    );
    let mut stream = charges
        .stream_charges(v1::StreamChargesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        first.event,
        Some(v1::stream_charges_response::Event::Charge(_))
    ));

    // A suspend recorded and not yet run (this gateway runs no worker), and a pass of the
    // automatic closer (nothing is due, so it succeeds with nothing to close).
    let customer = customers
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .customers
        .remove(0);
    v1::service_management_service_client::ServiceManagementServiceClient::with_interceptor(
        gw.channel().await,
        Bearer::new(&gw.admin_key),
    )
    .suspend_customer(v1::SuspendCustomerRequest {
        request_id: "ops-suspend".into(),
        customer_id: customer.id,
        reason: "metrics".into(),
    })
    .await
    .unwrap();
    let pass = msp_gateway::ledger::close_run::close_pass(&gw.ledger)
        .await
        .unwrap();
    assert_eq!(pass.failed_customers, 0, "{pass:?}");

    // A call over its key's rate limit (on a replica that allows one call a second).
    let limited = gw
        .replica_with(msp_gateway::server::Limits {
            rate_limit: msp_gateway::api::rate_limits::RateLimit::new(1, 1),
            ..Default::default()
        })
        .await;
    let mut limited_customers =
        v1::customer_service_client::CustomerServiceClient::with_interceptor(
            limited.channel().await,
            Bearer::new(&gw.admin_key),
        );
    let mut codes = Vec::new();
    for _ in 0..2 {
        let answer = limited_customers
            .list_customers(v1::ListCustomersRequest::default())
            .await;
        codes.push(answer.err().map(|status| status.code()));
    }
    assert_eq!(codes, [None, Some(tonic::Code::ResourceExhausted)]);
    limited.stop().await;

    let (status, after) = get(&base, "/metrics").await;
    assert_eq!(status, 200);
    for name in names::ALL {
        assert!(
            after.contains(&format!("# TYPE {name} ")),
            "{name} is missing from /metrics:\n{after}"
        );
    }
    assert!(requests(&after, list, "Ok") >= requests(&before, list, "Ok") + 1.0);
    assert!(
        requests(&after, get_customer, "InvalidArgument")
            >= requests(&before, get_customer, "InvalidArgument") + 1.0
    );
    assert!(requests(&after, list, "Unauthenticated") >= 1.0);
    let tenant = &gw.tenant_id;
    let head = sample(
        &after,
        &format!("{}{{tenant=\"{tenant}\"}}", names::LEDGER_HEAD),
    );
    assert!(head.unwrap_or(0.0) >= 1.0, "no ledger head for {tenant}");
    let account = &simulator.id;
    let success = sample(
        &after,
        &format!(
            "{}{{partner_account=\"{account}\"}}",
            names::POLL_LAST_SUCCESS
        ),
    );
    assert!(
        success.unwrap_or(0.0) > 1.7e9,
        "no poll success for {account}"
    );
    let errors = sample(
        &after,
        &format!(
            "{}{{partner_account=\"{}\"}}",
            names::POLL_ERRORS,
            microsoft.id
        ),
    );
    assert_eq!(errors, Some(1.0));
    assert!(sample(&after, names::CHARGE_STREAMS_OPEN).unwrap_or(0.0) >= 1.0);
    let lag = sample(
        &after,
        &format!("{}{{tenant=\"{tenant}\"}}", names::CHARGE_STREAM_LAG),
    );
    assert!(lag.is_some(), "no stream lag for {tenant}");
    assert_eq!(sample(&after, names::READY), Some(1.0));
    let pending = sample(
        &after,
        &format!(
            "{}{{tenant=\"{tenant}\",status=\"pending\"}}",
            names::SERVICE_ACTIONS_OPEN
        ),
    );
    assert_eq!(pending, Some(1.0), "the recorded suspend is pending");
    let oldest = sample(
        &after,
        &format!(
            "{}{{tenant=\"{tenant}\"}}",
            names::SERVICE_ACTION_OLDEST_AGE
        ),
    );
    assert!(oldest.is_some_and(|age| age >= 0.0), "{oldest:?}");
    assert!(
        sample(&after, names::AUTOMATIC_CLOSE_LAST_SUCCESS).unwrap_or(0.0) > 1.7e9,
        "the closer's pass is recorded"
    );
    let limited = sample(
        &after,
        &format!("{}{{tenant=\"{tenant}\"}}", names::RATE_LIMITED),
    );
    assert!(limited.unwrap_or(0.0) >= 1.0, "the refused call is counted");
    drop(stream);

    // A migration this binary carries, reverted underneath it: not ready, and it says which.
    let reverted = migrate::run(gw.database_url(), Direction::RevertLast)
        .await
        .unwrap();
    let (status, body) = get(&base, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&reverted[0]), "{body} names {reverted:?}");
    let (_, scrape) = get(&base, "/metrics").await;
    assert_eq!(sample(&scrape, names::READY), Some(0.0));
    migrate::run(gw.database_url(), Direction::Up)
        .await
        .unwrap();
    assert_eq!(get(&base, "/readyz").await.0, 200);
    gw.stop().await;
}

crate::both_backends!(operations_endpoint_tells_the_truth);
