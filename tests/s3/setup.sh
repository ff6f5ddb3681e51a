#!/usr/bin/env bash
# Creates tests/s3/.venv with the pinned S3-compatible server (moto's moto_server) that
# tests/api/attachments.rs and bench/uploads.sh start. Idempotent: reinstalls only when
# requirements.txt changed. Needs python3 (>= 3.10) with venv, and PyPI.
set -euo pipefail
cd "$(dirname "$0")"
stamp=.venv/.requirements
if [ -x .venv/bin/moto_server ] && cmp -s requirements.txt "$stamp"; then
  exit 0
fi
echo "== installing the S3 test server (tests/s3/.venv)"
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
cp requirements.txt "$stamp"
