//! Read replicas, PostgreSQL only (SQLite has no standby; a read URL on SQLite is refused at
//! start-up, see `Config::read_replica`): gateways whose read URL names the synchronous hot
//! standby of [`crate::pg_cluster`] serve lists and help-desk reads from it while it is within
//! their staleness bound, and from the primary otherwise.
//!
//! Where a read was served is proven by what each server can see. With the standby's replay
//! paused, a customer created through the gateway (a write: the primary) is missing from
//! ListCustomers of a gateway with a long bound (served by the standby), while GetCustomer finds
//! it (the primary) and so does the help desk (its NOT_FOUND on the standby is asked again of the
//! primary), and so does the portal, whose session (just written) is checked on the primary. A
//! gateway with a short bound leaves the paused standby and lists the customer from
//! the primary. Once replay resumes, the standby serves the customer too. When the standby is
//! stopped, lists still answer at once, from the primary, and readiness stays up.
use std::time::{Duration, Instant};

use msp_gateway::proto::v1;
use msp_gateway::proto::v1::customer_service_client::CustomerServiceClient;
use msp_gateway::proto::v1::help_desk_service_client::HelpDeskServiceClient;
use msp_gateway::proto::v1::portal_service_client::PortalServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::customers::new_customer;
use crate::harness::{Bearer, Replica, TestDatabase, TestGateway};
use crate::pg_cluster::Cluster;

/// A bound the test never reaches: this gateway keeps reading the paused standby.
const LONG_BOUND: Duration = Duration::from_secs(120);
/// A bound the paused standby soon exceeds.
const SHORT_BOUND: Duration = Duration::from_secs(1);
/// Longest any awaited change may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);
/// Marks the read replicas' connections on the standby (`pg_stat_activity`).
const APPLICATION: &str = "mspgw_read_replica_test";

type Customers = CustomerServiceClient<InterceptedService<Channel, Bearer>>;

/// Polls `condition` until it holds; fails after [`DEADLINE`].
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The external refs of every customer ListCustomers shows.
async fn listed(client: &mut Customers) -> Vec<String> {
    client
        .list_customers(v1::ListCustomersRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("ListCustomers")
        .into_inner()
        .customers
        .into_iter()
        .map(|c| c.external_ref)
        .collect()
}

/// Polls ListCustomers until it shows `external_ref`.
async fn until_listed(client: &mut Customers, external_ref: &str, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    while !listed(client).await.iter().any(|r| r == external_ref) {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status(replica: &Replica) -> msp_gateway::store::read_replica::ReplicaStatus {
    replica
        .ledger
        .store()
        .read_replica_status()
        .expect("a read replica is configured")
}

async fn customers(replica: &Replica, key: &str) -> Customers {
    CustomerServiceClient::with_interceptor(replica.channel().await, Bearer::new(key))
}

/// Opens a portal session for `customer` on `replica` the way a browser would (the link, then
/// the page it redirects to with the cookie it set); the overview page's status and body.
async fn portal_overview(replica: &Replica, key: &str, customer: &str) -> (u16, String) {
    let mut portal =
        PortalServiceClient::with_interceptor(replica.channel().await, Bearer::new(key));
    let session = portal
        .create_portal_session(v1::CreatePortalSessionRequest {
            customer_id: customer.into(),
            request_id: format!("portal-{customer}"),
            ..Default::default()
        })
        .await
        .expect("CreatePortalSession")
        .into_inner();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let opened = browser.get(&session.url).send().await.unwrap();
    assert_eq!(opened.status().as_u16(), 303, "opening the link");
    let cookie = opened
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    let location = opened
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a redirect")
        .to_string();
    let page = browser
        .get(format!("http://{}{location}", replica.address))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = page.status().as_u16();
    (status, page.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_read_the_standby_within_its_bound_and_the_primary_otherwise() {
    if std::env::var("MSPGW_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
        eprintln!("PostgreSQL half SKIPPED: read replicas need PostgreSQL's server binaries");
        return;
    }
    let started = Instant::now();
    let cluster = Cluster::start().await;
    cluster.create_database("mspgw").await;
    let gw = TestGateway::start_on(TestDatabase::external(
        cluster.url(cluster.primary_port, "mspgw"),
    ))
    .await;
    let standby_url = format!(
        "{}?application_name={APPLICATION}",
        cluster.url(cluster.standby_port, "mspgw")
    );
    let patient = gw.replica_reading_from(&standby_url, LONG_BOUND).await;
    let strict = gw.replica_reading_from(&standby_url, SHORT_BOUND).await;
    let key = gw.admin_key.clone();
    let (mut from_patient, mut from_strict) = (
        customers(&patient, &key).await,
        customers(&strict, &key).await,
    );

    // Both find the idle standby caught up (its replay position is the primary's).
    until("both gateways use the caught-up standby", || {
        status(&patient).in_use && status(&strict).in_use
    })
    .await;
    let mut writer = gw.customers(&key).await;
    writer
        .create_customer(new_customer("rr-before", "RR-BEFORE"))
        .await
        .unwrap();
    until_listed(
        &mut from_patient,
        "RR-BEFORE",
        "the standby replays a write",
    )
    .await;

    // Replay paused: the standby keeps what it has.
    cluster
        .query(
            cluster.standby_port,
            "postgres",
            "SELECT pg_wal_replay_pause()",
        )
        .await;
    let deadline = Instant::now() + DEADLINE;
    while cluster
        .query(
            cluster.standby_port,
            "postgres",
            "SELECT pg_get_wal_replay_pause_state()",
        )
        .await
        != ["paused"]
    {
        assert!(Instant::now() < deadline, "replay never paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reads_before = status(&patient).reads_on_replica;
    let created = from_patient
        .create_customer(new_customer("rr-after", "RR-AFTER"))
        .await
        .expect("a write through the replica-reading gateway goes to the primary")
        .into_inner();
    let count = "SELECT count(*) FROM customers WHERE external_ref = 'RR-AFTER'";
    assert_eq!(
        cluster.query(cluster.primary_port, "mspgw", count).await,
        ["1"]
    );
    assert_eq!(
        cluster.query(cluster.standby_port, "mspgw", count).await,
        ["0"]
    );

    // The long-bound gateway's list is the standby's: the new customer is not in it.
    let shown = listed(&mut from_patient).await;
    assert!(shown.contains(&"RR-BEFORE".to_string()), "{shown:?}");
    assert!(
        !shown.contains(&"RR-AFTER".to_string()),
        "ListCustomers was not served by the paused standby: {shown:?}"
    );
    let now = status(&patient);
    assert!(now.in_use, "{now:?}");
    assert!(now.reads_on_replica > reads_before, "{now:?}");
    // A get after the create reads the primary.
    let got = from_patient
        .get_customer(v1::GetCustomerRequest {
            id: created.id.clone(),
        })
        .await
        .expect("GetCustomer after CreateCustomer")
        .into_inner();
    assert_eq!(got.external_ref, "RR-AFTER");
    // The help desk reads the standby, where the customer is not yet: asked again of the
    // primary, it answers.
    let mut help_desk =
        HelpDeskServiceClient::with_interceptor(patient.channel().await, Bearer::new(&key));
    let overview = help_desk
        .get_spend_overview(v1::GetSpendOverviewRequest {
            customer_id: created.id.clone(),
        })
        .await
        .expect("the help desk finds a customer the standby has not replayed")
        .into_inner();
    assert_eq!(overview.customer_id, created.id);
    // The portal: the session (written a moment ago) is checked on the primary, the
    // customer's page reads the standby, and its NOT_FOUND there is asked again of the primary.
    let (status_code, page) = portal_overview(&patient, &key, &created.id).await;
    assert_eq!(status_code, 200, "{page}");
    let on_standby = cluster
        .query(
            cluster.standby_port,
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APPLICATION}'"
            ),
        )
        .await;
    assert_ne!(on_standby, ["0"], "no gateway connection on the standby");

    // The short-bound gateway's check trips: its reads go to the primary, which has the
    // customer.
    until("the short bound trips", || !status(&strict).in_use).await;
    assert!(status(&strict).lag >= SHORT_BOUND, "{:?}", status(&strict));
    let shown = listed(&mut from_strict).await;
    assert!(
        shown.contains(&"RR-AFTER".to_string()),
        "a gateway past its bound still read the standby: {shown:?}"
    );
    assert!(status(&patient).in_use, "the long bound is not reached yet");

    // Replay resumed: the standby catches up and serves the customer too.
    cluster
        .query(
            cluster.standby_port,
            "postgres",
            "SELECT pg_wal_replay_resume()",
        )
        .await;
    until("the standby is caught up again", || status(&strict).in_use).await;
    until_listed(
        &mut from_patient,
        "RR-AFTER",
        "the standby serves the new customer",
    )
    .await;
    strict.stop().await;

    // The standby stops: the next list answers at once, from the primary.
    cluster.stop_standby().await;
    let shown = listed(&mut from_patient).await;
    assert!(
        shown.contains(&"RR-BEFORE".to_string()) && shown.contains(&"RR-AFTER".to_string()),
        "{shown:?}"
    );
    let now = status(&patient);
    assert!(!now.in_use, "a stopped standby is still in use: {now:?}");
    patient
        .ledger
        .store()
        .ready()
        .await
        .expect("readiness does not depend on the read replica");

    eprintln!(
        "read replicas: {:.1}s, replica reads {}, fallback reads {}",
        started.elapsed().as_secs_f64(),
        now.reads_on_replica,
        now.reads_on_primary
    );
    patient.stop().await;
    gw.stop().await;
    drop(cluster);
}
