#!/usr/bin/env bash
# The whole test suite: formatting and lints; unit tests and the black-box API suite on
# SQLite (including the end-to-end tests against a real Better Auth server run by Node); the
# ChatKit client kit's tests; then the API suite on PostgreSQL. Each test gets its own
# database (a fresh SQLite file, or a fresh PostgreSQL schema dropped at the end of the run).
#
#   TEST_DATABASE_URL  PostgreSQL to use (default postgres://postgres@127.0.0.1:5432/test)
#   REQUIRE_POSTGRES=1 fail instead of skipping when PostgreSQL is unreachable (CI sets it)
set -euo pipefail
cd "$(dirname "$0")/.."

pg_url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

# What the API suite's fixture tests need (ignored by a plain `cargo test`, run here with
# --include-ignored): the real Better Auth server (Node >= 20, npm ci), the real MCP server
# (its venv), PostgreSQL's initdb and pg_ctl, Redis on 127.0.0.1:6379. Installs what it
# can; stops here naming what is missing.
scripts/setup-fixtures.sh

# Commit subjects fit in one line of 72 characters.
scripts/check-commits.sh

# Style and lints first: cheap, and a red here means nothing else needs to run.
echo "== cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== unit tests and API tests on SQLite"
# Every test, the fixture tests included; the PostgreSQL-only ones (postgres_only_*) wait
# for the PostgreSQL pass.
env -u TEST_DATABASE_URL cargo test --workspace --locked -- --include-ignored --skip postgres_only

# The ChatKit React client kit: type-check, build its example, and run its Node tests
# against the gateway binary the cargo run above built.
echo "== ChatKit React client kit"
GATEWAY_BIN="$PWD/target/debug/chatkit-gateway" clients/chatkit-react/test.sh

# Swagger UI's "Try it out" against the live gateway, and the example page explaining itself
# when OpenAI's CDN is out of reach, in Debian's headless Chromium (playwright-core, pinned).
echo "== Swagger UI and the example page in headless Chromium"
tests/browser/run.sh target/debug/chatkit-gateway

# A TypeScript client generated from the OpenAPI document (openapi-typescript, pinned)
# type-checks against a small use of it.
echo "== TypeScript client from the OpenAPI document"
tests/openapi-ts/run.sh

# ChatKit conformance: a scripted session against the live gateway, every answer and event
# validated with the official SDK's models (openai-chatkit, pinned; venv made on first run).
echo "== ChatKit conformance on SQLite"
tests/conformance/against-gateway.sh target/debug/chatkit-gateway

# The OpenAPI document against the live service: Schemathesis, every check, fixed seed; any
# 5xx or any answer the document does not describe fails the run.
echo "== Schemathesis on SQLite"
tests/schemathesis/run.sh target/debug/chatkit-gateway

pg_reachable() {
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -d "$pg_url"
}

if pg_reachable; then
  echo "== API tests on PostgreSQL ($pg_url)"
  status=0
  TEST_DATABASE_URL="$pg_url" cargo test --locked --lib --test api -- --include-ignored || status=$?
  echo "== ChatKit conformance on PostgreSQL"
  CONFORMANCE_POSTGRES_URL="$pg_url" tests/conformance/against-gateway.sh target/debug/chatkit-gateway || status=$?
  echo "== Schemathesis on PostgreSQL"
  tests/schemathesis/run.sh target/debug/chatkit-gateway "$pg_url" || status=$?
  # Each test made a schema t_<uuid>; drop them whatever the outcome, one transaction
  # each (a single DO block runs out of lock slots with hundreds of schemas).
  printf '%s\n' "SELECT format('DROP SCHEMA %I CASCADE', nspname) FROM pg_namespace WHERE nspname ~ '^t_[0-9a-f]{32}\$' \\gexec" \
    | psql -q "$pg_url" >/dev/null 2>&1 || true
  exit "$status"
elif [ "${REQUIRE_POSTGRES:-0}" = 1 ]; then
  echo "PostgreSQL is required but not reachable at $pg_url" >&2
  exit 1
else
  echo "== PostgreSQL not reachable at $pg_url: skipped the PostgreSQL run (set TEST_DATABASE_URL)"
fi
