#!/usr/bin/env bash
# Fuzzing: builds the coverage-guided fuzz targets in fuzz/ (cargo fuzz, libFuzzer) and runs each
# for a short time, starting from its seeds (fuzz/corpus/<target>/) and past crashes
# (fuzz/regressions/<target>/). Fails on the first crash, leaving the input in
# fuzz/artifacts/<target>/: fix the code, then add the input to fuzz/regressions/<target>/ named
# ok-... or err-... (what the gateway must make of it), so `cargo test` replays it for good.
#
# Usage: scripts/fuzz.sh [--quick] [seconds-per-target (default 20)] [target...]   (default: every target)
#   --quick: an unoptimized build (cargo fuzz --dev, 16 codegen units): far cheaper to compile
#   cold, slower to run; what CI uses for its short run.
# New inputs a run discovers go to a scratch directory, never into the committed corpus.
#
# `cargo test` replays every seed and regression file on every run (fuzz_entry::tests); CI
# (.ci/run) also runs `scripts/fuzz.sh --quick 10`: measured cold in a fresh clone on the 2-core
# machine at load ~4, 1,086 s to build (13.5 min user CPU) and 7 × 10 s to run (aws_cost_explorer,
# through the SDK unoptimized, manages ~8 runs a second; the parsers thousands). A cold optimized
# fuzz build instruments the whole dependency tree (AWS and Azure SDKs, tonic, diesel), and cargo fuzz compiles the gateway crate in one codegen unit: measured on the
# 2-core CI machine under a load of 5-8 from other builds, 20 min wall (942 s CPU) for the
# dependencies, then 13.7 min (435 s CPU, one core) for the gateway and the 7 targets; at best
# about 15 min on 2 idle cores (8 + 7), plus 20 s a target. After a change to src/ alone: ~7 min.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
if [ "${1:-}" = --quick ]; then
  quick=1
  shift
fi
seconds=${1:-20}
shift || true

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo fuzz passes -Z flags to rustc; this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
# No sanitizer: the parsers are safe Rust, where a bug is a panic (overflow checks and debug
# assertions are on in fuzz/Cargo.toml's profile); AddressSanitizer would only slow the build.
fuzz_flags=(--sanitizer none)
[ "$quick" = 1 ] && fuzz_flags+=(--dev --codegen-units 16)

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

started=$(date +%s)
cargo fuzz build "${fuzz_flags[@]}"
echo "fuzz build: $(($(date +%s) - started)) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
summary=()
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  corpora=("$scratch/$target" "fuzz/corpus/$target")
  [ -d "fuzz/regressions/$target" ] && corpora+=("fuzz/regressions/$target")
  log="$scratch/$target.log"
  echo "== $target: ${seconds} s"
  if ! cargo fuzz run "${fuzz_flags[@]}" "$target" "${corpora[@]}" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "FAIL: fuzz target $target crashed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
  summary+=("$target: ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-cov: ?}, no crash")
done
printf '%s\n' "${summary[@]}"
echo "fuzzing: ${#targets[@]} targets, ${seconds} s each, no crash ($(($(date +%s) - started)) s in all)"
