//! Ingest benchmark: simulated usage lines through validation-free rating into the ledger, on
//! PostgreSQL and SQLite, beside raw PostgreSQL COPY (binary and CSV) of the same rows measured
//! in the same run.
//!
//! Run: `cargo bench --bench ingest` (env: MSPGW_BENCH_LINES, default 1000000;
//! MSPGW_BENCH_RUNS, default 3; MSPGW_BENCH_BATCH, default 50000 lines per transaction;
//! MSPGW_BENCH_SOURCES, default 2: partner accounts pushing side by side in the second
//! configuration of each run (the first has one); MSPGW_BENCH_SQLITE=0 skips SQLite;
//! MSPGW_TEST_POSTGRES_URL as for the tests). Prints lines/s per run, the medians, the ratios to
//! each COPY, CPU per line, and peak RSS.
#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
use msp_gateway::domain::usage::UsageLine;
use msp_gateway::ledger::Ledger;
use msp_gateway::store::BackendKind;
use support::usage_fixture::{Source, generate, prepare};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) of each running process whose name starts with `name`, by pid.
fn cpu_by_pid(name: &str) -> std::collections::HashMap<u32, f64> {
    // Linux reports these in clock ticks of 1/100 s.
    const TICKS: f64 = 100.0;
    let mut cpu = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(name) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
        cpu.insert(pid, (ticks(11) + ticks(12)) / TICKS);
    }
    cpu
}

/// CPU seconds spent between two [`cpu_by_pid`] readings (processes started since count whole).
fn cpu_spent(
    before: &std::collections::HashMap<u32, f64>,
    after: &std::collections::HashMap<u32, f64>,
) -> f64 {
    after
        .iter()
        .map(|(pid, cpu)| cpu - before.get(pid).copied().unwrap_or(0.0))
        .sum()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Ingests all lines in batches of `batch` (one transaction each), the sources side by side,
/// each pushing its share of the lines batch after batch; returns lines/s over the wall clock.
/// The batches are cut (and the lines copied) before the clock starts.
async fn ingest(
    ledger: &Ledger,
    sources: &[Source],
    lines: &[UsageLine],
    batch: usize,
    run: usize,
) -> f64 {
    let share = lines.len().div_ceil(sources.len());
    let work: Vec<(&Source, Vec<Vec<UsageLine>>)> = sources
        .iter()
        .zip(lines.chunks(share))
        .map(|(source, lines)| {
            (
                source,
                lines.chunks(batch).map(<[UsageLine]>::to_vec).collect(),
            )
        })
        .collect();
    let server_before = cpu_by_pid("postgres");
    let gateway_before = cpu_by_pid("ingest");
    let started = Instant::now();
    let pushed = work
        .into_iter()
        .enumerate()
        .map(|(s, (source, batches))| async move {
            let mut events = 0;
            for (i, chunk) in batches.into_iter().enumerate() {
                let key = IdempotencyKey::from_bytes(
                    format!("bench-{run}-{s}-{i}"),
                    "IngestUsage",
                    format!("{run}-{s}-{i}").as_bytes(),
                );
                let summary = ledger
                    .ingest_push(
                        &source.tenant_id,
                        &source.account,
                        chunk,
                        &Idempotent::unanswered(key),
                    )
                    .await
                    .unwrap()
                    .fresh()
                    .unwrap();
                events += summary.events_appended;
            }
            events
        });
    let events: usize = futures::future::join_all(pushed).await.into_iter().sum();
    let secs = started.elapsed().as_secs_f64();
    let micros_per_line = |cpu: f64| cpu * 1e6 / lines.len() as f64;
    let server = micros_per_line(cpu_spent(&server_before, &cpu_by_pid("postgres")));
    let gateway = micros_per_line(cpu_spent(&gateway_before, &cpu_by_pid("ingest")));
    assert_eq!(events, lines.len(), "every line rated into one charge");
    let wall = secs * 1e6 / lines.len() as f64;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    match ledger.store().kind() {
        BackendKind::Postgres => println!(
            "  CPU per line: database {server:.1} us, gateway {gateway:.1} us (wall {wall:.1} us on {cores} cores)"
        ),
        BackendKind::Sqlite => println!(
            "  CPU per line: {gateway:.1} us, SQLite in process (wall {wall:.1} us on {cores} cores)"
        ),
    }
    lines.len() as f64 / secs
}

/// Raw `\copy` baselines through psql (lines/s), into fresh tables made `LIKE … INCLUDING ALL`
/// (same columns, keys and indexes), of the usage lines exactly as the ingest stored them (same
/// line keys, ids and values).
struct RawCopy {
    /// The lines in binary format, as the gateway's own COPY sends them: the target's baseline.
    binary: f64,
    /// The same lines as CSV, psql's text format (the baseline reported until session 4).
    csv: f64,
    /// For reference, binary COPY of those lines plus the charge events the ledger appended
    /// (every row an ingest writes), one table after the other.
    lines_and_events: f64,
}

fn raw_copy(url: &str, dir: &std::path::Path) -> RawCopy {
    let psql = |command: &str| {
        // Plaintext, as the gateway's own connection: TLS would slow the baseline down.
        let status = std::process::Command::new("psql")
            .env("PGSSLMODE", "disable")
            .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", command])
            .status()
            .expect("psql");
        assert!(status.success(), "psql failed: {command}");
    };
    let dump = |table: &str, format: &str| {
        let file = dir.join(format!("{table}.{format}"));
        psql(&format!(
            "\\copy {table} TO '{}' WITH (FORMAT {format})",
            file.display()
        ));
        file
    };
    let lines_csv = dump("usage_lines", "csv");
    let lines_binary = dump("usage_lines", "binary");
    let events_binary = dump("charge_events", "binary");
    let rows = std::fs::read_to_string(&lines_csv).unwrap().lines().count() as f64;
    let load = |table: &str, file: &std::path::Path, format: &str| {
        psql(&format!(
            "DROP TABLE IF EXISTS copy_{table}; CREATE TABLE copy_{table} (LIKE {table} INCLUDING ALL);"
        ));
        let started = Instant::now();
        psql(&format!(
            "\\copy copy_{table} FROM '{}' WITH (FORMAT {format})",
            file.display()
        ));
        started.elapsed().as_secs_f64()
    };
    let csv_secs = load("usage_lines", &lines_csv, "csv");
    let lines_secs = load("usage_lines", &lines_binary, "binary");
    let events_secs = load("charge_events", &events_binary, "binary");
    RawCopy {
        binary: rows / lines_secs,
        csv: rows / csv_secs,
        lines_and_events: rows / (lines_secs + events_secs),
    }
}

/// One configuration's figures over the runs.
#[derive(Default)]
struct Series {
    ingest: Vec<f64>,
    copy: Vec<f64>,
    csv: Vec<f64>,
    floor: Vec<f64>,
}

impl Series {
    /// Prints the medians; returns lines/s and the ratios to binary and to CSV COPY.
    fn report(&self, label: &str) -> (f64, f64, f64) {
        let (pg, copy, csv, floor) = (
            median(self.ingest.clone()),
            median(self.copy.clone()),
            median(self.csv.clone()),
            median(self.floor.clone()),
        );
        println!(
            "median, {label}: PostgreSQL {pg:.0} lines/s, raw binary COPY {copy:.0} lines/s, \
             ratio {:.2} (CSV COPY {csv:.0}, ratio {:.2}); binary COPY of lines + events \
             {floor:.0} lines/s (ingest at {:.2} of it)",
            pg / copy,
            pg / csv,
            pg / floor
        );
        (pg, pg / copy, pg / csv)
    }
}

fn main() {
    let target = env_usize("MSPGW_BENCH_LINES", 1_000_000);
    let runs = env_usize("MSPGW_BENCH_RUNS", 3);
    let batch = env_usize("MSPGW_BENCH_BATCH", 50_000);
    let sources = env_usize("MSPGW_BENCH_SOURCES", 2).max(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (accounts, lines) = generate(target, 1000);
    println!(
        "ingest benchmark: {} lines, {} accounts, batches of {batch}, pushed by 1 and by {sources} \
         partner accounts of one tenant side by side, {runs} runs",
        lines.len(),
        accounts.len()
    );
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::env::consts::ARCH
    );
    let dir = tempfile::tempdir().unwrap();
    let (mut single, mut several) = (Series::default(), Series::default());
    let mut sqlite = Vec::new();
    for run in 0..runs {
        for (pushers, series) in [(1, &mut single), (sources, &mut several)] {
            let name = format!("mspgw_bench_{}_{run}_{pushers}", std::process::id());
            let url = runtime.block_on(support::fresh_postgres(&name));
            let (store, prepared) = runtime
                .block_on(prepare(&url, &accounts, pushers))
                .into_parts();
            let rate = runtime.block_on(ingest(&store, &prepared, &lines, batch, run));
            let copy = raw_copy(&url, dir.path());
            println!(
                "run {run}, {pushers} source(s): PostgreSQL ingest {rate:>7.0} lines/s | raw binary \
                 COPY {:>7.0} lines/s | ratio {:.2} | CSV COPY {:>7.0} | binary COPY of lines + \
                 events {:>7.0} lines/s",
                copy.binary,
                rate / copy.binary,
                copy.csv,
                copy.lines_and_events
            );
            series.ingest.push(rate);
            series.copy.push(copy.binary);
            series.csv.push(copy.csv);
            series.floor.push(copy.lines_and_events);
            drop(store);
            runtime.block_on(support::drop_postgres(&name));
        }
        if std::env::var("MSPGW_BENCH_SQLITE").as_deref() == Ok("0") {
            continue;
        }
        let path = dir.path().join(format!("bench-{run}.db"));
        let url = format!("sqlite://{}", path.display());
        let (store, prepared) = runtime.block_on(prepare(&url, &accounts, 1)).into_parts();
        let rate = runtime.block_on(ingest(&store, &prepared, &lines, batch, run));
        println!("run {run}, SQLite: ingest {rate:>7.0} lines/s");
        sqlite.push(rate);
    }
    let (one, one_binary, one_csv) = single.report("1 source");
    let (many, many_binary, many_csv) = several.report(&format!("{sources} sources"));
    if !sqlite.is_empty() {
        println!("median, SQLite: {:.0} lines/s", median(sqlite));
    }
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "targets: >= 100000 lines/s into PostgreSQL: {} with {sources} sources, {} with 1; \
         >= 0.5 of binary COPY: {} with {sources} sources, {} with 1; >= 0.5 of CSV COPY: {} \
         with {sources} sources, {} with 1",
        met(many >= 100_000.0),
        met(one >= 100_000.0),
        met(many_binary >= 0.5),
        met(one_binary >= 0.5),
        met(many_csv >= 0.5),
        met(one_csv >= 0.5)
    );
    println!("peak RSS: {:.0} MB", peak_rss_mb());
}
