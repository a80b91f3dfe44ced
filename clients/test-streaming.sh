#!/usr/bin/env bash
# Kill-and-resume test of the three credit-control consumers (clients/{python,go,java} examples
# credit_consumer) against the real gateway, on SQLite and on PostgreSQL.
#
# NEEDS the streaming work: UsageService.IngestUsage, PricingService, ChargeService.StreamCharges
# and ListCharges served by the gateway. Until they are, this fails (UNIMPLEMENTED); it is not run
# by clients/test.sh. scripts/test.sh runs it after clients/test.sh.
#
# Per backend: a tenant with a simulator partner account, a customer with a linked simulator
# account, a markup rule and a USD->ZAR rate (push_usage.py setup); a batch of usage pushed with
# IngestUsage so charges exist. Then for each language: start the consumer (slowed to 25 ms per
# charge), SIGKILL it part-way through the backlog, push more usage while it is dead, restart it,
# SIGKILL it again, restart it, push more usage while it runs (live charges), wait until its cursor
# reaches the ledger's high-water mark, and check that its output holds every sequence from 1 to
# the high-water mark exactly once, in order, and that the cursor file says the same.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=clients/lib.sh
. "$repo/clients/lib.sh"
consumer_pid=""
trap 'if [ -n "$consumer_pid" ]; then kill -9 "$consumer_pid" 2>/dev/null; fi; cleanup' EXIT
set -e
prepare_clients
set +e

DELAY_MS=${DELAY_MS:-25}
push() { run_example py push_usage "$@"; }

lines_in() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

start_consumer() {  # <lang> <state dir>
  local lang=$1 state=$2
  local example_cmd=()
  example_command "$lang" credit_consumer
  # Started directly (not through a function or subshell), so that $! is the consumer itself and
  # SIGKILL reaches it.
  "${example_cmd[@]}" --cursor-file "$state/cursor" --output-file "$state/processed" \
    --process-delay-ms "$DELAY_MS" >>"$state/consumer.log" 2>&1 &
  consumer_pid=$!
}

# Waits until the output has at least $2 lines; fails if the consumer dies first.
wait_for_lines() {  # <state dir> <lines> <timeout s>
  local state=$1 want=$2 deadline=$((SECONDS + $3))
  while [ "$(lines_in "$state/processed")" -lt "$want" ]; do
    if ! kill -0 "$consumer_pid" 2>/dev/null; then
      echo "the consumer exited: $(tail -n 5 "$state/consumer.log")"
      return 1
    fi
    [ $SECONDS -lt $deadline ] || { echo "timed out at $(lines_in "$state/processed") of $want lines"; return 1; }
    sleep 0.05
  done
}

kill_consumer() {  # <signal>
  kill "-$1" "$consumer_pid" 2>/dev/null
  wait "$consumer_pid" 2>/dev/null
  consumer_pid=""
}

high_water_mark() { push high-water-mark | sed -n 's/^high_water_mark=//p'; }

next_hour=0
# Not in a command substitution: it advances next_hour. Prints why on failure.
push_batch() {  # <lines> <request id>
  local out
  out=$(push push --partner-account-id "$partner" --account-id sim-acct-1 --lines "$1" \
    --first-hour "$next_hour" --base "$base" --request-id "$2" 2>&1) || { echo "$out"; return 1; }
  next_hour=$((next_hour + $1))
  [[ $out =~ events_appended=([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] || { echo "no charges appended: $out"; return 1; }
}

consumer_test() {  # <backend> <lang> <dir>
  local backend=$1 lang=$2 state=$3/$2 t="$1/$2" hwm before why
  mkdir -p "$state"
  start_consumer "$lang" "$state"
  if ! why=$(wait_for_lines "$state" 20 90); then fail "$t: first run: $why"; kill_consumer 9; return; fi
  kill_consumer 9
  before=$(lines_in "$state/processed")
  note "$t: killed (SIGKILL) after $before charges; pushing usage while it is down"
  if ! push_batch 40 "push-$lang-down" >"$state/why"; then fail "$t: push while down: $(cat "$state/why")"; return; fi
  start_consumer "$lang" "$state"
  if ! why=$(wait_for_lines "$state" $((before + 20)) 90); then fail "$t: second run: $why"; kill_consumer 9; return; fi
  kill_consumer 9
  note "$t: killed (SIGKILL) again after $(lines_in "$state/processed") charges"
  start_consumer "$lang" "$state"
  sleep 1
  if ! push_batch 40 "push-$lang-live" >"$state/why"; then
    fail "$t: push while running: $(cat "$state/why")"
    kill_consumer 9
    return
  fi
  hwm=$(high_water_mark)
  local deadline=$((SECONDS + 180)) cursor=0
  while :; do
    cursor=$(cat "$state/cursor" 2>/dev/null || echo 0)
    [ "${cursor:-0}" -ge "${hwm:-1}" ] && break
    if ! kill -0 "$consumer_pid" 2>/dev/null; then
      fail "$t: the consumer exited at cursor $cursor of $hwm: $(tail -n 5 "$state/consumer.log")"
      consumer_pid=""
      return
    fi
    if [ $SECONDS -ge $deadline ]; then
      fail "$t: cursor $cursor never reached the high-water mark $hwm"
      kill_consumer 9
      return
    fi
    sleep 0.1
    hwm=$(high_water_mark)
  done
  kill_consumer TERM
  hwm=$(high_water_mark)
  if cut -f1 "$state/processed" | diff -q - <(seq 1 "$hwm") >/dev/null && [ "$(cat "$state/cursor")" = "$hwm" ]; then
    pass "$t: killed twice, resumed from its cursor: sequences 1..$hwm processed exactly once, in order"
  else
    local dupes gaps
    dupes=$(cut -f1 "$state/processed" | sort -n | uniq -d | head -5 | tr '\n' ' ')
    gaps=$(comm -13 <(cut -f1 "$state/processed" | sort) <(seq 1 "$hwm" | sort) | head -5 | tr '\n' ' ')
    fail "$t: output is not exactly 1..$hwm (cursor $(cat "$state/cursor")); duplicates: ${dupes:-none}; missing: ${gaps:-none}"
  fi
  if grep -Eq $'^[0-9]+\tcus_[^\t]+\t(NEW|REVISION|REVERSAL|RERATE)\t-?[0-9]+(\\.[0-9]+)?\tZAR$' "$state/processed" \
      && ! grep -Evq $'^[0-9]+\tcus_[^\t]+\t(NEW|REVISION|REVERSAL|RERATE)\t-?[0-9]+(\\.[0-9]+)?\tZAR$' "$state/processed"; then
    pass "$t: every processed charge has a customer, a kind and an exact ZAR amount"
  else
    fail "$t: malformed lines in the output: $(grep -Ev $'^[0-9]+\tcus_' "$state/processed" | head -3)"
  fi
}

# MSPGW_STREAMING_TEST_ADDRESS (with MSPGW_STREAMING_TEST_KEY, an admin or billing key of a fresh
# tenant) runs the test once against a gateway that is already running instead.
if [ -n "${MSPGW_STREAMING_TEST_ADDRESS:-}" ]; then
  backend_list=external
else
  backend_list=$(backends)
  [ "$backend_list" = none ] && exit 1
fi
base=$(python3 -c 'from datetime import datetime, timedelta, timezone; t = datetime.now(timezone.utc) - timedelta(days=30); print(t.strftime("%Y-%m-%dT%H:00:00Z"))')
for backend in $backend_list; do
  dir=$(mktemp -d)
  cleanup_dirs+=("$dir")
  note "gateway on $backend"
  if [ "$backend" = external ]; then
    export MSP_GATEWAY_ADDRESS=$MSPGW_STREAMING_TEST_ADDRESS MSP_GATEWAY_API_KEY=${MSPGW_STREAMING_TEST_KEY:?}
  elif ! start_gateway "$backend" "$dir"; then
    fail "$backend: the gateway did not start"
    continue
  fi
  next_hour=0
  if ! out=$(push setup --account-id sim-acct-1 --external-ref STREAM-1 2>&1); then
    fail "$backend: set-up (partner account, customer, link, price rule, FX rate): $out"
  elif ! partner=$(sed -n 's/^partner_account=\([^ ]*\) .*/\1/p' <<<"$out") || [ -z "$partner" ]; then
    fail "$backend: set-up printed no partner account: $out"
  elif ! push_batch 120 push-initial >"$dir/why"; then
    fail "$backend: IngestUsage: $(cat "$dir/why")"
  else
    for lang in py go java; do consumer_test "$backend" "$lang" "$dir"; done
  fi
  stop_gateway
done
summary streaming
