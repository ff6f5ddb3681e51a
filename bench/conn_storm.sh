#!/usr/bin/env bash
# Memory after a connection storm (a measurement, not a test: it never fails on a figure).
#
#   bench/conn_storm.sh                        # debug build, 5,000 connections
#   STORM_CONNECTIONS=8000 bench/conn_storm.sh
#   STORM_BIN=target/release/chatkit-gateway bench/conn_storm.sh     # an existing binary
#
# Starts the service on 127.0.0.1 with a fresh SQLite file, then opens STORM_CONNECTIONS
# connections, sends one `GET /healthz` on each and keeps them open (idle keep-alive), then
# closes them all; then sends 200 more requests, one per connection. Prints VmRSS of the
# service before, during (all open), right after the close, STORM_SETTLE seconds later and
# after the 200 requests, per round, plus VmHWM. Needs python3 and curl; the
# file-descriptor limit (ulimit -n) must exceed the connection count.
#
# Environment:
#   STORM_CONNECTIONS  connections to open (default 5000)
#   STORM_SETTLE       seconds to wait after the close before the next reading (default 5)
#   STORM_ROUNDS       storms in a row (default 2: the second shows whether memory keeps growing)
#   STORM_BIN          binary to run (default: `cargo build` and target/debug/chatkit-gateway)
#   STORM_PORT         port (default 18090)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
N=${STORM_CONNECTIONS:-5000}
SETTLE=${STORM_SETTLE:-5}
ROUNDS=${STORM_ROUNDS:-2}
PORT=${STORM_PORT:-18090}

log() { printf '[storm] %s\n' "$*" >&2; }

if [[ -n ${STORM_BIN:-} ]]; then
    BIN=$STORM_BIN
else
    log "cargo build"
    cargo build --quiet --bin chatkit-gateway
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/chatkit-gateway"
fi
[[ -x $BIN ]] || { log "no binary at $BIN"; exit 1; }
if (( $(ulimit -n) < N + 100 )); then
    ulimit -n $((N + 100)) 2>/dev/null || { log "ulimit -n is below $N"; exit 1; }
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/chatkit-storm.XXXXXX")
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

DATABASE_URL="sqlite://$TMP/storm.db" PORT=$PORT HOST=127.0.0.1 APP_ENV=development \
    AGENT_PROVIDER=local RUST_LOG=warn "$BIN" serve >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break
    sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" || { cat "$TMP/server.log"; exit 1; }

python3 - "$SERVER_PID" "$PORT" "$N" "$SETTLE" "$ROUNDS" <<'PY'
import socket, sys, time

pid, port, n, settle = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rounds = int(sys.argv[5])

def mem(field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")

def fds():
    import os
    return len(os.listdir(f"/proc/{pid}/fd"))

def show(label):
    print(f"{label:<34} VmRSS {mem('VmRSS'):7.1f} MiB (anon {mem('RssAnon'):6.1f})  {fds()} fds", flush=True)

time.sleep(1)
show("idle, before")
request = b"GET /healthz HTTP/1.1\r\nHost: storm\r\n\r\n"
for r in range(1, rounds + 1):
    conns = []
    t0 = time.time()
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit(f"connection {i} closed by the server")
            got += chunk
        if not got.startswith(b"HTTP/1.1 200"):
            sys.exit(f"connection {i}: {got[:80]!r}")
        conns.append(s)
    print(f"round {r}: opened {n} connections in {time.time() - t0:.1f} s", flush=True)
    time.sleep(1)
    show(f"round {r}: {n} connections open")
    for s in conns:
        s.close()
    conns.clear()
    time.sleep(1)
    show(f"round {r}: 1 s after close")
    time.sleep(settle)
    show(f"round {r}: {settle + 1:g} s after close")
    # Light traffic afterwards: an allocator that purges only from its own calls (mimalloc,
    # used before jemalloc) kept the pages of a fully idle process; jemalloc's background
    # thread purges without it, and this shows it makes no difference now.
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        s.recv(4096)
        s.close()
    time.sleep(2)
    show(f"round {r}: +200 requests")
print(f"{'peak':<34} VmHWM {mem('VmHWM'):7.1f} MiB")
PY
