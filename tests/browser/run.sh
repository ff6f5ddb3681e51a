#!/usr/bin/env bash
# Swagger UI ("Authorize", "Try it out") against a live gateway, and the ChatKit React
# example with OpenAI's CDN cut off, in Debian's headless Chromium driven by playwright-core
# (pinned by package-lock.json; it never downloads a browser).
#
#   tests/browser/run.sh target/debug/chatkit-gateway
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

[ $# -eq 1 ] || { echo "usage: tests/browser/run.sh <chatkit-gateway binary>" >&2; exit 2; }
if [ ! -x "$1" ] || [ -d "$1" ]; then
  echo "browser tests: no gateway binary at $1 (cargo build --bin chatkit-gateway)" >&2
  exit 1
fi
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
if [ ! -x /usr/bin/chromium ]; then
  echo "browser tests: /usr/bin/chromium is missing: install Debian's chromium: apt-get install chromium, or run .ci/run" >&2
  exit 1
fi

cd "$here"
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi

kit="$repo/clients/chatkit-react"
if [[ ! -f "$kit/node_modules/.package-lock.json" || "$kit/package-lock.json" -nt "$kit/node_modules/.package-lock.json" ]]; then
  npm ci --prefix "$kit" --no-audit --no-fund
fi
dist="$(mktemp -d)"
trap 'rm -rf "$dist"' EXIT
# Built here rather than reusing example/dist: from the current sources, and without any
# VITE_* setting of the caller's shell, each of which changes what the page shows.
(cd "$kit" && env -u VITE_DEV_UPSTREAM_TOKEN -u VITE_BETTER_AUTH_URL -u VITE_GATEWAY_URL \
  npx --no-install vite build example --logLevel warn --outDir "$dist" --emptyOutDir)

GATEWAY_BIN="$bin" EXAMPLE_DIST="$dist" \
  node --test --test-reporter=spec swagger.test.mjs example.test.mjs
