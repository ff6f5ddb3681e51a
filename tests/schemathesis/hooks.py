"""Schemathesis hooks for chatkit-gateway.

Every generated request gets a freshly minted client_secret: DELETE /session revokes the
secret it is sent with, so a shared one would turn every later request into a 401. The
upstream token that /session accepts comes from the environment (SCHEMATHESIS_UPSTREAM_TOKEN,
minted by `chatkit-gateway dev-token` in run.sh).
"""

import json
import os
import urllib.request
import uuid

import schemathesis

BASE = os.environ["SCHEMATHESIS_BASE_URL"]
UPSTREAM = os.environ["SCHEMATHESIS_UPSTREAM_TOKEN"]


@schemathesis.auth(refresh_interval=None)
class FreshClientSecret:
    def get(self, case, ctx):
        if case.operation.path.endswith("/session") and case.method.upper() == "POST":
            return UPSTREAM
        req = urllib.request.Request(
            f"{BASE}/api/chatkit/session",
            method="POST",
            headers={"Authorization": f"Bearer {UPSTREAM}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)["client_secret"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


def _is_positive(case):
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


@schemathesis.hook
def map_case(ctx, case):
    """Two values the document can describe but no generator can produce validly.

    - `after` is an opaque cursor: only values the service issued name a page, anything else
      is 422 by design. A positive case drops it (negative cases still send junk cursors).
    - `Idempotency-Key` must be unique per request: a key reused for another request is 422
      `idempotency.mismatch` by design, and generators reuse small values ("0") all the
      time. A positive case gets a unique suffix, staying within 255 visible ASCII.
    """
    if not _is_positive(case):
        return case
    if case.query and "after" in case.query:
        case.query = {k: v for k, v in case.query.items() if k != "after"}
    if case.headers:
        for name in list(case.headers):
            if name.lower() == "idempotency-key" and isinstance(case.headers[name], str):
                suffix = "-" + uuid.uuid4().hex
                case.headers[name] = case.headers[name][: 255 - len(suffix)] + suffix
    return case
