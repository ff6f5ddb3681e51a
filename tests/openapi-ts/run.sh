#!/usr/bin/env bash
# Generates a TypeScript client (openapi-typescript) from the checked-in document snapshot
# and type-checks use.ts against it. The snapshot itself is kept current by the Rust test
# contract::the_document_matches_its_snapshot (UPDATE_SNAPSHOT=1 rewrites it).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --silent
npx --no-install openapi-typescript openapi.json --output schema.d.ts
npx --no-install tsc -p tsconfig.json
echo "openapi-ts: the generated client type-checks"
