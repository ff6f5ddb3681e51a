#!/usr/bin/env bash
# The fixtures of the API suite's fixture tests, the ones marked
# #[ignore = "needs the test fixtures: …"] in tests/api (see tests/api/support/fixtures.rs):
# installs what a checkout can install, checks what it cannot, and says what is missing.
# Idempotent; scripts/test.sh runs it first.
#
#   - the real Better Auth server: Node >= 20, its pinned packages (npm ci in tests/better-auth);
#   - the real MCP server: python3 >= 3.10 with venv, its pinned SDK (tests/mcp/setup.sh);
#   - a real S3-compatible server for the attachment tests: moto's server, pinned
#     (tests/s3/setup.sh, the same python3);
#   - PostgreSQL's server programs (initdb, pg_ctl): tests/api/pg_outage.rs runs a cluster
#     of its own;
#   - Redis on 127.0.0.1:6379, for the rate limit shared between two instances.
#
# Then every test on SQLite:
#   cargo test -- --include-ignored --skip postgres_only
# and on PostgreSQL, the PostgreSQL-only tests (postgres_only_*) included:
#   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test --test api -- --include-ignored
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=("Node >= 20 with npm (runs the Better Auth fixture, tests/better-auth)")
elif [ ! -d tests/better-auth/node_modules/better-auth ]; then
  echo "== installing the Better Auth test fixture (npm ci)"
  npm ci --prefix tests/better-auth --no-audit --no-fund
fi

if command -v python3 >/dev/null 2>&1; then
  tests/mcp/setup.sh
  tests/s3/setup.sh
else
  missing+=("python3 >= 3.10 with venv (the MCP test server, tests/mcp; the S3 test server, tests/s3)")
fi

# Where tests/api/support/fixtures.rs looks: Debian's layout, then PATH.
postgres_program() {
  ls /usr/lib/postgresql/*/bin/"$1" >/dev/null 2>&1 || command -v "$1" >/dev/null 2>&1
}
for program in initdb pg_ctl; do
  postgres_program "$program" || missing+=("PostgreSQL's $program (e.g. apt-get install postgresql)")
done

if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  missing+=("Redis listening on 127.0.0.1:6379 (e.g. redis-server --daemonize yes --save '')")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "The fixture tests need, and this machine lacks:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
echo "== test fixtures ready; every test on SQLite, then on PostgreSQL:"
echo "   cargo test -- --include-ignored --skip postgres_only"
echo "   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test --test api -- --include-ignored"
