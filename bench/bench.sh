#!/usr/bin/env bash
# Load benchmark of chatkit-gateway (a benchmark, not a test: it never fails on slowness).
#
#   bench/bench.sh                     # SQLite, 10 s per endpoint
#   bench/bench.sh --db postgres       # a throw-away database on the local PostgreSQL
#   bench/bench.sh streams [...]       # 5,000 concurrent streamed turns (bench/bench_streams.sh)
#   bench/bench.sh --db postgres --peer  # the same rows against the Python peer (bench/peer)
#   bench/bench.sh --chatkit-peer [--db postgres]  # the ChatKit rows, gateway and SDK peer
#   bench/bench.sh --floor [--db postgres]  # ChatKit threads.list, gateway and bench/floor
#   BENCH_DURATION=30s bench/bench.sh
#
# bench/README.md says what each row measures; bench/RESULTS.md holds the results so far.
#
# What it does: builds the release binary, starts it on 127.0.0.1 with a fresh SQLite file
# in a temporary directory (or a fresh PostgreSQL database, dropped afterwards), measures
# start-up time (second start, migrations already applied) and idle RSS, seeds a reader (20
# threads, one of them with 20 messages) and a writer (32 threads), drives the REST
# endpoints and the ChatKit protocol (`threads.list`, `items.list`, `threads.get_by_id`, and
# a streamed `threads.add_user_message` turn) with `wrk -t2 -c32 --latency`, and prints a
# markdown table plus memory figures, and the server's CPU time per request of each row (on
# PostgreSQL also the database's: all `postgres` processes, from /proc) and, when the
# server loads `pg_stat_statements`, the statements per turn.
#
# --peer runs the rows both implement against bench/peer instead: the FastAPI + SQLAlchemy
# (asyncpg) backend this project replaces, with PEER_WORKERS uvicorn workers (default 2),
# in a venv made from bench/peer/requirements.txt (PEER_VENV, default target/peer-venv).
# Same seed data, same wrk scripts, same database server; compare it with a gateway run
# made in the same hour (machines differ too much between sessions for anything else).
#
# --chatkit-peer runs the ChatKit rows against the gateway and bench/peer_chatkit (the
# official openai-chatkit ChatKitServer over a SQLAlchemy store, PEER_WORKERS uvicorn
# workers, venv CHATKIT_PEER_VENV, default target/peer-chatkit-venv) in one run, on either
# database: the peer gets a copy of the gateway's seeded threads and items and accepts the
# gateway's client_secrets; each row alternates gateway and peer BENCH_ROUNDS times
# (default 3), and the report gives the medians, the ratio and the CPU per request.
#
# --floor runs ChatKit `threads.list` against the gateway and bench/floor, the least a
# poem + sqlx server can do for it (the same statement on a kept connection to the same
# database, the same JSON, nothing else), alternated BENCH_ROUNDS times: what this machine
# allows any server on this stack, beside what the gateway reaches.
#
# Environment:
#   BENCH_DURATION     wrk duration per endpoint (default 10s; a bare number means seconds)
#   BENCH_THREADS      wrk threads (default 2)
#   BENCH_CONNECTIONS  wrk connections (default 32)
#   BENCH_PORT         first port to try (default 18080; the next free one is used)
#   BENCH_ONLY         run only the rows whose label matches this extended regex
#   BENCH_BIN          a gateway binary to measure instead of building one (to compare builds)
#   FLOOR_BIN          --floor: a bench/floor binary instead of building one
#   BENCH_PG_URL       PostgreSQL server for --db postgres (default
#                      postgres://postgres@127.0.0.1:5432; a database is created and dropped)
#   BENCH_ROUNDS       --chatkit-peer: runs of each row per side (default 3; the median counts)
#   BENCH_COMMIT       the commit BENCH_BIN was built from, for the report
#   BENCH_PERF         a directory: each row is also recorded with `perf record -a`
#                      (BENCH_PERF_ARGS, default `-F 1999`), one perf.data file per row
#
# Load goes to 127.0.0.1 only. The server is stopped and the temp dir removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

if [[ ${1:-} == streams ]]; then
    shift
    exec "$ROOT/bench/bench_streams.sh" "$@"
fi
DB=${BENCH_DB:-sqlite}
PEER=0
CKPEER=0
FLOOR=0
while (($#)); do
    case $1 in
    --db) DB=${2:-}; shift 2 ;;
    --db=*) DB=${1#--db=}; shift ;;
    --peer) PEER=1; shift ;;
    --chatkit-peer) CKPEER=1; shift ;;
    --floor) FLOOR=1; shift ;;
    *) echo "usage: $0 [--db sqlite|postgres] [--peer | --chatkit-peer | --floor] | streams [...]" >&2; exit 64 ;;
    esac
done
[[ $DB == sqlite || $DB == postgres ]] || { echo "--db must be sqlite or postgres" >&2; exit 64; }
((PEER)) && [[ $DB != postgres ]] && { echo "--peer runs on PostgreSQL only (--db postgres)" >&2; exit 64; }
((PEER + CKPEER + FLOOR > 1)) && { echo "--peer, --chatkit-peer and --floor are separate runs" >&2; exit 64; }
ROUNDS=${BENCH_ROUNDS:-3}
PG_SERVER=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_DB=""

DURATION=${BENCH_DURATION:-10s}
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
WRK_THREADS=${BENCH_THREADS:-2}
WRK_CONNS=${BENCH_CONNECTIONS:-32}
BIN=${BENCH_BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/chatkit-gateway"}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }
# A run that stops early says where (a failed curl or wrk under `set -e` is otherwise silent).
trap 'printf "[bench] error: stopped at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

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
if [[ -z ${BENCH_BIN:-} ]]; then
    log "cargo build --release"
    cargo build --release --quiet
fi
[[ -x $BIN ]] || die "$BIN was not built"
FLOOR_BIN=${FLOOR_BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/floor"}
if ((FLOOR)) && [[ ! -x $FLOOR_BIN ]]; then
    log "cargo build --release -p chatkit-floor"
    cargo build --release --quiet -p chatkit-floor
    [[ -x $FLOOR_BIN ]] || die "$FLOOR_BIN was not built"
fi

# --- the Python peer (--peer) ---------------------------------------------------------
PEER_DIR=$ROOT/bench/peer
PEER_VENV=${PEER_VENV:-"${CARGO_TARGET_DIR:-$ROOT/target}/peer-venv"}
PEER_WORKERS=${PEER_WORKERS:-2}
if ((PEER)); then
    if ! cmp -s "$PEER_DIR/requirements.txt" "$PEER_VENV/requirements.txt"; then
        log "creating the peer's venv in $PEER_VENV"
        rm -rf "$PEER_VENV"
        python3 -m venv "$PEER_VENV"
        "$PEER_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$PEER_DIR/requirements.txt"
        cp "$PEER_DIR/requirements.txt" "$PEER_VENV/requirements.txt"
    fi
    # The gateway binary only mints the upstream tokens (dev-token); both sides share the
    # secret they are signed with.
    export BETTER_AUTH_SECRET="bench-peer-INSECURE-DEV-upstream-secret-0123456789"
fi
CKPEER_DIR=$ROOT/bench/peer_chatkit
CKPEER_VENV=${CHATKIT_PEER_VENV:-"${CARGO_TARGET_DIR:-$ROOT/target}/peer-chatkit-venv"}
if ((CKPEER)); then
    if ! cmp -s "$CKPEER_DIR/requirements.txt" "$CKPEER_VENV/requirements.txt"; then
        log "creating the ChatKit peer's venv in $CKPEER_VENV"
        rm -rf "$CKPEER_VENV"
        python3 -m venv "$CKPEER_VENV"
        "$CKPEER_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$CKPEER_DIR/requirements.txt"
        cp "$CKPEER_DIR/requirements.txt" "$CKPEER_VENV/requirements.txt"
    fi
fi
# The key of the gateway's client_secrets: the ChatKit peer verifies them with it.
export CHATKIT_SESSION_SECRET="bench-INSECURE-chatkit-session-secret-0123456789abcdef"

# --- environment --------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/chatkit-bench.XXXXXX")
SERVER_PID=""
SAMPLER_PID=""
BA_PID=""
CKPEER_PID=""

# The server's processes: the gateway, or uvicorn's master and its workers.
server_pids() {
    echo "$SERVER_PID"
    ((PEER)) && pgrep -P "$SERVER_PID"
    return 0
}

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
    if [[ -n $CKPEER_PID ]]; then
        kill -TERM "$CKPEER_PID" 2>/dev/null || true
        wait "$CKPEER_PID" 2>/dev/null || true
    fi
    [[ -n $BA_PID ]] && kill "$BA_PID" 2>/dev/null
    [[ -n $PG_DB ]] && psql -q "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
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

if [[ $DB == postgres ]]; then
    command -v psql >/dev/null || die "psql is required for --db postgres"
    PG_DB="chatkit_bench_$$"
    psql -q "$PG_SERVER/postgres" -c "CREATE DATABASE $PG_DB" >/dev/null ||
        die "cannot create a database on $PG_SERVER"
    # Plain TCP to the local server, as docs/deployment.md advises for a database on the same host
    # (sqlx would otherwise negotiate TLS with a server that offers it); the peer connects
    # the same way.
    export DATABASE_URL="$PG_SERVER/$PG_DB?sslmode=disable"
    DB_LABEL="PostgreSQL $(psql -Atq "$PG_SERVER/postgres" -c 'SHOW server_version' | awk '{ print $1 }') (local, database $PG_DB)"
else
    export DATABASE_URL="sqlite://$TMP/bench.db"
    DB_LABEL="SQLite (WAL) in $TMP"
fi
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
    if ((PEER)); then
        (cd "$PEER_DIR" && DATABASE_URL="$PEER_DATABASE_URL" exec "$PEER_VENV/bin/uvicorn" app:app \
            --host 127.0.0.1 --port "$PORT" --workers "$PEER_WORKERS" --no-access-log \
            --log-level warning) >>"$TMP/server.log" 2>&1 &
    else
        "$BIN" serve >>"$TMP/server.log" 2>&1 &
    fi
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
server_field() { # server_field FIELD -> the sum over the server's processes, in kB
    local p
    for p in $(server_pids); do status_field "$p" "$1" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'
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
# The peer verifies HS256 upstream tokens only.
((PEER)) && EDDSA_TOKEN=""

# --- start-up -----------------------------------------------------------------------
if ((PEER)); then
    PEER_DATABASE_URL="postgresql+asyncpg://${DATABASE_URL#*://}"
    PEER_DATABASE_URL=${PEER_DATABASE_URL%%\?*} # app.py turns TLS off itself
    (cd "$PEER_DIR" && DATABASE_URL="$PEER_DATABASE_URL" "$PEER_VENV/bin/python" app.py init) ||
        die "the peer could not create its tables"
fi
log "first start (applies migrations) on $BASE"
start_server
first_ms=$START_MS
stop_server
log "second start (timed)"
start_server
STARTUP_MS=$START_MS
sleep 1
IDLE_RSS_KB=$(server_field VmRSS)
IDLE_PARTS="$(server_field RssAnon) $(server_field RssFile)"
log "healthy after ${STARTUP_MS} ms (first start with migrations: ${first_ms} ms); idle RSS ${IDLE_RSS_KB} kB"

# --- seed data ----------------------------------------------------------------------
UPSTREAM=$("$BIN" dev-token --user bench-user)
[[ -n $UPSTREAM ]] || die "dev-token printed nothing"

session_json=$(curl -fsS -X POST -H "Authorization: Bearer $UPSTREAM" "$BASE/api/chatkit/session")
CLIENT_SECRET=$(json_field client_secret <<<"$session_json")
[[ -n $CLIENT_SECRET ]] || die "no client_secret in: $session_json"

post_message() { # post_message SECRET THREAD_JSON TEXT -> response json
    curl -fsS -X POST "$BASE/api/chatkit/messages" \
        -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
        -d "{\"thread_id\": $2, \"message\": \"$3\"}"
}
# The reader: 20 threads, one of them with 20 messages (10 turns, some with tool calls).
first=$(post_message "$CLIENT_SECRET" null "add a task to buy milk")
THREAD_ID=$(json_field thread_id <<<"$first")
[[ -n $THREAD_ID ]] || die "no thread_id in: $first"
for text in "add a task to call mom" "list my tasks" "complete task 1" "hello" \
    "list my tasks" "add a task to water the plants" "hello" "list my tasks" "hello"; do
    post_message "$CLIENT_SECRET" "\"$THREAD_ID\"" "$text" >/dev/null
done
for _ in $(seq 1 19); do
    curl -fsS -o /dev/null -X POST "$BASE/api/chatkit/threads" \
        -H "Authorization: Bearer $CLIENT_SECRET" -H 'Content-Type: application/json' -d '{}'
done
# The writer: another user with 32 threads, so concurrent turns spread over many rows (as
# many users' turns would) instead of all queueing on one thread.
WRITER_UPSTREAM=$("$BIN" dev-token --user bench-writer)
WRITER_SECRET=$(curl -fsS -X POST -H "Authorization: Bearer $WRITER_UPSTREAM" "$BASE/api/chatkit/session" |
    json_field client_secret)
[[ -n $WRITER_SECRET ]] || die "no client_secret for the writer"
WRITER_THREADS=()
for _ in $(seq 1 32); do
    id=$(post_message "$WRITER_SECRET" null "hello" | json_field thread_id)
    [[ -n $id ]] || die "the writer could not start a thread"
    WRITER_THREADS+=("\"$id\"")
done
log "seeded: reader thread $THREAD_ID with 10 turns and 19 empty threads; writer with 32 threads"

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
# Round robin over the writer's threads; each wrk thread starts at its own offset.
writer_ids=$(IFS=,; echo "${WRITER_THREADS[*]}")
cat >"$TMP/messages-spread.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $WRITER_SECRET"
wrk.headers["Content-Type"] = "application/json"
ids = { $writer_ids }
i = 0
local started = 0
function setup(thread)
    started = started + 1
    thread:set("i", started * 7)
end
function request()
    i = i % #ids + 1
    return wrk.format(nil, nil, nil, '{"thread_id":"' .. ids[i] .. '","message":"hello"}')
end
EOF

# The ChatKit protocol: the widget's history list, and a turn streamed as ChatKit events
# (the same local agent and thread as the REST turn row, so the two compare directly).
cat >"$TMP/ck-list.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $CLIENT_SECRET"
wrk.body = '{"type":"threads.list","params":{}}'
EOF
cat >"$TMP/ck-items.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $CLIENT_SECRET"
wrk.body = '{"type":"items.list","params":{"thread_id":"$THREAD_ID","limit":20}}'
EOF
cat >"$TMP/ck-get.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $CLIENT_SECRET"
wrk.body = '{"type":"threads.get_by_id","params":{"thread_id":"$THREAD_ID"}}'
EOF
cat >"$TMP/ck-turn.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $CLIENT_SECRET"
wrk.body = '{"type":"threads.add_user_message","params":{"thread_id":"$THREAD_ID","input":{"content":[{"type":"input_text","text":"list my tasks"}],"attachments":[],"inference_options":{}}}}'
EOF
cat >"$TMP/ck-hello.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $CLIENT_SECRET"
wrk.body = '{"type":"threads.add_user_message","params":{"thread_id":"$THREAD_ID","input":{"content":[{"type":"input_text","text":"hello"}],"attachments":[],"inference_options":{}}}}'
EOF

# --- load ---------------------------------------------------------------------------
: >"$TMP/rss.samples"
(
    while kill -0 "$SERVER_PID" 2>/dev/null; do
        # VmRSS, then its anonymous (heap) and file-backed (the binary's pages) parts.
        echo "$(server_field VmRSS) $(server_field RssAnon) $(server_field RssFile)" \
            >>"$TMP/rss.samples" 2>/dev/null || true
        sleep 0.5
    done
) &
SAMPLER_PID=$!

ROWS=()
DETAILS=()
# The database's side of a row (PostgreSQL only): CPU time of every `postgres` process, and
# the statements pg_stat_statements counted in the bench database (when the server loads it).
CLK_TCK=$(getconf CLK_TCK)
PGSS=""
psql_bench() { psql -Atq "$DATABASE_URL" -c "$1"; }
if [[ $DB == postgres ]] &&
    [[ $(psql_bench 'SHOW shared_preload_libraries') == *pg_stat_statements* ]] &&
    psql_bench 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' 2>/dev/null; then
    PGSS=1
fi
cpu_ticks() { # cpu_ticks PID... -> utime + stime, in clock ticks (a PID gone is skipped)
    local p
    for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null || true; done | awk '{ s += $14 + $15 } END { print s + 0 }'
}
# Every postgres process, plus the backends that have exited: the postmaster (the oldest
# postgres process) reaps them, and their time then counts in its cutime + cstime. (A
# client whose pool closes connections, as SQLAlchemy's overflow does, would otherwise take
# their CPU out of the count.)
pg_ticks() {
    local main
    main=$(pgrep -o -x postgres)
    # shellcheck disable=SC2046
    { cpu_ticks $(pgrep -x postgres); awk '{ print $16 + $17 }' "/proc/$main/stat" 2>/dev/null || true; } |
        awk '{ s += $1 } END { print s + 0 }'
}
CPU_ROWS=()
STATEMENTS=()
# The statements of the bench database, without the script's own queries.
BENCH_STATEMENTS="WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND query NOT LIKE '%pg_stat_statements%'"

# One wrk run of SCRIPT against URL; sets M_RPS, M_P50, M_P99, M_REQS, M_NON2XX, M_SOCKERR,
# and the CPU per request, in µs, of PIDS (M_SRV_US) and, on PostgreSQL, of every postgres
# process (M_DB_US), over the run.
measure() { # measure SCRIPT URL PIDS...
    local script=$1 url=$2 out pg0=0 pg1=0 s0 s1
    shift 2
    [[ $DB == postgres ]] && pg0=$(pg_ticks)
    s0=$(cpu_ticks "$@")
    if [[ -n ${BENCH_PERF:-} ]]; then
        mkdir -p "$BENCH_PERF"
        PERF_N=$((${PERF_N:-0} + 1))
        # shellcheck disable=SC2086
        perf record -a ${BENCH_PERF_ARGS:--F 1999} -o "$BENCH_PERF/row$PERF_N.perf.data" \
            -- sleep "${DURATION%s}" >/dev/null 2>&1 &
        PERF_PID=$!
    fi
    out=$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$DURATION" --latency -s "$script" "$url")
    s1=$(cpu_ticks "$@")
    if [[ -n ${BENCH_PERF:-} ]]; then
        wait "$PERF_PID" || true
        echo "row$PERF_N: $script $url" >>"$BENCH_PERF/rows.txt"
    fi
    [[ $DB == postgres ]] && pg1=$(pg_ticks)
    printf '%s\n' "$out" >>"$TMP/wrk.log"
    M_RPS=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    M_P50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
    M_P99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    M_REQS=$(awk '/requests in/ { print $1 }' <<<"$out")
    M_NON2XX=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' <<<"$out")
    M_SOCKERR=$(sed -n 's/.*Socket errors: *//p' <<<"$out")
    M_SRV_US=$(per_request $((s1 - s0)) "${M_REQS:-0}")
    M_DB_US="-"
    [[ $DB == postgres ]] && M_DB_US=$(per_request $((pg1 - pg0)) "${M_REQS:-0}")
    return 0
}
per_request() { # per_request TICKS REQUESTS -> µs of CPU per request
    awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.0f", t / hz / n * 1e6; else print "?" }'
}

run_wrk() { # run_wrk LABEL SCRIPT PATH [turns]
    local label=$1 script=$2 path=$3 kind=${4:-} stmts="n/a" reqs
    if [[ -n ${BENCH_ONLY:-} ]] && ! grep -qE -- "$BENCH_ONLY" <<<"$label"; then
        return 0
    fi
    if [[ $kind == turns && -n $PGSS ]]; then
        psql_bench 'SELECT pg_stat_statements_reset()' >/dev/null
    fi
    log "wrk -t$WRK_THREADS -c$WRK_CONNS -d$DURATION  $label"
    # shellcheck disable=SC2046
    measure "$script" "$BASE$path" $(server_pids)
    ROWS+=("| $label | ${M_RPS:-?} | ${M_P50:-?} | ${M_P99:-?} | ${M_NON2XX:-0} |")
    if [[ -n $M_NON2XX || -n $M_SOCKERR ]]; then
        DETAILS+=("- $label: ${M_NON2XX:+$M_NON2XX non-2xx responses}${M_NON2XX:+${M_SOCKERR:+; }}${M_SOCKERR:+socket errors: $M_SOCKERR}")
    fi
    reqs=${M_REQS:-0}
    if [[ $kind == turns && -n $PGSS && $reqs -gt 0 ]]; then
        stmts=$(psql_bench "SELECT round(sum(calls)::numeric / $reqs, 2) FROM pg_stat_statements
            $BENCH_STATEMENTS")
        STATEMENTS+=("" "$label, per turn:" "" "| calls | mean execution | mean planning | statement |" "| ---: | ---: | ---: | --- |")
        while IFS='|' read -r calls mean plan query; do
            STATEMENTS+=("| $calls | $mean ms | $plan ms | \`$query\` |")
        done < <(psql_bench "SELECT round(calls::numeric / $reqs, 2), round(mean_exec_time::numeric, 3),
                round(total_plan_time::numeric / greatest(plans, 1), 3),
                left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
            FROM pg_stat_statements
            $BENCH_STATEMENTS AND calls >= $reqs / 20
            ORDER BY calls DESC, query LIMIT 12")
    fi
    [[ $kind == turns ]] || stmts="-"
    CPU_ROWS+=("| $label | $M_SRV_US µs | $([[ $DB == postgres ]] && echo "$M_DB_US µs" || echo "(in the server)") | $stmts |")
}

# --- the ChatKit peer, side by side (--chatkit-peer) -----------------------------------
# The peer gets the reader's threads and items as the gateway lists them, under the same
# ids, and streams the answer the gateway gave the benchmarked message; it verifies the
# gateway's client_secrets, so the same wrk scripts drive both.
CK_ROWS=()
# Stops the run unless SERVER answers BODY with the same ids, in the same order, as the
# gateway: what is compared with the gateway must answer alike. An answer without ids
# stops it too, so two failed answers do not pass as equal.
same_ids() { # same_ids SERVER BODY WHAT
    local ours theirs
    ours=$(curl -fsS -X POST -H "Authorization: Bearer $CLIENT_SECRET" -d "$2" "$BASE/chatkit" |
        { grep -o '"id":"[^"]*"' || true; } | tr '\n' ' ')
    theirs=$(curl -fsS -X POST -H "Authorization: Bearer $CLIENT_SECRET" -d "$2" "$1/chatkit" |
        { grep -o '"id":"[^"]*"' || true; } | tr '\n' ' ')
    [[ -n $ours && $ours == "$theirs" ]] || die "$3 does not answer $2 as the gateway does"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "?"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
compare_row() { # compare_row LABEL SCRIPT
    local label=$1 script=$2 r g_rps=() p_rps=() g_p99=() p_p99=() g_cpu=() p_cpu=() g_db=() p_db=()
    local g p ratio
    if [[ -n ${BENCH_ONLY:-} ]] && ! grep -qE -- "$BENCH_ONLY" <<<"$label"; then
        return 0
    fi
    for r in $(seq 1 "$ROUNDS"); do
        log "round $r/$ROUNDS, gateway: $label"
        measure "$script" "$BASE/chatkit" "$SERVER_PID"
        g_rps+=("${M_RPS:-0}"); g_p99+=("${M_P99:-?}"); g_cpu+=("$M_SRV_US"); g_db+=("$M_DB_US")
        [[ -n $M_NON2XX || -n $M_SOCKERR ]] && DETAILS+=("- gateway, $label, round $r: ${M_NON2XX:-0} non-2xx${M_SOCKERR:+, socket errors: $M_SOCKERR}")
        log "round $r/$ROUNDS, peer: $label"
        # shellcheck disable=SC2046
        measure "$script" "$CKPEER_BASE/chatkit" "$CKPEER_PID" $(pgrep -P "$CKPEER_PID")
        p_rps+=("${M_RPS:-0}"); p_p99+=("${M_P99:-?}"); p_cpu+=("$M_SRV_US"); p_db+=("$M_DB_US")
        [[ -n $M_NON2XX || -n $M_SOCKERR ]] && DETAILS+=("- peer, $label, round $r: ${M_NON2XX:-0} non-2xx${M_SOCKERR:+, socket errors: $M_SOCKERR}")
    done
    g=$(printf '%s\n' "${g_rps[@]}" | median)
    p=$(printf '%s\n' "${p_rps[@]}" | median)
    ratio=$(awk -v g="$g" -v p="$p" 'BEGIN { if (p > 0) printf "x%.1f", g / p; else print "?" }')
    local IFS=/
    CK_ROWS+=("| $label | ${g} (${g_rps[*]}) | ${p} (${p_rps[*]}) | **$ratio** | ${g_p99[*]} | ${p_p99[*]} | ${g_cpu[*]} | ${p_cpu[*]} | ${g_db[*]} | ${p_db[*]} |")
}

if ((CKPEER)); then
    CKPEER_PORT=$((PORT + 1))
    while port_in_use "$CKPEER_PORT"; do CKPEER_PORT=$((CKPEER_PORT + 1)); done
    CKPEER_BASE="http://127.0.0.1:$CKPEER_PORT"
    if [[ $DB == postgres ]]; then
        CKPEER_DATABASE_URL="postgresql+asyncpg://${DATABASE_URL#*://}"
        CKPEER_DATABASE_URL=${CKPEER_DATABASE_URL%%\?*} # app.py turns TLS off itself
    else
        CKPEER_DATABASE_URL="sqlite+aiosqlite:///$TMP/peer.db"
    fi
    log "copying the reader's threads and items to the ChatKit peer"
    (cd "$CKPEER_DIR" && DATABASE_URL="$CKPEER_DATABASE_URL" "$CKPEER_VENV/bin/python" app.py init) ||
        die "the ChatKit peer could not create its tables"
    CKPEER_ANSWERS=$(cd "$CKPEER_DIR" && DATABASE_URL="$CKPEER_DATABASE_URL" \
        "$CKPEER_VENV/bin/python" app.py copy "$BASE" "$CLIENT_SECRET" "list my tasks" hello) ||
        die "the ChatKit peer could not copy the gateway's threads"
    (cd "$CKPEER_DIR" && DATABASE_URL="$CKPEER_DATABASE_URL" PEER_ANSWERS="$CKPEER_ANSWERS" \
        exec "$CKPEER_VENV/bin/uvicorn" app:app --host 127.0.0.1 --port "$CKPEER_PORT" \
        --workers "$PEER_WORKERS" --no-access-log --log-level warning) >>"$TMP/peer.log" 2>&1 &
    CKPEER_PID=$!
    for _ in $(seq 1 3000); do
        curl -fsS -o /dev/null --max-time 1 "$CKPEER_BASE/healthz" 2>/dev/null && break
        kill -0 "$CKPEER_PID" 2>/dev/null || { cat "$TMP/peer.log" >&2; die "the ChatKit peer exited during start-up"; }
        sleep 0.05
    done
    sleep 1
    CKPEER_IDLE_KB=$(for p in $CKPEER_PID $(pgrep -P "$CKPEER_PID"); do status_field "$p" VmRSS; done | awk '{ s += $1 } END { print s + 0 }')
    # Both answer the same: the same items, in the same order.
    for body in '{"type":"items.list","params":{"thread_id":"'"$THREAD_ID"'","limit":20}}' \
        '{"type":"threads.get_by_id","params":{"thread_id":"'"$THREAD_ID"'"}}'; do
        same_ids "$CKPEER_BASE" "$body" "the peer"
    done
    compare_row "threads.list" "$TMP/ck-list.lua"
    compare_row "items.list (20 items)" "$TMP/ck-items.lua"
    compare_row "threads.get_by_id" "$TMP/ck-get.lua"
    # The peer streams the gateway's answer text and runs no tool: the first turn is the
    # same work on both sides; in the second the gateway also runs list_tasks and records
    # its call.
    compare_row "threads.add_user_message (streamed, no tool)" "$TMP/ck-hello.lua"
    compare_row "threads.add_user_message (streamed, list_tasks on the gateway)" "$TMP/ck-turn.lua"
elif ((FLOOR)); then
    # The floor stands where the peer would: compare_row drives CKPEER_BASE, cleanup stops
    # CKPEER_PID.
    CKPEER_PORT=$((PORT + 1))
    while port_in_use "$CKPEER_PORT"; do CKPEER_PORT=$((CKPEER_PORT + 1)); done
    CKPEER_BASE="http://127.0.0.1:$CKPEER_PORT"
    "$FLOOR_BIN" --user bench-user --listen "127.0.0.1:$CKPEER_PORT" >>"$TMP/floor.log" 2>&1 &
    CKPEER_PID=$!
    for _ in $(seq 1 100); do
        port_in_use "$CKPEER_PORT" && break
        kill -0 "$CKPEER_PID" 2>/dev/null || { cat "$TMP/floor.log" >&2; die "the floor exited during start-up"; }
        sleep 0.05
    done
    same_ids "$CKPEER_BASE" '{"type":"threads.list","params":{}}' "the floor"
    compare_row "threads.list" "$TMP/ck-list.lua"
else
    run_wrk "POST /api/chatkit/session (HS256 upstream)" "$TMP/session.lua" /api/chatkit/session
    if [[ -n $EDDSA_TOKEN ]]; then
        curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $EDDSA_TOKEN" "$BASE/api/chatkit/session" ||
            die "the gateway refused the Better Auth EdDSA token"
        run_wrk "POST /api/chatkit/session (EdDSA via JWKS, real Better Auth)" "$TMP/session-eddsa.lua" /api/chatkit/session
    fi
    run_wrk "GET /api/chatkit/threads" "$TMP/get.lua" /api/chatkit/threads
    run_wrk "GET /api/chatkit/threads/{id}" "$TMP/get.lua" "/api/chatkit/threads/$THREAD_ID"
    run_wrk "POST /api/chatkit/messages (32 threads, no tool)" "$TMP/messages-spread.lua" /api/chatkit/messages turns
    # The peer has no tools and no ChatKit endpoint.
    if ((!PEER)); then
        run_wrk "POST /api/chatkit/messages (one thread, list_tasks tool)" "$TMP/messages.lua" /api/chatkit/messages turns
        run_wrk "POST /chatkit threads.list" "$TMP/ck-list.lua" /chatkit
        run_wrk "POST /chatkit items.list (20 items)" "$TMP/ck-items.lua" /chatkit
        run_wrk "POST /chatkit threads.get_by_id" "$TMP/ck-get.lua" /chatkit
        run_wrk "POST /chatkit threads.add_user_message (streamed)" "$TMP/ck-turn.lua" /chatkit turns
    fi
fi

PEAK_RSS_KB=$(server_field VmHWM)
END_RSS_KB=$(server_field VmRSS)
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
read -r SAMPLED_MAX_KB SAMPLED_ANON_KB SAMPLED_FILE_KB < <(sort -n "$TMP/rss.samples" | tail -n 1)
final_count=$(curl -fsS -H "Authorization: Bearer $CLIENT_SECRET" "$BASE/api/chatkit/threads/$THREAD_ID?limit=1" |
    sed -n 's/.*"message_count":\([0-9]*\).*/\1/p')

mib() { awk -v kb="$1" 'BEGIN { printf "%.1f MiB", kb / 1024 }'; }

# --- report -------------------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
SERVER_NAME=gateway
SERVER_BUILD="release build"
if ((PEER)); then
    SERVER_NAME=peer
    SERVER_BUILD="Python $("$PEER_VENV/bin/python" -c 'import platform; print(platform.python_version())')"
fi
echo
if ((PEER)); then
    echo "## Python peer benchmark (bench/peer: FastAPI + SQLAlchemy/asyncpg, $PEER_WORKERS uvicorn workers)"
    echo
    echo "Memory figures are the sum over uvicorn's master and workers."
else
    echo "## chatkit-gateway benchmark"
fi
echo
echo "$(nproc) cores${cpu:+ ($cpu)}, $SERVER_BUILD, $DB_LABEL, wrk -t$WRK_THREADS -c$WRK_CONNS -d$DURATION, $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }')"
if [[ -n ${BENCH_COMMIT:-} ]]; then
    echo "commit $BENCH_COMMIT (BENCH_BIN=$BIN)"
else
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted changes in src/)')"
fi
echo
if ((${#ROWS[@]})); then
    echo "| endpoint | req/s | p50 | p99 | errors (non-2xx) |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${ROWS[@]}"
    echo
fi
read -r idle_anon idle_file <<<"$IDLE_PARTS"
echo "- idle RSS after start-up: $(mib "$IDLE_RSS_KB") ($(mib "${idle_anon:-0}") anonymous, $(mib "${idle_file:-0}") file-backed)"
echo "- peak RSS (VmHWM): $(mib "$PEAK_RSS_KB") (largest 0.5 s sample: $(mib "${SAMPLED_MAX_KB:-0}"), of it $(mib "${SAMPLED_ANON_KB:-0}") anonymous and $(mib "${SAMPLED_FILE_KB:-0}") file-backed; RSS at the end: $(mib "$END_RSS_KB"))"
echo "- start-up to first healthy /healthz (migrations already applied): ${STARTUP_MS} ms (first start, applying migrations: ${first_ms} ms)"
echo "- the benchmarked thread ended with ${final_count:-?} messages"
if ((${#CPU_ROWS[@]})); then
    echo
    echo "CPU per request, over each row: the $SERVER_NAME's process(es)$([[ $DB == postgres ]] && echo ' and every postgres process'):"
    echo
    echo "| row | $SERVER_NAME CPU/request | database CPU/request | statements/turn |"
    echo "| --- | ---: | ---: | ---: |"
    printf '%s\n' "${CPU_ROWS[@]}"
    ((${#STATEMENTS[@]})) && printf '%s\n' "${STATEMENTS[@]}"
fi
if ((${#CK_ROWS[@]})) && ((FLOOR)); then
    echo
    echo "ChatKit threads.list, gateway against bench/floor (the same statement on a kept connection and the same JSON, nothing else), $ROUNDS rounds per row, alternating; req/s as the median (each round); CPU per request in µs$([[ $DB == postgres ]] && echo '; database: every postgres process'):"
    echo
    echo "| request | gateway req/s | floor req/s | gateway / floor | gateway p99 | floor p99 | gateway CPU/req | floor CPU/req | database CPU/req, gateway | database CPU/req, floor |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${CK_ROWS[@]}"
elif ((${#CK_ROWS[@]})); then
    echo
    echo "ChatKit, gateway against bench/peer_chatkit (openai-chatkit $(sed -n 's/^openai-chatkit==//p' "$CKPEER_DIR/requirements.txt") ChatKitServer, request adapter built once, SQLAlchemy store, $PEER_WORKERS uvicorn workers, $("$CKPEER_VENV/bin/python" -c 'import platform; print("Python", platform.python_version())')), $ROUNDS rounds per row, alternating; req/s as the median (each round); CPU per request in µs$([[ $DB == postgres ]] && echo '; database: every postgres process'):"
    echo
    echo "| request | gateway req/s | peer req/s | ratio | gateway p99 | peer p99 | gateway CPU/req | peer CPU/req | database CPU/req, gateway | database CPU/req, peer |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${CK_ROWS[@]}"
    echo
    echo "- the peer's idle RSS (master and workers): $(mib "${CKPEER_IDLE_KB:-0}")"
fi
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
