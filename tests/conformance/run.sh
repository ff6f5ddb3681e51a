#!/usr/bin/env bash
# ChatKit protocol conformance of a running gateway, validated with the official SDK models.
#
#   tests/conformance/run.sh BASE_URL [check.py options]   e.g. http://127.0.0.1:8000
#   tests/conformance/run.sh --self-test                   check.py against the SDK itself
#
# Upstream tokens: GATEWAY_BIN=<chatkit-gateway binary> (its `dev-token`, so it needs the
# gateway's BETTER_AUTH_SECRET in the environment; the development default works), or
# CONFORMANCE_UPSTREAM_TOKENS="tokA,tokB,tokC".
#
# The first run creates a venv (CONFORMANCE_VENV, default tests/conformance/.venv) from
# requirements.txt, which needs PyPI; later runs reuse it and work offline. The venv is
# rebuilt when requirements.txt changes. PYTHON picks the interpreter (>= 3.10).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${CONFORMANCE_VENV:-$here/.venv}"
py="${PYTHON:-python3}"

if [ $# -eq 0 ]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi

want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
stamp="$venv/.requirements.sha256"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
    echo "conformance: $py is older than Python 3.10 (set PYTHON)" >&2
    exit 2
  }
  echo "== conformance: creating the venv at $venv" >&2
  # Only ever delete something that is a venv.
  if [ -e "$venv" ]; then
    [ -f "$venv/pyvenv.cfg" ] || { echo "conformance: $venv exists and is not a venv" >&2; exit 2; }
    rm -rf "$venv"
  fi
  "$py" -m venv "$venv" || {
    echo "conformance: '$py -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 2
  }
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet --no-input \
    -r "$here/requirements.txt"
  echo "$want" >"$stamp"
fi

if [ "$1" = "--self-test" ]; then
  exec "$venv/bin/python" "$here/self_test.py"
fi
exec "$venv/bin/python" "$here/check.py" "$@"
