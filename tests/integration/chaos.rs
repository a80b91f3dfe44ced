//! Chaos: the gateway binary, as operators run it (pollers, automatic closer and service worker
//! on), SIGKILLed at random moments while a BSS pushes usage (revising the same lines again and
//! again), closes its customers' billing periods (one at a time, and in close runs) and
//! suspends and resumes customers, while a poller brings usage of its own and two consumers
//! follow StreamCharges and StreamServiceActions from their cursors. On PostgreSQL the
//! gateway's database connections are also terminated (`pg_terminate_backend`), mid-write and at
//! random moments. Every call is retried with its request id while the answer is UNAVAILABLE or
//! ABORTED or the connection broke, as a BSS does; any other refusal fails the run.
//!
//! After every round the ledger's promises are checked from outside ([`checks`]): sequences
//! 1..N with no gap, streamed once each in order; per usage key Σ charges = its latest truth;
//! no push applied twice or in part; every charge on exactly one invoice or open; invoice
//! numbers gap-free; every service action finished once.
//!
//! Seeded (`MSPGW_CHAOS_SEED`, printed on every run) and bounded (`MSPGW_CHAOS_ROUNDS` rounds,
//! each with one kill; default 6), on both backends.
mod checks;
mod client;
mod faults;
mod followers;
mod plan;
mod setup;
mod work;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use msp_gateway::domain::tenant::NewTenant;
use msp_gateway::ledger::Ledger;
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::watch;

use self::client::Api;
use self::faults::Faults;
use crate::gateway_process::{Gateway, free_port};
use crate::harness::{Backend, TestDatabase};

fn setting<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

async fn killed_gateways_and_cut_connections_lose_nothing_and_double_nothing(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let seed: u64 = setting("MSPGW_CHAOS_SEED").unwrap_or_else(rand::random);
    let rounds: usize = setting("MSPGW_CHAOS_ROUNDS").unwrap_or(6);
    eprintln!("chaos ({backend:?}): MSPGW_CHAOS_SEED={seed} MSPGW_CHAOS_ROUNDS={rounds}");
    let mut rng = StdRng::seed_from_u64(seed);

    // The tenant and its key, made before the gateway runs (as `msp-gateway tenant create`
    // does); the test reads the stored usage lines through a store of its own.
    migrate::run(&database.url, Direction::Up)
        .await
        .expect("migrations");
    let store = Arc::new(Store::connect(&database.url, &Default::default()).expect("store"));
    let (tenant, key) = store
        .create_tenant(NewTenant::parse("Chaos ISP", "ZAR", "Africa/Johannesburg").unwrap())
        .await
        .expect("tenant");
    let ledger = Ledger::new(store).expect("ledger");
    let port = free_port();
    let api = Api::new(SocketAddr::from(([127, 0, 0, 1], port)), key.token());
    let customers = rounds * plan::CUSTOMERS_PER_ROUND;
    let books = {
        let mut gateway = Gateway::start(&database.url, port).await;
        gateway.channel().await;
        let books = setup::books(api.channel(), api.key(), customers).await;
        gateway.kill().await;
        books
    };
    let mut faults = Faults::start(&database.url, &tenant.id, port).await;
    faults.assert_running().await;
    setup::polled(api.channel(), api.key(), &books).await;
    let plan = plan::rounds(&mut rng, rounds, backend);
    let mut stream = followers::charges(api.clone());
    let mut action_states = followers::actions(api.clone());

    let started = Instant::now();
    let mut latest = HashMap::new();
    let mut answers = Vec::new();
    let mut actions = Vec::new();
    let mut suspended = vec![false; customers];
    let mut closes = Vec::new();
    let mut summary = None;
    for (r, round) in plan.iter().enumerate() {
        let (acknowledged, pushes_done) = watch::channel(0);
        let (pushed, closed, acted, ()) = tokio::join!(
            work::push(&api, &books.pushed_account_id, &round.pushes, acknowledged),
            work::close(&api, &books.customers, round, r, pushes_done.clone()),
            work::act(&api, &books.customers, round, r, &mut suspended),
            faults.strike(&round.strikes, pushes_done),
        );
        plan::latest(&round.pushes, &mut latest);
        answers.extend(pushed);
        actions.extend(acted);
        closes.extend(closed);
        let known = checks::Known {
            books: &books,
            tenant_id: &tenant.id,
            latest: &latest,
            answers: &answers,
            actions: &actions,
            suspended: &suspended,
        };
        let seen =
            checks::after_round(&api, &ledger, &known, &mut stream, &mut action_states).await;
        eprintln!(
            "chaos ({backend:?}): round {r} checked at {:.1} s: {seen}",
            started.elapsed().as_secs_f64()
        );
        summary = Some(seen);
    }

    // Retries after all the restarts still answer the first result, byte for byte.
    let (again, _) = watch::channel(0);
    let pushes: Vec<_> = plan.iter().flat_map(|r| &r.pushes).collect();
    for (push, first) in pushes.iter().zip(&answers) {
        let replayed = work::push(
            &api,
            &books.pushed_account_id,
            std::slice::from_ref(*push),
            again.clone(),
        )
        .await;
        assert_eq!(
            replayed[0].encode_to_vec(),
            first.encode_to_vec(),
            "push {} replayed byte for byte (seed {seed})",
            push.request_id
        );
    }
    for (request, first) in &closes {
        let replayed = work::close_next(&api, request).await;
        assert_eq!(
            replayed.map(|i| i.encode_to_vec()),
            Some(first.encode_to_vec()),
            "{} replayed byte for byte (seed {seed})",
            request.request_id
        );
    }
    for acted in &actions {
        let replayed =
            work::suspend_or_resume(&api, acted.resume, &acted.request_id, &acted.customer_id)
                .await;
        assert_eq!(
            replayed.encode_to_vec(),
            acted.action.encode_to_vec(),
            "{} replayed byte for byte (seed {seed})",
            acted.request_id
        );
    }
    let counts = &faults.counts;
    eprintln!(
        "chaos ({backend:?}): seed {seed}, {rounds} rounds in {:.1} s: {} kills and {} \
         terminations ({} connections), {} of them while a write waited; {} pushes, {} closes \
         answered, {} service actions; refusals retried {:?}; stream reconnects {} (charges) \
         {} (actions); at the end {}",
        started.elapsed().as_secs_f64(),
        counts.kills,
        counts.terminations,
        counts.connections,
        counts.mid_write,
        answers.len(),
        closes.len(),
        actions.len(),
        api.refusals(),
        stream.reconnects(),
        action_states.reconnects(),
        summary.map(|s| s.to_string()).unwrap_or_default(),
    );
    stream.stop().await;
    action_states.stop().await;
    faults.stop().await;
}

crate::both_backends!(killed_gateways_and_cut_connections_lose_nothing_and_double_nothing);
