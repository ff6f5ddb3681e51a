#!/usr/bin/env bash
# Starts a gateway binary on 127.0.0.1 (free port, fresh SQLite file in a temp dir, the
# offline local agent, development config), runs the conformance check against it, stops it.
#
#   tests/conformance/against-gateway.sh target/debug/chatkit-gateway [check.py options]
#
#   CONFORMANCE_POSTGRES_URL  run on PostgreSQL instead: a fresh schema in that database
#                             (made and dropped with psql) holds everything
#   CONFORMANCE_DATABASE_URL  or use this database as it is (every run uses fresh user ids)
#
# Exit status: check.py's (0 when every check passed), or 2 when the gateway did not start.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -ge 1 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
[ -x "$bin" ] || { echo "conformance: $bin is not an executable" >&2; exit 2; }

tmp="$(mktemp -d)"
pid=""
schema=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ -n "$schema" ]; then
    psql -q "$CONFORMANCE_POSTGRES_URL" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

db_url="${CONFORMANCE_DATABASE_URL:-sqlite://$tmp/gateway.db}"
if [ -n "${CONFORMANCE_POSTGRES_URL:-}" ]; then
  schema="conformance_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  psql -q "$CONFORMANCE_POSTGRES_URL" -c "CREATE SCHEMA $schema" >/dev/null || {
    echo "conformance: could not create a schema with psql at $CONFORMANCE_POSTGRES_URL" >&2
    schema=""
    exit 2
  }
  sep="?"
  case "$CONFORMANCE_POSTGRES_URL" in *\?*) sep="&" ;; esac
  db_url="${CONFORMANCE_POSTGRES_URL}${sep}options=-c%20search_path%3D${schema}"
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
(
  cd "$tmp"
  exec env APP_ENV=development HOST=127.0.0.1 PORT="$port" AGENT_PROVIDER=local \
    DATABASE_URL="$db_url" \
    "$bin" serve >"$tmp/gateway.log" 2>&1
) &
pid=$!

up=0
for _ in $(seq 1 150); do
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "http://127.0.0.1:$port/readyz" 2>/dev/null; then
    up=1
    break
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
if [ "$up" != 1 ]; then
  echo "conformance: the gateway did not become ready on port $port; its log:" >&2
  tail -n 40 "$tmp/gateway.log" >&2
  exit 2
fi

status=0
GATEWAY_BIN="$bin" "$here/run.sh" "http://127.0.0.1:$port" "$@" || status=$?
if [ "$status" != 0 ]; then
  echo "== the gateway's log (last 40 lines)" >&2
  tail -n 40 "$tmp/gateway.log" >&2
fi
exit "$status"
