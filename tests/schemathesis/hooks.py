"""Schemathesis hooks for chatkit-gateway.

Every generated request gets a freshly minted client_secret: DELETE /session revokes the
secret it is sent with, so a shared one would turn every later request into a 401. The
upstream token that /session accepts comes from the environment (SCHEMATHESIS_UPSTREAM_TOKEN,
minted by `chatkit-gateway dev-token` in run.sh).
"""

import json
import os
import urllib.request

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
