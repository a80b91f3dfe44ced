//! Where a benchmarked phase spends its database time: every statement any Diesel connection
//! runs while the profile is on, timed from Diesel's start-of-query to end-of-query events and
//! summed per statement shape (digits and bind lists folded, so one shape per query site).
//! Turned on with `MSPGW_BENCH_PROFILE=1`; costs a string format per statement, so figures
//! taken with it on are for finding the slow part, not for the tables in BENCHMARKS.md.
//!
//! A statement's time is what its caller waited: on PostgreSQL it includes waiting for locks
//! (the ledger lock's `UPDATE ledger_sequences` shows the queue behind it), on SQLite the
//! statement's own work.
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};

static ON: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<Option<HashMap<String, (u64, Duration)>>> = Mutex::new(None);

/// One connection's statement in flight (a connection runs one at a time).
#[derive(Default)]
struct Timer {
    started: Option<Instant>,
}

impl Instrumentation for Timer {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => self.started = Some(Instant::now()),
            InstrumentationEvent::FinishQuery { query, .. } => {
                let Some(started) = self.started.take() else {
                    return;
                };
                if !ON.load(Ordering::Relaxed) {
                    return;
                }
                let shape = shape(&query.to_string());
                let mut totals = TOTALS.lock().unwrap();
                let entry = totals
                    .get_or_insert_with(HashMap::new)
                    .entry(shape)
                    .or_default();
                entry.0 += 1;
                entry.1 += started.elapsed();
            }
            _ => {}
        }
    }
}

/// The statement without its binds, digits folded to `9` and long texts cut.
fn shape(sql: &str) -> String {
    let sql = sql.split(" -- binds:").next().unwrap_or(sql);
    let mut out = String::with_capacity(100);
    let mut last_digit = false;
    for c in sql.chars() {
        let digit = c.is_ascii_digit();
        if !(digit && last_digit) {
            out.push(if digit { '9' } else { c });
        }
        last_digit = digit;
        if out.len() >= 110 {
            break;
        }
    }
    out
}

/// Whether `MSPGW_BENCH_PROFILE=1`.
pub fn install_was_requested() -> bool {
    std::env::var("MSPGW_BENCH_PROFILE").is_ok_and(|v| v == "1")
}

/// Installs the timer on every connection opened from now on, when `MSPGW_BENCH_PROFILE=1`.
/// Call before the store connects.
pub fn install() -> bool {
    let wanted = install_was_requested();
    if wanted {
        set_default_instrumentation(|| Some(Box::new(Timer::default())))
            .expect("install the statement timer");
    }
    wanted
}

/// Starts counting (and forgets what was counted before).
pub fn start() {
    *TOTALS.lock().unwrap() = Some(HashMap::new());
    ON.store(true, Ordering::Relaxed);
}

/// Stops counting and prints the statements by total time, the top `top`.
pub fn report(label: &str, top: usize) {
    ON.store(false, Ordering::Relaxed);
    let totals = TOTALS.lock().unwrap().take().unwrap_or_default();
    let mut rows: Vec<_> = totals.into_iter().collect();
    rows.sort_by_key(|(_, (_, time))| std::cmp::Reverse(*time));
    let all: Duration = rows.iter().map(|(_, (_, d))| *d).sum();
    println!(
        "statement profile ({label}): {:.3} s in statements",
        all.as_secs_f64()
    );
    for (sql, (count, time)) in rows.into_iter().take(top) {
        println!(
            "  {:>9.3} s {:>8} x {:>8.1} us  {sql}",
            time.as_secs_f64(),
            count,
            time.as_secs_f64() * 1e6 / count as f64
        );
    }
}
