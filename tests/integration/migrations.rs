//! Migrations go up, down and up again; concurrent runs wait on the lock instead of colliding.
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};

use crate::harness::{Backend, TestDatabase};

async fn up_down_up(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let applied = migrate::run(&db.url, Direction::Up).await.unwrap();
    assert!(!applied.is_empty());
    assert!(
        migrate::run(&db.url, Direction::Up)
            .await
            .unwrap()
            .is_empty(),
        "idempotent"
    );
    let reverted = migrate::run(&db.url, Direction::RevertAll).await.unwrap();
    assert_eq!(reverted.len(), applied.len());
    let store = Store::connect(&db.url, &Default::default()).unwrap();
    assert!(
        store.tenant_count().await.is_err(),
        "tables are gone after revert"
    );
    drop(store);
    let again = migrate::run(&db.url, Direction::Up).await.unwrap();
    assert_eq!(again, applied);
    let store = Store::connect(&db.url, &Default::default()).unwrap();
    assert_eq!(store.tenant_count().await.unwrap(), 0);
}

async fn concurrent_migrations(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let runs = (0..4).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { migrate::run(&url, Direction::Up).await })
    });
    let results: Vec<Vec<String>> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("every replica starts"))
        .collect();
    let total: usize = results.iter().map(Vec::len).sum();
    let expected = results.iter().map(Vec::len).max().unwrap();
    assert_eq!(
        total, expected,
        "exactly one run applied the migrations: {results:?}"
    );
}

crate::both_backends!(up_down_up, concurrent_migrations);
