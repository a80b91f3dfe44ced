#!/usr/bin/env bash
# Kill-and-resume test of the three credit-control consumers (clients/{python,go,java} examples
# credit_consumer, which follow StreamCharges and StreamCreditEvents at once) against the real
# gateway, on SQLite and on PostgreSQL. scripts/test.sh runs it after clients/test.sh.
#
# Per backend: a tenant with a simulator partner account, a customer with a linked simulator
# account, a markup rule and a USD->ZAR rate (push_usage.py setup), credit thresholds every 10 %
# under AUTO_SUSPEND (clients/testing/ledger.py); a batch of usage pushed with IngestUsage so
# charges exist, and the customer's credit limit swung so that every threshold is crossed down and
# up a few times, leaving the exposure at 48 % of the limit so that the next pushed charges cross
# the 50 % threshold. Then for each language: start the consumer (slowed to 25 ms per item),
# SIGKILL it part-way through both backlogs, push usage and swing the limit while it is dead
# (charges and credit events it has not seen), restart it, SIGKILL it again, restart it, push
# usage and swing the limit while it runs (live charges and credit events), wait until both of its
# cursors reach the high-water marks, and check, for each stream, that its output is exactly what
# the gateway holds (ListCharges; StreamCreditEvents read from 0), every sequence from 1 to the
# high-water mark once, in order, and that the cursor file says the same.
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
# Heartbeats every 300 ms: ledger.py credit-events reads the credit stream until the first one.
export MSPGW_STREAM_HEARTBEAT_MS=${MSPGW_STREAM_HEARTBEAT_MS:-300}
push() { run_example py push_usage "$@"; }
ledger() { PYTHONPATH="$build/python/gen" python3 "$repo/clients/testing/ledger.py" "$@"; }

lines_in() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
cursor_of() { cat "$1" 2>/dev/null || echo 0; }

start_consumer() {  # <lang> <state dir>
  local lang=$1 state=$2
  local example_cmd=()
  example_command "$lang" credit_consumer
  # Started directly (not through a function or subshell), so that $! is the consumer itself and
  # SIGKILL reaches it.
  "${example_cmd[@]}" --state-dir "$state" --process-delay-ms "$DELAY_MS" >>"$state/consumer.log" 2>&1 &
  consumer_pid=$!
}

# Waits until the outputs have at least $2 charges and $3 credit events; fails if the consumer
# dies first.
wait_for_lines() {  # <state dir> <charges> <credit events> <timeout s>
  local state=$1 deadline=$((SECONDS + $4))
  while [ "$(lines_in "$state/charges.processed")" -lt "$2" ] \
      || [ "$(lines_in "$state/credit-events.processed")" -lt "$3" ]; do
    if ! kill -0 "$consumer_pid" 2>/dev/null; then
      echo "the consumer exited: $(tail -n 5 "$state/consumer.log")"
      return 1
    fi
    [ $SECONDS -lt $deadline ] || {
      echo "timed out at $(lines_in "$state/charges.processed") of $2 charges and $(lines_in "$state/credit-events.processed") of $3 credit events"
      return 1
    }
    sleep 0.05
  done
}

kill_consumer() {  # <signal>
  kill "-$1" "$consumer_pid" 2>/dev/null
  wait "$consumer_pid" 2>/dev/null
  consumer_pid=""
}

high_water_mark() { push high-water-mark | sed -n 's/^high_water_mark=//p'; }
credit_high_water_mark() { ledger credit-events 2>&1 >/dev/null | sed -n 's/^credit_high_water_mark=//p'; }

next_hour=0
# Not in a command substitution: it advances next_hour. Prints why on failure. Unless the third
# argument is "any", the charges must cross a credit threshold too (the previous swing left the
# exposure just under 50 %).
push_batch() {  # <lines> <request id> [any]
  local out before after
  before=$(credit_high_water_mark)
  out=$(push push --partner-account-id "$partner" --account-id sim-acct-1 --lines "$1" \
    --first-hour "$next_hour" --base "$base" --request-id "$2" 2>&1) || { echo "$out"; return 1; }
  next_hour=$((next_hour + $1))
  [[ $out =~ events_appended=([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] || { echo "no charges appended: $out"; return 1; }
  [ "${3:-}" = any ] && return 0
  after=$(credit_high_water_mark)
  [ -n "$before" ] && [ "${after:-0}" -gt "$before" ] || { echo "the charges crossed no credit threshold (credit events ${before:-?} -> ${after:-?}): $out"; return 1; }
}

# Swings the credit limit (every threshold crossed down, then up, per round), leaving the exposure
# at 48 % of it. Prints why on failure.
swing_limit() {  # <rounds>
  local out before after
  before=$(credit_high_water_mark)
  out=$(ledger swing-limit --customer-id "$customer" --rounds "$1" --final-percent 48 2>&1) || { echo "$out"; return 1; }
  after=$(credit_high_water_mark)
  [ -n "$before" ] && [ "${after:-0}" -ge $((before + 10 * $1)) ] || { echo "too few credit events (${before:-?} -> ${after:-?}): $out"; return 1; }
}

# Counts a kill as part-way when both streams had more to deliver than the consumer had processed.
partway=0
check_partway() {  # <state dir>
  local charges credit
  charges=$(high_water_mark)
  credit=$(credit_high_water_mark)
  note "$t: charges $(cursor_of "$1/charges.cursor")/$charges, credit events $(cursor_of "$1/credit-events.cursor")/$credit"
  if [ "$(cursor_of "$1/charges.cursor")" -lt "${charges:-0}" ] && [ "$(cursor_of "$1/credit-events.cursor")" -lt "${credit:-0}" ]; then
    partway=$((partway + 1))
  fi
}

# The consumer's output for one stream against the gateway's own record: exactly equal, and
# sequences 1..hwm once each, in order, with the cursor at hwm.
check_stream() {  # <state dir> <name> <expected file> <hwm> <what>
  local state=$1 name=$2 expected=$3 hwm=$4 what=$5 dupes gaps
  if [ -n "$hwm" ] && [ "$hwm" -gt 0 ] && cmp -s "$state/$name.processed" "$expected" \
      && cut -f1 "$state/$name.processed" | diff -q - <(seq 1 "$hwm") >/dev/null \
      && [ "$(cursor_of "$state/$name.cursor")" = "$hwm" ]; then
    pass "$t: killed twice, resumed from its cursor: $what 1..$hwm processed exactly once, in order, as the gateway holds them"
  else
    dupes=$(cut -f1 "$state/$name.processed" | sort -n | uniq -d | head -5 | tr '\n' ' ')
    gaps=$(comm -13 <(cut -f1 "$state/$name.processed" | sort) <(seq 1 "${hwm:-0}" | sort) | head -5 | tr '\n' ' ')
    fail "$t: $what output is not exactly 1..$hwm as the gateway holds them (cursor $(cursor_of "$state/$name.cursor")); duplicates: ${dupes:-none}; missing: ${gaps:-none}; first difference: $(diff "$state/$name.processed" "$expected" | head -3 | tr '\n' ' ')"
  fi
}

consumer_test() {  # <backend> <lang> <dir>
  local backend=$1 lang=$2 state=$3/$2 t="$1/$2" charges_hwm credit_hwm why
  mkdir -p "$state"
  partway=0
  start_consumer "$lang" "$state"
  if ! why=$(wait_for_lines "$state" 20 20 90); then fail "$t: first run: $why"; kill_consumer 9; return; fi
  kill_consumer 9
  check_partway "$state"
  note "$t: killed (SIGKILL); pushing usage and swinging the credit limit while it is down"
  if ! push_batch 40 "push-$lang-down" >"$state/why"; then fail "$t: push while down: $(cat "$state/why")"; return; fi
  if ! swing_limit 1 >"$state/why"; then fail "$t: credit limit swing while down: $(cat "$state/why")"; return; fi
  start_consumer "$lang" "$state"
  if ! why=$(wait_for_lines "$state" $(($(lines_in "$state/charges.processed") + 20)) \
      $(($(lines_in "$state/credit-events.processed") + 20)) 90); then
    fail "$t: second run: $why"
    kill_consumer 9
    return
  fi
  kill_consumer 9
  check_partway "$state"
  note "$t: killed (SIGKILL) again; restarting, then pushing usage and swinging the limit while it runs"
  start_consumer "$lang" "$state"
  sleep 1
  if ! push_batch 40 "push-$lang-live" >"$state/why" || ! swing_limit 1 >>"$state/why"; then
    fail "$t: push or swing while running: $(cat "$state/why")"
    kill_consumer 9
    return
  fi
  # Nothing else writes to this tenant: these are final.
  charges_hwm=$(high_water_mark)
  credit_hwm=$(credit_high_water_mark)
  local deadline=$((SECONDS + 180))
  while [ "$(cursor_of "$state/charges.cursor")" -lt "${charges_hwm:-1}" ] \
      || [ "$(cursor_of "$state/credit-events.cursor")" -lt "${credit_hwm:-1}" ]; do
    if ! kill -0 "$consumer_pid" 2>/dev/null; then
      fail "$t: the consumer exited at cursors $(cursor_of "$state/charges.cursor")/$charges_hwm, $(cursor_of "$state/credit-events.cursor")/$credit_hwm: $(tail -n 5 "$state/consumer.log")"
      consumer_pid=""
      return
    fi
    if [ $SECONDS -ge $deadline ]; then
      fail "$t: the cursors $(cursor_of "$state/charges.cursor")/$charges_hwm (charges), $(cursor_of "$state/credit-events.cursor")/$credit_hwm (credit events) never reached the high-water marks"
      kill_consumer 9
      return
    fi
    sleep 0.1
  done
  kill_consumer TERM
  ledger charges >"$state/gateway-charges" 2>"$state/why" || { fail "$t: ListCharges: $(cat "$state/why")"; return; }
  ledger credit-events >"$state/gateway-credit-events" 2>"$state/why" || { fail "$t: StreamCreditEvents: $(cat "$state/why")"; return; }
  check_stream "$state" charges "$state/gateway-charges" "$(high_water_mark)" charges
  if grep -Eq $'^[0-9]+\tcus_[^\t]+\t(NEW|REVISION|REVERSAL|RERATE)\t-?[0-9]+(\\.[0-9]+)?\tZAR$' "$state/charges.processed" \
      && ! grep -Evq $'^[0-9]+\tcus_[^\t]+\t(NEW|REVISION|REVERSAL|RERATE)\t-?[0-9]+(\\.[0-9]+)?\tZAR$' "$state/charges.processed"; then
    pass "$t: every processed charge has a customer, a kind and an exact ZAR amount"
  else
    fail "$t: malformed charge lines in the output: $(grep -Ev $'^[0-9]+\tcus_' "$state/charges.processed" | head -3)"
  fi
  check_stream "$state" credit-events "$state/gateway-credit-events" \
    "$(sed -n 's/^credit_high_water_mark=//p' "$state/why")" "credit events"
  local credit_line=$'^[0-9]+\tcus_[^\t]+\t[0-9]+\t(UP|DOWN)\t-?[0-9]+(\\.[0-9]+)?\t[0-9]+(\\.[0-9]+)?\tZAR\tAUTO_SUSPEND\t(NOTIFY_ONLY|SUSPENSION_REQUIRED|RESUMPTION_ALLOWED)\t[0-9]+$'
  if ! grep -Evq "$credit_line" "$state/credit-events.processed" \
      && grep -Eq $'\t100\tUP\t.*\tSUSPENSION_REQUIRED\t' "$state/credit-events.processed" \
      && grep -Eq $'\t100\tDOWN\t.*\tRESUMPTION_ALLOWED\t' "$state/credit-events.processed" \
      && grep -Eq $'\t50\tUP\t.*\tNOTIFY_ONLY\t' "$state/credit-events.processed"; then
    pass "$t: every credit event has a threshold, a direction, exact amounts and an action (suspensions, resumptions and notices all seen)"
  else
    fail "$t: malformed or missing kinds of credit events: $(grep -Ev "$credit_line" "$state/credit-events.processed" | head -3)"
  fi
  if [ "$partway" = 2 ]; then
    pass "$t: both SIGKILLs landed part-way through both streams"
  else
    fail "$t: only $partway of 2 SIGKILLs landed part-way through both streams"
  fi
}

# MSPGW_STREAMING_TEST_ADDRESS (with MSPGW_STREAMING_TEST_KEY, an admin key of a fresh
# tenant) runs the test once against a gateway that is already running instead; give that gateway
# a short stream_heartbeat_ms, as each read of the credit stream here waits for a heartbeat.
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
  elif ! partner=$(sed -n 's/^partner_account=\([^ ]*\) .*/\1/p' <<<"$out") || [ -z "$partner" ] \
      || ! customer=$(sed -n 's/^partner_account=[^ ]* customer=\([^ ]*\)$/\1/p' <<<"$out") || [ -z "$customer" ]; then
    fail "$backend: set-up printed no partner account or customer: $out"
  elif ! out=$(ledger credit-settings --customer-id "$customer" --thresholds 10,20,30,40,50,60,70,80,90 \
      --policy AUTO_SUSPEND 2>&1) || [ "$out" != "credit_limit=1000000.00 thresholds=10,20,30,40,50,60,70,80,90,100 policy=AUTO_SUSPEND" ]; then
    fail "$backend: UpdateCreditSettings: $out"
  elif ! push_batch 120 push-initial any >"$dir/why"; then
    fail "$backend: IngestUsage: $(cat "$dir/why")"
  elif ! swing_limit 3 >"$dir/why"; then
    fail "$backend: credit limit swing: $(cat "$dir/why")"
  else
    for lang in py go java; do consumer_test "$backend" "$lang" "$dir"; done
  fi
  stop_gateway
done
summary streaming
