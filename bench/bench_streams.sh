#!/usr/bin/env bash
# Streams benchmark of chatkit-gateway (bench/README.md, "Streams at scale"); a benchmark, not a
# test: it reports and never fails on slowness.
#
#   bench/bench_streams.sh                            # 5,000 streams, REST then ChatKit, SQLite
#   bench/bench_streams.sh --db postgres              # on a throw-away PostgreSQL database
#   bench/bench_streams.sh --streams 1000 --protocol chatkit -- --ramp 2 --over 5
#   bench/bench_streams.sh --protocol chatkit --hang-up-fraction 0.5   # half the clients leave
#
# For each protocol, bench/loadgen (one process) serves a fake OpenAI-compatible provider
# on loopback that streams 50 stamped deltas over 10 s per turn, starts the gateway
# (release build) pointed at it with AGENT_PROVIDER=openai, opens N concurrent streamed
# turns (each on a new thread), times every delta from the provider's write to the
# client's read, samples the gateway's RSS every 250 ms, and prints a markdown table.
# Each protocol gets a fresh gateway and a fresh database.
#
# Options:
#   --db sqlite|postgres   database (default sqlite: a file in a temp dir; postgres: a
#                          database chatkit_bench_streams_<pid>_<protocol> created on
#                          $BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432, and
#                          dropped on exit)
#   --streams N            concurrent streamed turns (default 5000)
#   --protocol P           rest, chatkit or both (default both)
#   --provider-http2       the gateway reaches the provider over HTTP/2 (h2c prior knowledge,
#                          agent.openai.http2 = always with 100 streams per connection;
#                          the fake allows 100), instead of one HTTP/1.1 connection per stream
#   --provider-tls         the fake provider serves https (ALPN h2 and http/1.1, the test CA's
#                          certificate, trusted by the gateway through agent.openai.ca_file),
#                          as hosted APIs do; with the default agent.openai.http2 = auto the
#                          gateway then speaks HTTP/2 to it (GATEWAY__AGENT__OPENAI__HTTP2=never
#                          in the environment: HTTP/1.1 over TLS)
#   --hang-up-fraction F   that fraction of the clients (every other one with 0.5) hang up
#                          mid-answer, as ChatKit's stop button does; the report says, from
#                          the fake provider's side, how long after each hang-up its call
#                          ended and how many were still open 1 s after (ChatKit stops the
#                          answer; REST streams finish it, their contract)
#   --hang-up-after-deltas N   deltas those clients read before they hang up (default: half
#                          of loadgen's --deltas, 25 of 50: past the 5 s ramp)
#   --calibrate            first run the same load straight against the fake provider (no
#                          gateway): the latency this harness itself adds on this machine
#   --keep                 keep the temp dir (gateway logs) and print where it is
#   -- ARGS                passed to loadgen (see `loadgen --help`: --ramp, --deltas, --over,
#                          --settle, --threads, ...)
#
# Environment:
#   GATEWAY_BIN, LOADGEN_BIN   use these binaries instead of building them
#   GATEWAY_COMMIT             the commit GATEWAY_BIN was built from (for the report)
#   CARGO_TARGET_DIR           where `cargo build --release` puts them (default target/)
#
# Needs about 2 file descriptors per stream in the gateway (client side + upstream side) and
# as many in loadgen (its clients + its fake provider): `ulimit -n` is raised to the hard
# limit; the script says so when that is not enough.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

log() { printf '[bench-streams] %s\n' "$*" >&2; }
die() { printf '[bench-streams] error: %s\n' "$*" >&2; exit 1; }

DB=sqlite
STREAMS=5000
PROTOCOLS=(rest chatkit)
KEEP=0
CALIBRATE=0
PROVIDER_HTTP2=0
PROVIDER_TLS=0
HANG_UP=()
EXTRA=()
while (($#)); do
    case $1 in
    --db) DB=${2:?--db needs sqlite or postgres}; shift 2 ;;
    --streams) STREAMS=${2:?--streams needs a number}; shift 2 ;;
    --protocol)
        case ${2:-} in
        rest | chatkit) PROTOCOLS=("$2") ;;
        both) PROTOCOLS=(rest chatkit) ;;
        *) die "--protocol must be rest, chatkit or both" ;;
        esac
        shift 2
        ;;
    --calibrate) CALIBRATE=1; shift ;;
    --provider-http2) PROVIDER_HTTP2=1; shift ;;
    --provider-tls) PROVIDER_TLS=1; shift ;;
    --hang-up-fraction) HANG_UP+=(--hang-up-fraction "${2:?--hang-up-fraction needs a number from 0 to 1}"); shift 2 ;;
    --hang-up-after-deltas) HANG_UP+=(--hang-up-after-deltas "${2:?--hang-up-after-deltas needs a number}"); shift 2 ;;
    --keep) KEEP=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
((CALIBRATE)) && PROTOCOLS=(direct "${PROTOCOLS[@]}")
[[ $DB == sqlite || $DB == postgres ]] || die "--db must be sqlite or postgres"
[[ $STREAMS =~ ^[0-9]+$ && $STREAMS -gt 0 ]] || die "--streams must be a positive number"

# --- binaries -----------------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -z ${GATEWAY_BIN:-} ]]; then
    log "cargo build --release -p chatkit-gateway"
    cargo build --release --quiet -p chatkit-gateway
    GATEWAY_BIN=$TARGET/release/chatkit-gateway
    GATEWAY_COMMIT=${GATEWAY_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted changes in src/)')}
fi
if [[ -z ${LOADGEN_BIN:-} ]]; then
    log "cargo build --release -p chatkit-loadgen"
    cargo build --release --quiet -p chatkit-loadgen
    LOADGEN_BIN=$TARGET/release/loadgen
fi
[[ -x $GATEWAY_BIN ]] || die "no gateway binary at $GATEWAY_BIN"
[[ -x $LOADGEN_BIN ]] || die "no loadgen binary at $LOADGEN_BIN"

# --- file descriptors ---------------------------------------------------------------
NEED_FDS=$((2 * STREAMS + 1024))
HARD=$(ulimit -Hn)
if [[ $HARD == unlimited ]] || ((HARD >= 1048576)); then
    ulimit -n 1048576 2>/dev/null || ulimit -n "$NEED_FDS" || true
else
    ulimit -n "$HARD" || true
fi
FDS=$(ulimit -n)
if [[ $FDS != unlimited ]] && ((FDS < NEED_FDS)); then
    log "warning: ulimit -n is $FDS (hard limit $HARD); $STREAMS streams need about $NEED_FDS per process; expect refused connections"
fi

# --- environment --------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/chatkit-bench-streams.XXXXXX")
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_DBS=()
LOADGEN_PID=""

stop_pid() { # stop_pid PID: TERM, then KILL after 15 s
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    set +e
    if [[ -n $LOADGEN_PID ]]; then
        stop_pid "$LOADGEN_PID" # stops the gateway it started
        wait "$LOADGEN_PID" 2>/dev/null
    fi
    # A loadgen killed outright leaves its gateway behind: its pid is on file.
    for f in "$TMP"/gateway-*.pid; do
        [[ -f $f ]] && stop_pid "$(cat "$f")"
    done
    for db in "${PG_DBS[@]}"; do
        psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
            log "could not drop database $db"
    done
    if ((KEEP)); then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fresh_database() { # fresh_database PROTOCOL: sets DATABASE_URL to a new, empty database
    if [[ $DB == sqlite ]]; then
        DATABASE_URL="sqlite://$TMP/streams-$1.db"
    else
        local name="chatkit_bench_streams_$$_$1"
        command -v psql >/dev/null || die "psql is needed for --db postgres"
        PG_DBS+=("$name")
        psql -q "$PG_URL/postgres" -c "CREATE DATABASE $name" >/dev/null ||
            die "could not create database $name on $PG_URL"
        # Plain TCP to the local server, as docs/deployment.md advises for a database on the
        # same host (sqlx would otherwise negotiate TLS with a server that offers it).
        DATABASE_URL="$PG_URL/$name?sslmode=disable"
    fi
    export DATABASE_URL
}

export APP_ENV=development
export RUST_LOG=warn
# Offline and local only: HS256 dev tokens, no key server, no Redis, no MCP server.
unset BETTER_AUTH_URL BETTER_AUTH_JWKS_URL REDIS_URL MCP_SERVER_URL METRICS_ADDR
if ((PROVIDER_HTTP2)); then
    export GATEWAY__AGENT__OPENAI__HTTP2=always
fi
# The gateway's default unless told otherwise: auto (HTTP/2 where TLS negotiates it).
export GATEWAY__AGENT__OPENAI__HTTP2=${GATEWAY__AGENT__OPENAI__HTTP2:-auto}
export GATEWAY__AGENT__OPENAI__HTTP2_STREAMS_PER_CONNECTION=100
case ${GATEWAY__AGENT__OPENAI__HTTP2},$PROVIDER_TLS in
always,* | true,* | auto,1) PROVIDER_HTTP="HTTP/2 (100 streams per connection)" ;;
*) PROVIDER_HTTP=HTTP/1.1 ;;
esac
if ((PROVIDER_TLS)); then
    PROVIDER_HTTP="$PROVIDER_HTTP over TLS (agent.openai.http2 = $GATEWAY__AGENT__OPENAI__HTTP2)"
    EXTRA=(--provider-tls ${EXTRA[@]+"${EXTRA[@]}"})
else
    PROVIDER_HTTP="$PROVIDER_HTTP (agent.openai.http2 = $GATEWAY__AGENT__OPENAI__HTTP2)"
fi

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
REPORT=$TMP/report.md
{
    echo "## chatkit-gateway streams benchmark"
    echo
    echo "$(nproc) cores${cpu:+ ($cpu)}, release build, $DB, $STREAMS concurrent streams, \`ulimit -n\` $FDS"
    echo "gateway to provider: $PROVIDER_HTTP"
    ((${#HANG_UP[@]})) && echo "clients that hang up mid-answer: ${HANG_UP[*]}"
    echo "gateway commit ${GATEWAY_COMMIT:-unknown (set GATEWAY_COMMIT)} ($GATEWAY_BIN)"
    echo
} >"$REPORT"

for protocol in "${PROTOCOLS[@]}"; do
    fresh_database "$protocol"
    log "$protocol: $STREAMS streams on $DB (gateway log $TMP/gateway-$protocol.log)"
    "$LOADGEN_BIN" \
        --gateway-bin "$GATEWAY_BIN" \
        --gateway-log "$TMP/gateway-$protocol.log" \
        --gateway-pid-file "$TMP/gateway-$protocol.pid" \
        --protocol "$protocol" --streams "$STREAMS" --label "$DB" \
        ${HANG_UP[@]+"${HANG_UP[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} >"$TMP/$protocol.md" &
    LOADGEN_PID=$!
    status=0
    wait "$LOADGEN_PID" || status=$?
    LOADGEN_PID=""
    if ((status != 0)); then
        log "$protocol: loadgen failed ($status); the gateway log ends with:"
        tail -n 20 "$TMP/gateway-$protocol.log" >&2 || true
    fi
    { cat "$TMP/$protocol.md"; echo; } >>"$REPORT"
done

echo
cat "$REPORT"
