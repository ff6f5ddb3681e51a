"""Schemathesis hooks for chatkit-gateway.

Every generated request gets a freshly minted client_secret: DELETE /session revokes the
secret it is sent with, so a shared one would turn every later request into a 401. The
upstream token that /session accepts comes from the environment (SCHEMATHESIS_UPSTREAM_TOKEN,
minted by `chatkit-gateway dev-token` in run.sh).
"""

import json
import os
import urllib.error
import urllib.request
import uuid

import schemathesis

BASE = os.environ["SCHEMATHESIS_BASE_URL"]
UPSTREAM = os.environ["SCHEMATHESIS_UPSTREAM_TOKEN"]


def _client_secret():
    req = urllib.request.Request(
        f"{BASE}/api/chatkit/session",
        method="POST",
        headers={"Authorization": f"Bearer {UPSTREAM}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["client_secret"]


def _chatkit_probe():
    """The ChatKit endpoint's path, and the request types the live gateway does not implement.

    Those types are in the document (it lists the whole protocol) but answer 400
    `chatkit.unsupported` to any request, however valid. Each type is sent once with empty
    `params`, which a type the gateway implements refuses (400 `request.malformed`) or
    answers (`threads.list`) without changing anything.
    """
    with urllib.request.urlopen(f"{BASE}/openapi.json", timeout=10) as resp:
        doc = json.load(resp)
    path = next(
        p for p, ops in doc["paths"].items()
        if ops.get("post", {}).get("operationId") == "chatkit"
    )
    union = doc["components"]["schemas"]["ChatKitRequest"]
    secret = _client_secret()
    unsupported = set()
    for kind in union["discriminator"]["mapping"]:
        req = urllib.request.Request(
            f"{BASE}{path}",
            method="POST",
            data=json.dumps({"type": kind, "params": {}}).encode(),
            headers={"Authorization": f"Bearer {secret}"},
        )
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except urllib.error.HTTPError as err:
            if json.load(err).get("error", {}).get("code") == "chatkit.unsupported":
                unsupported.add(kind)
    # Dictation with an agent that cannot transcribe (the local one) answers 501
    # `transcription.unavailable` to every valid request, by design.
    req = urllib.request.Request(
        f"{BASE}{path}",
        method="POST",
        data=json.dumps({"type": "input.transcribe",
                         "params": {"audio_base64": "AAAA", "mime_type": "audio/webm"}}).encode(),
        headers={"Authorization": f"Bearer {secret}"},
    )
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except urllib.error.HTTPError as err:
        if json.load(err).get("error", {}).get("code") == "transcription.unavailable":
            unsupported.add("input.transcribe")
    return path, unsupported


CHATKIT_PATH, CHATKIT_UNSUPPORTED = _chatkit_probe()


@schemathesis.auth(refresh_interval=None)
class FreshClientSecret:
    def get(self, case, ctx):
        if case.operation.path.endswith("/session") and case.method.upper() == "POST":
            return UPSTREAM
        return _client_secret()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


def _is_positive(case):
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


def _chatkit_type(case):
    if case.operation.path != CHATKIT_PATH or not isinstance(case.body, dict):
        return None
    return case.body.get("type")


@schemathesis.hook
def filter_case(ctx, case):
    """No valid request of a ChatKit type the gateway does not implement (valid or not, it
    answers 400 `chatkit.unsupported` by design) or cannot answer with its agent (dictation
    with the local agent: 501 `transcription.unavailable`). Invalid ones are still sent."""
    return not (_is_positive(case) and _chatkit_type(case) in CHATKIT_UNSUPPORTED)


@schemathesis.hook
def map_case(ctx, case):
    """Two values the document can describe but no generator can produce validly.

    - `after` is an opaque cursor: only values the service issued name a page, anything else
      is 422 by design (in a ChatKit request's `params`, an id that names no element of the
      list: 400). A positive case drops it (negative cases still send junk cursors).
    - `Idempotency-Key` must be unique per request: a key reused for another request is 422
      `idempotency.mismatch` by design, and generators reuse small values ("0") all the
      time. A positive case gets a unique suffix, staying within 255 visible ASCII.
    """
    if not _is_positive(case):
        return case
    if case.query and "after" in case.query:
        case.query = {k: v for k, v in case.query.items() if k != "after"}
    if _chatkit_type(case) and isinstance(case.body.get("params"), dict):
        case.body["params"].pop("after", None)
    if _chatkit_type(case) == "attachments.create" and isinstance(case.body.get("params"), dict):
        # A file name, a type and a size the gateway takes: the document types them as
        # strings and an integer, and what it refuses (paths, control characters, types
        # outside the allow-list, sizes over the limit) is answered 4xx by design.
        params = case.body["params"]
        params["name"] = f"fuzz-{uuid.uuid4().hex[:8]}.txt"
        params["mime_type"] = "text/plain"
        if isinstance(params.get("size"), int):
            params["size"] = min(max(params["size"], 1), 10 * 1024 * 1024)
    if case.headers:
        for name in list(case.headers):
            if name.lower() == "idempotency-key" and isinstance(case.headers[name], str):
                suffix = "-" + uuid.uuid4().hex
                case.headers[name] = case.headers[name][: 255 - len(suffix)] + suffix
    return case
