//! A lost database connection (what a PostgreSQL restart or failover does to the gateway's
//! backends) answers UNAVAILABLE, which clients retry, never INTERNAL: on the Diesel path
//! (ListCharges, ListCustomers) and on the COPY path (IngestUsage). SQLite has no server
//! connection to lose, so its half only checks the calls themselves.
use msp_gateway::proto::v1;
use tonic::Code;

use crate::harness::{Backend, TestGateway};
use crate::usage::{priced_tenant, push, usage_line};

/// Terminates every backend of the gateway's database (as `pg_terminate_backend` does to a
/// server's sessions in a restart); how many.
async fn terminate_backends(gw: &TestGateway) -> i64 {
    let (client, connection) = tokio_postgres::connect(gw.database_url(), tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    row.get(0)
}

async fn lost_connections_answer_unavailable(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = priced_tenant(&gw).await;
    let mut charges = crate::charge_streams::charges_client(gw.channel().await, &gw.admin_key);
    let mut customers = gw.customers(&gw.admin_key).await;
    let mut unavailable = 0;
    for round in 0..12 {
        if backend == Backend::Postgres {
            // Warm the pools, then cut every connection under them.
            push(
                &gw,
                &format!("warm-{round}"),
                &priced.partner_account_id,
                vec![vec![usage_line("sim-linked", "vm", round, "1")]],
            )
            .await
            .ok();
            assert!(
                terminate_backends(&gw).await > 0,
                "the gateway had connections"
            );
        }
        let listed = charges
            .list_charges(v1::ListChargesRequest {
                page_size: 10,
                ..Default::default()
            })
            .await
            .map(|_| ());
        let customers_listed = customers
            .list_customers(v1::ListCustomersRequest::default())
            .await
            .map(|_| ());
        let pushed = push(
            &gw,
            &format!("after-{round}"),
            &priced.partner_account_id,
            vec![vec![usage_line("sim-linked", "vm", 100 + round, "2")]],
        )
        .await
        .map(|_| ());
        for (what, result) in [
            ("ListCharges", listed),
            ("ListCustomers", customers_listed),
            ("IngestUsage", pushed),
        ] {
            match result {
                Ok(()) => {}
                Err(status) if status.code() == Code::Unavailable => unavailable += 1,
                Err(status) => panic!("{what} after lost connections, round {round}: {status:?}"),
            }
        }
    }
    if backend == Backend::Sqlite {
        assert_eq!(unavailable, 0);
    }
    gw.stop().await;
}

crate::both_backends!(lost_connections_answer_unavailable);
