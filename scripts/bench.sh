#!/usr/bin/env bash
# Load benchmark of chatkit-gateway (a benchmark, not a test: it never fails on slowness).
#
#   scripts/bench.sh                   # 10 s per endpoint
#   BENCH_DURATION=30s scripts/bench.sh
#
# What it does: builds the release binary, starts it on 127.0.0.1 with a fresh SQLite file
# in a temporary directory, measures start-up time (second start, migrations already
# applied) and idle RSS, seeds a user with threads and messages, drives the REST endpoints
# and the ChatKit protocol (`threads.list`, and a streamed `threads.add_user_message` turn)
# with `wrk -t2 -c32 --latency`, and prints a markdown table plus memory figures.
#
# Environment:
#   BENCH_DURATION     wrk duration per endpoint (default 10s; a bare number means seconds)
#   BENCH_THREADS      wrk threads (default 2)
#   BENCH_CONNECTIONS  wrk connections (default 32)
#   BENCH_PORT         first port to try (default 18080; the next free one is used)
#
# Load goes to 127.0.0.1 only. The server is stopped and the temp dir removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

DURATION=${BENCH_DURATION:-10s}
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
WRK_THREADS=${BENCH_THREADS:-2}
WRK_CONNS=${BENCH_CONNECTIONS:-32}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/chatkit-gateway"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# --- wrk ----------------------------------------------------------------------------
install_wrk() {
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null || die "wrk is missing and this is not root; install wrk"
        sudo=(sudo)
    fi
    log "installing wrk"
    if ! "${sudo[@]}" apt-get install -y wrk >/dev/null 2>&1; then
        "${sudo[@]}" apt-get update >/dev/null
        "${sudo[@]}" apt-get install -y wrk >/dev/null
    fi
}
command -v wrk >/dev/null || install_wrk
command -v wrk >/dev/null || die "wrk could not be installed"
command -v curl >/dev/null || die "curl is required"

# --- build --------------------------------------------------------------------------
log "cargo build --release"
cargo build --release --quiet
[[ -x $BIN ]] || die "$BIN was not built"

# --- environment --------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/chatkit-bench.XXXXXX")
SERVER_PID=""
SAMPLER_PID=""
BA_PID=""

stop_server() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

cleanup() {
    if [[ -n $SAMPLER_PID ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
    fi
    stop_server
    [[ -n $BA_PID ]] && kill "$BA_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=${BENCH_PORT:-18080}
for _ in $(seq 1 50); do
    port_in_use "$PORT" || break
    PORT=$((PORT + 1))
done
port_in_use "$PORT" && die "no free port found from ${BENCH_PORT:-18080}"

export DATABASE_URL="sqlite://$TMP/bench.db"
export PORT
export HOST=127.0.0.1
export APP_ENV=development
export RUST_LOG=warn
# Offline and local only: the built-in agent, HS256 dev tokens, and (when Node is there) the
# Better Auth fixture on loopback as the only key server.
export AGENT_PROVIDER=local
unset BETTER_AUTH_URL BETTER_AUTH_JWKS_URL
BASE="http://127.0.0.1:$PORT"

now_ms() { date +%s%3N; }

# Starts the server and waits for GET /healthz; sets SERVER_PID and START_MS (the
# milliseconds from exec to the first healthy answer).
START_MS=""
start_server() {
    local t0
    t0=$(now_ms)
    "$BIN" serve >>"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 3000); do
        if curl -fsS -o /dev/null --max-time 1 "$BASE/healthz" 2>/dev/null; then
            START_MS=$(($(now_ms) - t0))
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; die "server exited during start-up"; }
        sleep 0.01
    done
    cat "$TMP/server.log" >&2
    die "server did not answer /healthz within 30 s"
}

status_field() { # status_field PID FIELD -> value in kB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

json_field() { # json_field NAME < json  (string fields only)
    sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"
}

# --- a real Better Auth (EdDSA) for the JWKS row ---------------------------------------
# The pinned fixture from tests/better-auth signs a user up and prints an EdDSA JWT; the
# gateway verifies it against the fixture's JWKS on loopback. Skipped without Node.
EDDSA_TOKEN=""
if command -v node >/dev/null && command -v npm >/dev/null; then
    [[ -d $ROOT/tests/better-auth/node_modules/better-auth ]] ||
        npm ci --prefix "$ROOT/tests/better-auth" --no-audit --no-fund >/dev/null 2>&1 || true
    if [[ -d $ROOT/tests/better-auth/node_modules/better-auth ]]; then
        PORT=0 ALG=EdDSA EXIT_ON_STDIN_CLOSE=0 node "$ROOT/tests/better-auth/server.mjs" \
            >"$TMP/better-auth.out" 2>"$TMP/better-auth.log" </dev/null &
        BA_PID=$!
        for _ in $(seq 1 300); do [[ -s $TMP/better-auth.out ]] && break; sleep 0.1; done
        EDDSA_TOKEN=$(json_field token <"$TMP/better-auth.out")
        BA_URL=$(json_field base_url <"$TMP/better-auth.out")
        [[ -n $EDDSA_TOKEN && -n $BA_URL ]] && export BETTER_AUTH_URL="$BA_URL"
    fi
fi
[[ -n $EDDSA_TOKEN ]] || log "no Node/Better Auth fixture: the EdDSA row is skipped"

# --- start-up -----------------------------------------------------------------------
log "first start (applies migrations) on $BASE"
start_server
first_ms=$START_MS
stop_server
log "second start (timed)"
start_server
STARTUP_MS=$START_MS
sleep 1
IDLE_RSS_KB=$(status_field "$SERVER_PID" VmRSS)
log "healthy after ${STARTUP_MS} ms (first start with migrations: ${first_ms} ms); idle RSS ${IDLE_RSS_KB} kB"

# --- seed data ----------------------------------------------------------------------
UPSTREAM=$("$BIN" dev-token --user bench-user)
[[ -n $UPSTREAM ]] || die "dev-token printed nothing"

session_json=$(curl -fsS -X POST -H "Authorization: Bearer $UPSTREAM" "$BASE/api/chatkit/session")
CLIENT_SECRET=$(json_field client_secret <<<"$session_json")
[[ -n $CLIENT_SECRET ]] || die "no client_secret in: $session_json"

post_message() { # post_message THREAD_JSON TEXT -> response json
    curl -fsS -X POST "$BASE/api/chatkit/messages" \
        -H "Authorization: Bearer $CLIENT_SECRET" -H 'Content-Type: application/json' \
        -d "{\"thread_id\": $1, \"message\": \"$2\"}"
}
first=$(post_message null "add a task to buy milk")
THREAD_ID=$(json_field thread_id <<<"$first")
[[ -n $THREAD_ID ]] || die "no thread_id in: $first"
post_message "\"$THREAD_ID\"" "add a task to call mom" >/dev/null
post_message "\"$THREAD_ID\"" "list my tasks" >/dev/null
post_message "\"$THREAD_ID\"" "complete task 1" >/dev/null
for _ in $(seq 1 30); do
    curl -fsS -o /dev/null -X POST "$BASE/api/chatkit/threads" \
        -H "Authorization: Bearer $CLIENT_SECRET" -H 'Content-Type: application/json' -d '{}'
done
log "seeded: thread $THREAD_ID with 4 turns, 30 empty threads"

# --- wrk scripts --------------------------------------------------------------------
# No per-response Lua callbacks: they slow wrk itself down; wrk counts non-2xx on its own.
cat >"$TMP/session.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $UPSTREAM"
EOF
cat >"$TMP/session-eddsa.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $EDDSA_TOKEN"
EOF
cat >"$TMP/get.lua" <<EOF
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $CLIENT_SECRET"
EOF
cat >"$TMP/messages.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $CLIENT_SECRET"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"thread_id":"$THREAD_ID","message":"list my tasks"}'
EOF

# The ChatKit protocol: the widget's history list, and a turn streamed as ChatKit events
# (the same local agent and thread as the REST turn row, so the two compare directly).
cat >"$TMP/ck-list.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $CLIENT_SECRET"
wrk.body = '{"type":"threads.list","params":{}}'
EOF
cat >"$TMP/ck-turn.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $CLIENT_SECRET"
wrk.body = '{"type":"threads.add_user_message","params":{"thread_id":"$THREAD_ID","input":{"content":[{"type":"input_text","text":"list my tasks"}],"attachments":[],"inference_options":{}}}}'
EOF

# --- load ---------------------------------------------------------------------------
: >"$TMP/rss.samples"
(
    while kill -0 "$SERVER_PID" 2>/dev/null; do
        status_field "$SERVER_PID" VmRSS >>"$TMP/rss.samples" 2>/dev/null || true
        sleep 0.5
    done
) &
SAMPLER_PID=$!

ROWS=()
DETAILS=()
run_wrk() { # run_wrk LABEL SCRIPT PATH
    local label=$1 script=$2 path=$3 out rps p50 p99 non2xx sockerr
    log "wrk -t$WRK_THREADS -c$WRK_CONNS -d$DURATION  $label"
    out=$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$DURATION" --latency -s "$script" "$BASE$path")
    printf '%s\n' "$out" >>"$TMP/wrk.log"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' <<<"$out")
    sockerr=$(sed -n 's/.*Socket errors: *//p' <<<"$out")
    ROWS+=("| $label | ${rps:-?} | ${p50:-?} | ${p99:-?} | ${non2xx:-0} |")
    if [[ -n $non2xx || -n $sockerr ]]; then
        DETAILS+=("- $label: ${non2xx:+$non2xx non-2xx responses}${non2xx:+${sockerr:+; }}${sockerr:+socket errors: $sockerr}")
    fi
}

run_wrk "POST /api/chatkit/session (HS256 upstream)" "$TMP/session.lua" /api/chatkit/session
if [[ -n $EDDSA_TOKEN ]]; then
    curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $EDDSA_TOKEN" "$BASE/api/chatkit/session" ||
        die "the gateway refused the Better Auth EdDSA token"
    run_wrk "POST /api/chatkit/session (EdDSA via JWKS, real Better Auth)" "$TMP/session-eddsa.lua" /api/chatkit/session
fi
run_wrk "GET /api/chatkit/threads" "$TMP/get.lua" /api/chatkit/threads
run_wrk "GET /api/chatkit/threads/{id}" "$TMP/get.lua" "/api/chatkit/threads/$THREAD_ID"
run_wrk "POST /api/chatkit/messages" "$TMP/messages.lua" /api/chatkit/messages
run_wrk "POST /chatkit threads.list" "$TMP/ck-list.lua" /chatkit
run_wrk "POST /chatkit threads.add_user_message (streamed)" "$TMP/ck-turn.lua" /chatkit

PEAK_RSS_KB=$(status_field "$SERVER_PID" VmHWM)
END_RSS_KB=$(status_field "$SERVER_PID" VmRSS)
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
SAMPLED_MAX_KB=$(sort -n "$TMP/rss.samples" | tail -n 1)
final_count=$(curl -fsS -H "Authorization: Bearer $CLIENT_SECRET" "$BASE/api/chatkit/threads/$THREAD_ID?limit=1" |
    sed -n 's/.*"message_count":\([0-9]*\).*/\1/p')

mib() { awk -v kb="$1" 'BEGIN { printf "%.1f MiB", kb / 1024 }'; }

# --- report -------------------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
echo
echo "## chatkit-gateway benchmark"
echo
echo "$(nproc) cores${cpu:+ ($cpu)}, release build, SQLite (WAL) in $TMP, wrk -t$WRK_THREADS -c$WRK_CONNS -d$DURATION, $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }')"
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted changes in src/)')"
echo
echo "| endpoint | req/s | p50 | p99 | errors (non-2xx) |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '%s\n' "${ROWS[@]}"
echo
echo "- idle RSS after start-up: $(mib "$IDLE_RSS_KB")"
echo "- peak RSS (VmHWM): $(mib "$PEAK_RSS_KB") (largest 0.5 s sample: $(mib "${SAMPLED_MAX_KB:-0}"); RSS at the end: $(mib "$END_RSS_KB"))"
echo "- start-up to first healthy /healthz (migrations already applied): ${STARTUP_MS} ms (first start, applying migrations: ${first_ms} ms)"
echo "- the benchmarked thread ended with ${final_count:-?} messages"
if ((${#DETAILS[@]})); then
    echo
    echo "Errors seen under load:"
    printf '%s\n' "${DETAILS[@]}"
fi
if grep -qiE 'error|warn' "$TMP/server.log"; then
    echo
    echo "Server log (warnings and errors, first 20 lines):"
    echo '```'
    grep -iE 'error|warn' "$TMP/server.log" | head -n 20
    echo '```'
fi
