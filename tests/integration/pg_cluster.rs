//! A PostgreSQL primary and a synchronous hot standby on this machine, for the tests that need
//! streaming replication (failover, read replicas): initdb, streaming replication,
//! `synchronous_standby_names`. The server binaries come from `pg_config --bindir`; clusters
//! run as the `postgres` user (initdb refuses root) in a temporary directory, on ports of their
//! own, and are stopped and removed when the value is dropped.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::gateway_process::free_port;

/// A primary and its synchronous standby, stopped (immediately) and removed on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    pub primary_port: u16,
    pub standby_port: u16,
}

/// Runs a PostgreSQL server tool as the `postgres` user (directly when already not root).
fn pg_tool(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let program = bin.join(tool);
    let mut command = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    command.args(args).current_dir("/");
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn checked(output: std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    /// initdb, start the primary, base-backup the standby (`-R`: it follows the primary) and
    /// start it; returns once the standby streams synchronously.
    pub async fn start() -> Self {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .unwrap()
    }

    fn start_blocking() -> Self {
        let bindir = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config (Debian's postgresql-server-dev or postgresql package) on PATH");
        let bin = PathBuf::from(String::from_utf8_lossy(&bindir.stdout).trim());
        let made = if running_as_root() {
            Command::new("runuser")
                .args([
                    "-u",
                    "postgres",
                    "--",
                    "mktemp",
                    "-d",
                    "/tmp/mspgw-cluster.XXXXXX",
                ])
                .output()
        } else {
            Command::new("mktemp")
                .args(["-d", "/tmp/mspgw-cluster.XXXXXX"])
                .output()
        }
        .expect("mktemp");
        let dir = PathBuf::from(String::from_utf8_lossy(&made.stdout).trim());
        let cluster = Cluster {
            bin,
            dir,
            primary_port: free_port(),
            standby_port: free_port(),
        };
        let primary = cluster.data("primary");
        let standby = cluster.data("standby");
        checked(
            pg_tool(
                &cluster.bin,
                "initdb",
                &["-D", &primary, "-A", "trust", "-U", "postgres"],
            ),
            "initdb",
        );
        // Appended as the postgres user would: the file belongs to it.
        let settings = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 4\nsynchronous_standby_names = '*'\n\
             synchronous_commit = on\nfsync = off\n",
            cluster.primary_port,
            cluster.dir.display()
        );
        append(&format!("{primary}/postgresql.conf"), &settings);
        cluster.pg_ctl(&primary, "start");
        checked(
            pg_tool(
                &cluster.bin,
                "pg_basebackup",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &cluster.primary_port.to_string(),
                    "-U",
                    "postgres",
                    "-D",
                    &standby,
                    "-R",
                    "-X",
                    "stream",
                ],
            ),
            "pg_basebackup",
        );
        append(
            &format!("{standby}/postgresql.conf"),
            // Once promoted it has no standby of its own: waiting for one would hang every
            // commit (a failover manager such as pg_auto_failover lowers this on promotion).
            &format!(
                "port = {}\nsynchronous_standby_names = ''\n",
                cluster.standby_port
            ),
        );
        cluster.pg_ctl(&standby, "start");
        cluster
    }

    pub fn data(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub fn pg_ctl(&self, data: &str, action: &str) {
        let log = format!("{data}.log");
        checked(
            pg_tool(&self.bin, "pg_ctl", &["-D", data, "-l", &log, "-w", action]),
            &format!("pg_ctl {action} {data}"),
        );
    }

    pub fn admin_url(&self, port: u16) -> String {
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres")
    }

    /// Waits (bounded) until the standby is attached as a synchronous standby, then makes the
    /// gateway's database on the primary (it reaches the standby by replication).
    pub async fn create_database(&self, name: &str) {
        let (client, connection) =
            tokio_postgres::connect(&self.admin_url(self.primary_port), tokio_postgres::NoTls)
                .await
                .expect("connect to the primary");
        let driver = tokio::spawn(connection);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sync: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if sync == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the standby never became synchronous"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
    }

    /// What a failover manager does when the primary dies: the primary stops at once (no
    /// checkpoint, sessions cut mid-transaction), the standby is promoted.
    pub async fn fail_over(&self) {
        let (primary, standby) = (self.data("primary"), self.data("standby"));
        let bin = self.bin.clone();
        tokio::task::spawn_blocking(move || {
            let stop = |data: &str, action: &str| {
                checked(
                    pg_tool(
                        &bin,
                        "pg_ctl",
                        &["-D", data, "-w", "-m", "immediate", action],
                    ),
                    &format!("pg_ctl {action}"),
                )
            };
            stop(&primary, "stop");
            stop(&standby, "promote");
        })
        .await
        .unwrap();
    }
}

fn append(path: &str, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    file.write_all(text.as_bytes()).unwrap();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for data in [self.data("primary"), self.data("standby")] {
            if Path::new(&data).join("postmaster.pid").exists() {
                let _ = pg_tool(
                    &self.bin,
                    "pg_ctl",
                    &["-D", &data, "-m", "immediate", "stop"],
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// A libpq URL of `database` on the primary (`port` = `primary_port`) or the standby.
    pub fn url(&self, port: u16, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{database}")
    }

    /// Runs `sql` on `database` at `port` and returns the first column of each row, as text.
    pub async fn query(&self, port: u16, database: &str, sql: &str) -> Vec<String> {
        let url = format!("host=127.0.0.1 port={port} user=postgres dbname={database}");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to port {port}: {e}"));
        let driver = tokio::spawn(connection);
        let rows = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(client);
        let _ = driver.await;
        rows.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).unwrap_or("").to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// Stops the standby at once (`-m immediate`: as if its machine died); the primary's
    /// commits then wait for it (it is the synchronous standby) unless `synchronous_commit` is
    /// lowered for the session.
    pub async fn stop_standby(&self) {
        let standby = self.data("standby");
        let bin = self.bin.clone();
        tokio::task::spawn_blocking(move || {
            checked(
                pg_tool(
                    &bin,
                    "pg_ctl",
                    &["-D", &standby, "-w", "-m", "immediate", "stop"],
                ),
                "pg_ctl stop standby",
            )
        })
        .await
        .unwrap();
    }
}
