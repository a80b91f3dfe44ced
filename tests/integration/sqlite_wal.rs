//! SQLite: the gateway checkpoints the write-ahead log in the background (the writer's COMMIT no
//! longer does), so written pages reach the database file while nothing is being written.
use std::time::Duration;

use crate::harness::{Backend, TestGateway};
use crate::usage::{priced_tenant, push, usage_line};

fn file_bytes(path: &str) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn the_wal_is_checkpointed_off_the_write_path() {
    let Some(gw) = TestGateway::start(Backend::Sqlite).await else {
        return;
    };
    let database = msp_gateway::store::sqlite_path(gw.database_url()).to_string();
    let priced = priced_tenant(&gw).await;
    // Let the setup's writes settle, then write about 3 MB of lines and events.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = file_bytes(&database);
    for batch in 0..8 {
        let lines = (0..400)
            .map(|i| usage_line("sim-linked", &format!("m-{batch}-{i}"), i % 24, "1.25"))
            .collect();
        push(
            &gw,
            &format!("batch-{batch}"),
            &priced.partner_account_id,
            vec![lines],
        )
        .await
        .unwrap();
    }
    let wal = file_bytes(&format!("{database}-wal"));
    assert!(
        wal > 1_000_000,
        "the writes went through the WAL ({wal} bytes)"
    );

    // With no write under way, a checkpoint copies the WAL into the database file.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = file_bytes(&database);
    assert!(
        after > before + 1_000_000,
        "the database file stayed at {after} bytes (from {before}): nothing checkpointed the WAL"
    );
    gw.stop().await;
}
