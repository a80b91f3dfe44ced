//! Health tells the truth: SERVING while the database answers, NOT_SERVING while it does not
//! (on PostgreSQL, a database that refuses connections and whose backends were terminated, as
//! during a restart), and SERVING again when it is back.
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::{Backend, TestGateway};

async fn status(gw: &TestGateway, service: &str) -> ServingStatus {
    let mut health = HealthClient::new(gw.channel().await);
    let answer = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(answer.status).unwrap()
}

/// Waits (polling, at most 30 s) until the overall status is `wanted`.
async fn until(gw: &TestGateway, wanted: ServingStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status(gw, "").await != wanted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never became {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health_follows_the_database(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    assert_eq!(status(&gw, "").await, ServingStatus::Serving);
    assert_eq!(
        status(&gw, "msp.gateway.v1.ChargeService").await,
        ServingStatus::Serving
    );
    if backend == Backend::Sqlite {
        // An embedded database cannot go away underneath the process.
        gw.stop().await;
        return;
    }
    let url = gw.database_url().to_string();
    let (base, name) = url.rsplit_once('/').unwrap();
    let mut admin = AsyncPgConnection::establish(&format!("{base}/postgres"))
        .await
        .unwrap();
    let refuse = |allow: bool| format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}");
    diesel::sql_query(refuse(false))
        .execute(&mut admin)
        .await
        .unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    until(&gw, ServingStatus::NotServing).await;
    assert_eq!(
        status(&gw, "msp.gateway.v1.CustomerService").await,
        ServingStatus::NotServing
    );
    diesel::sql_query(refuse(true))
        .execute(&mut admin)
        .await
        .unwrap();
    until(&gw, ServingStatus::Serving).await;
    gw.stop().await;
}

crate::both_backends!(health_follows_the_database);
