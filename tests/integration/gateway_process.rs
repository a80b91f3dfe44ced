//! The gateway binary as operators run it (`msp-gateway serve`), as a child process the tests
//! can SIGKILL at any moment and start again on the same database and port.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

/// No single call may hang, and a gateway must be up again within this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The gateway binary serving `database_url` on `port`, killed (SIGKILL) on drop.
pub struct Gateway {
    child: tokio::process::Child,
    address: SocketAddr,
}

impl Gateway {
    /// An API-only gateway: no pollers, closer or service worker.
    pub async fn start(database_url: &str, port: u16) -> Gateway {
        Gateway::start_with(database_url, port, &[("MSPGW_POLLERS", "false")]).await
    }

    /// A gateway with `settings` (`MSPGW_*` variables) on top of the database, address and
    /// quiet logs.
    pub async fn start_with(database_url: &str, port: u16, settings: &[(&str, &str)]) -> Gateway {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_msp-gateway"))
            .arg("serve")
            .env("MSPGW_DATABASE_URL", database_url)
            .env("MSPGW_LISTEN", address.to_string())
            .env("MSPGW_OPS_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .envs(settings.iter().copied())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the gateway binary");
        Gateway { child, address }
    }

    /// A channel once the gateway accepts connections.
    pub async fn channel(&mut self) -> Channel {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("gateway status") {
                panic!("the gateway exited on its own: {status}");
            }
            match Channel::from_shared(format!("http://{}", self.address))
                .unwrap()
                .connect()
                .await
            {
                Ok(channel) => return channel,
                Err(error) => {
                    assert!(
                        started.elapsed() < CALL_TIMEOUT,
                        "the gateway did not listen within {CALL_TIMEOUT:?}: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// SIGKILL: no shutdown hook runs, no lease is released, nothing in flight commits.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL the gateway");
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
