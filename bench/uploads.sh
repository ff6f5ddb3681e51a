#!/usr/bin/env bash
# Attachment upload benchmark (a benchmark, not a test: it never fails on slowness).
#
#   bench/uploads.sh                       # every store: db on SQLite, db on PostgreSQL, s3 on moto
#   bench/uploads.sh sqlite postgres s3    # the same, named
#   UPLOADS=50 UPLOAD_BYTES=10000000 bench/uploads.sh sqlite
#
# For each store: starts the release gateway on 127.0.0.1 (a fresh SQLite file, a fresh
# PostgreSQL database, or the database store on SQLite with the bytes in a bucket of a local
# moto_server that checks SigV4), creates UPLOADS two-phase attachments (image/png,
# UPLOAD_BYTES each) for 5 users, then sends all their bytes at once, each as the widget
# does (curl, multipart/form-data POST to the signed upload link, read from a file), and
# prints the wall time, the throughput, and the gateway's RSS: idle before the uploads and
# the largest of samples taken every 50 ms during them (and VmHWM). Every upload must be
# answered 200 and one is downloaded back and compared.
#
# Environment:
#   UPLOADS        concurrent uploads (default 50)
#   UPLOAD_BYTES   bytes per upload (default 10000000; at most attachments.max_bytes, 10 MiB)
#   UPLOAD_METHOD  post (default: multipart/form-data, as the widget sends) or put (raw bytes)
#   BENCH_BIN      a gateway binary to measure instead of building one
#   BENCH_PG_URL   PostgreSQL server (default postgres://postgres@127.0.0.1:5432; a database
#                  is created and dropped)
#   BENCH_PORT     first port to try (default 18180)
#
# Load goes to 127.0.0.1 only. Servers are stopped and temp files removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
UPLOADS=${UPLOADS:-50}
UPLOAD_BYTES=${UPLOAD_BYTES:-10000000}
METHOD=${UPLOAD_METHOD:-post}
PG_SERVER=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
BIN=${BENCH_BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/chatkit-gateway"}
STORES=("$@")
((${#STORES[@]})) || STORES=(sqlite postgres s3)

log() { printf '[uploads] %s\n' "$*" >&2; }
die() { printf '[uploads] error: %s\n' "$*" >&2; exit 1; }
trap 'printf "[uploads] error: stopped at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
command -v curl >/dev/null || die "curl is required"

if [[ -z ${BENCH_BIN:-} ]]; then
    log "cargo build --release"
    cargo build --release --quiet
fi
[[ -x $BIN ]] || die "$BIN was not built"

TMP=$(mktemp -d)
SERVER_PID=""
MOTO_PID=""
PG_DB=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [[ -n $MOTO_PID ]] && kill "$MOTO_PID" 2>/dev/null && wait "$MOTO_PID" 2>/dev/null
    [[ -n $PG_DB ]] && psql -q "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS $PG_DB" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    local port=${1:-18180}
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    echo "$port"
}
status_field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

# The file every upload sends: a PNG signature, then random bytes.
FILE=$TMP/upload.png
{
    printf '\x89PNG\r\n\x1a\n'
    head -c $((UPLOAD_BYTES - 8)) /dev/urandom
} >"$FILE"

export HOST=127.0.0.1 APP_ENV=development RUST_LOG=warn AGENT_PROVIDER=local
unset BETTER_AUTH_URL BETTER_AUTH_JWKS_URL

start_moto() {
    local moto=$ROOT/tests/s3/.venv/bin/moto_server
    [[ -x $moto ]] || "$ROOT/tests/s3/setup.sh"
    MOTO_PORT=$(free_port 18900)
    "$moto" -H 127.0.0.1 -p "$MOTO_PORT" >"$TMP/moto.log" 2>&1 &
    MOTO_PID=$!
    local m=http://127.0.0.1:$MOTO_PORT
    for _ in $(seq 1 300); do curl -fsS -o /dev/null "$m/moto-api/" 2>/dev/null && break; sleep 0.1; done
    # As tests/api/support/s3.rs does: a user with a key allowed s3:*, a bucket, then
    # signatures enforced on every request.
    local scope='Authorization: AWS4-HMAC-SHA256 Credential=AKIASETUP/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0'
    curl -fsS -o /dev/null "$m/" -H "$scope" -d 'Version=2010-05-08&Action=CreateUser&UserName=bench'
    local key
    key=$(curl -fsS "$m/" -H "$scope" -d 'Version=2010-05-08&Action=CreateAccessKey&UserName=bench')
    export GATEWAY__ATTACHMENTS__S3__ACCESS_KEY_ID=$(sed -n 's:.*<AccessKeyId>\(.*\)</AccessKeyId>.*:\1:p' <<<"$key")
    export GATEWAY__ATTACHMENTS__S3__SECRET_ACCESS_KEY=$(sed -n 's:.*<SecretAccessKey>\(.*\)</SecretAccessKey>.*:\1:p' <<<"$key")
    curl -fsS -o /dev/null "$m/" -H "$scope" -d 'Version=2010-05-08&Action=PutUserPolicy&UserName=bench&PolicyName=s3' \
        --data-urlencode 'PolicyDocument={"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
    curl -fsS -o /dev/null -X PUT "$m/bench"
    curl -fsS -o /dev/null "$m/moto-api/reset-auth" -H 'Content-Type: text/plain' --data-binary 0
    export GATEWAY__ATTACHMENTS__STORE=s3 GATEWAY__ATTACHMENTS__S3__BUCKET=bench \
        GATEWAY__ATTACHMENTS__S3__ENDPOINT=$m GATEWAY__ATTACHMENTS__S3__ALLOW_HTTP=true
}

run_store() {
    local store=$1 label
    unset GATEWAY__ATTACHMENTS__STORE
    case $store in
    sqlite | s3)
        export DATABASE_URL="sqlite://$TMP/$store.db"
        label="db on SQLite"
        ;;
    postgres)
        PG_DB="bench_uploads_$$"
        psql -q "$PG_SERVER/postgres" -c "CREATE DATABASE $PG_DB" || die "cannot create $PG_DB"
        export DATABASE_URL="$PG_SERVER/$PG_DB?sslmode=disable"
        label="db on PostgreSQL $(psql -Atq "$PG_SERVER/postgres" -c 'SHOW server_version' | awk '{ print $1 }')"
        ;;
    *) die "unknown store $store (sqlite, postgres, s3)" ;;
    esac
    if [[ $store == s3 ]]; then
        start_moto
        label="s3 on moto $("$ROOT/tests/s3/.venv/bin/pip" show moto 2>/dev/null | awk '/^Version/ { print $2 }') (rows on SQLite)"
    fi
    PORT=$(free_port "${BENCH_PORT:-18180}")
    export PORT
    local base=http://127.0.0.1:$PORT
    "$BIN" serve >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 3000); do
        curl -fsS -o /dev/null --max-time 1 "$base/healthz" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; die "server exited"; }
        sleep 0.01
    done

    # Client secrets for 5 users, and UPLOADS attachments spread over them.
    local users=5 i secrets=()
    for i in $(seq 1 $users); do
        local up
        up=$("$BIN" dev-token --user "bench-u$i")
        secrets+=("$(curl -fsS -X POST "$base/api/chatkit/session" -H "Authorization: Bearer $up" |
            sed -n 's/.*"client_secret":"\([^"]*\)".*/\1/p')")
    done
    : >"$TMP/urls"
    for i in $(seq 1 "$UPLOADS"); do
        local cs=${secrets[$((i % users))]}
        # (The JSON ends without a newline: echo gives sed a whole line.)
        { curl -fsS -X POST "$base/api/chatkit/attachments" -H "Authorization: Bearer $cs" \
            -H 'Content-Type: application/json' \
            -d "{\"name\":\"photo-$i.png\",\"size\":$UPLOAD_BYTES,\"mime_type\":\"image/png\"}"; echo; } |
            sed -n 's#.*"url":"\([^"]*/upload?sig=[^"]*\)".*#\1#p' >>"$TMP/urls"
    done
    [[ $(wc -l <"$TMP/urls") -eq $UPLOADS ]] || die "could not create $UPLOADS attachments"

    sleep 1
    local idle_kb
    idle_kb=$(status_field "$SERVER_PID" VmRSS)
    : >"$TMP/rss"
    (while kill -0 "$SERVER_PID" 2>/dev/null; do
        status_field "$SERVER_PID" VmRSS >>"$TMP/rss" 2>/dev/null || true
        sleep 0.05
    done) &
    local sampler=$!
    local t0 t1
    t0=$(date +%s%N)
    : >"$TMP/codes"
    local clients=() url
    while read -r url; do
        if [[ $METHOD == put ]]; then
            curl -s -o /dev/null -w '%{http_code}\n' -T "$FILE" "$base$url" >>"$TMP/codes" &
        else
            curl -s -o /dev/null -w '%{http_code}\n' -F "file=@$FILE;type=image/png" "$base$url" >>"$TMP/codes" &
        fi
        clients+=($!)
    done <"$TMP/urls"
    wait "${clients[@]}" || true
    t1=$(date +%s%N)
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    local ok
    ok=$(grep -c '^200$' "$TMP/codes" || true)
    [[ $ok -eq $UPLOADS ]] || { sort "$TMP/codes" | uniq -c >&2; tail -20 "$TMP/server.log" >&2; die "$ok of $UPLOADS uploads answered 200"; }

    # One upload read back, byte for byte.
    local first_id
    first_id=$(head -n 1 "$TMP/urls" | sed -n 's:.*/attachments/\([^/]*\)/upload.*:\1:p')
    curl -fsS -o "$TMP/back" "$base/api/chatkit/attachments/$first_id" -H "Authorization: Bearer ${secrets[$((1 % users))]}"
    cmp -s "$FILE" "$TMP/back" || die "the downloaded bytes differ"

    local peak_kb hwm_kb secs mb
    peak_kb=$(sort -n "$TMP/rss" | tail -n 1)
    hwm_kb=$(status_field "$SERVER_PID" VmHWM)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    mb=$(awk -v n="$UPLOADS" -v s="$UPLOAD_BYTES" -v t="$secs" 'BEGIN { printf "%.0f", n * s / 1e6 / t }')
    printf '| %s, %s | %s x %s B | %s s | %s MB/s | %s | %s | %s | %s |\n' "$label" "${METHOD^^}" "$UPLOADS" "$UPLOAD_BYTES" \
        "$secs" "$mb" "$(mib "$idle_kb")" "$(mib "$peak_kb")" "$(mib $((peak_kb - idle_kb)))" "$(mib "$hwm_kb")"

    kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    if [[ -n $MOTO_PID ]]; then kill "$MOTO_PID" && wait "$MOTO_PID" 2>/dev/null || true; MOTO_PID=""; fi
    if [[ -n $PG_DB ]]; then psql -q "$PG_SERVER/postgres" -c "DROP DATABASE $PG_DB"; PG_DB=""; fi
    unset GATEWAY__ATTACHMENTS__STORE GATEWAY__ATTACHMENTS__S3__BUCKET GATEWAY__ATTACHMENTS__S3__ENDPOINT \
        GATEWAY__ATTACHMENTS__S3__ALLOW_HTTP GATEWAY__ATTACHMENTS__S3__ACCESS_KEY_ID \
        GATEWAY__ATTACHMENTS__S3__SECRET_ACCESS_KEY
}

echo "| store | uploads at once | wall time | throughput | idle RSS | peak RSS (50 ms samples) | peak above idle | VmHWM |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for store in "${STORES[@]}"; do
    run_store "$store"
done
