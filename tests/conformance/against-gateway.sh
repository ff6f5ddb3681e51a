#!/usr/bin/env bash
# Runs the conformance check against a gateway binary it starts on 127.0.0.1 (free ports,
# a fresh database, development config), in two passes:
#   1. the offline local agent: the whole scripted session (check.py), attachments and
#      dictation included (--attachments);
#   2. the `openai` provider pointed at fake_openai.py: a model that dies half-way, a retry,
#      a slow turn with a concurrent retry (409), a client that stops the answer, a client
#      tool (highlight_tasks, declared in a config file), ask_user, the model picker and
#      the titles the model writes (check.py --agent-faults --fake-model).
#
#   tests/conformance/against-gateway.sh target/debug/chatkit-gateway [check.py options]
#
#   CONFORMANCE_POSTGRES_URL  run on PostgreSQL instead of SQLite: a fresh schema in that
#                             database (made and dropped with psql) holds everything
#
# Exit status: 0 when every check of both passes passed, 1 otherwise, 2 when a gateway did
# not start.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -ge 1 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
[ -x "$bin" ] || { echo "conformance: $bin is not an executable" >&2; exit 2; }

tmp="$(mktemp -d)"
pids=()
schema=""
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ -n "$schema" ]; then
    psql -q "$CONFORMANCE_POSTGRES_URL" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

db_url="sqlite://$tmp/gateway.db"
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

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # url log
  for _ in $(seq 1 150); do
    if python3 -c 'import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass' "$1" 2>/dev/null; then
      return 0
    fi
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.2
  done
  echo "conformance: nothing answered at $1; the log:" >&2
  tail -n 40 "$2" >&2
  exit 2
}

start_gateway() { # name, then extra VAR=value settings; sets $url
  local name=$1 port
  shift
  port="$(free_port)"
  (
    cd "$tmp"
    # Links absolute, as the SDK's Attachment models require (AnyUrl).
    exec env APP_ENV=development HOST=127.0.0.1 PORT="$port" DATABASE_URL="$db_url" \
      GATEWAY__ATTACHMENTS__PUBLIC_BASE_URL="http://127.0.0.1:$port" "$@" \
      "$bin" serve >"$tmp/$name.log" 2>&1
  ) &
  pids+=($!)
  url="http://127.0.0.1:$port"
  wait_http "$url/readyz" "$tmp/$name.log"
}

status=0

echo "== pass 1: the local agent"
# The composer's model picker may pick the model the conversation section sends.
start_gateway local AGENT_PROVIDER=local GATEWAY__AGENT__OPENAI__MODELS=conformance-model
GATEWAY_BIN="$bin" "$here/run.sh" "$url" --attachments "$@" || status=1
[ "$status" = 0 ] || { echo "== the gateway's log (last 40 lines)" >&2; tail -n 40 "$tmp/local.log" >&2; }

echo
echo "== pass 2: a scripted model API (fake_openai.py)"
fake_port="$(free_port)"
python3 "$here/fake_openai.py" "$fake_port" >"$tmp/fake.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$fake_port/" "$tmp/fake.log"
# The page's client tool is a list of tables, which no variable can hold: a config file in a
# directory of its own (layered over the compiled-in settings).
mkdir -p "$tmp/openai-config"
cat >"$tmp/openai-config/development.toml" <<'TOML'
[[chatkit.client_tools]]
name = "highlight_tasks"
description = "Highlight tasks in the page's task panel"
parameters = { type = "object", properties = { task_ids = { type = "array", items = { type = "integer" } } }, required = ["task_ids"] }
TOML
# Titles on: the fake model answers the non-streamed title request of every new thread.
start_gateway openai AGENT_PROVIDER=openai OPENAI_BASE_URL="http://127.0.0.1:$fake_port/v1" \
  OPENAI_MODEL=fake OPENAI_API_KEY= GATEWAY__AGENT__OPENAI__MODELS=conformance-model \
  GATEWAY__AGENT__OPENAI__TITLES=true APP_CONFIG_DIR="$tmp/openai-config"
pass2=0
GATEWAY_BIN="$bin" "$here/run.sh" "$url" --agent-faults --fake-model "http://127.0.0.1:$fake_port" \
  "$@" || pass2=1
[ "$pass2" = 0 ] || { echo "== the gateway's log (last 40 lines)" >&2; tail -n 40 "$tmp/openai.log" >&2; }

"${CONFORMANCE_VENV:-$here/.venv}/bin/python" "$here/check_widgets.py" "$here/../../target/chatkit-widget-samples.json" || status=1
[ "$status" = 0 ] && [ "$pass2" = 0 ]
