#!/usr/bin/env bash
# The streamed ChatKit turn beside the REST turn (a benchmark, not a test: it never fails on
# slowness). One release gateway, one thread; wrk -t2 -c32 alternates REST `POST /messages`
# and ChatKit `threads.add_user_message` with the same message, ROUNDS times, so both rows
# see the same machine at nearly the same moment.
#
#   bench/turn_ratio.sh                     # SQLite, "list my tasks" (the list_tasks tool)
#   bench/turn_ratio.sh postgres            # a throw-away database on the local PostgreSQL
#   MESSAGE=hello ROUNDS=5 DURATION=8s bench/turn_ratio.sh
#
# Environment: BENCH_BIN (a gateway binary instead of building one), BENCH_PG_URL (default
# postgres://postgres@127.0.0.1:5432), BENCH_PORT (default 18311).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DB=${1:-sqlite}
MESSAGE=${MESSAGE:-list my tasks}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
PG_SERVER=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
BIN=${BENCH_BIN:-"${CARGO_TARGET_DIR:-target}/release/chatkit-gateway"}
command -v wrk >/dev/null || { echo "wrk is required" >&2; exit 1; }
if [[ -z ${BENCH_BIN:-} ]]; then cargo build --release --quiet -p chatkit-gateway; fi

TMP=$(mktemp -d)
PORT=${BENCH_PORT:-18311}
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done
BASE=http://127.0.0.1:$PORT
PG_DB=""
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [[ -n $PG_DB ]] && psql -q "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT

export HOST=127.0.0.1 PORT APP_ENV=development RUST_LOG=warn AGENT_PROVIDER=local
case $DB in
sqlite) export DATABASE_URL="sqlite://$TMP/bench.db" ;;
postgres)
    PG_DB="bench_turn_ratio_$$"
    psql -q "$PG_SERVER/postgres" -c "CREATE DATABASE $PG_DB"
    export DATABASE_URL="$PG_SERVER/$PG_DB"
    ;;
*) echo "usage: $0 [sqlite|postgres]" >&2; exit 64 ;;
esac
"$BIN" serve >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do curl -fs -o /dev/null "$BASE/healthz" && break; sleep 0.05; done

UP=$("$BIN" dev-token --user bench)
CS=$(curl -fsS -X POST "$BASE/api/chatkit/session" -H "Authorization: Bearer $UP" |
    sed -n 's/.*"client_secret":"\([^"]*\)".*/\1/p')
post() { curl -fsS -X POST "$BASE/api/chatkit/messages" -H "Authorization: Bearer $CS" -H 'Content-Type: application/json' -d "$1"; }
THREAD=$(post '{"message":"add a task to buy milk"}' | sed -n 's/.*"thread_id":"\([^"]*\)".*/\1/p')
for t in "water plants" "call mom" "pay rent"; do
    post "{\"thread_id\":\"$THREAD\",\"message\":\"add a task to $t\"}" >/dev/null
done
cat >"$TMP/rest.lua" <<L
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $CS"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"thread_id":"$THREAD","message":"$MESSAGE"}'
L
cat >"$TMP/chatkit.lua" <<L
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $CS"
wrk.body = '{"type":"threads.add_user_message","params":{"thread_id":"$THREAD","input":{"content":[{"type":"input_text","text":"$MESSAGE"}],"attachments":[],"inference_options":{}}}}'
L
rate() { wrk -t2 -c32 -d"$DURATION" -s "$1" "$2" | awk '/Requests\/sec/ { print $2 }'; }
echo "| round | REST POST /messages req/s | ChatKit threads.add_user_message req/s | ChatKit / REST |"
echo "| --- | ---: | ---: | ---: |"
for r in $(seq 1 "$ROUNDS"); do
    a=$(rate "$TMP/rest.lua" "$BASE/api/chatkit/messages")
    b=$(rate "$TMP/chatkit.lua" "$BASE/chatkit")
    echo "| $r ($DB, \"$MESSAGE\") | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }') |"
done
