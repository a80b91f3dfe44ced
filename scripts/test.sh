#!/usr/bin/env bash
# The project's test command: the whole suite, every test on SQLite and on PostgreSQL.
#
# PostgreSQL is expected at $MSPGW_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
# If it is unreachable, the SQLite half still runs and this script says loudly that the
# PostgreSQL half did not — unless MSPGW_REQUIRE_POSTGRES=1 (CI), which makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_url=${MSPGW_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
# host and port out of postgres://user@host:port/db
hostport=$(sed -E 's|^[a-z]+://([^@/]*@)?([^/?]*).*|\2|' <<<"$pg_url")
pg_host=${hostport%%:*}
pg_port=${hostport##*:}
[ "$pg_port" = "$hostport" ] && pg_port=5432

postgres_skipped=0
if ! (exec 3<>"/dev/tcp/$pg_host/$pg_port") 2>/dev/null; then
  if [ "${MSPGW_REQUIRE_POSTGRES:-0}" = 1 ]; then
    echo "FATAL: PostgreSQL is unreachable at $pg_host:$pg_port and MSPGW_REQUIRE_POSTGRES=1." >&2
    exit 1
  fi
  echo "WARNING: PostgreSQL is unreachable at $pg_host:$pg_port: running the SQLite half only." >&2
  export MSPGW_TEST_SKIP_POSTGRES=1
  postgres_skipped=1
fi

# Test-only tools from PyPI (moto's AWS emulator), installed when missing.
if [ -f scripts/requirements-test.txt ] && ! python3 -c 'import moto.server' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi

# The portal's browser test drives Debian's chromium through chromedriver (apt packages only).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  scripts/install-browser.sh
fi

cargo test --locked "$@"

# The generated Python, Go and Java clients against the real gateway on both backends (it honours
# MSPGW_TEST_SKIP_POSTGRES and MSPGW_REQUIRE_POSTGRES like the suite above).
clients/test.sh
# The credit-control consumers in each language, killed part-way through a stream of charges and
# restarted, must process every sequence exactly once (against the real gateway, both backends).
clients/test-streaming.sh

if [ "$postgres_skipped" = 1 ]; then
  echo "" >&2
  echo "NOTE: the PostgreSQL half of the suite did NOT run (PostgreSQL unreachable at $pg_host:$pg_port)." >&2
  echo "      Only SQLite was tested. Start PostgreSQL or set MSPGW_TEST_POSTGRES_URL to test both." >&2
fi
