#!/usr/bin/env bash
# Commit subjects say what changed in one line of at most 72 characters (the why, the
# figures and the checks go in the body), so `git log --oneline` reads as a list. Checked
# from the first commit written to that rule; older subjects are history.
set -euo pipefail
cd "$(dirname "$0")/.."

since=89b27e1f8858a2c8cf79664cd7427afe87a2d66a
if ! command -v git >/dev/null 2>&1 || ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "check-commits: needs git and a git checkout" >&2
  exit 1
fi
if git rev-parse -q --verify "$since^{commit}" >/dev/null; then
  range=("$since^..HEAD")
else
  # A shallow clone without that commit: check what it has.
  echo "check-commits: $since is not in this clone; checking the commits it has"
  range=(HEAD)
fi
bad=$(git log --no-merges --format='%h %s' "${range[@]}" | awk '{ s = substr($0, index($0, " ") + 1); if (length(s) > 72) print length(s) ": " $0 }')
if [ -n "$bad" ]; then
  echo "commit subjects over 72 characters:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "check-commits: every subject fits in 72 characters"
