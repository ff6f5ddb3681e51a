#!/usr/bin/env bash
# Creates tests/mcp/.venv with the pinned MCP test server (the official Python SDK,
# FastMCP) that tests/api/mcp.rs starts. Idempotent: reinstalls only when
# requirements.txt changed. Needs python3 (>= 3.10) with venv, and PyPI.
set -euo pipefail
cd "$(dirname "$0")"
stamp=.venv/.requirements
if [ -x .venv/bin/python ] && cmp -s requirements.txt "$stamp"; then
  exit 0
fi
echo "== installing the MCP test server (tests/mcp/.venv)"
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
cp requirements.txt "$stamp"
