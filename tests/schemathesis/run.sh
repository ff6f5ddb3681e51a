#!/usr/bin/env bash
# Fuzzes a live gateway from its own OpenAPI document with Schemathesis: every check, a
# fixed seed, a few hundred examples per operation. Fails on any 5xx and on any response
# that does not match the document.
#
#   tests/schemathesis/run.sh GATEWAY_BIN [POSTGRES_URL]
#
# Starts GATEWAY_BIN on a free loopback port (development config, local agent) on a fresh
# SQLite file, or with POSTGRES_URL on a fresh schema in that database (made and dropped
# with psql), runs Schemathesis, stops the gateway.
# The venv (SCHEMATHESIS_VENV, default tests/schemathesis/.venv) is created from
# requirements.txt on first use (needs PyPI) and rebuilt when that file changes.
#   SCHEMATHESIS_EXAMPLES  examples per operation (default 200)
#   SCHEMATHESIS_SEED      seed (default 20261122)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -ge 1 ] || { sed -n "2,14p" "$0" >&2; exit 2; }
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
[ -x "$bin" ] || { echo "schemathesis: $bin is not an executable" >&2; exit 2; }

venv="${SCHEMATHESIS_VENV:-$here/.venv}"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/schemathesis" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null || true)" != "$want" ]; then
  echo "== schemathesis: creating the venv at $venv" >&2
  if [ -e "$venv" ]; then
    [ -f "$venv/pyvenv.cfg" ] || { echo "schemathesis: $venv exists and is not a venv" >&2; exit 2; }
    rm -rf "$venv"
  fi
  python3 -m venv "$venv"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install --quiet --no-input -r "$here/requirements.txt"
  echo "$want" >"$venv/.requirements.sha256"
fi

pg="${2:-}"
tmp="$(mktemp -d)"
pid=""
schema=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$schema" ]; then
    psql -q "$pg" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ -n "$pg" ]; then
  schema="schemathesis_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  psql -q "$pg" -c "CREATE SCHEMA $schema" >/dev/null || {
    echo "schemathesis: could not create a schema with psql at $pg" >&2
    schema=""
    exit 2
  }
  sep="?"
  case "$pg" in *\?*) sep="&" ;; esac
  db="${pg}${sep}options=-c%20search_path%3D${schema}"
else
  db="sqlite://$tmp/gateway.db"
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
(
  cd "$tmp"
  exec env APP_ENV=development HOST=127.0.0.1 PORT="$port" AGENT_PROVIDER=local \
    DATABASE_URL="$db" NO_COLOR=1 RUST_LOG=warn "$bin" serve >"$tmp/gateway.log" 2>&1
) &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 150); do
  curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
curl -fsS -o /dev/null "$base/readyz" || { tail -n 40 "$tmp/gateway.log" >&2; exit 2; }

export SCHEMATHESIS_BASE_URL="$base"
export SCHEMATHESIS_UPSTREAM_TOKEN="$("$bin" dev-token --user "fuzz-$(date +%s%N)" --ttl 3600)"
export SCHEMATHESIS_HOOKS=hooks
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
status=0
(cd "$tmp" && "$venv/bin/schemathesis" run "$base/openapi.json" \
  --checks all \
  --seed "${SCHEMATHESIS_SEED:-20261122}" \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-200}" \
  --generation-database none \
  --generation-allow-x00 false \
  --workers 1 \
  --no-color) || status=$?
if grep -qE 'ERROR|WARN' "$tmp/gateway.log"; then
  echo "== the gateway logged warnings or errors (errors first):" >&2
  { grep -E 'ERROR' "$tmp/gateway.log" || true; grep -E 'WARN' "$tmp/gateway.log" || true; } \
    | head -n 40 >&2
fi
exit "$status"
