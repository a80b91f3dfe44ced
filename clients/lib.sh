# Shared by clients/test.sh and clients/test-streaming.sh (sourced, not run): tool installs, client
# builds, the gateway on SQLite or PostgreSQL with a fresh tenant, and pass/fail bookkeeping.
# Expects $repo set to the repository root.

target=${CARGO_TARGET_DIR:-$repo/target}
case $target in /*) ;; *) target=$repo/$target ;; esac
build=$target/clients
mkdir -p "$build"
passed=0
failed=0
failures=()
gateway_pid=""
cleanup_dbs=()
cleanup_dirs=()

pass() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); echo "FAIL - $*"; }
note() { echo "# $*"; }

# Installs the toolchains (quietly, only what is missing) and builds the gateway and the clients.
prepare_clients() {
  "$repo/clients/install-deps.sh"
  if ! python3 "$repo/clients/python/check_requirements.py" "$repo/clients/python/requirements-dev.txt" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --no-input -r "$repo/clients/python/requirements-dev.txt"
  fi
  note "building the gateway (cargo build --locked)"
  (cd "$repo" && cargo build --locked --quiet --bin msp-gateway)
  gateway_bin=$target/debug/msp-gateway
  note "generating and building the clients into $build"
  "$repo/clients/python/generate.sh" "$build/python/gen" >/dev/null
  "$repo/clients/go/build.sh" "$build/go" >/dev/null
  "$repo/clients/java/build.sh" "$build/java" >/dev/null
  java_cp=$(cat "$build/java/classpath")
}

# Sets the array example_cmd to the command line of an example: example_command <py|go|java> <example>.
example_command() {
  local lang=$1 name=$2 class
  case $lang in
    py) example_cmd=(env PYTHONPATH="$build/python/gen" python3 "$repo/clients/python/examples/$name.py") ;;
    go) example_cmd=("$build/go/bin/$name") ;;
    java)
      class=$(sed -E 's/(^|_)([a-z])/\U\2/g' <<<"$name")
      example_cmd=(java -cp "$java_cp" "com.mspgateway.examples.$class")
      ;;
  esac
}

# Runs an example: run_example <py|go|java> <example> [args...] (args in --long-flag form). In the
# background, start "${example_cmd[@]}" directly instead, so that $! is the example's own process.
run_example() {
  local example_cmd=()
  example_command "$1" "$2"
  shift 2
  "${example_cmd[@]}" "$@"
}

# Sets gateway_cmd to run the gateway binary with its environment minus the test switches
# (MSPGW_TEST_*, MSPGW_REQUIRE_POSTGRES): the gateway reads every MSPGW_* variable as configuration
# and refuses unknown keys. `env` execs the gateway, so "${gateway_cmd[@]}" ... & makes $! the
# gateway itself.
gateway_command() {
  local name
  gateway_cmd=(env)
  for name in $(env | sed -n 's/^\(MSPGW_\(TEST_[A-Za-z0-9_]*\|REQUIRE_POSTGRES\)\)=.*/\1/p'); do
    gateway_cmd+=(-u "$name")
  done
  gateway_cmd+=(RUST_LOG="${RUST_LOG:-warn}" MSPGW_DATABASE_URL="$database_url" MSPGW_OPS_LISTEN=127.0.0.1:0 "$@" "$gateway_bin")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# PostgreSQL: decides whether the PostgreSQL half runs, as scripts/test.sh does.
pg_url=${MSPGW_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
backends() {
  local hostport host port
  hostport=$(sed -E 's|^[a-z]+://([^@/]*@)?([^/?]*).*|\2|' <<<"$pg_url")
  host=${hostport%%:*}
  port=${hostport##*:}
  [ "$port" = "$hostport" ] && port=5432
  if [ "${MSPGW_TEST_SKIP_POSTGRES:-0}" = 1 ]; then
    note "PostgreSQL skipped (MSPGW_TEST_SKIP_POSTGRES=1): SQLite only" >&2
    echo sqlite
  elif ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    if [ "${MSPGW_REQUIRE_POSTGRES:-0}" = 1 ]; then
      echo "FATAL: PostgreSQL is unreachable at $host:$port and MSPGW_REQUIRE_POSTGRES=1." >&2
      echo none
    else
      echo "WARNING: PostgreSQL is unreachable at $host:$port: the client tests run on SQLite only." >&2
      echo sqlite
    fi
  else
    echo sqlite postgres
  fi
}

# start_gateway <sqlite|postgres> <work dir>: a fresh database, a tenant and its admin key
# (MSP_GATEWAY_API_KEY), the gateway serving on a free port (MSP_GATEWAY_ADDRESS).
start_gateway() {
  local backend=$1 dir=$2 db out port i
  if [ "$backend" = sqlite ]; then
    database_url="sqlite://$dir/gateway.db"
  else
    db="mspgw_clients_$$_${RANDOM}"
    psql "$pg_url" -qAtc "CREATE DATABASE $db" >/dev/null || return 1
    cleanup_dbs+=("$db")
    database_url="${pg_url%/*}/$db"
  fi
  gateway_command
  out=$("${gateway_cmd[@]}" tenant create --name "Clients Test ISP" --currency ZAR \
    --time-zone Africa/Johannesburg 2>"$dir/tenant.err") || { cat "$dir/tenant.err" >&2; return 1; }
  MSP_GATEWAY_API_KEY=$(sed -n 's/^admin key (shown once, store it now): //p' <<<"$out")
  [ -n "$MSP_GATEWAY_API_KEY" ] || { echo "no admin key in: $out" >&2; return 1; }
  port=$(free_port)
  MSP_GATEWAY_ADDRESS=127.0.0.1:$port
  export MSP_GATEWAY_API_KEY MSP_GATEWAY_ADDRESS
  gateway_command MSPGW_LISTEN="$MSP_GATEWAY_ADDRESS"
  # Started directly, not through a function, so that $! is the gateway and stop_gateway ends it.
  "${gateway_cmd[@]}" serve >"$dir/gateway.log" 2>&1 &
  gateway_pid=$!
  for _ in $(seq 1 150); do
    if grpcurl -plaintext -max-time 2 "$MSP_GATEWAY_ADDRESS" grpc.health.v1.Health/Check >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$gateway_pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "the gateway did not become healthy; its log:" >&2
  cat "$dir/gateway.log" >&2
  return 1
}

stop_gateway() {
  if [ -n "$gateway_pid" ]; then
    kill "$gateway_pid" 2>/dev/null
    wait "$gateway_pid" 2>/dev/null
    gateway_pid=""
  fi
}

cleanup() {
  stop_gateway
  local db dir
  for db in ${cleanup_dbs[@]+"${cleanup_dbs[@]}"}; do
    psql "$pg_url" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  for dir in ${cleanup_dirs[@]+"${cleanup_dirs[@]}"}; do rm -rf "$dir"; done
}

# Prints the failures and the closing line; returns non-zero on any failure.
summary() {
  local label=$1 f
  echo ""
  for f in ${failures[@]+"${failures[@]}"}; do echo "failed: $f"; done
  echo "$label: $passed passed, $failed failed"
  [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
}
