//! The faults: the gateway binary SIGKILLed and started again on the same database and port,
//! and (PostgreSQL) every connection it holds terminated with `pg_terminate_backend`, either at
//! a random moment or mid-write: the tenant's ledger lock is held from here until a write of
//! the gateway waits for it, so the termination certainly cuts a transaction in flight.
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::plan::{Fault, Strike};
use crate::gateway_process::Gateway;

/// The gateway as the chaos run starts it: pollers, the automatic closer and the service
/// worker on, with the shortest service-action lease the gateway accepts, so a restarted
/// gateway takes over the dead one's actions within seconds.
const SETTINGS: &[(&str, &str)] = &[
    ("MSPGW_POLLERS", "true"),
    ("MSPGW_SERVICE_ACTION_LEASE_SECS", "3"),
    // Terminated connections are what the run is about: their warnings are noise here.
    ("RUST_LOG", "error"),
];

/// How long a mid-write termination waits for a write to queue behind the held lock (past
/// it, the termination strikes anyway, and is not counted as mid-write).
const WRITE_WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct Counts {
    pub kills: usize,
    pub terminations: usize,
    /// Kills and terminations that cut a write waiting for the ledger.
    pub mid_write: usize,
    /// Connections terminated in all.
    pub connections: i64,
}

pub struct Faults {
    database_url: String,
    tenant_id: String,
    port: u16,
    gateway: Option<Gateway>,
    pub counts: Counts,
}

impl Faults {
    pub async fn start(database_url: &str, tenant_id: &str, port: u16) -> Faults {
        Faults {
            database_url: database_url.into(),
            tenant_id: tenant_id.into(),
            port,
            gateway: Some(Gateway::start_with(database_url, port, SETTINGS).await),
            counts: Counts::default(),
        }
    }

    /// Strikes the round's faults, each once the pusher has `after` pushes acknowledged (or is
    /// done) and its delay has passed.
    pub async fn strike(&mut self, strikes: &[Strike], acknowledged: watch::Receiver<usize>) {
        let mut acknowledged = acknowledged;
        for strike in strikes {
            // A pusher done (its sender dropped) lets the remaining faults strike at once.
            let _ = acknowledged.wait_for(|n| *n >= strike.after).await;
            tokio::time::sleep(Duration::from_millis(strike.delay_ms)).await;
            // The held lock (if any) is released once the fault struck.
            let held = match strike.fault {
                Fault::Kill { mid_write } | Fault::Terminate { mid_write } if mid_write => {
                    Some(self.hold_ledger_until_a_write_waits().await)
                }
                _ => None,
            };
            match strike.fault {
                Fault::Kill { .. } => self.kill().await,
                Fault::Terminate { .. } => self.terminate().await,
            }
            drop(held);
        }
        // A gateway that exited on its own (it failed to start) fails the run here, with its
        // exit status, rather than as clients refused for a minute.
        self.assert_running().await;
    }

    async fn kill(&mut self) {
        self.gateway.take().expect("a gateway").kill().await;
        self.counts.kills += 1;
        self.gateway = Some(Gateway::start_with(&self.database_url, self.port, SETTINGS).await);
    }

    async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
                .await
                .expect("admin connection");
        tokio::spawn(connection);
        client
    }

    /// Takes the tenant's ledger lock (every push and close takes it) and holds it until a
    /// write of the gateway waits for it (or [`WRITE_WITHIN`] passed: then none is counted);
    /// the lock is released when the returned connection is dropped.
    async fn hold_ledger_until_a_write_waits(&mut self) -> tokio_postgres::Client {
        let client = self.admin().await;
        client.batch_execute("BEGIN").await.unwrap();
        client
            .execute(
                "SELECT 1 FROM ledger_sequences WHERE tenant_id = $1 FOR UPDATE",
                &[&self.tenant_id],
            )
            .await
            .unwrap();
        let deadline = Instant::now() + WRITE_WITHIN;
        loop {
            let waiting: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = \
                     current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                self.counts.mid_write += 1;
                return client;
            }
            if Instant::now() >= deadline {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Terminates every connection to the database but this one.
    async fn terminate(&mut self) {
        let terminated: i64 = self
            .admin()
            .await
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        self.counts.terminations += 1;
        self.counts.connections += terminated;
    }

    /// Fails the run when the gateway exited on its own (a crash, not a kill).
    pub async fn assert_running(&mut self) {
        self.gateway.as_mut().expect("a gateway").channel().await;
    }

    pub async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.kill().await;
        }
    }
}
