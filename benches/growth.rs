//! Growth benchmark (PostgreSQL): does the ledger slow down as it fills? Prints figures; not a
//! timed test. Run in release:
//!
//! ```sh
//! cargo bench --bench growth
//! ```
//!
//! Two databases prepared alike (one tenant, 100 customers owning `ACCOUNTS` simulator
//! accounts, a markup and an FX rate). The "full" one is first loaded through the ledger's own
//! write path with `STORED` usage lines (default 20,000,000: a quarter of hourly data for a
//! mid-size MSP), each rated into a charge; the "empty" one holds nothing. Then, in each of
//! `RUNS` runs, the same `LINES` new lines (the days after the stored quarter; default
//! 1,000,000) are ingested into both, in alternating order, and the medians compared:
//! target ≥ 0.8 of the empty ledger's rate. Last, read latency on both (p50/p99 of `REQUESTS`
//! sequential calls through the generated client): a consumer's page of 100 charges after its
//! cursor (`ListCharges`), one customer's page, a customer's open line items, and catching up
//! 10,000 charges on `StreamCharges`.
//!
//! Environment: MSPGW_BENCH_STORED, MSPGW_BENCH_LINES, MSPGW_BENCH_RUNS (3),
//! MSPGW_BENCH_ACCOUNTS (2,000), MSPGW_BENCH_REQUESTS (50); MSPGW_TEST_POSTGRES_URL as for the
//! tests. The load takes minutes (it goes through the ledger, at the ingest benchmark's rate).
#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use msp_gateway::domain::usage::UsageLine;
use msp_gateway::ledger::Ledger;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::charge_service_client::ChargeServiceClient;
use support::usage_fixture::{Prepared, Source, account_ids, lines_between, prepare};
use support::{authorized, env};
use tonic::transport::Channel;

const FULL: &str = "mspgw_growth_full";
const EMPTY: &str = "mspgw_growth_empty";
/// Lines per push (one transaction), as the ingest benchmark.
const BATCH: usize = 50_000;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The simulator's lines of whole days from `first_day` (counted from the fixture's start)
/// until at least `count` lines, cut to `count`; and the day after the last one used.
fn days_of_lines(ids: &[String], first_day: i64, count: usize) -> (Vec<UsageLine>, i64) {
    let start = support::usage_fixture::start();
    let mut lines = Vec::with_capacity(count);
    let mut day = first_day;
    while lines.len() < count {
        let from = start + chrono::Duration::days(day);
        lines.extend(lines_between(ids, from, from + chrono::Duration::days(1)));
        day += 1;
    }
    lines.truncate(count);
    (lines, day)
}

/// Pushes `lines` in batches through the first source; lines/s over the wall clock.
async fn ingest(ledger: &Ledger, source: &Source, lines: Vec<UsageLine>) -> f64 {
    let count = lines.len();
    let batches: Vec<Vec<UsageLine>> = lines.chunks(BATCH).map(<[UsageLine]>::to_vec).collect();
    drop(lines);
    let started = Instant::now();
    let mut charged = 0;
    for batch in batches {
        charged += support::write(ledger, &source.tenant_id, &source.account, batch).await;
    }
    assert_eq!(charged, count);
    count as f64 / started.elapsed().as_secs_f64()
}

/// Rows in a table of the database at `url`.
async fn rows(url: &str, table: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

/// The full database, made and loaded with `stored` lines; and the first day after them.
async fn full_database(ids: &[String], stored: usize) -> (String, Prepared, i64) {
    let url = support::fresh_postgres(FULL).await;
    let prepared = prepare(&url, ids, 1).await;
    let started = Instant::now();
    let (mut loaded, mut day) = (0usize, 0i64);
    while loaded < stored {
        // A few days at a time: 20 million lines do not fit in memory at once.
        let (lines, next) = days_of_lines(ids, day, (stored - loaded).min(BATCH * 10));
        loaded += lines.len();
        day = next;
        ingest(&prepared.ledger, &prepared.sources[0], lines).await;
        println!(
            "  loaded {loaded} lines ({:.0} lines/s so far)",
            loaded as f64 / started.elapsed().as_secs_f64()
        );
    }
    println!(
        "loaded {loaded} lines into {FULL} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    (url, prepared, day)
}

async fn timed<F, Fut>(requests: usize, mut call: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..requests / 10 + 2 {
        call().await;
    }
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        call().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// p50/p99 of each read on one database, in the order of `READS`.
const READS: [&str; 4] = [
    "ListCharges, 100 after a cursor 10,000 back",
    "ListCharges, one customer's 100",
    "ListOpenLineItems, one customer",
    "StreamCharges, catch up 10,000",
];

async fn reads(
    ledger: Arc<Ledger>,
    key: &str,
    customer: &str,
    requests: usize,
) -> Vec<(Duration, Duration)> {
    let served = support::serve(ledger).await;
    let channel: Channel = served.channel.clone();
    let client = ChargeServiceClient::new(channel);
    let head = client
        .clone()
        .list_charges(authorized(
            key,
            v1::ListChargesRequest {
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .high_water_mark;
    let cursor = (head - 10_000).max(0);
    let list = |request: v1::ListChargesRequest| {
        let client = client.clone();
        move || {
            let mut client = client.clone();
            let request = authorized(key, request.clone());
            async move {
                let page = client.list_charges(request).await.unwrap().into_inner();
                assert_eq!(page.charges.len(), 100);
            }
        }
    };
    let mut figures = vec![
        timed(
            requests,
            list(v1::ListChargesRequest {
                page_size: 100,
                after_sequence: cursor,
                ..Default::default()
            }),
        )
        .await,
        timed(
            requests,
            list(v1::ListChargesRequest {
                page_size: 100,
                customer_id: customer.to_string(),
                after_sequence: (head - 1_000_000).max(0),
                ..Default::default()
            }),
        )
        .await,
    ];
    figures.push(
        timed(requests, || {
            let mut client = client.clone();
            let request = authorized(
                key,
                v1::ListOpenLineItemsRequest {
                    customer_id: customer.to_string(),
                },
            );
            async move {
                client.list_open_line_items(request).await.unwrap();
            }
        })
        .await,
    );
    figures.push(
        timed(requests.min(20), || {
            let mut client = client.clone();
            let request = authorized(
                key,
                v1::StreamChargesRequest {
                    after_sequence: cursor,
                    ..Default::default()
                },
            );
            async move {
                let mut stream = client.stream_charges(request).await.unwrap().into_inner();
                let mut seen = 0;
                while seen < head - cursor {
                    match stream.message().await.unwrap().unwrap().event {
                        Some(v1::stream_charges_response::Event::Charge(_)) => seen += 1,
                        _ => continue,
                    }
                }
            }
        })
        .await,
    );
    served.server.abort();
    figures
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let stored = env("STORED", 20_000_000);
    let measured = env("LINES", 1_000_000);
    let runs = env("RUNS", 3);
    let requests = env("REQUESTS", 50);
    let ids = account_ids(env("ACCOUNTS", 2_000));
    println!(
        "growth benchmark: PostgreSQL, {stored} lines stored vs none, {measured} new lines per run, {runs} runs, {} accounts; machine: {} cores, {}",
        ids.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    let (full_url, full, first_new_day) = full_database(&ids, stored).await;
    let empty_url = support::fresh_postgres(EMPTY).await;
    let empty = prepare(&empty_url, &ids, 1).await;
    for (label, url) in [("full", &full_url), ("empty", &empty_url)] {
        println!(
            "{label}: {} usage lines, {} charge events before the runs",
            rows(url, "usage_lines").await,
            rows(url, "charge_events").await
        );
    }

    let (mut into_empty, mut into_full) = (Vec::new(), Vec::new());
    let mut day = first_new_day;
    for run in 0..runs {
        let (lines, next) = days_of_lines(&ids, day, measured);
        day = next;
        // Alternate which database goes first, so neither always has the warmer machine.
        let order: [(&str, &Prepared); 2] = if run % 2 == 0 {
            [("empty", &empty), ("full", &full)]
        } else {
            [("full", &full), ("empty", &empty)]
        };
        for (label, prepared) in order {
            let rate = ingest(&prepared.ledger, &prepared.sources[0], lines.clone()).await;
            println!(
                "run {run}: {} lines into the {label} ledger: {rate:.0} lines/s",
                lines.len()
            );
            if label == "full" {
                into_full.push(rate);
            } else {
                into_empty.push(rate);
            }
        }
    }
    let (e, f) = (median(into_empty), median(into_full));
    println!(
        "median: empty ledger {e:.0} lines/s, {stored}-line ledger {f:.0} lines/s, ratio {:.2} (target >= 0.80: {})",
        f / e,
        if f / e >= 0.8 { "met" } else { "NOT met" }
    );

    println!(
        "{:<44} {:>22} {:>22}",
        "read (p50 / p99)", "empty ledger", "full ledger"
    );
    let small = reads(
        empty.ledger.clone(),
        &empty.key,
        &empty.customer_ids[0],
        requests,
    )
    .await;
    let large = reads(
        full.ledger.clone(),
        &full.key,
        &full.customer_ids[0],
        requests,
    )
    .await;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (i, read) in READS.iter().enumerate() {
        println!(
            "{read:<44} {:>9.2} / {:>7.2} ms {:>9.2} / {:>7.2} ms  ({:.2}x at p50)",
            ms(small[i].0),
            ms(small[i].1),
            ms(large[i].0),
            ms(large[i].1),
            large[i].0.as_secs_f64() / small[i].0.as_secs_f64()
        );
    }
    drop((empty, full));
    support::drop_postgres(EMPTY).await;
    support::drop_postgres(FULL).await;
}
