#!/usr/bin/env bash
# The client kit's checks: install (pinned, from package-lock.json), type-check the module,
# its tests and the example, build the example with Vite, then run the Node tests against a
# real gateway.
#
#   GATEWAY_BIN=target/debug/chatkit-gateway clients/chatkit-react/test.sh
#
# GATEWAY_BIN defaults to the repository's target/debug/chatkit-gateway (build it first).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"

GATEWAY_BIN="${GATEWAY_BIN:-$repo/target/debug/chatkit-gateway}"
case "$GATEWAY_BIN" in /*) ;; *) GATEWAY_BIN="$repo/$GATEWAY_BIN" ;; esac
if [[ ! -x "$GATEWAY_BIN" ]]; then
  echo "chatkit-react: no gateway binary at $GATEWAY_BIN (cargo build, or set GATEWAY_BIN)" >&2
  exit 1
fi
export GATEWAY_BIN

# npm ci only when node_modules is missing or older than the lock file.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi

echo "== chatkit-react: type-check (module + tests, example)"
npx tsc -p tsconfig.json --noEmit
npx tsc -p example/tsconfig.json --noEmit

echo "== chatkit-react: vite build example"
npx vite build example --logLevel warn

echo "== chatkit-react: node tests against $GATEWAY_BIN"
rm -rf build
npx tsc -p tsconfig.json
node --test --test-reporter=spec build/test/gatewayFetch.test.js build/test/chatkit-endpoint.test.js \
  build/test/taskPanelState.test.js
