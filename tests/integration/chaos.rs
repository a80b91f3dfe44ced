//! Chaos: the gateway binary, as operators run it, SIGKILLed at random moments while a client
//! pushes usage (revising the same lines again and again) and retries every push with its
//! request id until it is acknowledged, across restarts. Then the ledger's promises are checked
//! from outside, through the API: sequences 1..N with no gap; for every usage line the sum of its
//! charges is its latest pushed cost, priced (nothing lost, nothing doubled); and the charges the
//! first answers of all pushes report add up to the ledger's (no push applied twice or half:
//! a half-applied push would leave charges no answer counts).
//!
//! Seeded (`MSPGW_CHAOS_SEED`, printed on every run) and bounded (`MSPGW_CHAOS_ROUNDS` kills,
//! default 6), on both backends.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use msp_gateway::domain::tenant::NewTenant;
use msp_gateway::proto::v1;
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use tonic::transport::Channel;

use crate::charge_streams::all_charges;
use crate::gateway_process::{CALL_TIMEOUT, Gateway, free_port};
use crate::harness::{Backend, Bearer, TestDatabase};
use crate::usage::{priced_tenant_at, usage_line};

/// Pushes in a run and distinct lines in each (drawn from METERS × HOURS, so lines are revised
/// many times over).
const PUSHES: usize = 60;
const LINES_PER_PUSH: usize = 5;
const METERS: [&str; 4] = ["vm.a", "vm.b", "vm.c", "vm.d"];
const HOURS: i64 = 5;
/// The priced tenant's 20 % markup and USD→ZAR rate of 18.5.
const PRICE_FACTOR: Decimal = Decimal::from_parts(222, 0, 0, false, 1);
/// A kill lands this long (at most) after the gateway answers its first call.
const KILL_WITHIN: Duration = Duration::from_millis(400);
/// The whole run, whatever the seed (it takes seconds).
const RUN_FOR: Duration = Duration::from_secs(300);

/// One push of the plan: its request id and lines.
struct Push {
    request_id: String,
    lines: Vec<v1::UsageLine>,
}

/// A line's identity in the ledger's answers: meter and window start.
type LineId = (String, i64);

/// The seeded plan, and each line's latest cost once every push is in.
fn plan(rng: &mut StdRng) -> (Vec<Push>, HashMap<LineId, Decimal>) {
    let mut latest = HashMap::new();
    let pushes = (0..PUSHES)
        .map(|n| {
            let mut chosen: Vec<(usize, i64)> = Vec::new();
            while chosen.len() < LINES_PER_PUSH {
                let line = (
                    rng.random_range(0..METERS.len()),
                    rng.random_range(0..HOURS),
                );
                if !chosen.contains(&line) {
                    chosen.push(line);
                }
            }
            let lines = chosen
                .into_iter()
                .map(|(meter, hour)| {
                    let cost = Decimal::new(rng.random_range(1..10_000), 2);
                    let line = usage_line("sim-linked", METERS[meter], hour, &cost.to_string());
                    let start = line.window_start.as_ref().unwrap().seconds;
                    latest.insert((METERS[meter].to_string(), start), cost);
                    line
                })
                .collect();
            Push {
                request_id: format!("chaos-{n}"),
                lines,
            }
        })
        .collect();
    (pushes, latest)
}

async fn push(
    channel: Channel,
    key: &str,
    partner_account_id: &str,
    push: &Push,
) -> Result<v1::IngestUsageResponse, tonic::Status> {
    let request = v1::IngestUsageRequest {
        request_id: push.request_id.clone(),
        partner_account_id: partner_account_id.into(),
        lines: push.lines.clone(),
    };
    let mut client =
        v1::usage_service_client::UsageServiceClient::with_interceptor(channel, Bearer::new(key));
    let call = client.ingest_usage(tokio_stream::iter([request]));
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(answer) => answer.map(|r| r.into_inner()),
        Err(_) => panic!("push {} hung for {CALL_TIMEOUT:?}", push.request_id),
    }
}

async fn killed_gateways_lose_nothing_and_double_nothing(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let seed: u64 = std::env::var("MSPGW_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let rounds: usize = std::env::var("MSPGW_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    eprintln!("chaos ({backend:?}): MSPGW_CHAOS_SEED={seed} MSPGW_CHAOS_ROUNDS={rounds}");
    let mut rng = StdRng::seed_from_u64(seed);

    // The tenant and its key, made before the gateway runs (as `msp-gateway tenant create` does).
    migrate::run(&database.url, Direction::Up)
        .await
        .expect("migrations");
    let key = {
        let store = Store::connect(&database.url, &Default::default()).expect("store");
        let (_, key) = store
            .create_tenant(NewTenant::parse("Chaos ISP", "ZAR", "Africa/Johannesburg").unwrap())
            .await
            .expect("tenant");
        key.token().to_string()
    };
    let port = free_port();
    let mut gateway = Gateway::start(&database.url, port).await;
    let priced = priced_tenant_at(gateway.channel().await, &key).await;
    let (pushes, latest) = plan(&mut rng);

    let started = Instant::now();
    let mut answers: Vec<v1::IngestUsageResponse> = Vec::new();
    let mut refusals = 0;
    let mut kills = 0;
    let mut cut_mid_call = 0;
    while answers.len() < pushes.len() {
        let channel = gateway.channel().await;
        // Kill at a random moment while pushes go on, unless the rounds are spent.
        let kill_at = (kills < rounds)
            .then(|| Instant::now() + KILL_WITHIN.mul_f64(rng.random_range(0.0..1.0)));
        let killed = loop {
            if answers.len() == pushes.len() {
                break false;
            }
            let next = &pushes[answers.len()];
            let attempt = push(channel.clone(), &key, &priced.partner_account_id, next);
            let outcome = match kill_at {
                Some(at) => {
                    tokio::select! {
                        outcome = attempt => Some(outcome),
                        _ = tokio::time::sleep_until(at.into()) => None,
                    }
                }
                None => Some(attempt.await),
            };
            match outcome {
                Some(Ok(answer)) => answers.push(answer),
                // Refused while the gateway was coming up or going down: retried.
                Some(Err(status)) => {
                    refusals += 1;
                    assert!(
                        started.elapsed() < RUN_FOR,
                        "still refused after {RUN_FOR:?} (seed {seed}): {status:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // The moment came with a push in flight: it is cut mid-call.
                None => {
                    cut_mid_call += 1;
                    break true;
                }
            }
            if kill_at.is_some_and(|at| Instant::now() >= at) {
                break true;
            }
        };
        if killed {
            gateway.kill().await;
            kills += 1;
            gateway = Gateway::start(&database.url, port).await;
        }
    }
    let channel = gateway.channel().await;

    // Sequences 1..N with no gap.
    let charges = all_charges(channel.clone(), &key).await;
    let sequences: Vec<i64> = charges.iter().map(|c| c.sequence).collect();
    assert_eq!(
        sequences,
        (1..=sequences.len() as i64).collect::<Vec<_>>(),
        "sequences 1..N with no gap (seed {seed})"
    );
    // Every line's charges add up to its latest cost, priced: nothing lost, nothing doubled.
    let mut priced_lines: HashMap<LineId, Decimal> = HashMap::new();
    for charge in &charges {
        let id = (
            charge.meter.clone(),
            charge.window_start.as_ref().unwrap().seconds,
        );
        *priced_lines.entry(id).or_default() += charge.amount.parse::<Decimal>().unwrap();
    }
    assert_eq!(
        priced_lines.len(),
        latest.len(),
        "every pushed line is charged"
    );
    for (id, cost) in &latest {
        assert_eq!(
            priced_lines[id],
            cost * PRICE_FACTOR,
            "line {id:?}: Σ charges = latest cost × 1.2 × 18.5 (seed {seed})"
        );
    }
    // The first answers account for every charge: no push applied twice or half.
    let answered: i64 = answers.iter().map(|a| a.events_appended).sum();
    assert_eq!(
        answered,
        charges.len() as i64,
        "charges the pushes' answers report = charges in the ledger (seed {seed})"
    );
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(answer.lines_received, LINES_PER_PUSH as i64, "push {n}");
    }
    // A retry after all the restarts still answers the first result, byte for byte.
    let replayed_push = rng.random_range(0..pushes.len());
    let replayed = push(
        channel.clone(),
        &key,
        &priced.partner_account_id,
        &pushes[replayed_push],
    )
    .await
    .expect("a replayed push");
    assert_eq!(
        replayed.encode_to_vec(),
        answers[replayed_push].encode_to_vec(),
        "push {replayed_push} replayed byte for byte"
    );
    eprintln!(
        "chaos ({backend:?}): seed {seed}, {kills} kills ({cut_mid_call} with a push in flight), {} pushes ({refusals} refused and retried), \
         {} charges, {:.1} s",
        pushes.len(),
        charges.len(),
        started.elapsed().as_secs_f64()
    );
    gateway.kill().await;
}

crate::both_backends!(killed_gateways_lose_nothing_and_double_nothing);
