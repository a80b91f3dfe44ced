#!/usr/bin/env bash
# Tests the generated Python, Go and Java clients against the real gateway: builds the gateway with
# cargo, generates and builds the clients (into $CARGO_TARGET_DIR/clients, default target/clients),
# then for SQLite and for PostgreSQL starts the gateway on a free port with a fresh database and
# tenant, and runs each language's examples against it, checking their output:
#   - create a customer; the same request_id again returns the same customer; the same request_id
#     with a different request is refused (INVALID_ARGUMENT);
#   - a create that meets UNAVAILABLE (nothing listening yet) retries with its request_id and
#     succeeds once the gateway is reachable;
#   - a create whose answer comes too late (DEADLINE_EXCEEDED, though the gateway carried it out)
#     retries with its request_id and gets the same customer: exactly one exists;
#   - list customers across pages (page_size 2), with the exact decimal sum of credit limits;
#   - every grpcurl command of the README's walkthrough, in order, on a gateway of its own
#     (clients/testing/walkthrough.py): one check per service;
#   - a refused batch of 300 bad lines reaches the Python client as INVALID_ARGUMENT (its error
#     fits the default metadata limit: clients/testing/refused_batch.py);
#   - mypy type-checks the Python examples and test tools against the generated stubs (Go and
#     Java: the compilers);
#   - the credit consumers' cursor handling against a STUB ChargeService and CreditControlService
#     (clients/testing/stub_charge_server.py, not the gateway): SIGKILLed four times part-way,
#     restarted, and recovering from a torn output line in each stream; each stream's output must
#     be exactly what the stub served, every sequence once. The same against the real gateway is
#     clients/test-streaming.sh.
# PostgreSQL as in scripts/test.sh: MSPGW_TEST_POSTGRES_URL, MSPGW_TEST_SKIP_POSTGRES=1 skips it,
# MSPGW_REQUIRE_POSTGRES=1 makes an unreachable server a failure.
# The streaming consumers' kill-and-resume test is clients/test-streaming.sh.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=clients/lib.sh
. "$repo/clients/lib.sh"
trap 'if [ -n "${consumer_pid:-}" ]; then kill -9 "$consumer_pid" 2>/dev/null; fi; cleanup' EXIT
set -e
prepare_clients
set +e

if (cd "$repo/clients/python" && MYPYPATH="$build/python/gen" python3 -m mypy --config-file mypy.ini \
    --cache-dir "$build/python/mypy" examples ../testing) >"$build/mypy.log" 2>&1; then
  pass "python: mypy type-checks the examples and test tools against the generated stubs"
else
  fail "python: mypy: $(cat "$build/mypy.log")"
fi

# A forwarder started late: connections to its port are refused until it listens.
late_forwarder() {  # <listen port> <target host:port> <delay seconds>
  python3 - "$@" <<'PY' &
import asyncio, sys, time
port, target, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
host, tport = target.rsplit(":", 1)
time.sleep(delay)
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    finally:
        w.close()
async def handle(r, w):
    ur, uw = await asyncio.open_connection(host, int(tport))
    await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    await asyncio.sleep(60)
asyncio.run(main())
PY
}

# A forwarder whose answers stall: once the gateway's first response (an HTTP/2 HEADERS or DATA
# frame) passes through, everything it sends is held for <hold> seconds, then flows freely. The
# request reached the gateway and was carried out; only the answer is late, so the client's
# deadline expires. Writes "held" to <log> when it held a response.
stalling_forwarder() {  # <listen port> <target host:port> <hold seconds> <log>
  python3 - "$@" <<'PY' &
import asyncio, sys, time
port, target, hold, log = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
host, tport = target.rsplit(":", 1)
until = None  # end of the hold, set by the first response frame
async def upstream(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    finally:
        w.close()
async def downstream(r, w):
    global until
    buffer = b""
    try:
        while data := await r.read(65536):
            buffer += data
            while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                size = 9 + int.from_bytes(buffer[:3], "big")
                frame, buffer = buffer[:size], buffer[size:]
                if until is None and frame[3] in (0, 1):  # DATA or HEADERS: a response
                    until = time.monotonic() + hold
                    open(log, "w").write("held\n")
                if until is not None and time.monotonic() < until:
                    await asyncio.sleep(until - time.monotonic())  # later frames queue behind
                w.write(frame)
                await w.drain()
    finally:
        w.close()
async def handle(r, w):
    ur, uw = await asyncio.open_connection(host, int(tport))
    await asyncio.gather(upstream(r, uw), downstream(ur, w), return_exceptions=True)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    await asyncio.sleep(60)
asyncio.run(main())
PY
}

dec_add() { python3 -c 'import sys; from decimal import Decimal, getcontext; getcontext().prec = 60; print(f"{sum(map(Decimal, sys.argv[1:])):f}")' "$@"; }

client_tests() {  # <backend> <work dir>
  local backend=$1 dir=$2 lang out id count=0 sum=0 expected_pages
  # The examples enroll customers with the simulator vendor: the tenant needs a partner account.
  if ! grpcurl -plaintext -H "authorization: Bearer $MSP_GATEWAY_API_KEY" -d '{"request_id": "sim-1",
      "partner_account": {"vendor": "SIMULATOR", "display_name": "Simulator", "vendor_account_id": "sim-partner",
      "partner_discount_rate": "0.10", "enabled": true}}' "$MSP_GATEWAY_ADDRESS" \
      msp.gateway.v1.PartnerAccountService/CreatePartnerAccount >"$dir/err" 2>&1; then
    fail "$backend: CreatePartnerAccount (grpcurl): $(cat "$dir/err")"
    return
  fi
  # An error listing many bad fields still fits the client's default metadata limit.
  if out=$(PYTHONPATH="$build/python/gen" python3 "$repo/clients/testing/refused_batch.py" 2>"$dir/err"); then
    pass "$backend/py: ${out#ok }"
  else
    fail "$backend/py: refused batch: $(cat "$dir/err")"
  fi
  for lang in py go java; do
    local t="$backend/$lang"
    # (a) create, idempotently
    out=$(run_example "$lang" create_customer --external-ref "$lang-1001" --display-name "Acme Mining ($lang)" \
      --credit-limit 9007199254740993.10 --request-id "rq-$lang-1" 2>"$dir/err")
    if [[ $out =~ ^customer\ (cus_[^ ]+)\ external_ref=$lang-1001\ credit_limit=9007199254740993.10\ ZAR\ attempts=1$ ]]; then
      id=${BASH_REMATCH[1]}
      pass "$t: create_customer creates a customer (credit limit exact past 2^53)"
    else
      fail "$t: create_customer: '$out' $(cat "$dir/err")"
      id=none
    fi
    out=$(run_example "$lang" create_customer --external-ref "$lang-1001" --display-name "Acme Mining ($lang)" \
      --credit-limit 9007199254740993.10 --request-id "rq-$lang-1" 2>"$dir/err")
    if [[ $out =~ ^customer\ (cus_[^ ]+)\  ]] && [ "${BASH_REMATCH[1]}" = "$id" ]; then
      pass "$t: a retry with the same request_id returns the same customer"
    else
      fail "$t: retry with the same request_id: '$out' (first: $id) $(cat "$dir/err")"
    fi
    if out=$(run_example "$lang" create_customer --external-ref "$lang-1001" --display-name "Someone else" \
        --credit-limit 1.00 --request-id "rq-$lang-1" 2>"$dir/err"); then
      fail "$t: the same request_id with a different request was accepted: '$out'"
    elif grep -Eq 'INVALID_ARGUMENT|InvalidArgument' "$dir/err"; then
      pass "$t: the same request_id with a different request is refused (INVALID_ARGUMENT)"
    else
      fail "$t: same request_id, different request: $(cat "$dir/err")"
    fi
    # (a') retry after UNAVAILABLE: the first attempts find nothing listening.
    local port
    port=$(free_port)
    late_forwarder "$port" "$MSP_GATEWAY_ADDRESS" 2 
    local fwd=$!
    out=$(MSP_GATEWAY_ADDRESS=127.0.0.1:$port run_example "$lang" create_customer --external-ref "$lang-1002" \
      --display-name "Bluecrane ($lang)" --credit-limit 0.20 --request-id "rq-$lang-2" --max-attempts 12 2>"$dir/err")
    kill "$fwd" 2>/dev/null; wait "$fwd" 2>/dev/null
    if [[ $out =~ ^customer\ cus_[^\ ]+\ external_ref=$lang-1002\ credit_limit=0.20\ ZAR\ attempts=([0-9]+)$ ]] \
        && [ "${BASH_REMATCH[1]}" -gt 1 ] && grep -Eq 'UNAVAILABLE|Unavailable' "$dir/err"; then
      pass "$t: create_customer retries after UNAVAILABLE with its request_id (attempts=${BASH_REMATCH[1]})"
    else
      fail "$t: retry after UNAVAILABLE: '$out' $(cat "$dir/err")"
    fi
    out=$(run_example "$lang" create_customer --external-ref "$lang-1003" --display-name "Karoo ($lang)" \
      --credit-limit 0.30 --request-id "rq-$lang-3" 2>"$dir/err") || fail "$t: third create: $(cat "$dir/err")"
    # (a'') retry after a timeout: the first attempt is carried out but its answer comes too late.
    local deadline_flag
    case $lang in py) deadline_flag=(--deadline 1) ;; go) deadline_flag=(--deadline 1s) ;; java) deadline_flag=(--deadline-ms 1000) ;; esac
    port=$(free_port)
    rm -f "$dir/stalled"
    stalling_forwarder "$port" "$MSP_GATEWAY_ADDRESS" 2.5 "$dir/stalled"
    fwd=$!
    sleep 0.5  # listening
    out=$(MSP_GATEWAY_ADDRESS=127.0.0.1:$port run_example "$lang" create_customer --external-ref "$lang-1004" \
      --display-name "Slow Line ($lang)" --credit-limit 0.40 --request-id "rq-$lang-4" "${deadline_flag[@]}" \
      --max-attempts 12 2>"$dir/err")
    kill "$fwd" 2>/dev/null; wait "$fwd" 2>/dev/null
    local same
    same=$(grpcurl -plaintext -H "authorization: Bearer $MSP_GATEWAY_API_KEY" -d "{\"external_ref\": \"$lang-1004\"}" \
      "$MSP_GATEWAY_ADDRESS" msp.gateway.v1.CustomerService/ListCustomers | grep -o '"id": "cus_[^"]*"' | sort -u)
    if [[ $out =~ ^customer\ (cus_[^\ ]+)\ external_ref=$lang-1004\ credit_limit=0.40\ ZAR\ attempts=([0-9]+)$ ]] \
        && [ "${BASH_REMATCH[2]}" -gt 1 ] && grep -Eq 'DEADLINE_EXCEEDED|DeadlineExceeded' "$dir/err" \
        && [ "$(cat "$dir/stalled" 2>/dev/null)" = held ] && [ "$same" = "\"id\": \"${BASH_REMATCH[1]}\"" ]; then
      pass "$t: create_customer retries after DEADLINE_EXCEEDED with its request_id: one customer (attempts=${BASH_REMATCH[2]})"
    else
      fail "$t: retry after a timeout: '$out' (customers with $lang-1004: ${same:-none}; forwarder: $(cat "$dir/stalled" 2>/dev/null)) $(cat "$dir/err")"
    fi
    count=$((count + 4))
    sum=$(dec_add "$sum" 9007199254740993.10 0.20 0.30 0.40)
    # (b) list across pages
    expected_pages=$(((count + 1) / 2))
    out=$(run_example "$lang" list_customers --page-size 2 2>"$dir/err")
    local last
    last=$(tail -n 1 <<<"$out")
    if [ "$last" = "total=$count pages=$expected_pages credit_limits=ZAR:$sum" ] \
        && [ "$(($(wc -l <<<"$out") - 1))" = "$count" ] && grep -q "$id" <<<"$out"; then
      pass "$t: list_customers reads $count customers over $expected_pages pages, exact sum $sum"
    else
      fail "$t: list_customers: expected 'total=$count pages=$expected_pages credit_limits=ZAR:$sum', got '$last' $(cat "$dir/err")"
    fi
  done
}

# The consumers against the stub services (see the header): their own cursor logic only.
# What a consumer writes for the stub's charge / credit event number $1 (the stub's fixed data).
stub_charge_line() { printf '%s\tcus_stub\tNEW\t%s.0000000123\tZAR\n' "$1" "$1"; }
stub_credit_line() {
  if [ $(($1 % 2)) = 1 ]; then
    printf '%s\tcus_stub\t100\tUP\t1000.01\t1000\tZAR\tAUTO_SUSPEND\tSUSPENSION_REQUIRED\t%s\n' "$1" "$1"
  else
    printf '%s\tcus_stub\t100\tDOWN\t999.99\t1000\tZAR\tAUTO_SUSPEND\tRESUMPTION_ALLOWED\t%s\n' "$1" "$1"
  fi
}
# As if killed between writing a line and saving the cursor, then in the middle of the next line.
torn_append() {  # <file> <line function>
  local next line
  next=$(($(lines_in "$1") + 1))
  line=$("$2" $((next + 1)))
  { "$2" "$next"; printf '%s' "${line:0:12}"; } >>"$1"
}
stub_consumer_tests() {
  local dir=$1 port stub n=200 m=240 lang state i deadline example_cmd=() s
  port=$(free_port)
  PYTHONPATH="$build/python/gen" python3 "$repo/clients/testing/stub_charge_server.py" "$port" "$n" "$m" &
  stub=$!
  for s in $(seq 1 "$n"); do stub_charge_line "$s"; done >"$dir/expected-charges"
  for s in $(seq 1 "$m"); do stub_credit_line "$s"; done >"$dir/expected-credit-events"
  for lang in py go java; do
    state=$dir/stub-$lang
    mkdir -p "$state"
    example_command "$lang" credit_consumer
    local killed_mid=0
    for i in 1 2 3 4 5; do
      # $! must be the consumer itself, so it is started directly.
      MSP_GATEWAY_ADDRESS=127.0.0.1:$port MSP_GATEWAY_API_KEY=stub "${example_cmd[@]}" \
        --state-dir "$state" --process-delay-ms 5 >>"$state/log" 2>&1 &
      consumer_pid=$!
      deadline=$((SECONDS + 60))
      while :; do
        # Kills 1-4: after some 30 more charges; run 5: when both streams have caught up.
        if [ "$i" -lt 5 ] && [ "$(lines_in "$state/charges.processed")" -ge $((i * 30 + RANDOM % 20)) ]; then break; fi
        if [ "$i" = 5 ] && [ "$(cat "$state/charges.cursor" 2>/dev/null)" = "$n" ] \
            && [ "$(cat "$state/credit-events.cursor" 2>/dev/null)" = "$m" ]; then break; fi
        kill -0 "$consumer_pid" 2>/dev/null && [ $SECONDS -lt $deadline ] || break
        sleep 0.02
      done
      kill -9 "$consumer_pid" 2>/dev/null
      wait "$consumer_pid" 2>/dev/null
      consumer_pid=""
      # Killed part-way through both streams (counted for kills 1-4).
      if [ "$i" -lt 5 ] && [ "$(lines_in "$state/charges.processed")" -lt "$n" ] \
          && [ "$(lines_in "$state/credit-events.processed")" -lt "$m" ]; then
        killed_mid=$((killed_mid + 1))
      fi
      if [ "$i" = 3 ]; then
        torn_append "$state/charges.processed" stub_charge_line
        torn_append "$state/credit-events.processed" stub_credit_line
      fi
    done
    if cmp -s "$state/charges.processed" "$dir/expected-charges" && [ "$(cat "$state/charges.cursor")" = "$n" ] \
        && grep -q '^charges: recovering cursor' "$state/log"; then
      pass "stub/$lang: credit_consumer charges, SIGKILLed 4 times (once mid-line): 1..$n processed exactly once"
    else
      fail "stub/$lang: charges output is not exactly the stub's 1..$n (cursor $(cat "$state/charges.cursor" 2>/dev/null)): $(diff "$state/charges.processed" "$dir/expected-charges" | head -3) $(tail -n 3 "$state/log")"
    fi
    if cmp -s "$state/credit-events.processed" "$dir/expected-credit-events" \
        && [ "$(cat "$state/credit-events.cursor")" = "$m" ] && grep -q '^credit-events: recovering cursor' "$state/log"; then
      pass "stub/$lang: credit_consumer credit events, same kills: 1..$m processed exactly once"
    else
      fail "stub/$lang: credit-events output is not exactly the stub's 1..$m (cursor $(cat "$state/credit-events.cursor" 2>/dev/null)): $(diff "$state/credit-events.processed" "$dir/expected-credit-events" | head -3) $(tail -n 3 "$state/log")"
    fi
    if [ "$killed_mid" = 4 ]; then
      pass "stub/$lang: all 4 kills landed part-way through both streams"
    else
      fail "stub/$lang: only $killed_mid of 4 kills landed part-way through both streams"
    fi
  done
  kill "$stub" 2>/dev/null
  wait "$stub" 2>/dev/null
}
lines_in() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
consumer_pid=""
stub_dir=$(mktemp -d)
cleanup_dirs+=("$stub_dir")
stub_consumer_tests "$stub_dir"

# Every grpcurl command of README.md's walkthrough, in order, on a gateway and tenant of its own
# (it creates the same partner account as client_tests); one check per service.
walkthrough_tests() {  # <backend> <work dir>
  local backend=$1 dir=$2 line
  GW=$MSP_GATEWAY_ADDRESS python3 "$repo/clients/testing/walkthrough.py" "$repo/clients/README.md" >"$dir/walkthrough" 2>&1
  while IFS= read -r line; do
    case $line in
      "ok "*) pass "$backend/grpcurl: README walkthrough, ${line#ok }" ;;
      *) fail "$backend/grpcurl: $line" ;;
    esac
  done <"$dir/walkthrough"
  grep -q '^ok ' "$dir/walkthrough" || fail "$backend/grpcurl: the walkthrough ran nothing: $(cat "$dir/walkthrough")"
}

backend_list=$(backends)
[ "$backend_list" = none ] && exit 1
for backend in $backend_list; do
  dir=$(mktemp -d)
  cleanup_dirs+=("$dir")
  note "gateway on $backend"
  if start_gateway "$backend" "$dir"; then
    client_tests "$backend" "$dir"
  else
    fail "$backend: the gateway did not start"
  fi
  stop_gateway
  dir=$(mktemp -d)
  cleanup_dirs+=("$dir")
  note "gateway on $backend for the grpcurl walkthrough (heartbeats every 500 ms)"
  if MSPGW_STREAM_HEARTBEAT_MS=500 start_gateway "$backend" "$dir"; then
    walkthrough_tests "$backend" "$dir"
  else
    fail "$backend: the gateway did not start"
  fi
  stop_gateway
done
summary clients
