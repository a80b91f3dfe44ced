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

/// An exclusive lock on a table, held by one session while another watches who waits for it
/// (pg_stat_activity is a snapshot per transaction, so the locking session would not see the
/// readers arrive).
struct Locked {
    table: String,
    locker: tokio_postgres::Client,
    watcher: tokio_postgres::Client,
    drivers: Vec<tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>>,
}

impl Locked {
    async fn take(gw: &TestGateway, table: &str) -> Self {
        let mut drivers = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let (client, connection) =
                tokio_postgres::connect(gw.database_url(), tokio_postgres::NoTls)
                    .await
                    .expect("admin connection");
            drivers.push(tokio::spawn(connection));
            clients.push(client);
        }
        let (watcher, locker) = (clients.pop().unwrap(), clients.pop().unwrap());
        locker
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .unwrap();
        Locked {
            table: table.to_string(),
            locker,
            watcher,
            drivers,
        }
    }

    /// Waits until a read waits for the lock, terminates every backend waiting, and lets go.
    async fn cut_waiting_readers(self) {
        let waiting = format!(
            "FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%{}%'",
            self.table
        );
        let mut waited = 0;
        loop {
            let n: i64 = self
                .watcher
                .query_one(&format!("SELECT count(*) {waiting}"), &[])
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                break;
            }
            waited += 1;
            assert!(
                waited < 500,
                "no read waited for the lock on {}",
                self.table
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Let every reader reach the lock, then cut them.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let terminated: i64 = self
            .watcher
            .query_one(
                &format!("SELECT count(pg_terminate_backend(pid)) {waiting}"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(terminated > 0);
        self.locker.batch_execute("ROLLBACK").await.unwrap();
        drop((self.locker, self.watcher));
        for driver in self.drivers {
            let _ = driver.await;
        }
    }
}

/// A stream whose page read loses its connection reads the page again on a new one: the
/// consumer gets every charge, in order, and no error. The read is held on a table lock and the
/// backends waiting for it terminated, so the loss lands inside the stream's read. PostgreSQL
/// only: SQLite has no server connection to lose.
async fn a_stream_reads_its_page_again_after_a_lost_connection(backend: Backend) {
    use crate::charge_streams::{charges_client, ledger, open, sequences, take};
    if backend == Backend::Sqlite {
        return;
    }
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    // A small ring, so a stream from the start reads its backlog from the database.
    gw.ledger.feed().set_ring_capacity(10);
    let l = ledger(&gw, 1, "0").await;
    let total = 600;
    let hwm = l.record(&gw.ledger, 0, total, 200).await;
    assert_eq!(hwm, total as i64);
    let mut client = charges_client(gw.channel().await, &gw.admin_key);
    // Keeps the tenant's feed open, so opening the next stream reads nothing.
    let _keeper = open(&mut client, hwm, &[]).await;

    let locked = Locked::take(&gw, "charge_events").await;
    let mut stream = open(&mut client, 0, &[]).await;
    let reader = tokio::spawn(async move { take(&mut stream, total).await });
    locked.cut_waiting_readers().await;
    let got = reader
        .await
        .expect("the stream delivered everything without an error");
    assert_eq!(sequences(&got), (1..=total as i64).collect::<Vec<_>>());
    gw.stop().await;
}

/// The same for a credit event stream (the cursor-stream path).
async fn a_credit_stream_reads_its_page_again_after_a_lost_connection(backend: Backend) {
    use crate::credit_control::{credit_client, open, restate, take};
    if backend == Backend::Sqlite {
        return;
    }
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = crate::charge_streams::ledger(&gw, 1, "1000.00").await;
    restate(&gw, &l, "600").await; // 50 up
    restate(&gw, &l, "1000").await; // 80 up, 100 up
    let mut client = credit_client(&gw, &gw.admin_key).await;
    let locked = Locked::take(&gw, "credit_events").await;
    let mut stream = open(&mut client, 0).await;
    let reader = tokio::spawn(async move { take(&mut stream, 3).await });
    locked.cut_waiting_readers().await;
    let got = reader
        .await
        .expect("the stream delivered everything without an error");
    let sequences: Vec<i64> = got.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, vec![1, 2, 3]);
    gw.stop().await;
}

/// A close run (CloseBillingPeriods) whose closes lose their connection answers UNAVAILABLE
/// and stays RUNNING, so the client's retry with the request id resumes it and closes every
/// customer. (It used to finish FAILED, naming the lost connection as the customer's error:
/// found by the chaos test.) The closes are held on the ledger lock and the backends waiting
/// for it terminated. PostgreSQL only.
async fn a_close_run_cut_by_a_lost_connection_resumes_on_retry(backend: Backend) {
    use crate::invoicing::{at, books, close_run, invoices, push};
    if backend == Backend::Sqlite {
        return;
    }
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (account, customers) = books(&gw, &["UTC", "UTC"]).await;
    let lines = customers
        .iter()
        .map(|c| crate::charge_streams::line(c, "vm", "1.50", at("2025-01-15T10:00:00Z")))
        .collect();
    push(&gw, &account, lines).await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    let locked = Locked::take(&gw, "ledger_sequences").await;
    let mut cut = client.clone();
    let first = tokio::spawn(async move {
        let run = v1::CloseBillingPeriodsRequest {
            request_id: "run-1".into(),
        };
        let mut stream = cut.close_billing_periods(run).await?.into_inner();
        while stream.message().await?.is_some() {}
        Ok::<_, tonic::Status>(())
    });
    locked.cut_waiting_readers().await;
    let refused = first
        .await
        .unwrap()
        .expect_err("a run cut by a lost connection is refused");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    let last = close_run(&mut client, "run-1").await;
    assert_eq!(
        (
            last.status.as_str(),
            last.customers_done,
            last.last_error.as_str()
        ),
        ("SUCCEEDED", 2, ""),
        "{last:?}"
    );
    let listed = client
        .list_invoices(v1::ListInvoicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .invoices;
    for customer in &customers {
        assert!(
            listed
                .iter()
                .any(|i| &i.customer_id == customer && i.total == "1.50"),
            "{customer}'s January closed: {listed:?}"
        );
    }
    gw.stop().await;
}

/// The gateway binary started while PostgreSQL drops its connections (a failover under way)
/// waits for the database instead of exiting: a proxy in front of the server cuts its first
/// connections, then lets them through, and the gateway comes up and reports SERVING. (It used
/// to exit at once with "database is unavailable": found by the chaos test, whose terminations
/// sometimes caught a gateway starting up.) PostgreSQL only.
async fn a_gateway_starting_while_its_database_drops_connections_waits_for_it(backend: Backend) {
    use tokio::net::{TcpListener, TcpStream};
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    use crate::gateway_process::{Gateway, free_port};
    if backend == Backend::Sqlite {
        return;
    }
    let Some(database) = crate::harness::TestDatabase::create(backend).await else {
        return;
    };
    // postgres://user@HOST:PORT/name: the server behind the proxy.
    let server = database
        .url
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(address, _)| address.to_string())
        .expect("host and port in the database URL");
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = database
        .url
        .replace(&server, &proxy.local_addr().unwrap().to_string());
    const CUT: usize = 3;
    tokio::spawn(async move {
        let mut accepted = 0;
        loop {
            let (mut inbound, _) = proxy.accept().await.unwrap();
            accepted += 1;
            if accepted <= CUT {
                continue; // dropped: the connection closes under the gateway
            }
            let server = server.clone();
            tokio::spawn(async move {
                let mut outbound = TcpStream::connect(&server).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    let mut gateway = Gateway::start(&url, free_port()).await;
    // Panics if the gateway exited on its own.
    let channel = gateway.channel().await;
    let answer = HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health")
        .into_inner();
    assert_eq!(answer.status(), ServingStatus::Serving);
    gateway.kill().await;
}

crate::both_backends!(
    a_gateway_starting_while_its_database_drops_connections_waits_for_it,
    lost_connections_answer_unavailable,
    a_stream_reads_its_page_again_after_a_lost_connection,
    a_credit_stream_reads_its_page_again_after_a_lost_connection,
    a_close_run_cut_by_a_lost_connection_resumes_on_retry
);
