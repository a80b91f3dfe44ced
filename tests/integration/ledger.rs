//! The ledger under vendor pulls: revisions and removals over time, pollers and their leases,
//! and interrupted writes.
use std::time::Duration as StdDuration;

use chrono::Utc;
use msp_gateway::domain::charges::{ChargeEvent, ChargeFilter};
use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
use msp_gateway::domain::ledger::LedgerLine;
use msp_gateway::domain::line_key::LineKeyMap;
use msp_gateway::domain::partner_account::PartnerAccount;
use msp_gateway::domain::usage::UsageLine;
use msp_gateway::poller::{PollOutcome, PollerSettings, poll_once};
use msp_gateway::vendors::Pull;
use msp_gateway::vendors::simulator::Simulator;
use rust_decimal::Decimal;

use crate::harness::{Backend, TestGateway};
use crate::usage::{hour, priced_tenant};

async fn ledger(
    gw: &TestGateway,
    account: &PartnerAccount,
) -> (LineKeyMap<LedgerLine>, Vec<ChargeEvent>) {
    let lines = gw
        .ledger
        .usage_lines_in_window(&gw.tenant_id, account, hour(-10_000), hour(10_000))
        .await
        .unwrap();
    let events = gw
        .ledger
        .list_charges(&gw.admin(), &ChargeFilter::default(), 0, 1_000_000)
        .await
        .unwrap()
        .0;
    (lines, events)
}

/// The simulator partner account of a [`priced_tenant`], as the store returns it.
async fn priced_account(gw: &TestGateway) -> PartnerAccount {
    let priced = priced_tenant(gw).await;
    gw.store
        .partner_account(&gw.admin(), &priced.partner_account_id)
        .await
        .unwrap()
}

/// Every key's events sum to its current rated value; sequences run 1..=N.
fn assert_consistent(lines: &LineKeyMap<LedgerLine>, events: &[ChargeEvent]) {
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    let mut sums: LineKeyMap<Decimal> = LineKeyMap::default();
    for e in events {
        *sums.entry(e.line_key).or_default() += e.amount;
    }
    for (key, line) in lines {
        let current = match (&line.rating, line.removed) {
            (Some(r), false) => r.amount,
            _ => Decimal::ZERO,
        };
        assert_eq!(
            sums.get(key).copied().unwrap_or_default(),
            current,
            "line {key}"
        );
    }
    assert!(sums.keys().all(|k| lines.contains_key(k)));
}

fn simulator_pull(accounts: &[&str], now_hour: i64) -> Pull {
    let sim =
        Simulator::new(42, accounts.iter().map(|a| a.to_string()).collect()).at(hour(now_hour));
    let (start, end) = sim.window();
    Pull {
        start,
        end,
        lines: sim.lines(start, end),
        version: None,
    }
}

async fn revisions_over_time_keep_the_ledger_exact(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let account = priced_account(&gw).await;
    let mut total_events = 0;
    // Hourly pulls for a day and a half: estimates, revisions, spurious estimates vanishing.
    for now in (0..36).step_by(3) {
        let pull = simulator_pull(&["sim-linked", "sim-unlinked"], now);
        let summary = gw
            .ledger
            .ingest_pull(&gw.tenant_id, &account, &pull)
            .await
            .unwrap();
        total_events += summary.events_appended;
        // The identical pull again appends nothing.
        let again = gw
            .ledger
            .ingest_pull(&gw.tenant_id, &account, &pull)
            .await
            .unwrap();
        assert_eq!((again.lines_written, again.events_appended), (0, 0));
    }
    let (lines, events) = ledger(&gw, &account).await;
    assert_eq!(events.len(), total_events);
    assert!(
        events.iter().any(|e| e.kind.as_str() == "REVISION"),
        "estimates were revised"
    );
    assert!(
        events.iter().any(|e| e.kind.as_str() == "REVERSAL"),
        "spurious estimates were reversed"
    );
    assert_consistent(&lines, &events);
    assert!(
        lines.values().any(|l| l.unrated_reason.is_some()),
        "the unlinked account waits"
    );

    // A price change re-rates every live line.
    let rerated = gw.ledger.rerate(&gw.tenant_id, false).await.unwrap();
    assert_eq!(
        rerated.events_appended, 0,
        "same prices: nothing to re-rate"
    );
    gw.pricing(&gw.admin_key)
        .await
        .create_price_rule(msp_gateway::proto::v1::CreatePriceRuleRequest {
            request_id: "compute-markup".into(),
            price_rule: Some(msp_gateway::proto::v1::PriceRule {
                service: "Compute".into(),
                kind: msp_gateway::proto::v1::PriceRuleKind::Markup.into(),
                value: "0.35".into(),
                effective_from: Some(crate::usage::ts(hour(-1000))),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let (lines, events) = ledger(&gw, &account).await;
    assert!(events.iter().any(|e| e.kind.as_str() == "RERATE"));
    assert_consistent(&lines, &events);
    gw.stop().await;
}

async fn interrupted_writes_leave_no_trace(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let account = priced_account(&gw).await;
    let pull = simulator_pull(&["sim-linked"], 30);
    // Kill the write at many points between fetch and commit (the future is dropped mid-flight,
    // as when a poller's task is aborted or a caller disconnects).
    for step in 0..40u64 {
        let _ = tokio::time::timeout(
            StdDuration::from_micros(50 + step * 150),
            gw.ledger.ingest_pull(&gw.tenant_id, &account, &pull),
        )
        .await;
    }
    // The poller restarts and pulls again: the ledger is exactly right.
    gw.ledger
        .ingest_pull(&gw.tenant_id, &account, &pull)
        .await
        .unwrap();
    let (lines, events) = ledger(&gw, &account).await;
    assert_consistent(&lines, &events);
    let rated = lines.values().filter(|l| l.rating.is_some()).count();
    assert_eq!(events.len(), rated, "one NEW charge per line, none twice");
    assert_eq!(lines.len(), pull.lines.len());
    gw.stop().await;
}

async fn pollers_lease_accounts_and_record_usage(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let account = priced_account(&gw).await;
    let first = PollerSettings {
        owner: "replica-1".into(),
        ..Default::default()
    };
    let second = PollerSettings {
        owner: "replica-2".into(),
        ..Default::default()
    };
    let started = Utc::now();
    let PollOutcome::Recorded(summary) = poll_once(&gw.ledger, &account, &first).await.unwrap()
    else {
        panic!("the first replica polls")
    };
    assert!(
        summary.events_appended > 0,
        "simulator usage was rated into charges"
    );
    assert_eq!(
        poll_once(&gw.ledger, &account, &second).await.unwrap(),
        PollOutcome::NotLeased
    );
    let again = poll_once(&gw.ledger, &account, &first).await.unwrap();
    let crossed_hour = Utc::now().timestamp() / 3600 != started.timestamp() / 3600;
    if !crossed_hour {
        let PollOutcome::Recorded(s) = again else {
            panic!("leased")
        };
        assert_eq!(s.events_appended, 0, "the same data again appends nothing");
    }
    let status = gw.store.poll_status(&account.id).await.unwrap();
    assert_eq!(status.lease_owner.as_deref(), Some("replica-1"));
    assert_eq!(status.requests_spent, 2);
    assert!(status.last_success_at.is_some() && status.last_error.is_none());
    // When replica 1 goes away its lease can be taken over.
    gw.store
        .release_partner_account(&account.id, "replica-1")
        .await
        .unwrap();
    assert!(matches!(
        poll_once(&gw.ledger, &account, &second).await.unwrap(),
        PollOutcome::Recorded(_)
    ));
    let expired = PollerSettings {
        owner: "replica-3".into(),
        lease_ttl: StdDuration::from_secs(0),
        ..Default::default()
    };
    let _ = expired;
    let (lines, events) = ledger(&gw, &account).await;
    assert_consistent(&lines, &events);
    gw.stop().await;
}

/// Pushes bigger than one write chunk (5,000 keys): keys already stored and new ones in every
/// chunk, a key repeated within the push, and the whole push again.
async fn large_pushes_are_exact_across_chunks(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let account = priced_account(&gw).await;
    let accounts = vec!["sim-linked".to_string(), "sim-unlinked".to_string()];
    let push = |lines: Vec<UsageLine>, id: &str| {
        let key = IdempotencyKey::from_bytes(id.into(), "IngestUsage", id.as_bytes());
        let (ledger, tenant_id, account) = (&gw.ledger, &gw.tenant_id, &account);
        async move {
            ledger
                .ingest_push(tenant_id, account, lines, &Idempotent::unanswered(key))
                .await
                .unwrap()
                .fresh()
                .expect("a new request")
        }
    };
    // Estimates for the first 900 hours, then 1,800 hours as later figures: the second push
    // revises or confirms stored keys and adds as many new ones, spread over its chunks.
    let early = Simulator::new(7, accounts.clone()).at(hour(900));
    let first = early.lines(hour(0), hour(900));
    let late = Simulator::new(7, accounts.clone()).at(hour(5000));
    let mut second = late.lines(hour(0), hour(1800));
    assert!(
        second.len() > 12_000,
        "{} lines: more than two chunks",
        second.len()
    );
    // The same key twice in one push: the last statement wins.
    let mut restated = second[0].clone();
    restated.quantity += Decimal::ONE;
    restated.cost += Decimal::new(125, 2);
    second.push(restated.clone());

    let one = push(first, "first").await;
    let two = push(second.clone(), "second").await;
    let (lines, events) = ledger(&gw, &account).await;
    assert_eq!(events.len(), one.events_appended + two.events_appended);
    assert_eq!(two.last_sequence, Some(events.len() as i64));
    assert!(events.iter().any(|e| e.kind.as_str() == "REVISION"));
    assert_consistent(&lines, &events);
    let stored = lines
        .values()
        .find(|l| l.usage.key == restated.key)
        .expect("the restated key is stored");
    assert_eq!(stored.usage.cost, restated.cost);
    assert_eq!(stored.usage.quantity, restated.quantity);

    // The same lines under a new request id: every key is stored and unchanged.
    let again = push(second, "second-again").await;
    assert_eq!((again.lines_written, again.events_appended), (0, 0));
    gw.stop().await;
}

/// Writers of one tenant write their lines side by side and take the ledger lock only to append
/// events. Four pushers at once, each revising the same stored keys (row locks order them) and
/// adding keys of their own, and two of them bringing the same new key (the later one is told
/// to retry): afterwards every key's charges sum to its rated value and sequences are gap-free.
async fn concurrent_writers_of_one_tenant_keep_the_ledger_exact(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let account = priced_account(&gw).await;
    let sim = Simulator::new(11, vec!["sim-linked".to_string()]).at(hour(400));
    let shared = sim.lines(hour(0), hour(100));
    let key = |id: &str| {
        Idempotent::unanswered(IdempotencyKey::from_bytes(
            id.into(),
            "IngestUsage",
            id.as_bytes(),
        ))
    };
    gw.ledger
        .ingest_push(&gw.tenant_id, &account, shared.clone(), &key("seed"))
        .await
        .unwrap()
        .fresh()
        .expect("a new request");
    let writers = (0..4).map(|w| {
        let (ledger, tenant_id, account) =
            (gw.ledger.clone(), gw.tenant_id.clone(), account.clone());
        let (shared, own) = (
            shared.clone(),
            sim.lines(hour(100 + 50 * w), hour(150 + 50 * w)),
        );
        // Writers 0 and 1 both bring this hour's lines.
        let contested = sim.lines(hour(390), hour(391));
        tokio::spawn(async move {
            let mut retries = 0;
            for round in 0..3 {
                let mut lines: Vec<UsageLine> = shared
                    .iter()
                    .map(|l| {
                        let mut revised = l.clone();
                        revised.cost += Decimal::new(w * 10 + round, 3);
                        revised
                    })
                    .collect();
                lines.extend(own.iter().cloned());
                if w < 2 && round == 0 {
                    lines.extend(contested.iter().cloned());
                }
                let id = format!("writer-{w}-{round}");
                loop {
                    match ledger
                        .ingest_push(&tenant_id, &account, lines.clone(), &key(&id))
                        .await
                    {
                        Ok(_) => break,
                        Err(msp_gateway::domain::Error::Unavailable(_, why)) if retries < 10 => {
                            assert!(why.contains("retry"), "{why}");
                            retries += 1;
                        }
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.unwrap();
    }
    let (lines, events) = ledger(&gw, &account).await;
    assert_consistent(&lines, &events);
    assert!(events.iter().any(|e| e.kind.as_str() == "REVISION"));
    // Every writer's own lines and the contested hour are stored, once each.
    let expected: std::collections::HashSet<_> = (0..4)
        .flat_map(|w| sim.lines(hour(100 + 50 * w), hour(150 + 50 * w)))
        .chain(sim.lines(hour(390), hour(391)))
        .chain(shared.iter().cloned())
        .map(|l| l.key)
        .collect();
    let stored: std::collections::HashSet<_> =
        lines.values().map(|l| l.usage.key.clone()).collect();
    assert_eq!(stored, expected);
    // The writers added their daily totals side by side, before the ledger lock: each
    // customer's totals still sum to its events.
    let mut by_customer: std::collections::BTreeMap<&str, Decimal> = Default::default();
    for e in &events {
        *by_customer.entry(e.customer_id.as_str()).or_default() += e.amount;
    }
    assert!(!by_customer.is_empty());
    let all_days = msp_gateway::domain::spend::DayRange {
        first: chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(),
        end: chrono::NaiveDate::from_ymd_opt(2100, 1, 1).unwrap(),
    };
    for (customer, sum) in by_customer {
        let totals = gw
            .ledger
            .daily_totals(&gw.tenant_id, customer, all_days)
            .await
            .unwrap();
        let total: Decimal = totals.totals.iter().map(|t| t.amount).sum();
        assert_eq!(total, sum, "customer {customer}");
    }
    // Each run keeps the earliest and latest window of its events (a close skips runs by
    // them): a no-op update counts the runs, then those that disagree.
    let window = |bound: &str| {
        format!(
            "(SELECT {bound}(e.window_start) FROM charge_events e \
               WHERE e.tenant_id = charge_event_runs.tenant_id \
                 AND e.sequence BETWEEN charge_event_runs.first_sequence \
                 AND charge_event_runs.last_sequence)"
        )
    };
    let count = async |condition: String| {
        gw.execute_sql(&format!(
            "UPDATE charge_event_runs SET first_window = first_window WHERE {condition}"
        ))
        .await
    };
    assert!(count("first_window IS NOT NULL".into()).await > 4);
    let disagree = count(format!(
        "first_window IS NULL OR last_window IS NULL \
         OR first_window <> {} OR last_window <> {}",
        window("min"),
        window("max")
    ))
    .await;
    assert_eq!(
        disagree, 0,
        "runs whose window bounds are not their events'"
    );
    gw.stop().await;
}

crate::both_backends!(
    concurrent_writers_of_one_tenant_keep_the_ledger_exact,
    large_pushes_are_exact_across_chunks,
    revisions_over_time_keep_the_ledger_exact,
    interrupted_writes_leave_no_trace,
    pollers_lease_accounts_and_record_usage
);
