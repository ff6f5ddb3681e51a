#!/usr/bin/env python3
"""ChatKit protocol conformance check of a live chatkit-gateway.

Runs a scripted session against BASE_URL and validates every JSON answer and every SSE
event against the official SDK's pydantic models (`openai-chatkit`, pinned in
requirements.txt), plus what pydantic does not see: unknown keys, `null`s, string
RFC 3339 timestamps, exact SSE framing, event order, paging cursors, reload consistency,
error envelopes, authentication and isolation between users; the task widgets a turn ends
with and the clicks on them (threads.custom_action, threads.sync_custom_action); answers
that hand over to the page and go on (threads.add_client_tool_output,
threads.add_structured_input); the model picker; and, with --agent-faults, the stop button
and the titles the model writes.

Usage: check.py BASE_URL        (normally through run.sh, which provides the venv)

Upstream tokens (for POST /api/chatkit/session) come from
  CONFORMANCE_UPSTREAM_TOKENS="tokA,tokB,tokC"   three users, or else
  GATEWAY_BIN=/path/to/chatkit-gateway            `dev-token --user <id>` for fresh users.

Every check is tagged `shape` (the wire contract the SDK itself honours) or `gateway`
(behaviour the SDK leaves to the integrator and the gateway promises: 4xx envelopes before
streaming, auth, isolation, `chatkit.unsupported`, inline validation errors, clamping,
tool activity, task widgets and what their actions do, stops, hand-overs, the model
picker, titles). The last line is
`N passed, M failed`; the exit status is 1 on any failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from chatkit.types import (
    Attachment,
    Page,
    SyncCustomActionResponse,
    Thread,
    ThreadItem,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageInput,
)
from pydantic import TypeAdapter, ValidationError

import check_widgets  # the widget checks of check_widgets.py (same directory)

EVENT = TypeAdapter(ThreadStreamEvent)
THREAD = TypeAdapter(Thread)
USER_INPUT = TypeAdapter(UserMessageInput)
THREAD_PAGE = TypeAdapter(Page[Thread])
ITEM_PAGE = TypeAdapter(Page[ThreadItem])
SYNC_ACTION = TypeAdapter(SyncCustomActionResponse)
ATTACHMENT = TypeAdapter(Attachment)
TRANSCRIPTION = TypeAdapter(TranscriptionResult)
# A 1x1 PNG: what the attachment checks upload as an image.
PNG_BYTES = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")

# RFC 3339 demands an offset; the SDK's naive local times would not pass, on purpose
# (chatkit-protocol.md 5.3 recommends UTC with `Z`).
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
)
SSE_FRAME = re.compile(rb"data: ([^\r\n]*)\n\n")
HIDDEN_ITEM_TYPES = {"hidden_context_item", "sdk_hidden_context"}
UNSUPPORTED_TYPES = [
    "attachments.create",
    "attachments.delete",
    "input.transcribe",
]
MISSING_THREAD = "thr_conformance_missing_0000"
MISSING_ITEM = "msg_conformance_missing_0000"
# What fake_openai.py answers (see there).
FAKE_ANSWER = "Hello from the fake model."
FAKE_SLOW = [f"slow {i}. " for i in range(10)]
FAKE_QUESTION = {"type": "multiple_choice", "id": "choice", "question": "Which list?",
                 "options": [{"value": "Home"}, {"value": "Work"}], "multiple": False}
FAKE_TITLE = "Weekend groceries"  # its title, cleaned of the quotes and the full stop
# The models the composer may pick (against-gateway.sh sets GATEWAY__AGENT__OPENAI__MODELS).
PICKABLE_MODEL = "conformance-model"
MISSING_ATTACHMENT = "atc_conformance_missing_0000"
# A task widget's copy_text: its heading, then one line per task ("No tasks yet." for none).
TASK_LINE = re.compile(r"^\[([ x-])\] ([1-9]\d*)\. (.+)$")
HEADINGS = {  # change -> (heading for one task, for several)
    "listed": ("Your tasks", "Your tasks"),
    "added": ("Task added", "Tasks added"),
    "completed": ("Task completed", "Tasks completed"),
    "reopened": ("Task reopened", "Tasks reopened"),
    "updated": ("Task updated", "Tasks updated"),
    "deleted": ("Task deleted", "Tasks deleted"),
}
ACTION_KEY = re.compile(r"^on[A-Z][A-Za-z]*Action$")
# What a reload must never show: the note the model gets of a click, hidden item types.
HIDDEN_TEXT = re.compile(r"marked as done|task list shown in the chat|hidden_context|"
                         r"stopped the previous answer|cancelled the stream")
SHOWN_ITEM_TYPES = {"user_message", "assistant_message", "workflow", "widget", "client_tool_call",
                    "structured_input"}


class Abort(Exception):
    """A section cannot go on (its earlier failure is already counted)."""


# ---------------------------------------------------------------- report


@dataclass
class Result:
    section: str
    name: str
    ok: bool
    kind: str
    detail: str


class Report:
    def __init__(self) -> None:
        self.results: list[Result] = []
        self.section = ""

    def start(self, section: str) -> None:
        self.section = section
        print(f"\n== {section}")

    def check(self, name: str, ok: bool, detail: Any = "", kind: str = "shape") -> bool:
        if isinstance(detail, list):
            detail = "\n".join(str(d) for d in detail[:8]) + (
                f"\n… {len(detail) - 8} more" if len(detail) > 8 else ""
            )
        detail = str(detail)
        self.results.append(Result(self.section, name, bool(ok), kind, detail))
        tag = "" if kind == "shape" else f" [{kind}]"
        if ok:
            print(f"  PASS {name}{tag}")
        else:
            print(f"  FAIL {name}{tag}")
            for line in detail.splitlines() or [""]:
                print(f"       {line}")
        return bool(ok)

    def require(self, name: str, ok: bool, detail: Any = "", kind: str = "shape") -> None:
        if not self.check(name, ok, detail, kind):
            raise Abort(name)

    def write_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump([r.__dict__ for r in self.results], f, indent=1)

    def summary(self) -> int:
        failed = [r for r in self.results if not r.ok]
        passed = len(self.results) - len(failed)
        if failed:
            print("\nFailures by kind:")
            for kind in sorted({r.kind for r in failed}):
                names = [f"{r.section}: {r.name}" for r in failed if r.kind == kind]
                print(f"  {kind} ({len(names)}):")
                for n in names:
                    print(f"    - {n}")
        print(f"\n{passed} passed, {len(failed)} failed")
        return 1 if failed else 0


# ---------------------------------------------------------------- HTTP


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool = False  # the connection closed before the body was complete

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def brief(self) -> str:
        text = self.body[:300].decode("utf-8", "replace")
        cut = " (cut off)" if self.truncated else ""
        return f"HTTP {self.status} {self.content_type!r}{cut} {text}"


class Http:
    def __init__(self, base_url: str, timeout: float) -> None:
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise SystemExit(f"BASE_URL must be http(s)://host[:port][/prefix], got {base_url!r}")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Resp:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers or {})
            r = conn.getresponse()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            try:
                return Resp(r.status, hdrs, r.read())
            except http.client.IncompleteRead as e:
                return Resp(r.status, hdrs, e.partial, truncated=True)
        finally:
            conn.close()


class Client:
    """One user's view of the ChatKit endpoint."""

    def __init__(self, http_: Http, path: str, secret: str | None, label: str) -> None:
        self.http = http_
        self.path = path
        self.secret = secret
        self.label = label

    def raw(
        self,
        body: bytes | str,
        content_type: str | None = "application/json",
        auth: str | None = "default",
        extra_headers: dict[str, str] | None = None,
    ) -> Resp:
        headers = {"Accept-Language": "en"}
        if content_type:
            headers["Content-Type"] = content_type
        if auth == "default":
            auth = f"Bearer {self.secret}" if self.secret else None
        if auth:
            headers["Authorization"] = auth
        headers.update(extra_headers or {})
        if isinstance(body, str):
            body = body.encode()
        return self.http.request("POST", self.path, body, headers)

    def call(self, type_: str, params: Any, **kw: Any) -> Resp:
        return self.raw(json.dumps({"type": type_, "params": params}), **kw)


def text_input(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": [],
        "inference_options": {},
        **extra,
    }


# ---------------------------------------------------------------- shape checks


def walk(value: Any, path: str = "$"):
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")


def unknown_keys(raw: Any, dumped: Any, path: str = "$") -> list[str]:
    """Keys of the raw JSON that the parsed model does not have (pydantic drops them)."""
    out: list[str] = []
    if isinstance(raw, dict) and isinstance(dumped, dict):
        for k, v in raw.items():
            if k not in dumped:
                out.append(f"{path}.{k}")
            else:
                out.extend(unknown_keys(v, dumped[k], f"{path}.{k}"))
    elif isinstance(raw, list) and isinstance(dumped, list):
        for i, (r, d) in enumerate(zip(raw, dumped)):
            out.extend(unknown_keys(r, d, f"{path}[{i}]"))
    return out


def missing_keys(raw: Any, sent: Any, path: str = "$") -> list[str]:
    """Keys the SDK would have sent for this value (it dumps every non-None field, defaults
    included) but the raw JSON lacks: the widget has only ever seen them present."""
    out: list[str] = []
    if isinstance(raw, dict) and isinstance(sent, dict):
        for k, v in sent.items():
            if k not in raw:
                out.append(f"{path}.{k} (the SDK sends {json.dumps(v)[:40]})")
            else:
                out.extend(missing_keys(raw[k], v, f"{path}.{k}"))
    elif isinstance(raw, list) and isinstance(sent, list):
        for i, (r, d) in enumerate(zip(raw, sent)):
            out.extend(missing_keys(r, d, f"{path}[{i}]"))
    return out


def null_paths(raw: Any) -> list[str]:
    return [p for p, v in walk(raw) if v is None]


def timestamp_problems(raw: Any) -> list[str]:
    out = []
    for p, v in walk(raw):
        if p.endswith(".created_at"):
            if not isinstance(v, str):
                out.append(f"{p} is {type(v).__name__} {v!r}, not a string")
            elif not RFC3339.match(v):
                out.append(f"{p} = {v!r} is not RFC 3339 (date, time and offset)")
            else:
                try:
                    dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
                except ValueError as e:
                    out.append(f"{p} = {v!r}: {e}")
    return out


def hidden_items(raw: Any) -> list[str]:
    return [
        f"{p} has type {v.get('type')!r}"
        for p, v in walk(raw)
        if isinstance(v, dict) and v.get("type") in HIDDEN_ITEM_TYPES and "thread_id" in v
    ]


@dataclass
class ShapeIssues:
    model: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    nulls: list[str] = field(default_factory=list)
    times: list[str] = field(default_factory=list)

    def add(self, label: str, text: str, obj: Any, adapter: TypeAdapter) -> None:
        try:
            parsed = adapter.validate_json(text, strict=True)
        except ValidationError as e:
            self.model.append(f"{label}: {short_error(e)}")
        else:
            dumped = adapter.dump_python(parsed, mode="json", by_alias=True)
            self.unknown.extend(f"{label}: {p}" for p in unknown_keys(obj, dumped))
            # What the SDK's own serialiser (ChatKitServer._serialize) would put on the wire.
            sent = adapter.dump_python(parsed, mode="json", by_alias=True, exclude_none=True,
                                       context={"exclude_metadata": True})
            self.missing.extend(f"{label}: {p}" for p in missing_keys(obj, sent))
        self.model.extend(f"{label}: {p}" for p in hidden_items(obj))
        self.nulls.extend(f"{label}: {p}" for p in null_paths(obj))
        self.times.extend(f"{label}: {p}" for p in timestamp_problems(obj))

    def report(self, rep: Report, what: str, model_name: str) -> None:
        rep.check(f"{what}: validates as {model_name}", not self.model, self.model)
        rep.check(f"{what}: no unknown keys", not self.unknown, self.unknown)
        rep.check(f"{what}: every field the SDK sends is present (defaults too)", not self.missing,
                  self.missing)
        rep.check(f"{what}: no null values", not self.nulls, self.nulls)
        rep.check(f"{what}: created_at are RFC 3339 strings", not self.times, self.times)


def short_error(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:4]:
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"{loc}: {err['msg']} (input {str(err.get('input'))[:80]})")
    return "; ".join(parts)


def split_sse(body: bytes) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Events, their JSON texts, and framing problems (parsing stops at the first)."""
    events: list[dict[str, Any]] = []
    texts: list[str] = []
    problems: list[str] = []
    pos = 0
    while pos < len(body):
        m = SSE_FRAME.match(body, pos)
        if not m:
            problems.append(f"byte {pos}: not a `data: <json>\\n\\n` frame: {body[pos:pos + 80]!r}")
            break
        payload = m.group(1)
        try:
            text = payload.decode("utf-8")
            ev = json.loads(text)
        except ValueError:
            problems.append(f"byte {pos}: payload is not UTF-8 JSON: {payload[:80]!r}")
            break
        if not isinstance(ev, dict):
            problems.append(f"byte {pos}: payload is not an object")
            break
        events.append(ev)
        texts.append(text)
        pos = m.end()
    if not body:
        problems.append("empty stream")
    return events, texts, problems


# ---------------------------------------------------------------- the checker


@dataclass
class Turn:
    events: list[dict[str, Any]]
    thread_id: str
    items: list[dict[str, Any]]  # items shown as done, in stream order
    assistant: dict[str, Any] | None
    user_message: dict[str, Any] | None
    widget: dict[str, Any] | None = None  # the widget item the turn ended with
    task_ids: list[int] = field(default_factory=list)  # from its tasks.changed effects
    replaced: dict[str, Any] | None = None  # a resumed turn's answered item, as replaced
    pending: dict[str, Any] | None = None  # the client tool call or question it ended with
    effects: list[dict[str, Any]] = field(default_factory=list)  # its client_effect events


def norm_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item with its timestamp as an instant, so equal instants compare equal."""
    out = dict(item)
    ca = out.get("created_at")
    if isinstance(ca, str):
        try:
            out["created_at"] = dt.datetime.fromisoformat(ca.replace("Z", "+00:00"))
        except ValueError:
            pass
    return out


def assistant_text(item: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in item.get("content", []))


@dataclass
class TaskLine:
    mark: str  # " " open, "x" done, "-" deleted
    task_id: int
    title: str

    def __str__(self) -> str:
        return f"[{self.mark}] {self.task_id}. {self.title}" + (" (deleted)" if self.mark == "-" else "")


def task_lines(copy_text: Any) -> tuple[str, list[TaskLine], list[str]]:
    """A task widget's copy_text read back: its heading, its task lines, and what is wrong."""
    if not isinstance(copy_text, str) or not copy_text:
        return "", [], [f"copy_text {copy_text!r} is not a non-empty string"]
    heading, *body = copy_text.split("\n")
    if body == ["No tasks yet."]:
        return heading, [], []
    rows: list[TaskLine] = []
    problems = [] if body else ["copy_text has no task line and no \"No tasks yet.\""]
    for line in body:
        m = TASK_LINE.match(line)
        if not m:
            problems.append(f"copy_text line {line!r} is not `[ ] N. title` (or [x], [-] … (deleted))")
            continue
        mark, n, title = m.groups()
        if mark == "-":
            if not title.endswith(" (deleted)"):
                problems.append(f"copy_text line {line!r}: a deleted task's line ends with (deleted)")
            title = title.removesuffix(" (deleted)")
        rows.append(TaskLine(mark, int(n), title))
    ids = [r.task_id for r in rows]
    if len(set(ids)) != len(ids):
        problems.append(f"copy_text names a task twice: {ids}")
    return heading, rows, problems


def effect_ok(event: dict[str, Any], change: str) -> bool:
    """A tasks.changed effect with the one data shape: {"task_ids": [N, ...], "change"}."""
    data = event.get("data")
    ids = data.get("task_ids") if isinstance(data, dict) else None
    return (isinstance(data, dict) and set(data) == {"task_ids", "change"}
            and data.get("change") == change and isinstance(ids, list) and bool(ids)
            and all(type(n) is int and n > 0 for n in ids))


def widget_nodes(node: Any):
    """Every component (a dict with a `type`) of a widget tree."""
    for _, v in walk(node):
        if isinstance(v, dict) and isinstance(v.get("type"), str):
            yield v


def widget_actions(widget: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(control, action) for every action a widget's controls carry."""
    out = []
    for _, v in walk(widget):
        if isinstance(v, dict):
            out.extend((v, a) for k, a in v.items() if ACTION_KEY.match(k) and isinstance(a, dict))
    return out


def task_widget_problems(item: dict[str, Any], change: str | None = None) -> tuple[list[str], list[str]]:
    """A task widget item checked: (what the SDK's models refuse, what breaks the gateway's
    task widget: its heading, one copy_text line per task, each row's actions)."""
    sdk = check_widgets.served_item_problems(item)
    widget = item.get("widget") if isinstance(item.get("widget"), dict) else {}
    ours: list[str] = []
    if widget.get("type") != "Card":
        ours.append(f"the widget is a {widget.get('type')!r}, not a Card")
    heading, rows, bad = task_lines(item.get("copy_text"))
    ours += bad
    if change is not None:
        one, several = HEADINGS[change]
        want = one if len(rows) <= 1 else several
        if heading != want:
            ours.append(f"heading {heading!r}, want {want!r} ({change}, {len(rows)} task(s))")
    elif heading not in {h for pair in HEADINGS.values() for h in pair}:
        ours.append(f"heading {heading!r} is not a task list's")
    nodes = list(widget_nodes(widget))
    if heading and not any(n.get("type") == "Title" and n.get("value") == heading for n in nodes):
        ours.append(f"no Title {heading!r} in the widget")
    got, want = [], []
    for control, action in widget_actions(widget):
        got.append((action.get("type"), json.dumps(action.get("payload"), sort_keys=True)))
        checked = control.get("defaultChecked")
        if control.get("type") == "Checkbox" and action.get("type") == "task.complete" and checked:
            ours.append(f"a checked Checkbox completes task {action.get('payload')}")
        if control.get("type") == "Checkbox" and action.get("type") == "task.reopen" and checked is not True:
            ours.append(f"an unchecked Checkbox reopens task {action.get('payload')}")
    for row in rows:
        payload = json.dumps({"task_id": row.task_id})
        if row.mark == " ":
            want += [("task.complete", payload), ("task.delete", payload)]
        elif row.mark == "x":
            want += [("task.reopen", payload), ("task.delete", payload)]
        texts = [n for n in nodes if n.get("type") == "Text" and n.get("value") == row.title]
        struck = row.mark != " "
        if not texts:
            ours.append(f"no Text {row.title!r} for task {row.task_id}")
        elif any(bool(t.get("lineThrough")) != struck for t in texts):
            ours.append(f"task {row.task_id} ({row}) is {'not ' if struck else ''}struck out")
    if sorted(got) != sorted(want):
        ours.append(f"actions {sorted(got)}, want {sorted(want)} for the rows {[str(r) for r in rows]}")
    return sdk, ours


class Conformance:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rep = Report()
        self.http = Http(args.base_url, args.timeout)
        self.run_id = uuid.uuid4().hex[:8]
        # Answers fetched along the way (listings, the paging turns) are validated too, and
        # reported together at the end.
        self.background = ShapeIssues()
        self.background_count = 0
        self.a: Client
        self.b: Client
        self.c: Client

    # -------------------------------------------------------- helpers

    def json_answer(
        self, what: str, resp: Resp, adapter: TypeAdapter | None, model_name: str = ""
    ) -> Any:
        """Checks a 200 JSON answer and returns its value (Abort when unusable)."""
        rep = self.rep
        rep.require(f"{what}: 200 application/json", resp.status == 200
                    and resp.content_type.startswith("application/json"), resp.brief())
        try:
            obj = resp.json()
        except ValueError as e:
            rep.require(f"{what}: body is JSON", False, f"{e}: {resp.brief()}")
        if adapter is None:
            rep.check(f"{what}: body is exactly {{}}", obj == {}, resp.brief())
            return obj
        issues = ShapeIssues()
        issues.add("body", resp.body.decode(), obj, adapter)
        issues.report(rep, what, model_name)
        return obj

    def error_answer(
        self, what: str, resp: Resp, status: int | tuple[int, ...], code: str | None = None,
        kind: str = "gateway",
    ) -> bool:
        """A JSON error envelope {"error":{"code","message"}} with the given status."""
        statuses = (status,) if isinstance(status, int) else status
        problems = []
        if resp.status not in statuses:
            problems.append(f"status {resp.status}, want {'/'.join(map(str, statuses))}")
        if not resp.content_type.startswith("application/json"):
            problems.append(f"content-type {resp.content_type!r}")
        try:
            obj = resp.json()
            err = obj.get("error") if isinstance(obj, dict) else None
            if not (isinstance(obj, dict) and set(obj) == {"error"} and isinstance(err, dict)
                    and set(err) == {"code", "message"} and isinstance(err["code"], str)
                    and isinstance(err["message"], str) and err["code"] and err["message"]):
                problems.append("not exactly {\"error\":{\"code\":str,\"message\":str}}")
            elif code is not None and err["code"] != code:
                problems.append(f"code {err['code']!r}, want {code!r}")
        except ValueError:
            problems.append("body is not JSON")
        if problems:
            problems.append(resp.brief())
        return self.rep.check(what, not problems, problems, kind)

    def parse_stream(self, what: str, resp: Resp) -> list[dict[str, Any]]:
        rep = self.rep
        rep.require(f"{what}: 200 text/event-stream", resp.status == 200
                    and resp.content_type.startswith("text/event-stream"), resp.brief())
        events, texts, problems = split_sse(resp.body)
        if resp.truncated:
            problems.append("the response was cut off (incomplete chunked body)")
        rep.check(f"{what}: exact SSE framing (data: <one-line JSON>\\n\\n only)",
                  not problems, problems)
        issues = ShapeIssues()
        for i, (ev, text) in enumerate(zip(events, texts)):
            issues.add(f"event {i} ({ev.get('type')})", text, ev, EVENT)
        issues.report(rep, what, "ThreadStreamEvent")
        if problems:
            raise Abort(what)
        return events

    def check_turn(
        self, what: str, resp: Resp, kind: str, user_input: str | dict[str, Any] | None = None,
        thread_id: str | None = None, tools: str | None = None, calls: int = 1,
        change: str | None = None, pending: str | None = None,
    ) -> Turn:
        """Checks the event order of one turn (chatkit-protocol.md 6.3).

        `kind`: "create", "add" (the user message is echoed first), "retry", or "resume"
        (an answer taken up again: stream_options, then thread.item.replaced with the item
        it paused on, answered, then the rest as any turn).
        `tools`: "mutating" or "read" when the message makes the agent call such a tool
        (`calls` of them, each a `change`, "added" or "listed" unless told); then each call
        has a progress_update before its workflow task, a workflow item shows them, each
        mutating call sends a tasks.changed effect, and the turn ends with a task widget.
        `pending`: "client_tool_call" or "structured_input" when the turn hands over to the
        page: it ends with that item, pending; an assistant message is then optional, and
        never an empty one."""
        rep = self.rep
        events = self.parse_stream(what, resp)
        types = [e.get("type") for e in events]
        rep.check(f"{what}: no error event", "error" not in types, types)
        i = 0
        if kind == "create":
            ok = bool(events) and types[0] == "thread.created"
            rep.require(f"{what}: thread.created first", ok, types)
            thread = events[0].get("thread") or {}
            thread_id = thread.get("id")
            rep.check(f"{what}: thread.created carries an empty items page",
                      thread.get("items") == {"data": [], "has_more": False}, thread.get("items"))
            i = 1
        user_message = None
        if kind in ("create", "add"):
            ev = events[i] if i < len(events) else {}
            item = ev.get("item") or {}
            ok = ev.get("type") == "thread.item.done" and item.get("type") == "user_message"
            rep.require(f"{what}: the user message comes as thread.item.done next", ok, types)
            if isinstance(user_input, str):
                user_input = text_input(user_input)
            # What the SDK would store and echo: the parsed input, serialised its way.
            parsed = USER_INPUT.validate_python(user_input)
            want = USER_INPUT.dump_python(parsed, mode="json", by_alias=True, exclude_none=True)
            got = {k: item.get(k) for k in ("content", "quoted_text", "inference_options")
                   if k in item}
            want.pop("attachments")
            problems = [f"{k}: {got.get(k)!r} != input {v!r}" for k, v in want.items() if got.get(k) != v]
            if item.get("thread_id") != thread_id:
                problems.append(f"thread_id {item.get('thread_id')!r} != {thread_id!r}")
            if item.get("attachments") != []:
                problems.append(f"attachments {item.get('attachments')!r}")
            rep.check(f"{what}: the user message echoes the input (content, quote, inference options)",
                      not problems, problems)
            user_message = item
            i += 1
        user_events = [
            e for e in events
            if e.get("type", "").startswith("thread.item.") and e.get("item", {}).get("type") == "user_message"
        ]
        rep.check(f"{what}: the user message is sent exactly {1 if user_message else 0} time(s), "
                  "never as thread.item.added",
                  len(user_events) == (1 if user_message else 0), [e.get("type") for e in user_events])
        ev = events[i] if i < len(events) else {}
        rep.require(f"{what}: stream_options next", ev.get("type") == "stream_options", types)
        i += 1
        replaced = None
        if kind == "resume":
            ev = events[i] if i < len(events) else {}
            replaced = ev.get("item") if ev.get("type") == "thread.item.replaced" else None
            rep.require(f"{what}: thread.item.replaced next (the item the answer paused on, "
                        "answered)", isinstance(replaced, dict)
                        and replaced.get("thread_id") == thread_id, types, kind="gateway")
            i += 1

        problems: list[str] = []
        open_items: dict[str, dict[str, Any]] = {}
        parts: dict[str, list[str]] = {}  # assistant item id -> accumulated texts per part
        phase: dict[str, str] = {}  # assistant item id -> last update kind
        done_items: list[dict[str, Any]] = []
        assistant_done: dict[str, Any] | None = None
        assistant_added_at: int | None = None
        workflow_done_at: list[int] = []
        seen_updated_thread = False
        effects: list[dict[str, Any]] = []
        progress: list[str] = []  # progress_update problems
        progress_seen = False  # since the last workflow task
        for j in range(i, len(events)):
            ev = events[j]
            t = ev.get("type")
            if seen_updated_thread and t != "thread.updated":
                problems.append(f"event {j} ({t}) follows thread.updated, which must be last")
            if t == "thread.created":
                problems.append(f"event {j}: thread.created in the middle of a turn")
            elif t == "thread.item.added":
                item = ev.get("item") or {}
                iid = item.get("id")
                if iid in open_items or any(d.get("id") == iid for d in done_items):
                    problems.append(f"event {j}: item {iid} added twice")
                if item.get("thread_id") != thread_id:
                    problems.append(f"event {j}: thread_id {item.get('thread_id')!r} != {thread_id!r}")
                open_items[iid] = item
                if item.get("type") == "assistant_message":
                    if assistant_added_at is not None:
                        problems.append(f"event {j}: a second assistant message")
                    assistant_added_at = j
                    parts[iid] = [p.get("text", "") for p in item.get("content", [])]
                    if item.get("content"):
                        problems.append(f"event {j}: the added assistant message has content already")
                    phase[iid] = "added"
            elif t == "thread.item.updated":
                iid = ev.get("item_id")
                up = ev.get("update", {})
                ut = up.get("type", "")
                if iid not in open_items:
                    problems.append(f"event {j}: update {ut} for {iid}, which is not open")
                    continue
                itype = open_items[iid].get("type")
                if ut.startswith("assistant_message."):
                    if itype != "assistant_message":
                        problems.append(f"event {j}: {ut} on a {itype}")
                        continue
                    idx = up.get("content_index")
                    acc = parts[iid]
                    last = phase[iid]
                    if ut.endswith("content_part.added"):
                        if idx != len(acc):
                            problems.append(f"event {j}: content_part.added index {idx}, want {len(acc)}")
                        if last not in ("added", "part_done"):
                            problems.append(f"event {j}: content_part.added after {last}")
                        acc.append(up.get("content", {}).get("text", ""))
                        phase[iid] = "part_added"
                    elif ut.endswith("text_delta"):
                        if last not in ("part_added", "delta") or idx != len(acc) - 1:
                            problems.append(f"event {j}: text_delta (index {idx}) after {last}")
                        elif isinstance(up.get("delta"), str):
                            acc[idx] += up["delta"]
                        phase[iid] = "delta"
                    elif ut.endswith("content_part.done"):
                        if last not in ("part_added", "delta") or idx != len(acc) - 1:
                            problems.append(f"event {j}: content_part.done (index {idx}) after {last}")
                        else:
                            final = up.get("content", {}).get("text")
                            if final != acc[idx]:
                                problems.append(f"event {j}: content_part.done text {final!r} != "
                                                f"sum of deltas {acc[idx]!r}")
                        phase[iid] = "part_done"
                    else:
                        problems.append(f"event {j}: unexpected update {ut}")
                elif ut.startswith("workflow."):
                    if itype != "workflow":
                        problems.append(f"event {j}: {ut} on a {itype}")
                        continue
                    tasks = open_items[iid].setdefault("workflow", {}).setdefault("tasks", [])
                    idx = up.get("task_index")
                    if ut == "workflow.task.added":
                        if idx != len(tasks):
                            problems.append(f"event {j}: task_index {idx}, want {len(tasks)}")
                        tasks.append(up.get("task"))
                        if not progress_seen:
                            progress.append(f"event {j}: workflow task {idx} without a "
                                            "progress_update since the previous one")
                        progress_seen = False
                    elif ut == "workflow.task.updated":
                        if not isinstance(idx, int) or not 0 <= idx < len(tasks):
                            problems.append(f"event {j}: task_index {idx} out of range")
                        else:
                            tasks[idx] = up.get("task")
            elif t == "thread.item.done":
                item = ev.get("item") or {}
                iid = item.get("id")
                if item.get("thread_id") != thread_id:
                    problems.append(f"event {j}: thread_id {item.get('thread_id')!r} != {thread_id!r}")
                if any(d.get("id") == iid for d in done_items):
                    problems.append(f"event {j}: item {iid} done twice")
                added = open_items.pop(iid, None)
                if added is not None and added.get("type") != item.get("type"):
                    problems.append(f"event {j}: {iid} added as {added.get('type')}, done as {item.get('type')}")
                if item.get("type") == "assistant_message":
                    if added is None:
                        problems.append(f"event {j}: assistant message {iid} done without added/deltas")
                    else:
                        if phase.get(iid) != "part_done":
                            problems.append(f"event {j}: assistant done after {phase.get(iid)}, "
                                            "want content_part.done first")
                        final = [p.get("text") for p in item.get("content", [])]
                        if final != parts[iid]:
                            problems.append(f"event {j}: final content {final!r} != streamed {parts[iid]!r}")
                    if assistant_done is not None:
                        problems.append(f"event {j}: a second assistant message")
                    assistant_done = item
                elif item.get("type") == "workflow":
                    workflow_done_at.append(j)
                    if added is not None:
                        streamed = added.get("workflow", {}).get("tasks", [])
                        final_tasks = item.get("workflow", {}).get("tasks", [])
                        if len(final_tasks) < len(streamed):
                            problems.append(f"event {j}: workflow done with fewer tasks than streamed")
                elif item.get("type") == "user_message":
                    problems.append(f"event {j}: a user message inside the response")
                done_items.append(item)
            elif t == "thread.updated":
                seen_updated_thread = True
                th = ev.get("thread", {})
                if th.get("id") != thread_id:
                    problems.append(f"event {j}: thread.updated for {th.get('id')!r}")
                if th.get("items") != {"data": [], "has_more": False}:
                    problems.append(f"event {j}: thread.updated carries items {th.get('items')!r}")
            elif t == "client_effect":
                effects.append(ev)
            elif t == "progress_update":
                progress_seen = True
                if not (isinstance(ev.get("text"), str) and ev["text"].strip()
                        and isinstance(ev.get("icon"), str)):
                    progress.append(f"event {j}: a progress_update without text and icon: {ev}")
            elif t == "notice":
                pass
            elif t == "stream_options":
                problems.append(f"event {j}: a second stream_options")
            else:
                problems.append(f"event {j}: unexpected {t} in a normal turn")
        if open_items:
            problems.append(f"items added but never done: {sorted(open_items)}")
        if assistant_done is None and pending is None:
            problems.append("no assistant message")
        if assistant_done is not None and not assistant_text(assistant_done):
            problems.append("an empty assistant message")
        waiting = None
        if pending is not None:
            last_item = done_items[-1] if done_items else {}
            if last_item.get("type") != pending or last_item.get("status") != "pending":
                problems.append(f"the last item is a {last_item.get('type')} "
                                f"({last_item.get('status')}), want a pending {pending}")
            else:
                waiting = last_item
        else:
            problems += [f"a {d.get('type')} item in a turn that hands nothing over" for d in done_items
                         if d.get("type") in ("client_tool_call", "structured_input")]
        for w in workflow_done_at:
            if assistant_added_at is not None and w > assistant_added_at:
                problems.append(f"workflow done at event {w} after the assistant started at {assistant_added_at}")
        rep.check(f"{what}: event order (items added→updated→done with one id, deltas sum to the "
                  "final text, workflow before the answer, thread.updated last)", not problems, problems)

        widget = None
        task_ids: list[int] = []
        if tools and self.args.tools:
            change = change or ("added" if tools == "mutating" else "listed")
            workflows = [d for d in done_items if d.get("type") == "workflow"]
            tasks = [t for w in workflows for t in w.get("workflow", {}).get("tasks", [])]
            rep.check(f"{what}: a workflow item shows the tool call(s) with a readable title",
                      len(workflows) == 1 and len(tasks) == calls and all(
                          isinstance(t.get("title"), str) and t["title"].strip() for t in tasks),
                      workflows or types, kind="gateway")
            rep.check(f"{what}: a progress_update (text, icon) before each workflow task",
                      not progress, progress, kind="gateway")
            changed = [e for e in effects if e.get("name") == "tasks.changed"]
            if tools == "mutating":
                bad = [e for e in changed if not effect_ok(e, change)]
                rep.check(f"{what}: a client_effect tasks.changed {{task_ids, change: {change}}} "
                          f"per call ({calls})", len(changed) == calls and not bad,
                          bad or effects or types, kind="gateway")
                task_ids = [n for e in changed for n in e.get("data", {}).get("task_ids", [])]
            else:
                rep.check(f"{what}: no tasks.changed effect for a read-only tool", not changed,
                          effects, kind="gateway")
            widgets = [d for d in done_items if d.get("type") == "widget"]
            rep.check(f"{what}: the turn ends with one widget item (after the answer)",
                      len(widgets) == 1 and done_items[-1] is widgets[0],
                      [d.get("type") for d in done_items], kind="gateway")
            if widgets:
                widget = widgets[0]
                sdk, ours = task_widget_problems(widget, change)
                rep.check(f"{what}: the widget validates as a WidgetItem (the SDK's models, no key "
                          "they lack anywhere in the tree, nothing null, serialised as the SDK "
                          "would)", not sdk, sdk)
                shown = {r.task_id: r for r in task_lines(widget.get("copy_text"))[1]}
                if tools == "mutating":
                    ours += [f"task {n} is not shown as an open task" for n in task_ids
                             if change == "added" and getattr(shown.get(n), "mark", None) != " "]
                rep.check(f"{what}: a task widget: a Card, copy_text \"{HEADINGS[change][0]}\" "
                          "and a line per task, each open task with task.complete and "
                          "task.delete {task_id}, a done one with task.reopen", not ours,
                          ours + [json.dumps(widget)[:600]], kind="gateway")
        all_items = ([user_message] if user_message else []) + done_items
        return Turn(events, thread_id or "", all_items, assistant_done, user_message, widget,
                    task_ids, replaced, waiting, effects)

    def items_of(self, client: Client, thread_id: str, order: str = "asc") -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = None
        for _ in range(100):
            params = {"thread_id": thread_id, "order": order, "limit": 100}
            if after:
                params["after"] = after
            r = client.call("items.list", params)
            if r.status != 200:
                raise Abort(f"items.list answered {r.brief()}")
            page = r.json()
            self.background.add(f"items.list {params}", r.body.decode(), page, ITEM_PAGE)
            self.background_count += 1
            out.extend(page["data"])
            if not page.get("has_more"):
                return out
            after = page.get("after")
        raise Abort("items.list never ended")

    def thread_ids(self, client: Client) -> list[str]:
        out: list[str] = []
        after = None
        for _ in range(100):
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            r = client.call("threads.list", params)
            if r.status != 200:
                raise Abort(f"threads.list answered {r.brief()}")
            page = r.json()
            self.background.add(f"threads.list {params}", r.body.decode(), page, THREAD_PAGE)
            self.background_count += 1
            out.extend(t["id"] for t in page["data"])
            if not page.get("has_more"):
                return out
            after = page.get("after")
        raise Abort("threads.list never ended")

    def same_items(
        self, what: str, got: list[dict[str, Any]], want: list[dict[str, Any]], kind: str = "shape"
    ) -> bool:
        problems = []
        gids = [g.get("id") for g in got]
        wids = [w.get("id") for w in want]
        if gids != wids:
            problems.append(f"ids {gids} != live {wids}")
        else:
            for g, w in zip(got, want):
                if norm_item(g) != norm_item(w):
                    problems.append(f"{g.get('id')}: reloaded {json.dumps(g)[:300]} != live {json.dumps(w)[:300]}")
        return self.rep.check(what, not problems, problems, kind)

    def unchanged(self, what: str) -> None:
        """The thread still holds exactly the live items; resyncs so one failure stays one."""
        got = self.items_of(self.a, self.thread_id)
        self.same_items(what, got, self.live, kind="gateway")
        self.live = got

    # -------------------------------------------------------- sections

    def upstream_tokens(self) -> list[str]:
        env = os.environ.get("CONFORMANCE_UPSTREAM_TOKENS")
        if env:
            toks = [t.strip() for t in env.split(",") if t.strip()]
            if len(toks) != 3:
                raise SystemExit("CONFORMANCE_UPSTREAM_TOKENS needs three comma-separated tokens")
            return toks
        binary = os.environ.get("GATEWAY_BIN")
        if not binary:
            raise SystemExit("set GATEWAY_BIN (for `dev-token`) or CONFORMANCE_UPSTREAM_TOKENS")
        toks = []
        for who in ("a", "b", "c"):
            user = f"conformance-{who}-{self.run_id}"
            out = subprocess.run([binary, "dev-token", "--user", user], capture_output=True,
                                 text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"{binary} dev-token failed: {out.stderr.strip()}")
            toks.append(out.stdout.strip())
        return toks

    def sec_session(self) -> None:
        self.rep.start("session: client_secrets for users A, B and C")
        self.tokens = self.upstream_tokens()
        secrets = [self.new_secret(label, tok) for label, tok in zip("ABC", self.tokens)]
        self.a, self.b, self.c = (Client(self.http, self.args.path, s, l)
                                  for s, l in zip(secrets, "ABC"))

    def new_secret(self, label: str, upstream: str) -> str:
        r = self.http.request("POST", self.args.session_path, b"", {"Authorization": f"Bearer {upstream}"})
        ok = r.status == 200 and r.content_type.startswith("application/json")
        secret = None
        if ok:
            secret = r.json().get("client_secret")
            ok = isinstance(secret, str) and bool(secret)
        self.rep.require(f"user {label}: POST {self.args.session_path} gives a client_secret",
                         ok, r.brief(), kind="gateway")
        return secret

    def sec_auth(self) -> None:
        self.rep.start("authentication before any byte of a stream")
        anon = Client(self.http, self.args.path, None, "anonymous")
        create = json.dumps({"type": "threads.create", "params": {"input": text_input("hello")}})
        listing = json.dumps({"type": "threads.list", "params": {}})
        secret = self.a.secret
        # A middle character: the last one of a base64url signature may only carry padding bits.
        k = len(secret) - 10
        tampered = secret[:k] + ("B" if secret[k] == "A" else "A") + secret[k + 1:]
        signed_out = self.new_secret("A (a second session)", self.tokens[0])
        r = self.http.request("DELETE", self.args.session_path, None,
                              {"Authorization": f"Bearer {signed_out}"})
        self.rep.check(f"DELETE {self.args.session_path} signs the second session out", r.status == 204,
                       r.brief(), kind="gateway")
        cases = [
            ("no Authorization", None),
            ("a malformed bearer", "Bearer not-a-token"),
            ("a non-Bearer scheme", f"Basic {secret}"),
            ("a tampered client_secret", f"Bearer {tampered}"),
            ("the upstream token instead of a client_secret", f"Bearer {self.tokens[0]}"),
            ("a signed-out client_secret", f"Bearer {signed_out}"),
        ]
        for label, auth in cases:
            for name, body in (("threads.list", listing), ("threads.create", create)):
                r = anon.raw(body, auth=auth)
                self.error_answer(f"{name} with {label}: 401 envelope", r, 401)
                self.rep.check(f"{name} with {label}: WWW-Authenticate", "www-authenticate" in r.headers,
                               r.headers, kind="gateway")
        self.rep.check("no thread was created by the refused requests",
                       self.thread_ids(self.a) == [], "A has threads", kind="gateway")

    def sec_turns(self) -> None:
        self.rep.start("a conversation: threads.create, threads.add_user_message, reload")
        a = self.a
        t1 = "add a task to buy milk"
        r = a.call("threads.create", {"input": text_input(t1)})
        turn1 = self.check_turn("threads.create", r, "create", t1, tools="mutating")
        tid = turn1.thread_id
        self.thread_id = tid
        self.rep.require("threads.create: an assistant answer", turn1.assistant is not None)
        t2 = "list my tasks"
        # Explicit nulls and unknown keys must be accepted (chatkit-protocol.md 2).
        body = {
            "type": "threads.add_user_message",
            "params": {"thread_id": tid, "input": text_input(
                t2, quoted_text=None, inference_options={"model": None, "tool_choice": None})},
            "metadata": {"source": "conformance"},
            "x_unknown_field": {"ignored": True},
        }
        r = a.raw(json.dumps(body))
        turn2 = self.check_turn("threads.add_user_message (with nulls and unknown keys)", r, "add",
                                t2, thread_id=tid, tools="read")
        # An @-mention tag, a quote and the composer's model and tool pickers round-trip.
        t3 = {
            "content": [
                {"type": "input_tag", "id": "task-1", "text": "milk", "data": {"task_id": 1},
                 "group": "Tasks", "interactive": True},
                {"type": "input_text", "text": " hello"},
            ],
            "attachments": [],
            "quoted_text": "Added task 1",
            "inference_options": {"model": "conformance-model", "tool_choice": {"id": "tasks"}},
        }
        r = a.call("threads.add_user_message", {"thread_id": tid, "input": t3})
        turn3 = self.check_turn("threads.add_user_message with a tag, a quote and inference options",
                                r, "add", t3, thread_id=tid)
        if self.args.tools and turn1.widget and turn2.widget:
            n = turn1.task_ids[0] if len(turn1.task_ids) == 1 else None
            want = f"Task added\n[ ] {n}. buy milk"
            self.rep.check(f"threads.create: the widget's copy_text is {want!r}",
                           turn1.widget.get("copy_text") == want, turn1.widget.get("copy_text"),
                           kind="gateway")
            listed = [str(r) for r in task_lines(turn2.widget.get("copy_text"))[1]]
            self.rep.check(f"list my tasks: the widget lists [ ] {n}. buy milk",
                           f"[ ] {n}. buy milk" in listed, listed, kind="gateway")
        self.live = turn1.items + turn2.items + turn3.items
        self.turn1, self.turn2 = turn1, turn2

        r = a.call("threads.get_by_id", {"thread_id": tid})
        th = self.json_answer("threads.get_by_id", r, THREAD, "Thread")
        self.rep.check("threads.get_by_id: the thread's id", th.get("id") == tid, th.get("id"))
        self.rep.check("threads.get_by_id: has_more false and no after (fewer than 20 items)",
                       th["items"].get("has_more") is False and "after" not in th["items"],
                       {k: v for k, v in th["items"].items() if k != "data"})
        self.same_items("reload: threads.get_by_id items = the live stream's items (ids, order, content)",
                        th["items"]["data"], self.live)
        r = a.call("items.list", {"thread_id": tid, "order": "asc"})
        page = self.json_answer("items.list asc", r, ITEM_PAGE, "Page[ThreadItem]")
        self.same_items("reload: items.list asc = the live stream's items", page["data"], self.live)
        r = a.call("items.list", {"thread_id": tid})
        page = self.json_answer("items.list (default order)", r, ITEM_PAGE, "Page[ThreadItem]")
        self.same_items("items.list defaults to desc: the live items reversed", page["data"],
                        list(reversed(self.live)))
        # The thread.created event must describe the stored thread.
        created = turn1.events[0]["thread"]
        self.rep.check("thread.created and threads.get_by_id agree on created_at",
                       norm_item(created)["created_at"] == norm_item(th)["created_at"],
                       f"{created.get('created_at')} vs {th.get('created_at')}")

    def sec_update_feedback(self) -> None:
        self.rep.start("threads.update, threads.list, items.feedback")
        a, tid = self.a, self.thread_id
        title = f"Conformance {self.run_id}"
        r = a.call("threads.update", {"thread_id": tid, "title": title})
        th = self.json_answer("threads.update", r, THREAD, "Thread")
        self.rep.check("threads.update: returns the new title", th.get("title") == title, th.get("title"))
        self.rep.check("threads.update: the thread with an empty items page",
                       th.get("items") == {"data": [], "has_more": False}, th.get("items"))
        r = a.call("threads.get_by_id", {"thread_id": tid})
        th = self.json_answer("threads.get_by_id after rename", r, THREAD, "Thread")
        self.rep.check("threads.get_by_id: the title persisted", th.get("title") == title, th.get("title"))
        r = a.call("threads.list", {})
        page = self.json_answer("threads.list", r, THREAD_PAGE, "Page[Thread]")
        entry = [t for t in page["data"] if t.get("id") == tid]
        self.rep.check("threads.list: lists the thread with its title",
                       len(entry) == 1 and entry[0].get("title") == title, page["data"])
        self.rep.check("threads.list: entries carry an empty items page",
                       all(t.get("items") == {"data": [], "has_more": False} for t in page["data"]),
                       [t.get("items") for t in page["data"]])
        asst = self.turn1.assistant["id"]
        for kind_ in ("positive", "negative"):
            r = a.call("items.feedback", {"thread_id": tid, "item_ids": [asst], "kind": kind_})
            self.json_answer(f"items.feedback {kind_}", r, None)
        r = a.call("items.list", {"thread_id": tid, "order": "asc"})
        page = self.json_answer("items.list after feedback", r, ITEM_PAGE, "Page[ThreadItem]")
        self.same_items("feedback changes no item", page["data"], self.live)

    def sec_retry(self) -> None:
        self.rep.start("threads.retry_after_item")
        a, tid = self.a, self.thread_id
        user1 = self.turn1.user_message
        r = a.call("threads.retry_after_item", {"thread_id": tid, "item_id": user1["id"]})
        turn = self.check_turn("threads.retry_after_item", r, "retry", thread_id=tid,
                               tools="mutating")
        old_ids = {i["id"] for i in self.live} - {user1["id"]}
        reused = [i["id"] for i in turn.items if i["id"] in old_ids]
        self.rep.check("retry: the new items have new ids", not reused, reused)
        self.live = [user1] + turn.items
        r = a.call("threads.get_by_id", {"thread_id": tid})
        th = self.json_answer("threads.get_by_id after retry", r, THREAD, "Thread")
        self.same_items("retry: reload = the retried user message + the new answer (later items gone)",
                        th["items"]["data"], self.live)
        self.retry_turn = turn

        r = a.call("threads.retry_after_item", {"thread_id": tid, "item_id": turn.assistant["id"]})
        self.error_answer("retry after an assistant message: 4xx envelope before streaming", r,
                          (400, 404, 409, 422))
        r = a.call("threads.retry_after_item", {"thread_id": tid, "item_id": MISSING_ITEM})
        self.error_answer("retry after an unknown item: 404 envelope before streaming", r, 404)
        self.unchanged("the refused retries changed nothing")

    def sec_disconnect(self) -> None:
        # The local agent answers at once, so a client gone after the first bytes finds the
        # whole answer recorded; a model's answer is stopped instead (sec_stop, pass 2).
        self.rep.start("a client that disconnects mid-stream: the turn is still recorded")
        a, tid = self.a, self.thread_id
        text = f"add a task to walk the dog {self.run_id}"
        body = json.dumps({"type": "threads.add_user_message",
                           "params": {"thread_id": tid, "input": text_input(text)}}).encode()
        cls = http.client.HTTPSConnection if self.http.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.http.host, self.http.port, timeout=self.http.timeout)
        try:
            conn.request("POST", self.http.prefix + self.args.path, body=body, headers={
                "Authorization": f"Bearer {a.secret}", "Content-Type": "application/json"})
            r = conn.getresponse()
            first = r.read(6)
        finally:
            conn.close()
        self.rep.check("the stream started (200, `data: `)", r.status == 200 and first == b"data: ",
                       f"HTTP {r.status} {first!r}")
        problems: list[str] = ["nothing recorded"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            items = self.items_of(a, tid)
            users = [i for i, it in enumerate(items) if it.get("type") == "user_message"
                     and it.get("content") == [{"type": "input_text", "text": text}]]
            answers = [it for it in items[users[0] + 1:] if it.get("type") == "assistant_message"] \
                if len(users) == 1 else []
            problems = [f"{len(users)} user message(s) with the text, {len(answers)} answer(s) after it"]
            if len(users) == 1 and len(answers) == 1 and assistant_text(answers[0]).strip():
                problems = []
                break
            time.sleep(0.2)
        self.rep.check("the user message and a complete answer are recorded", not problems, problems,
                       kind="gateway")
        self.live = self.items_of(a, tid)

    def sec_validation(self) -> None:
        self.rep.start("user-facing validation: a 200 stream with one error event, nothing recorded")
        a, tid = self.a, self.thread_id
        cases = [("an empty message", ""), ("a blank message", "  \n\t "),
                 (f"a message over {self.args.max_chars} characters", "x" * (self.args.max_chars + 1))]
        for label, text in cases:
            for type_, params in (("threads.add_user_message", {"thread_id": tid, "input": text_input(text)}),
                                  ("threads.create", {"input": text_input(text)})):
                before = self.thread_ids(a)
                r = a.call(type_, params)
                what = f"{type_} with {label}"
                if r.status != 200 or not r.content_type.startswith("text/event-stream"):
                    self.rep.check(f"{what}: 200 text/event-stream", False, r.brief(), kind="gateway")
                    continue
                try:
                    events = self.parse_stream(what, r)
                except Abort:
                    continue
                ok = (len(events) == 1 and events[0].get("type") == "error"
                      and events[0].get("code") == "custom"
                      and isinstance(events[0].get("message"), str) and events[0]["message"].strip())
                self.rep.check(f"{what}: exactly one error event (code custom, a message)", ok,
                               [json.dumps(e)[:200] for e in events], kind="gateway")
                self.rep.check(f"{what}: no thread created", self.thread_ids(a) == before,
                               "threads changed", kind="gateway")
            self.unchanged(f"{label}: nothing recorded in the thread")

    def sec_unsupported(self) -> None:
        self.rep.start("unsupported request types: 400 chatkit.unsupported")
        a, tid = self.a, self.thread_id
        params = {
            "attachments.create": {"name": "a.txt", "size": 3, "mime_type": "text/plain"},
            "attachments.delete": {"attachment_id": "atc_conformance"},
            "input.transcribe": {"audio_base64": "AAAA", "mime_type": "audio/webm;codecs=opus"},
        }
        for type_ in UNSUPPORTED_TYPES:
            r = a.call(type_, params[type_])
            self.error_answer(f"{type_}: 400 chatkit.unsupported", r, 400, "chatkit.unsupported")
        # Attachments cannot be created, so any attachment id names nothing.
        for type_, params in (
            ("threads.add_user_message", {"thread_id": tid, "input": {
                **text_input("hello"), "attachments": [MISSING_ATTACHMENT]}}),
            ("threads.create", {"input": {**text_input("hello"), "attachments": [MISSING_ATTACHMENT]}}),
        ):
            before = self.thread_ids(a)
            self.error_answer(f"{type_} with an attachment id: 400/404 envelope before streaming",
                              a.call(type_, params), (400, 404))
            self.rep.check(f"{type_} with an attachment id: no thread created", self.thread_ids(a) == before,
                           "threads changed", kind="gateway")
        self.unchanged("unsupported requests changed nothing")

    def sec_malformed(self) -> None:
        self.rep.start("malformed requests: 400 envelope before streaming; lenient parsing")
        a, tid = self.a, self.thread_id
        bad = [
            ("a body that is not JSON", "{not json"),
            ("an empty body", ""),
            ("a JSON array", "[]"),
            ("a JSON string", '"threads.list"'),
            ("an object without type", '{"params":{}}'),
            ("an unknown type", '{"type":"threads.explode","params":{}}'),
            ("a non-string type", '{"type":7,"params":{}}'),
            ("threads.list without params", '{"type":"threads.list"}'),
            ("threads.create without params", '{"type":"threads.create"}'),
            ("threads.create without input", '{"type":"threads.create","params":{}}'),
            ("threads.create with content not a list",
             '{"type":"threads.create","params":{"input":{"content":"hi","attachments":[],"inference_options":{}}}}'),
            ("threads.add_user_message without thread_id",
             json.dumps({"type": "threads.add_user_message", "params": {"input": text_input("hi")}})),
            ("threads.add_user_message without input",
             json.dumps({"type": "threads.add_user_message", "params": {"thread_id": tid}})),
            ("threads.get_by_id without thread_id", '{"type":"threads.get_by_id","params":{}}'),
            ("threads.get_by_id with a numeric thread_id", '{"type":"threads.get_by_id","params":{"thread_id":5}}'),
            ("threads.list with limit \"ten\"", '{"type":"threads.list","params":{"limit":"ten"}}'),
            ("threads.list with order \"sideways\"", '{"type":"threads.list","params":{"order":"sideways"}}'),
            ("items.list without thread_id", '{"type":"items.list","params":{}}'),
            ("threads.update without title",
             json.dumps({"type": "threads.update", "params": {"thread_id": tid}})),
            ("threads.delete without thread_id", '{"type":"threads.delete","params":{}}'),
            ("items.feedback with kind \"meh\"",
             json.dumps({"type": "items.feedback", "params": {"thread_id": tid, "item_ids": [], "kind": "meh"}})),
            ("threads.retry_after_item without item_id",
             json.dumps({"type": "threads.retry_after_item", "params": {"thread_id": tid}})),
            ("threads.custom_action without action",
             json.dumps({"type": "threads.custom_action", "params": {"thread_id": tid}})),
            ("threads.sync_custom_action with a numeric action type",
             json.dumps({"type": "threads.sync_custom_action",
                         "params": {"thread_id": tid, "action": {"type": 7, "payload": {}}}})),
        ]
        before = self.thread_ids(a)
        for label, body in bad:
            self.error_answer(f"{label}: 400 envelope", a.raw(body), 400)
        self.rep.check("malformed requests created no thread", self.thread_ids(a) == before,
                       "threads changed", kind="gateway")
        self.unchanged("malformed requests changed no item")

        r = a.raw(json.dumps({"type": "threads.list", "params": {}}), content_type=None)
        self.json_answer("threads.list without Content-Type", r, THREAD_PAGE, "Page[Thread]")
        r = a.raw(json.dumps({"type": "threads.get_by_id", "params": {"thread_id": tid}}),
                  content_type="text/plain;charset=UTF-8")
        self.json_answer("threads.get_by_id with Content-Type text/plain", r, THREAD, "Thread")
        body = {"type": "threads.list", "params": {"limit": None, "after": None, "x_new": 1},
                "metadata": {"k": "v"}, "x_extra": [1, 2]}
        r = a.raw(json.dumps(body))
        self.json_answer("threads.list with null params and unknown keys", r, THREAD_PAGE, "Page[Thread]")
        body = {"type": "items.list", "params": {"thread_id": tid, "limit": None, "after": None}}
        r = a.raw(json.dumps(body))
        self.json_answer("items.list with null params", r, ITEM_PAGE, "Page[ThreadItem]")

    def thread_scoped(self, tid: str, item: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            ("threads.get_by_id", {"thread_id": tid}),
            ("items.list", {"thread_id": tid}),
            ("threads.update", {"thread_id": tid, "title": "hijacked"}),
            ("items.feedback", {"thread_id": tid, "item_ids": [item], "kind": "negative"}),
            ("threads.add_user_message", {"thread_id": tid, "input": text_input("add a task to hijack")}),
            ("threads.retry_after_item", {"thread_id": tid, "item_id": item}),
            ("threads.add_client_tool_output", {"thread_id": tid, "result": {"highlighted": [1]}}),
            ("threads.add_structured_input", {"thread_id": tid, "item_id": item, "input": {
                "status": "answered", "answers": {"task": {"values": ["1. buy milk"]}}}}),
            ("threads.delete", {"thread_id": tid}),
        ]

    def sec_not_found(self) -> None:
        self.rep.start("unknown threads and items: 404 envelope before streaming")
        a, tid = self.a, self.thread_id
        for type_, params in self.thread_scoped(MISSING_THREAD, MISSING_ITEM):
            self.error_answer(f"{type_} on an unknown thread: 404 thread.not_found", a.call(type_, params),
                              404, "thread.not_found")
        r = a.call("items.feedback", {"thread_id": tid, "item_ids": [MISSING_ITEM], "kind": "positive"})
        self.error_answer("items.feedback on an unknown item: 4xx envelope", r, (400, 404))
        r = a.call("items.list", {"thread_id": tid, "after": MISSING_ITEM})
        self.error_answer("items.list with an unknown cursor: 4xx envelope", r, (400, 404))
        r = a.call("threads.list", {"after": MISSING_THREAD})
        self.error_answer("threads.list with an unknown cursor: 4xx envelope", r, (400, 404))

    def sec_isolation(self) -> None:
        self.rep.start("isolation: user B cannot see or touch user A's thread")
        a, b, tid = self.a, self.b, self.thread_id
        item = self.turn1.user_message["id"]
        r = b.call("threads.list", {})
        page = self.json_answer("user B: threads.list", r, THREAD_PAGE, "Page[Thread]")
        self.rep.check("user B: threads.list does not show A's thread",
                       tid not in [t.get("id") for t in page["data"]], page["data"], kind="gateway")
        for type_, params in self.thread_scoped(tid, item):
            self.error_answer(f"user B: {type_} on A's thread: 404 thread.not_found",
                              b.call(type_, params), 404, "thread.not_found")
        widget = self.turn1.widget or {"id": MISSING_ITEM}
        for type_ in ("threads.custom_action", "threads.sync_custom_action"):
            click = {"thread_id": tid, "item_id": widget["id"],
                     "action": {"type": "task.complete", "payload": {"task_id": 1}}}
            self.error_answer(f"user B: {type_} on A's widget: 404 thread.not_found",
                              b.call(type_, click), 404, "thread.not_found")
        r = a.call("threads.get_by_id", {"thread_id": tid})
        th = self.json_answer("user A: threads.get_by_id after B's attempts", r, THREAD, "Thread")
        self.rep.check("user A: title unchanged", th.get("title") == f"Conformance {self.run_id}",
                       th.get("title"), kind="gateway")
        self.unchanged("user A: items unchanged by B")
        text = "add a task to call mom"
        r = b.call("threads.create", {"input": text_input(text)})
        bturn = self.check_turn("user B: threads.create", r, "create", text, tools="mutating")
        self.rep.check("user A: threads.list does not show B's thread",
                       bturn.thread_id not in self.thread_ids(a), "listed", kind="gateway")
        r = a.call("threads.get_by_id", {"thread_id": bturn.thread_id})
        self.error_answer("user A: threads.get_by_id on B's thread: 404 thread.not_found", r, 404,
                          "thread.not_found")

    # -------------------------------------------------------- task widgets

    def say(self, what: str, *titles: str) -> str:
        """A message that makes the agent call task tools: the local agent's words, or the
        script of fake_openai.py (--agent-faults, the second pass)."""
        fake = self.args.agent_faults
        if what == "list":
            return "conformance:list-tasks" if fake else "list my tasks"
        if len(titles) > 1:
            return "conformance:add-two " + " | ".join(titles)
        return f"conformance:add-task {titles[0]}" if fake else f"add a task to {titles[0]}"

    def listed(self, what: str, client: Client, tid: str, live: list[dict[str, Any]]) -> dict[int, str]:
        """The user's tasks, as a listing turn's widget shows them: task id -> its line."""
        text = self.say("list")
        r = client.call("threads.add_user_message", {"thread_id": tid, "input": text_input(text)})
        turn = self.check_turn(what, r, "add", text, thread_id=tid, tools="read")
        live.extend(turn.items)
        rows = task_lines((turn.widget or {}).get("copy_text"))[1]
        return {row.task_id: str(row) for row in rows}

    def click(
        self, what: str, tid: str, widget: dict[str, Any], kind: str, task_id: int,
        live: list[dict[str, Any]], change: str | None, copy_text: str,
        payload: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A click streamed (threads.custom_action): a workflow item recording the call, the
        widget replaced in place, a tasks.changed effect; `change` None: nothing to do, only
        the widget. Updates `live` and returns the widget as replaced."""
        rep = self.rep
        params = {"thread_id": tid, "item_id": widget["id"],
                  "action": {"type": kind, "payload": payload or {"task_id": task_id}}}
        events = self.parse_stream(what, self.a.call("threads.custom_action", params))
        types = [e.get("type") for e in events]
        # The SDK opens every stream with stream_options, an action's too; the gateway sends
        # none for an action (nothing there to cancel). Either is accepted.
        body = types[1:] if types[:1] == ["stream_options"] else types
        want = ["thread.item.done", "thread.item.replaced", "client_effect"] if change else \
            ["thread.item.replaced"]
        rep.check(f"{what}: streams {', '.join(want)}", body == want, types, kind="gateway")
        ids = {i.get("id") for i in live}
        done = [e["item"] for e in events if e.get("type") == "thread.item.done"]
        bad = [d for d in done if d.get("type") != "workflow" or d.get("thread_id") != tid
               or d.get("id") in ids or not d.get("workflow", {}).get("tasks")
               or not all(isinstance(t.get("title"), str) and t["title"].strip()
                          for t in d["workflow"]["tasks"])]
        if change:
            rep.check(f"{what}: the done item is a new workflow item recording the call, with a "
                      "readable title", len(done) == 1 and not bad, done, kind="gateway")
        replaced = [e["item"] for e in events if e.get("type") == "thread.item.replaced"]
        rep.require(f"{what}: thread.item.replaced with the widget", len(replaced) == 1
                    and isinstance(replaced[0], dict), types, kind="gateway")
        new = replaced[0]
        same = [f"{k}: {new.get(k)!r} != {widget.get(k)!r}" for k in ("id", "thread_id", "created_at", "type")
                if new.get(k) != widget.get(k)]
        rep.check(f"{what}: the replaced widget keeps the widget's id, thread and created_at",
                  not same, same, kind="gateway")
        sdk, ours = task_widget_problems(new)
        rep.check(f"{what}: the replaced widget validates as a WidgetItem (no key the SDK lacks in "
                  "the tree)", not sdk, sdk)
        rep.check(f"{what}: the replaced widget's rows and actions agree", not ours,
                  ours + [json.dumps(new)[:600]], kind="gateway")
        rep.check(f"{what}: copy_text {copy_text!r}", new.get("copy_text") == copy_text,
                  new.get("copy_text"), kind="gateway")
        effects = [e for e in events if e.get("type") == "client_effect"]
        if change:
            want_effect = {"type": "client_effect", "name": "tasks.changed",
                           "data": {"task_ids": [task_id], "change": change}}
            rep.check(f"{what}: client_effect tasks.changed {json.dumps(want_effect['data'])}",
                      effects == [want_effect], effects, kind="gateway")
        else:
            rep.check(f"{what}: no effect (nothing changed)", not effects, effects, kind="gateway")
        live[:] = [new if i.get("id") == new.get("id") else i for i in live] + done
        return new

    def reload_shows(self, what: str, tid: str, live: list[dict[str, Any]], kind: str = "shape") -> None:
        """threads.get_by_id and items.list show `live` (widgets as replaced), and nothing of
        the note the model gets of a click."""
        rep = self.rep
        r = self.a.call("threads.get_by_id", {"thread_id": tid})
        th = self.json_answer(f"{what}: threads.get_by_id", r, THREAD, "Thread")
        bodies = [r.body.decode("utf-8", "replace")]
        self.same_items(f"{what}: threads.get_by_id shows the items as streamed, widgets as replaced",
                        th["items"]["data"], live[:20], kind)
        r = self.a.call("items.list", {"thread_id": tid, "order": "asc", "limit": 100})
        page = self.json_answer(f"{what}: items.list", r, ITEM_PAGE, "Page[ThreadItem]")
        bodies.append(r.body.decode("utf-8", "replace"))
        self.same_items(f"{what}: items.list shows the items as streamed, widgets as replaced",
                        page["data"], live, kind)
        leaks = [m.group(0) for b in bodies for m in HIDDEN_TEXT.finditer(b)]
        leaks += [i.get("type") for i in th["items"]["data"] + page["data"]
                  if i.get("type") not in SHOWN_ITEM_TYPES]
        rep.check(f"{what}: no hidden item and no note of the click", not leaks, leaks,
                  kind="gateway")

    def sec_widgets(self) -> None:
        self.rep.start("task widgets: the widget a turn ends with, clicks on it, reload")
        rep, a, fake = self.rep, self.a, self.args.agent_faults
        title1, title2, title3 = "water the plants", "feed the cat", "call the plumber"
        text = self.say("add", title1)
        r = a.call("threads.create", {"input": text_input(text)})
        turn = self.check_turn("add a task", r, "create", text, tools="mutating")
        tid = turn.thread_id
        rep.require("add a task: a widget and the task's id", turn.widget is not None
                    and len(turn.task_ids) == 1, turn.task_ids, kind="gateway")
        n1, w1 = turn.task_ids[0], turn.widget
        live = list(turn.items)
        rep.check(f"add a task: copy_text \"Task added\\n[ ] {n1}. {title1}\"",
                  w1.get("copy_text") == f"Task added\n[ ] {n1}. {title1}", w1.get("copy_text"),
                  kind="gateway")
        # The second pass adds two tasks in one step of the model: two calls, two progress
        # updates, two effects, one widget with both.
        titles = (title2, title3) if fake else (title2,)
        text = self.say("add", *titles)
        r = a.call("threads.add_user_message", {"thread_id": tid, "input": text_input(text)})
        label = "add two tasks in one turn" if fake else "add a second task"
        turn = self.check_turn(label, r, "add", text, thread_id=tid, tools="mutating",
                               calls=len(titles))
        rep.require("a second widget and its task ids", turn.widget is not None
                    and len(turn.task_ids) == len(titles), turn.task_ids, kind="gateway")
        n2, w2 = turn.task_ids[0], turn.widget
        live += turn.items
        heading = "Tasks added" if fake else "Task added"
        want = heading + "".join(f"\n[ ] {n}. {t}" for n, t in zip(turn.task_ids, titles))
        rep.check(f"{label}: copy_text {want!r}", w2.get("copy_text") == want,
                  w2.get("copy_text"), kind="gateway")
        tasks = self.listed("list the tasks", a, tid, live)
        rep.check("the listing shows both tasks open",
                  tasks.get(n1) == f"[ ] {n1}. {title1}" and tasks.get(n2) == f"[ ] {n2}. {title2}",
                  tasks, kind="gateway")

        def copy(mark: str) -> str:
            suffix = " (deleted)" if mark == "-" else ""
            return f"Task added\n[{mark}] {n1}. {title1}{suffix}"

        w = self.click("task.complete on an open task", tid, w1, "task.complete", n1, live,
                       "completed", copy("x"))
        self.reload_shows("reload after the click", tid, live)
        again = self.click("the same click again", tid, w1, "task.complete", n1, live, "completed",
                           copy("x"))
        rep.check("the same click again: the same widget, the task still done", again == w,
                  json.dumps(again)[:300], kind="gateway")
        self.click("task.reopen on the done task", tid, w1, "task.reopen", n1, live, "reopened",
                   copy(" "))
        self.click("task.reopen again", tid, w1, "task.reopen", n1, live, "reopened", copy(" "))
        tasks = self.listed("list after reopening twice", a, tid, live)
        rep.check("reopened twice: the task is open", tasks.get(n1) == f"[ ] {n1}. {title1}",
                  tasks, kind="gateway")
        gone = self.click("task.delete", tid, w1, "task.delete", n1, live, "deleted", copy("-"))
        rep.check("task.delete: the row is struck out and has no control left",
                  not any(a_.get("payload", {}).get("task_id") == n1 for _, a_ in widget_actions(gone)),
                  json.dumps(gone)[:300], kind="gateway")
        again = self.click("task.delete again", tid, w1, "task.delete", n1, live, None, copy("-"))
        rep.check("task.delete again: the same widget", again == gone, json.dumps(again)[:300],
                  kind="gateway")
        self.reload_shows("reload after the clicks", tid, live)

        # The same click answered as JSON.
        click = {"thread_id": tid, "item_id": w2["id"],
                 "action": {"type": "task.complete", "payload": {"task_id": n2}}}
        r = a.call("threads.sync_custom_action", click)
        obj = self.json_answer("threads.sync_custom_action", r, SYNC_ACTION, "SyncCustomActionResponse")
        updated = obj.get("updated_item") if isinstance(obj, dict) else None
        rep.require("threads.sync_custom_action: {\"updated_item\": <the widget>}",
                    isinstance(updated, dict) and set(obj) == {"updated_item"}, obj, kind="gateway")
        sdk, ours = task_widget_problems(updated)
        rep.check("threads.sync_custom_action: updated_item validates as a WidgetItem (no key the "
                  "SDK lacks in the tree)", not sdk, sdk)
        want = want.replace(f"[ ] {n2}.", f"[x] {n2}.")
        ours += [f"{k} {updated.get(k)!r} != {w2.get(k)!r}" for k in ("id", "created_at")
                 if updated.get(k) != w2.get(k)]
        if updated.get("copy_text") != want:
            ours.append(f"copy_text {updated.get('copy_text')!r}, want {want!r}")
        rep.check(f"threads.sync_custom_action: the widget, its task {n2} done", not ours, ours,
                  kind="gateway")
        items = self.items_of(a, tid)
        expected = [updated if i.get("id") == w2["id"] else i for i in live]
        extra = [i.get("type") for i in items[len(expected):]]
        self.same_items("threads.sync_custom_action: reload shows the widget as answered (and at "
                        "most workflow items after)", items[:len(expected)], expected, kind="gateway")
        rep.check("threads.sync_custom_action: nothing but workflow items added",
                  all(t == "workflow" for t in extra), extra, kind="gateway")
        live = items
        # A client may merge the controls' values into the payload.
        w2 = self.click("task.reopen with a form value merged into the payload", tid, w2,
                        "task.reopen", n2, live, "reopened", want.replace(f"[x] {n2}.", f"[ ] {n2}."),
                        payload={"task_id": n2, f"reopen_task_{n2}": False})
        tasks = self.listed("list after the clicks", a, tid, live)
        rep.check(f"the listing: task {n1} gone, task {n2} open",
                  n1 not in tasks and tasks.get(n2) == f"[ ] {n2}. {title2}", tasks, kind="gateway")
        self.widgets = {"thread": tid, "widget": w2, "task": n2, "live": live, "tasks": tasks,
                        "user_message": live[0]["id"],
                        "workflow": next(i["id"] for i in live if i.get("type") == "workflow")}

    def sec_widget_refusals(self) -> None:
        self.rep.start("widget actions refused before any stream: 4xx envelopes, nothing changes")
        rep, a, b = self.rep, self.a, self.b
        ctx = getattr(self, "widgets", None)
        rep.require("the task widget section left a thread and a widget", ctx is not None)
        tid, widget, n, live = ctx["thread"], ctx["widget"], ctx["task"], ctx["live"]
        # One more task of A's, in a widget of its own: the first widget does not show it.
        text = self.say("add", "repot the fern")
        r = a.call("threads.add_user_message", {"thread_id": tid, "input": text_input(text)})
        turn = self.check_turn("add a task not in the widget", r, "add", text, thread_id=tid,
                               tools="mutating")
        live += turn.items
        other = turn.task_ids[0] if turn.task_ids else 10**6

        def act(action: Any, item: Any = widget["id"], thread: str = tid, **extra: Any) -> dict[str, Any]:
            params = {"thread_id": thread, "action": action, **extra}
            if item is not None:
                params["item_id"] = item
            return params

        def complete(payload: Any) -> dict[str, Any]:
            return {"type": "task.complete", "payload": payload}

        cases = [
            ("an unknown action type", act({"type": "task.explode", "payload": {"task_id": n}}),
             400, "action.unknown"),
            ("an action type of 10,000 characters", act({"type": "x" * 10_000, "payload": {}}),
             400, "action.unknown"),
            ("no item_id", act(complete({"task_id": n}), item=None), 400, "action.invalid"),
            ("item_id null", act(complete({"task_id": n}), item=None, item_id=None), 400,
             "action.invalid"),
            ("no payload", act({"type": "task.complete"}), 400, "action.invalid"),
            ("a payload that is a list", act(complete([n])), 400, "action.invalid"),
            ("a payload that is a string", act(complete(f"task {n}")), 400, "action.invalid"),
            ("a payload without task_id", act(complete({})), 400, "action.invalid"),
            ("task_id a string", act(complete({"task_id": str(n)})), 400, "action.invalid"),
            ("task_id null", act(complete({"task_id": None})), 400, "action.invalid"),
            ("task_id true", act(complete({"task_id": True})), 400, "action.invalid"),
            ("task_id 0", act(complete({"task_id": 0})), 400, "action.invalid"),
            ("task_id negative", act(complete({"task_id": -n})), 400, "action.invalid"),
            ("task_id fractional", act(complete({"task_id": n + 0.5})), 400, "action.invalid"),
            ("task_id 2^40", act(complete({"task_id": 2 ** 40})), 400, "action.invalid"),
            ("task_id 2^70", act(complete({"task_id": 2 ** 70})), 400, "action.invalid"),
            ("task_id 1e300", act(complete({"task_id": 1e300})), 400, "action.invalid"),
            ("a payload over 2 KiB", act(complete({"task_id": n, "note": "y" * 4000})), 400,
             "action.invalid"),
            ("a task of the user's the widget does not show", act(complete({"task_id": other})),
             400, "action.invalid"),
            ("a task nobody has", act(complete({"task_id": 999_999})), 400, "action.invalid"),
            ("item_id naming the user's message", act(complete({"task_id": n}),
                                                      item=ctx["user_message"]), 404, "item.not_found"),
            ("item_id naming a workflow item", act(complete({"task_id": n}), item=ctx["workflow"]),
             404, "item.not_found"),
            ("item_id naming no item", act(complete({"task_id": n}), item=MISSING_ITEM), 404,
             "item.not_found"),
            ("an unknown thread", act(complete({"task_id": n}), thread=MISSING_THREAD), 404,
             "thread.not_found"),
        ]
        for label, params, status, code in cases:
            for type_ in ("threads.custom_action", "threads.sync_custom_action"):
                r = a.call(type_, params)
                self.error_answer(f"{type_} with {label}: {status} {code}", r, status, code)
                if label.startswith("an action type of"):
                    try:
                        message = r.json()["error"]["message"]
                    except (ValueError, KeyError, TypeError):
                        message = ""
                    rep.check(f"{type_} with {label}: the message does not echo it whole",
                              len(message) < 1000, f"{len(message)} characters", kind="gateway")

        # Another user: A's thread is not B's, and A's widget is in no thread of B's.
        text = "hello"
        r = b.call("threads.create", {"input": text_input(text)})
        bturn = self.check_turn("user B: a thread of B's", r, "create", text)
        rep.check("user B: a turn that touches no task has no widget and no workflow",
                  not [i for i in bturn.items if i.get("type") in ("widget", "workflow")],
                  [i.get("type") for i in bturn.items], kind="gateway")
        for type_ in ("threads.custom_action", "threads.sync_custom_action"):
            r = b.call(type_, act(complete({"task_id": n})))
            self.error_answer(f"user B: {type_} on A's thread: 404 thread.not_found", r, 404,
                              "thread.not_found")
            r = b.call(type_, act(complete({"task_id": n}), thread=bturn.thread_id))
            self.error_answer(f"user B: {type_} with A's widget in B's thread: 404 item.not_found",
                              r, 404, "item.not_found")

        self.same_items("the refused actions changed no item", self.items_of(a, tid), live,
                        kind="gateway")
        tasks = self.listed("list after the refused actions", a, tid, live)
        want = {**ctx["tasks"], **({other: f"[ ] {other}. repot the fern"} if turn.task_ids else {})}
        rep.check("the refused actions changed none of A's tasks", tasks == want,
                  f"{tasks} != {want}", kind="gateway")


    def page_walk(
        self, what: str, fetch: Callable[[dict[str, Any]], Resp], adapter: TypeAdapter,
        model: str, want: list[str], limit: int,
    ) -> None:
        """Walks every page with `limit`, following `after`; checks cursors and the union."""
        seen: list[str] = []
        problems: list[str] = []
        after = None
        issues = ShapeIssues()
        for n in range(len(want) + 2):
            params: dict[str, Any] = {"limit": limit}
            if after is not None:
                params["after"] = after
            r = fetch(params)
            if r.status != 200:
                problems.append(f"page {n}: {r.brief()}")
                break
            page = r.json()
            issues.add(f"page {n}", r.body.decode(), page, adapter)
            ids = [d.get("id") for d in page.get("data", [])]
            seen.extend(ids)
            remaining = len(want) - len(seen)
            if len(ids) != min(limit, len(want) - (len(seen) - len(ids))):
                problems.append(f"page {n}: {len(ids)} elements with limit {limit}")
            if page.get("has_more") != (remaining > 0):
                problems.append(f"page {n}: has_more {page.get('has_more')} with {remaining} remaining")
            if page.get("has_more"):
                if page.get("after") != (ids[-1] if ids else None):
                    problems.append(f"page {n}: after {page.get('after')!r} is not the last id {ids[-1:]}")
                after = page.get("after")
                if after is None:
                    break
            else:
                if "after" in page:
                    problems.append(f"page {n}: after {page.get('after')!r} on the last page")
                break
        if seen != want:
            problems.append(f"walked {seen} != expected {want}")
        what = f"{what} with limit {limit}"
        issues.report(self.rep, what, model)
        self.rep.check(f"{what}: pages follow `after` (= last id), has_more right, "
                       "the union is every element once in order", not problems, problems)

    def sec_paging(self) -> None:
        n = self.args.threads
        self.rep.start(f"paging: user C with {n} threads, and a thread with 11 turns")
        c = self.c
        created: list[str] = []
        stream_problems: list[str] = []
        for k in range(n):
            r = c.call("threads.create", {"input": text_input(f"hello number {k}")})
            events, texts, problems = split_sse(r.body)
            if r.status != 200 or problems or events[0].get("type") != "thread.created":
                stream_problems.append(f"create {k}: {problems} {r.brief()}")
                continue
            issues = ShapeIssues()
            for i, (ev, text) in enumerate(zip(events, texts)):
                issues.add(f"create {k} event {i}", text, ev, EVENT)
            stream_problems += issues.model + issues.unknown + issues.missing + issues.nulls + issues.times
            if any(ev.get("type") == "error" for ev in events):
                stream_problems.append(f"create {k}: an error event")
            created.append((events[0].get("thread") or {}).get("id"))
        self.rep.require(f"{n} threads.create streams, all valid", not stream_problems, stream_problems)
        desc = list(reversed(created))

        def threads(extra: dict[str, Any]) -> Resp:
            return c.call("threads.list", extra)

        r = threads({})
        page = self.json_answer("threads.list, no limit", r, THREAD_PAGE, "Page[Thread]")
        ids = [t["id"] for t in page["data"]]
        self.rep.check("threads.list: default limit 20, newest first, has_more, after = last id",
                       ids == desc[:20] and page.get("has_more") is True and page.get("after") == ids[-1],
                       f"got {len(ids)} ids, has_more {page.get('has_more')}, after {page.get('after')}")
        r = threads({"order": "asc", "limit": 5})
        page = self.json_answer("threads.list asc", r, THREAD_PAGE, "Page[Thread]")
        self.rep.check("threads.list asc: oldest first",
                       [t["id"] for t in page["data"]] == created[:5], [t["id"] for t in page["data"]])
        r = threads({"limit": 1000})
        page = self.json_answer("threads.list limit 1000", r, THREAD_PAGE, "Page[Thread]")
        got = [t["id"] for t in page["data"]]
        self.rep.check("threads.list limit 1000: clamped to 100",
                       got == desc[:100] and page.get("has_more") == (n > 100)
                       and page.get("after", None) == (got[-1] if n > 100 else None),
                       f"{len(got)} elements, has_more {page.get('has_more')}", kind="gateway")
        if n > 100 and len(got) == 100:
            r = threads({"limit": 1000, "after": got[-1]})
            page = self.json_answer("threads.list after the clamped page", r, THREAD_PAGE, "Page[Thread]")
            self.rep.check("threads.list: the clamped page's cursor gives the rest",
                           [t["id"] for t in page["data"]] == desc[100:] and page.get("has_more") is False,
                           [t["id"] for t in page["data"]])
        for limit in (0, -3):
            r = threads({"limit": limit})
            ok = r.status == 200
            detail = r.brief()
            if ok:
                got = [t["id"] for t in r.json()["data"]]
                # The SDK reads 0 as "default"; the gateway clamps to 1..100. Both are fine.
                ok = got in (desc[:1], desc[:20]) if limit == 0 else got == desc[:1]
                detail = f"{len(got)} elements"
            self.rep.check(f"threads.list limit {limit}: clamped (or the default for 0)", ok, detail,
                           kind="gateway")
        for order, want in (("desc", desc), ("asc", created)):
            for limit in (7, 1):
                self.page_walk(f"threads.list {order} walk", lambda p, o=order: threads({**p, "order": o}),
                               THREAD_PAGE, "Page[Thread]", want, limit)

        text = "add a task to water plants"
        r = c.call("threads.create", {"input": text_input(text)})
        turn = self.check_turn("paging thread: threads.create", r, "create", text)
        tid = turn.thread_id
        live = list(turn.items)
        problems = []
        for k in range(10):
            r = c.call("threads.add_user_message", {"thread_id": tid, "input": text_input(f"add a task to buy item {k}")})
            events, texts, bad = split_sse(r.body)
            for i, (ev, t) in enumerate(zip(events, texts)):
                self.background.add(f"paging turn {k} event {i}", t, ev, EVENT)
            self.background_count += len(events)
            live += [e.get("item") for e in events if e.get("type") == "thread.item.done"]
            if r.status != 200 or bad or any(e.get("type") == "error" for e in events):
                problems.append(f"{bad} {r.brief()}")
        self.rep.require("10 more turns on the paging thread", not problems, problems)
        ids = [i["id"] for i in live]
        self.rep.require("the paging thread has more than 20 items", len(ids) > 20, len(ids))
        r = c.call("threads.get_by_id", {"thread_id": tid})
        th = self.json_answer("threads.get_by_id of a long thread", r, THREAD, "Thread")
        got = [i["id"] for i in th["items"]["data"]]
        self.rep.check("threads.get_by_id: the oldest 20 items ascending, has_more, after = last id",
                       got == ids[:20] and th["items"].get("has_more") is True
                       and th["items"].get("after") == ids[19], f"{got} vs {ids[:20]}")
        self.same_items("threads.get_by_id: items as streamed", th["items"]["data"], live[:20])
        r = c.call("items.list", {"thread_id": tid})
        page = self.json_answer("items.list, no limit", r, ITEM_PAGE, "Page[ThreadItem]")
        got = [i["id"] for i in page["data"]]
        rev = list(reversed(ids))
        self.rep.check("items.list: default limit 20, newest first, has_more, after = last id",
                       got == rev[:20] and page.get("has_more") is True and page.get("after") == got[-1],
                       f"{len(got)} ids")
        r = c.call("items.list", {"thread_id": tid, "limit": 1000, "order": "asc"})
        page = self.json_answer("items.list limit 1000", r, ITEM_PAGE, "Page[ThreadItem]")
        self.same_items("items.list limit 1000 asc: every item as streamed", page["data"], live)
        for limit in (0, -3):
            r = c.call("items.list", {"thread_id": tid, "limit": limit})
            ok = r.status == 200
            detail = r.brief()
            if ok:
                got = [i["id"] for i in r.json()["data"]]
                ok = got in (rev[:1], rev[:20]) if limit == 0 else got == rev[:1]
                detail = f"{len(got)} elements"
            self.rep.check(f"items.list limit {limit}: clamped (or the default for 0)", ok, detail,
                           kind="gateway")
        for order, want in (("asc", ids), ("desc", rev)):
            for limit in (5, 3):
                self.page_walk(f"items.list {order} walk", lambda p, o=order: c.call(
                    "items.list", {**p, "thread_id": tid, "order": o}), ITEM_PAGE, "Page[ThreadItem]",
                    want, limit)

    def sec_delete(self) -> None:
        self.rep.start("threads.delete")
        a, tid = self.a, self.thread_id
        r = a.call("threads.delete", {"thread_id": tid})
        self.json_answer("threads.delete", r, None)
        self.error_answer("threads.get_by_id after delete: 404 thread.not_found",
                          a.call("threads.get_by_id", {"thread_id": tid}), 404, "thread.not_found")
        self.error_answer("items.list after delete: 404 thread.not_found",
                          a.call("items.list", {"thread_id": tid}), 404, "thread.not_found")
        self.error_answer("threads.delete again: 404 thread.not_found",
                          a.call("threads.delete", {"thread_id": tid}), 404, "thread.not_found")
        self.rep.check("threads.list no longer shows it", tid not in self.thread_ids(a), "still listed")

    def upload(self, url: str, name: str, mime: str, data: bytes) -> Resp:
        """What the widget does with an upload_descriptor: a multipart POST of the file."""
        u = urllib.parse.urlsplit(url)
        boundary = f"conformance{uuid.uuid4().hex}"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n").encode() + data + \
            f"\r\n--{boundary}--\r\n".encode()
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname, u.port or (443 if u.scheme == "https" else 80), timeout=self.args.timeout)
        try:
            conn.request("POST", u.path + (f"?{u.query}" if u.query else ""), body=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            r = conn.getresponse()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def fetch(self, url: str) -> Resp:
        u = urllib.parse.urlsplit(url)
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname, u.port or (443 if u.scheme == "https" else 80), timeout=self.args.timeout)
        try:
            conn.request("GET", u.path + (f"?{u.query}" if u.query else ""))
            r = conn.getresponse()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def attachment(self, client: Client, name: str, mime: str, data: bytes) -> dict[str, Any]:
        """attachments.create, then the upload its descriptor asks for; the uploaded one."""
        r = client.call("attachments.create", {"name": name, "size": len(data), "mime_type": mime})
        created = self.json_answer(f"attachments.create {mime}", r, ATTACHMENT, "Attachment")
        desc = created.get("upload_descriptor") or {}
        self.rep.require(f"attachments.create {mime}: an upload_descriptor (url, POST)",
                         isinstance(desc.get("url"), str) and desc.get("method") == "POST", created,
                         kind="gateway")
        r = self.upload(desc["url"], name, mime, data)
        done = self.json_answer(f"upload {mime} to the descriptor's url", r, ATTACHMENT, "Attachment")
        self.rep.check(f"upload {mime}: the same attachment, no descriptor left",
                       done.get("id") == created.get("id") and "upload_descriptor" not in done, done,
                       kind="gateway")
        return done

    def sec_attachments(self) -> None:
        self.rep.start("attachments: create, upload, send, list, delete; dictation")
        a, b = self.a, self.b
        text = self.attachment(a, "groceries.txt", "text/plain", b"milk\neggs\n")
        image = self.attachment(a, "list.png", "image/png", PNG_BYTES)
        self.rep.check("a text file is a `file`, an image an `image` with a preview_url",
                       text.get("type") == "file" and "preview_url" not in text
                       and image.get("type") == "image" and isinstance(image.get("preview_url"), str),
                       [text, image], kind="gateway")
        shown = self.fetch(image["preview_url"])
        self.rep.check("the preview_url shows the image (image/png, nosniff)",
                       shown.status == 200 and shown.content_type == "image/png"
                       and shown.body == PNG_BYTES
                       and shown.headers.get("x-content-type-options") == "nosniff",
                       shown.brief(), kind="gateway")

        ids = [text["id"], image["id"]]
        r = a.call("threads.create", {"input": text_input("add these", attachments=ids)})
        events = self.parse_stream("threads.create with two attachments", r)
        created = [e for e in events if e.get("type") == "thread.created"]
        self.rep.require("threads.create with attachments: thread.created", bool(created), events[:2],
                         kind="gateway")
        tid = created[0]["thread"]["id"]
        echoed = [e["item"] for e in events
                  if e.get("type") == "thread.item.done" and e["item"].get("type") == "user_message"]
        echo_ids = [x.get("id") for x in (echoed[0].get("attachments") or [])] if echoed else []
        self.rep.check("the echoed user message carries both attachments, in order",
                       echo_ids == ids, echoed[:1], kind="gateway")

        r = a.call("items.list", {"thread_id": tid, "order": "asc"})
        page = self.json_answer("items.list of a message with attachments", r, ITEM_PAGE, "Page[ThreadItem]")
        users = [i for i in page.get("data", []) if i.get("type") == "user_message"]
        listed = (users[0].get("attachments") or []) if users else []
        self.rep.check("items.list: the user message shows its attachments with thread_id",
                       [x.get("id") for x in listed] == ids
                       and all(x.get("thread_id") == tid for x in listed), listed, kind="gateway")
        previews = [x["preview_url"] for x in listed if x.get("type") == "image" and "preview_url" in x]
        self.rep.check("items.list: the image's preview_url works", bool(previews)
                       and self.fetch(previews[0]).status == 200, previews, kind="gateway")
        r = a.call("threads.get_by_id", {"thread_id": tid})
        th = self.json_answer("threads.get_by_id of a thread with attachments", r, THREAD, "Thread")
        first = (th.get("items", {}).get("data") or [{}])[0]
        self.rep.check("threads.get_by_id: the user message shows its attachments",
                       [x.get("id") for x in first.get("attachments") or []] == ids, first, kind="gateway")

        # Isolation: B can neither send, nor delete, A's attachment.
        before = self.thread_ids(b)
        r = b.call("threads.create", {"input": text_input("mine now", attachments=[text["id"]])})
        self.error_answer("user B: threads.create with A's attachment: 404 attachment.not_found", r, 404,
                          "attachment.not_found")
        self.rep.check("user B: no thread created", self.thread_ids(b) == before, "threads changed",
                       kind="gateway")
        r = b.call("attachments.delete", {"attachment_id": text["id"]})
        self.error_answer("user B: attachments.delete of A's: 404 attachment.not_found", r, 404,
                          "attachment.not_found")
        r = a.call("threads.create", {"input": text_input("hello", attachments=[MISSING_ATTACHMENT])})
        self.error_answer("threads.create with an unknown attachment id: 404 before streaming", r, 404,
                          "attachment.not_found")
        pending = a.call("attachments.create", {"name": "later.txt", "size": 3, "mime_type": "text/plain"})
        pending = self.json_answer("attachments.create (never uploaded)", pending, ATTACHMENT, "Attachment")
        r = a.call("threads.add_user_message",
                   {"thread_id": tid, "input": text_input("and this", attachments=[pending["id"]])})
        self.error_answer("a message with an attachment not uploaded: 409 attachment.not_uploaded", r, 409,
                          "attachment.not_uploaded")

        # attachments.delete: {} once, then not found.
        r = a.call("attachments.delete", {"attachment_id": pending["id"]})
        self.json_answer("attachments.delete", r, None)
        r = a.call("attachments.delete", {"attachment_id": pending["id"]})
        self.error_answer("attachments.delete again: 404 attachment.not_found", r, 404, "attachment.not_found")
        r = a.call("attachments.create", {"name": "page.html", "size": 3, "mime_type": "text/html"})
        self.error_answer("attachments.create of text/html: 415 attachment.type_not_allowed", r, 415,
                          "attachment.type_not_allowed")

        # Deleting the thread takes its attachments.
        self.json_answer("threads.delete of the thread with attachments",
                         a.call("threads.delete", {"thread_id": tid}), None)
        self.rep.check("the deleted thread's image no longer previews",
                       self.fetch(image["preview_url"]).status == 404, "", kind="gateway")

        # Dictation: the local agent has no speech recognition.
        r = a.call("input.transcribe", {"audio_base64": "GkXfo0AgQoaBAULygQRC84EIQoKEd2VibQ==",
                                        "mime_type": "audio/webm;codecs=opus"})
        if r.status == 200:
            self.json_answer("input.transcribe", r, TRANSCRIPTION, "TranscriptionResult")
        else:
            self.error_answer("input.transcribe with the local agent: 501 transcription.unavailable", r, 501,
                              "transcription.unavailable")
        r = a.call("input.transcribe", {"audio_base64": "%%% not base64", "mime_type": "audio/webm"})
        self.error_answer("input.transcribe of bad base64: 400 transcription.audio_invalid", r, 400,
                          "transcription.audio_invalid")

    def sec_cors(self) -> None:
        self.rep.start("CORS preflight from the widget's page")
        origin = self.args.cors_origin
        r = self.http.request("OPTIONS", self.args.path, None, {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,accept-language",
        })
        allow_origin = r.headers.get("access-control-allow-origin", "")
        allow_headers = r.headers.get("access-control-allow-headers", "").lower()
        self.rep.check(f"preflight from {origin}: 2xx, origin allowed",
                       200 <= r.status < 300 and allow_origin in (origin, "*"), r.brief() + f" {r.headers}",
                       kind="gateway")
        missing = [h for h in ("authorization", "content-type", "accept-language")
                   if allow_headers != "*" and h not in [x.strip() for x in allow_headers.split(",")]]
        self.rep.check("preflight: the widget's headers are allowed", not missing,
                       f"missing {missing} in {allow_headers!r}", kind="gateway")

    def hang_up_after(self, client: Client, type_: str, params: dict[str, Any], until: bytes) -> Resp:
        """Sends a streaming request, reads until `until` has come (or the stream ends), and
        closes the connection, as the widget's stop button does; returns what was read."""
        body = json.dumps({"type": type_, "params": params}).encode()
        cls = http.client.HTTPSConnection if self.http.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.http.host, self.http.port, timeout=self.http.timeout)
        try:
            conn.request("POST", self.http.prefix + self.args.path, body=body, headers={
                "Authorization": f"Bearer {client.secret}", "Content-Type": "application/json"})
            r = conn.getresponse()
            read = b""
            while until not in read or b"\n\n" not in read[read.index(until):]:
                more = r.read1(65536)
                if not more:
                    break
                read += more
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, read)
        finally:
            conn.close()

    def model_log(self, marker: str, stream: bool | None = True) -> list[dict[str, Any]]:
        """fake_openai.py's record of the requests whose last user message holds `marker`
        (streamed ones, the non-streamed title requests, or None: both); [] without
        --fake-model."""
        if not self.args.fake_model:
            return []
        with urllib.request.urlopen(self.args.fake_model.rstrip("/") + "/conformance/log",
                                    timeout=10) as r:
            entries = json.load(r)
        return [e for e in entries if marker in str(e.get("user"))
                and (stream is None or e.get("stream") is stream)]

    def sec_agent_faults(self) -> None:
        """With fake_openai.py as the model API: a failing and a slow agent."""
        self.rep.start("a failing and a slow model (fake_openai.py behind the gateway)")
        a = self.a
        text = "hello"
        r = a.call("threads.create", {"input": text_input(text)})
        turn = self.check_turn("threads.create (fake model)", r, "create", text)
        tid = turn.thread_id
        live = list(turn.items)
        self.rep.check("the fake model's answer arrives whole",
                       turn.assistant is not None and assistant_text(turn.assistant) == FAKE_ANSWER,
                       turn.assistant)

        text = f"conformance:fail-midway {self.run_id}"
        r = a.call("threads.add_user_message", {"thread_id": tid, "input": text_input(text)})
        events = self.parse_stream("a model that dies half-way", r)
        types = [e.get("type") for e in events]
        problems = []
        user = events[0].get("item", {}) if events else {}
        if types[:2] != ["thread.item.done", "stream_options"] or user.get("type") != "user_message":
            problems.append(f"want the user message, then stream_options first: {types}")
        added = [e["item"]["id"] for e in events if e.get("type") == "thread.item.added"]
        done = [e["item"]["id"] for e in events[1:] if e.get("type") == "thread.item.done"]
        removed = [e.get("item_id") for e in events if e.get("type") == "thread.item.removed"]
        if sorted(removed) != sorted(set(added) - set(done)):
            problems.append(f"removed {removed}, but added-and-unfinished were {sorted(set(added) - set(done))}")
        last = events[-1] if events else {}
        if last.get("type") != "error" or last.get("allow_retry") is not True:
            problems.append(f"the last event must be an error with allow_retry true: {last}")
        if types.count("error") != 1:
            problems.append(f"{types.count('error')} error events")
        if any(e.get("type") == "thread.item.done" and e.get("item", {}).get("type") == "assistant_message"
               for e in events):
            problems.append("an assistant message was finished")
        self.rep.check("a model that dies half-way: user message, stream_options, [partial answer], "
                       "thread.item.removed for what was unfinished, then one retryable error",
                       not problems, problems, kind="gateway")
        items = self.items_of(a, tid)
        self.same_items("a model that dies half-way: the user message stays, nothing else is recorded",
                        items, live + [user], kind="gateway")
        live = items
        r = a.call("threads.retry_after_item", {"thread_id": tid, "item_id": user.get("id")})
        turn = self.check_turn("retry after the failure", r, "retry", thread_id=tid)
        self.rep.check("retry after the failure: the whole answer",
                       turn.assistant is not None and assistant_text(turn.assistant) == FAKE_ANSWER,
                       turn.assistant, kind="gateway")
        live = live + turn.items
        self.same_items("retry after the failure: reload = the live stream", self.items_of(a, tid), live)

        # A turn still running: a retry gets 409 before streaming.
        text = f"conformance:slow {self.run_id}"
        box: dict[str, Resp] = {}
        slow = threading.Thread(target=lambda: box.update(r=a.call(
            "threads.add_user_message", {"thread_id": tid, "input": text_input(text)})))
        slow.start()
        user_id = None
        deadline = time.monotonic() + 10
        while user_id is None and time.monotonic() < deadline:
            users = [i for i in self.items_of(a, tid) if i.get("type") == "user_message"
                     and i.get("content") == [{"type": "input_text", "text": text}]]
            user_id = users[0]["id"] if users else None
            time.sleep(0.05)
        if user_id is None:
            self.rep.check("the slow turn's user message is recorded while it runs", False, "not seen",
                           kind="gateway")
        else:
            r = a.call("threads.retry_after_item", {"thread_id": tid, "item_id": user_id})
            self.error_answer("a retry while the turn runs: 409 envelope before streaming", r, 409)
        slow.join(timeout=self.args.timeout)
        turn = self.check_turn("the slow turn", box["r"], "add", text, thread_id=tid)
        self.rep.check("the slow turn: the whole answer", turn.assistant is not None
                       and assistant_text(turn.assistant) == "".join(FAKE_SLOW), turn.assistant,
                       kind="gateway")
        live = live + turn.items
        # Gateway-kind: a server without the 409 above has started a second answer meanwhile.
        self.same_items("the slow turn: reload = the live stream", self.items_of(a, tid), live,
                        kind="gateway")

        self.sec_stop(tid, live)

    def sec_stop(self, tid: str, live: list[dict[str, Any]]) -> None:
        """The stop button: a client that closes the stream mid-answer stops the model; the
        user message stays and what was said so far is the answer."""
        self.rep.start("stop: a client that closes the stream mid-answer (allow_cancel)")
        rep, a = self.rep, self.a
        text = f"conformance:slow stop {self.run_id}"
        whole = "".join(FAKE_SLOW)
        r = self.hang_up_after(a, "threads.add_user_message",
                               {"thread_id": tid, "input": text_input(text)},
                               b'"assistant_message.content_part.text_delta"')
        events, _, _ = split_sse(r.body[:r.body.rfind(b"\n\n") + 2])
        options = [e for e in events if e.get("type") == "stream_options"]
        said = "".join(e["update"].get("delta", "") for e in events
                       if e.get("type") == "thread.item.updated"
                       and e.get("update", {}).get("type") == "assistant_message.content_part.text_delta")
        rep.check("stop: the stream started and the answer with it (200, a text delta read)",
                  r.status == 200 and bool(said), r.brief())
        rep.check("stop: the turn announced stream_options {allow_cancel: true}",
                  [o.get("stream_options") for o in options] == [{"allow_cancel": True}],
                  options or [e.get("type") for e in events], kind="gateway")
        rep.check("stop: no error event before the stop", all(e.get("type") != "error" for e in events),
                  [e for e in events if e.get("type") == "error"], kind="gateway")
        items: list[dict[str, Any]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            items = self.items_of(a, tid)[len(live):]
            if len(items) > 1:
                break
            time.sleep(0.2)
        problems = []
        types = [i.get("type") for i in items]
        if types != ["user_message", "assistant_message"]:
            problems.append(f"recorded {types}, want the user message and the partial answer")
        else:
            kept = assistant_text(items[1])
            if not (kept.startswith(said) and whole.startswith(kept) and kept != whole):
                problems.append(f"recorded {kept!r}: want what was streamed ({said!r}) and at most "
                                f"a little more, not the whole answer {whole!r}")
            if items[0].get("content") != [{"type": "input_text", "text": text}]:
                problems.append(f"the user message is {items[0].get('content')!r}")
        rep.check("stop: the user message stays and the answer is recorded as far as it went "
                  "(the model stopped at once)", not problems, problems, kind="gateway")
        dropped = None
        deadline = time.monotonic() + 10
        while self.args.fake_model and time.monotonic() < deadline:
            dropped = [e for e in self.model_log(text) if e.get("dropped")]
            if dropped:
                break
            time.sleep(0.2)
        if self.args.fake_model:
            rep.check("stop: the gateway dropped the model's stream before it finished",
                      bool(dropped) and dropped[0].get("parts", 99) < len(FAKE_SLOW),
                      self.model_log(text), kind="gateway")
        live = live + items
        self.reload_shows("stop: the thread on reload", tid, live, kind="gateway")
        user = items[0] if items and items[0].get("type") == "user_message" else None
        rep.require("stop: the user message to answer again", user is not None, types,
                    kind="gateway")
        r = a.call("threads.retry_after_item", {"thread_id": tid, "item_id": user["id"]})
        turn = self.check_turn("retry after the stop", r, "retry", thread_id=tid)
        rep.check("retry after the stop: the whole answer", turn.assistant is not None
                  and assistant_text(turn.assistant) == whole, turn.assistant, kind="gateway")
        live = live[:live.index(user) + 1] + turn.items
        self.same_items("retry after the stop: reload = the user message and the new answer",
                        self.items_of(a, tid), live)

    # -------------------------------------------------------- the composer, titles

    def sec_composer(self) -> None:
        self.rep.start("the composer's model picker: a listed model, and any other refused")
        rep, a, fake = self.rep, self.a, self.args.agent_faults
        text = f"{self.run_id}: " + ("conformance:which-model" if fake else "hello")
        picked = text_input(text, inference_options={"model": PICKABLE_MODEL})
        r = a.call("threads.create", {"input": picked})
        turn = self.check_turn(f"a turn with the model {PICKABLE_MODEL}", r, "create", picked)
        tid, live = turn.thread_id, list(turn.items)
        if fake:
            want = f"You picked the model {PICKABLE_MODEL}."
            rep.check(f"the model sees the pick: it answers {want!r}", turn.assistant is not None
                      and assistant_text(turn.assistant) == want, turn.assistant, kind="gateway")
        for bad in ("gpt-unlisted", f"{PICKABLE_MODEL} ", ""):
            params = {"thread_id": tid, "input": text_input(
                f"{self.run_id}: again", inference_options={"model": bad})}
            self.error_answer(f"a turn with the model {bad!r}: 400 model.not_allowed before any "
                              "stream", a.call("threads.add_user_message", params), 400,
                              "model.not_allowed")
        before = self.thread_ids(a)
        params = {"input": text_input(f"{self.run_id}: again", inference_options={"model": "gpt-unlisted"})}
        self.error_answer("threads.create with the model 'gpt-unlisted': 400 model.not_allowed",
                          a.call("threads.create", params), 400, "model.not_allowed")
        rep.check("the refused threads.create created no thread", self.thread_ids(a) == before,
                  "threads changed", kind="gateway")
        self.same_items("the refused turns recorded nothing", self.items_of(a, tid), live,
                        kind="gateway")
        if self.args.fake_model:
            seen = [e.get("model") for e in self.model_log(f"{self.run_id}: again", stream=None)]
            asked = [e.get("model") for e in self.model_log(f"{self.run_id}: conformance:which-model")]
            rep.check(f"the model API was asked for {PICKABLE_MODEL}, and never for a refused one",
                      asked == [PICKABLE_MODEL] and not seen, f"{asked} {seen}", kind="gateway")

    def sec_titles(self) -> None:
        """With the gateway's titles on: the model's title for a new thread, pushed last."""
        self.rep.start("titles: a new thread gets the title the model writes (thread.updated, last)")
        rep, a = self.rep, self.a
        text = f"{self.run_id}: conformance:title we need milk, eggs and bread for the weekend"
        r = a.call("threads.create", {"input": text_input(text)})
        turn = self.check_turn("a new thread's first turn", r, "create", text)
        tid = turn.thread_id
        last = turn.events[-1] if turn.events else {}
        rep.check(f"the stream ends with thread.updated titled {FAKE_TITLE!r}",
                  last.get("type") == "thread.updated"
                  and (last.get("thread") or {}).get("title") == FAKE_TITLE, last, kind="gateway")
        r = a.call("threads.get_by_id", {"thread_id": tid})
        th = self.json_answer("threads.get_by_id of the titled thread", r, THREAD, "Thread")
        rep.check(f"threads.get_by_id: the title {FAKE_TITLE!r}", th.get("title") == FAKE_TITLE,
                  th.get("title"), kind="gateway")
        r = a.call("threads.list", {"limit": 100})
        page = self.json_answer("threads.list after the title", r, THREAD_PAGE, "Page[Thread]")
        entry = [t.get("title") for t in page.get("data", []) if t.get("id") == tid]
        rep.check(f"threads.list: the title {FAKE_TITLE!r}", entry == [FAKE_TITLE], entry,
                  kind="gateway")
        text2 = f"{self.run_id}: and butter"
        r = a.call("threads.add_user_message", {"thread_id": tid, "input": text_input(text2)})
        turn2 = self.check_turn("the thread's second turn", r, "add", text2, thread_id=tid)
        rep.check("the second turn: no thread.updated (the title is asked for once)",
                  all(e.get("type") != "thread.updated" for e in turn2.events),
                  [e.get("type") for e in turn2.events], kind="gateway")
        if self.args.fake_model:
            asked = self.model_log(text, stream=False) + self.model_log(text2, stream=False)
            rep.check("the model API was asked for the title once, not streamed, for 24 tokens, "
                      "with the first message", [(e["max_tokens"], e["user"]) for e in asked]
                      == [(24, text)], asked, kind="gateway")

    # -------------------------------------------------------- handing over to the page

    def sec_client_tools(self) -> None:
        """The page's client tool (highlight_tasks, declared by against-gateway.sh)."""
        self.rep.start("client tools: the answer pauses on the page's tool, its output resumes it")
        rep, a, b = self.rep, self.a, self.b
        text = f"{self.run_id}: conformance:client-tool 3"
        r = a.call("threads.create", {"input": text_input(text)})
        turn = self.check_turn("a turn that calls the page's tool", r, "create", text,
                               pending="client_tool_call")
        tid, call = turn.thread_id, turn.pending
        rep.require("the turn ends with a pending client_tool_call", call is not None,
                    [i.get("type") for i in turn.items], kind="gateway")
        problems = [f"{k}: {call.get(k)!r}, want {v!r}" for k, v in
                    (("name", "highlight_tasks"), ("arguments", {"task_ids": [3]}),
                     ("status", "pending")) if call.get(k) != v]
        if not (isinstance(call.get("call_id"), str) and call["call_id"]):
            problems.append(f"call_id {call.get('call_id')!r}")
        if call.get("output") is not None:
            problems.append(f"an output already: {call.get('output')!r}")
        rep.check("the call: name highlight_tasks, arguments {task_ids: [3]}, a call_id, pending",
                  not problems, problems, kind="gateway")
        rep.check("the turn shows no assistant message (nothing was said)", turn.assistant is None,
                  turn.assistant, kind="gateway")
        if self.args.fake_model:
            offered = [e.get("tools") for e in self.model_log(text)][:1]
            rep.check("the model was offered highlight_tasks and ask_user beside the task tools",
                      bool(offered) and {"highlight_tasks", "ask_user", "add_task"} <= set(offered[0]),
                      offered, kind="gateway")
        live = list(turn.items)
        output = {"thread_id": tid, "result": {"highlighted": [3]}}
        self.error_answer("user B: threads.add_client_tool_output on A's thread: 404 "
                          "thread.not_found", b.call("threads.add_client_tool_output", output), 404,
                          "thread.not_found")
        self.same_items("user B's output changed nothing", self.items_of(a, tid), live, kind="gateway")
        r = a.call("threads.add_client_tool_output", output)
        rest = self.check_turn("threads.add_client_tool_output", r, "resume", thread_id=tid)
        new = rest.replaced or {}
        want = {**call, "status": "completed", "output": {"highlighted": [3]}}
        problems = [f"{k}: {new.get(k)!r}, want {v!r}" for k, v in want.items() if new.get(k) != v]
        problems += [f"{k}: {new[k]!r} is new" for k in new if k not in want]
        rep.check("threads.add_client_tool_output: the call replaced, completed with the output "
                  "(same id, call_id, arguments, created_at)", not problems, problems, kind="gateway")
        said = "The page highlighted [3]."
        rep.check(f"threads.add_client_tool_output: the model goes on from the output: {said!r}",
                  rest.assistant is not None and assistant_text(rest.assistant) == said,
                  rest.assistant, kind="gateway")
        live = [new if i.get("id") == new.get("id") else i for i in live] + rest.items
        self.same_items("reload: the call completed, then the answer", self.items_of(a, tid), live)
        self.error_answer("a second output: 409 item.not_pending",
                          a.call("threads.add_client_tool_output", output), 409, "item.not_pending")
        text = f"{self.run_id}: hello"
        r = b.call("threads.create", {"input": text_input(text)})
        other = self.check_turn("user B: a thread that never paused", r, "create", text)
        self.error_answer("an output on a thread with nothing pending: 409 item.not_pending",
                          b.call("threads.add_client_tool_output",
                                 {"thread_id": other.thread_id, "result": {"highlighted": []}}),
                          409, "item.not_pending")
        self.same_items("the refused outputs changed nothing", self.items_of(a, tid), live,
                        kind="gateway")

    def sec_questions(self) -> None:
        """A question the answer pauses on (structured_input): the local agent asks which task
        "complete buy" means; with fake_openai.py, the model's ask_user tool asks."""
        fake = self.args.agent_faults
        self.rep.start("questions: the answer pauses on a structured_input, the answer resumes it")
        rep = self.rep
        client = self.a if fake else self.b  # B's tasks hold no other "buy"
        if fake:
            text = f"{self.run_id}: conformance:ask-user"
            r = client.call("threads.create", {"input": text_input(text)})
            turn = self.check_turn("a turn that asks", r, "create", text, pending="structured_input")
            tid, live = turn.thread_id, []
            inputs = [FAKE_QUESTION]
            answer, wrong = "Work", "Elsewhere"
            done_text, skipped_text = "You picked Work.", "Okay, no choice made."
        else:
            r = client.call("threads.create", {"input": text_input("add a task to buy milk")})
            milk = self.check_turn("add buy milk", r, "create", "add a task to buy milk",
                                   tools="mutating")
            tid, live = milk.thread_id, list(milk.items)
            r = client.call("threads.add_user_message", {"thread_id": tid, "input": text_input(
                "add a task to buy bread")})
            bread = self.check_turn("add buy bread", r, "add", "add a task to buy bread",
                                    thread_id=tid, tools="mutating")
            live += bread.items
            rep.require("two task ids", len(milk.task_ids) == 1 and len(bread.task_ids) == 1,
                        f"{milk.task_ids} {bread.task_ids}", kind="gateway")
            n, m = milk.task_ids[0], bread.task_ids[0]
            r = client.call("threads.add_user_message", {"thread_id": tid, "input": text_input(
                "complete buy")})
            turn = self.check_turn("complete buy (two tasks match)", r, "add", "complete buy",
                                   thread_id=tid, pending="structured_input")
            inputs = [{"type": "multiple_choice", "id": "task", "question": None,
                       "options": [{"value": f"{n}. buy milk"}, {"value": f"{m}. buy bread"}],
                       "multiple": False}]
            answer, wrong = f"{m}. buy bread", f"{m + 1000}. buy eggs"
            done_text, skipped_text = f"Marked task {m} as done: buy bread.", \
                "Okay, I left your tasks as they are."
        live += turn.items
        question = turn.pending
        rep.require("the turn ends with a pending structured_input", question is not None,
                    [i.get("type") for i in turn.items], kind="gateway")
        got = question.get("inputs")
        problems = []
        if fake:
            if got != inputs:
                problems.append(f"inputs {got!r}, want {inputs!r}")
        elif not (isinstance(got, list) and len(got) == 1 and isinstance(got[0], dict)
                  and isinstance(got[0].get("question"), str) and got[0]["question"].strip()
                  and {**got[0], "question": None} == inputs[0]):
            problems.append(f"inputs {got!r}, want {inputs!r} with a question")
        extra = sorted(set(question) - {"type", "id", "thread_id", "created_at", "status", "inputs"})
        if extra:
            problems.append(f"keys the SDK's StructuredInputItem lacks: {extra}")
        rep.check("the question: one multiple_choice input with the options, pending, no context",
                  not problems, problems, kind="gateway")
        rep.check("the asking turn did nothing yet (no effect, workflow or widget)",
                  not turn.effects and not [i for i in turn.items if i.get("type") in ("workflow", "widget")],
                  [i.get("type") for i in turn.items], kind="gateway")
        input_id = inputs[0]["id"]

        def submit(values: Any, status: str = "answered", answers: Any = None) -> dict[str, Any]:
            return {"thread_id": tid, "item_id": question["id"], "input": {
                "status": status, "answers": answers if answers is not None else {
                    input_id: {"values": values}}}}

        for label, params in (
            ("an option not offered", submit([wrong])),
            ("two values for a single choice", submit([inputs[0]["options"][0]["value"], answer])),
            ("values that are not a list", submit(answer)),
            ("an unknown input id", submit(None, answers={"who": {"values": [answer]}})),
            ("status \"maybe\"", submit([answer], status="maybe")),
        ):
            self.error_answer(f"an answer with {label}: 422 request.invalid",
                              client.call("threads.add_structured_input", params), 422,
                              "request.invalid")
        other = self.b if fake else self.a
        self.error_answer("another user's answer: 404 thread.not_found",
                          other.call("threads.add_structured_input", submit([answer])), 404,
                          "thread.not_found")
        for label, item in (("a user message", live[0]["id"]), ("no item", MISSING_ITEM)):
            self.error_answer(f"an answer naming {label}: 404 item.not_found",
                              client.call("threads.add_structured_input",
                                          {**submit([answer]), "item_id": item}), 404, "item.not_found")
        self.same_items("the refused answers changed nothing", self.items_of(client, tid), live,
                        kind="gateway")

        r = client.call("threads.add_structured_input", submit([answer]))
        tools = None if fake else "mutating"
        rest = self.check_turn("threads.add_structured_input", r, "resume", thread_id=tid,
                               tools=tools, change="completed")
        self.answered("threads.add_structured_input", question, rest, "answered",
                      {"values": [answer], "skipped": False})
        rep.check(f"threads.add_structured_input: the answer goes on: {done_text!r}",
                  rest.assistant is not None and assistant_text(rest.assistant) == done_text,
                  rest.assistant, kind="gateway")
        if not fake:
            rep.check(f"threads.add_structured_input: task {m} completed (effect, widget)",
                      rest.task_ids == [m] and (rest.widget or {}).get("copy_text")
                      == f"Task completed\n[x] {m}. buy bread",
                      f"{rest.task_ids} {(rest.widget or {}).get('copy_text')!r}", kind="gateway")
        live = [rest.replaced if i.get("id") == question["id"] else i for i in live] + rest.items
        self.same_items("reload: the question answered, then the answer", self.items_of(client, tid),
                        live)
        self.error_answer("answering again: 409 item.not_pending",
                          client.call("threads.add_structured_input", submit([answer])), 409,
                          "item.not_pending")

        # Skipped: nothing is done.
        if fake:
            text = f"{self.run_id}: conformance:ask-user again"
        else:
            text = "add a task to buy eggs"
            r = client.call("threads.add_user_message", {"thread_id": tid, "input": text_input(text)})
            eggs = self.check_turn("add buy eggs", r, "add", text, thread_id=tid, tools="mutating")
            live += eggs.items
            text = "complete buy"
        r = client.call("threads.add_user_message", {"thread_id": tid, "input": text_input(text)})
        turn = self.check_turn("another question", r, "add", text, thread_id=tid,
                               pending="structured_input")
        live += turn.items
        question = turn.pending or {}
        r = client.call("threads.add_structured_input", {
            "thread_id": tid, "item_id": question.get("id"), "input": {"status": "skipped"}})
        rest = self.check_turn("a skipped question", r, "resume", thread_id=tid)
        self.answered("a skipped question", question, rest, "skipped", {"values": [], "skipped": True})
        rep.check(f"a skipped question: {skipped_text!r}, nothing done", rest.assistant is not None
                  and assistant_text(rest.assistant) == skipped_text and not rest.effects
                  and not [i for i in rest.items if i.get("type") in ("workflow", "widget")],
                  [rest.assistant, rest.effects], kind="gateway")
        live = [rest.replaced if i.get("id") == question.get("id") else i for i in live] + rest.items
        self.same_items("reload: the question skipped", self.items_of(client, tid), live)
        if not fake:
            tasks = self.listed("list after the questions", client, tid, live)
            want = {n: f"[ ] {n}. buy milk", m: f"[x] {m}. buy bread"}
            rep.check("the listing: buy bread done, buy milk open",
                      {k: tasks.get(k) for k in want} == want, tasks, kind="gateway")

    def answered(self, what: str, question: dict[str, Any], rest: Turn, status: str,
                 answer: dict[str, Any]) -> None:
        """The question as a resumed turn replaced it: same item, `status`, each input with
        `answer`."""
        new = rest.replaced or {}
        want = {**question, "status": status,
                "inputs": [{**i, "answer": answer} for i in question.get("inputs", [])]}
        problems = [f"{k}: {new.get(k)!r}, want {v!r}" for k, v in want.items() if new.get(k) != v]
        problems += [f"{k}: {new[k]!r} is new" for k in new if k not in want]
        self.rep.check(f"{what}: the question replaced, {status}, with the answer {answer} (same "
                       "id and created_at)", not problems, problems, kind="gateway")

    def run(self) -> int:
        print(f"ChatKit conformance against {self.args.base_url}{self.args.path} "
              f"(run {self.run_id})")
        sections = [self.sec_session, self.sec_auth, self.sec_turns, self.sec_update_feedback,
                    self.sec_retry, self.sec_disconnect, self.sec_validation, self.sec_composer,
                    self.sec_unsupported, self.sec_malformed, self.sec_not_found,
                    self.sec_isolation, self.sec_widgets, self.sec_widget_refusals,
                    self.sec_questions, self.sec_paging, self.sec_delete]
        if self.args.attachments:
            # The gateway implements them: their section replaces the unsupported one.
            at = sections.index(self.sec_unsupported)
            sections[at] = self.sec_attachments
        if self.args.cors_origin:
            sections.append(self.sec_cors)
        if self.args.agent_faults:
            sections = [self.sec_session, self.sec_agent_faults, self.sec_composer, self.sec_titles,
                        self.sec_client_tools, self.sec_questions, self.sec_widgets,
                        self.sec_widget_refusals]
        if not self.args.tools:
            # The local agent's questions are about its tasks; the fake model's are not.
            skip = [self.sec_widgets, self.sec_widget_refusals] + \
                ([] if self.args.agent_faults else [self.sec_questions])
            sections = [s for s in sections if s not in skip]
        needs_thread = {self.sec_update_feedback, self.sec_retry, self.sec_disconnect, self.sec_validation,
                        self.sec_unsupported, self.sec_malformed, self.sec_not_found,
                        self.sec_isolation, self.sec_delete}
        started = time.monotonic()
        for sec in sections:
            if sec in needs_thread and not hasattr(self, "turn1"):
                self.rep.start(sec.__name__.removeprefix("sec_"))
                self.rep.check("section skipped: the conversation section failed", False, "")
                continue
            try:
                sec()
            except Abort as e:
                print(f"  (section stopped after: {e})")
                if sec == self.sec_session:
                    break
            except Exception as e:  # noqa: BLE001 - a crash is a failure, not a traceback
                self.rep.check(f"section crashed: {type(e).__name__}: {e}", False,
                               traceback.format_exc())
                if sec == self.sec_session:
                    break
        self.rep.start("every other answer and event fetched along the way")
        self.background.report(self.rep, f"{self.background_count} answers and events",
                               "Page[Thread] / Page[ThreadItem] / ThreadStreamEvent")
        print(f"\n({time.monotonic() - started:.1f} s)")
        if self.args.json_report:
            self.rep.write_json(self.args.json_report)
        return self.rep.summary()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base_url", help="the gateway, e.g. http://127.0.0.1:8000")
    p.add_argument("--path", default="/chatkit", help="the ChatKit endpoint (default /chatkit)")
    p.add_argument("--session-path", default="/api/chatkit/session")
    p.add_argument("--max-chars", type=int, default=8000,
                   help="the gateway's messages.max_chars (default 8000)")
    p.add_argument("--threads", type=int, default=101,
                   help="threads user C creates for the paging checks (default 101: above the clamp)")
    p.add_argument("--no-tools", dest="tools", action="store_false",
                   help="do not expect a workflow item, a tasks.changed effect and a task widget when "
                        "a task is added, and skip the task widget sections (for agents other than "
                        "the local one)")
    p.add_argument("--cors-origin", default="http://localhost:5173",
                   help="origin for the preflight check ('' to skip; default http://localhost:5173)")
    p.add_argument("--attachments", action="store_true",
                   help="check attachments.create/delete, uploads, messages with attachments and "
                        "input.transcribe (instead of expecting chatkit.unsupported); the server's "
                        "links must be absolute URLs, as the SDK's models require")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--json-report", metavar="FILE", help="also write every check as JSON")
    p.add_argument("--agent-faults", action="store_true",
                   help="only the checks of a scripted model: the gateway must use fake_openai.py "
                        "as its model API, with the client tool highlight_tasks and titles on "
                        "(against-gateway.sh does this in a second pass)")
    p.add_argument("--fake-model", metavar="URL",
                   help="fake_openai.py's base URL: also check what the model API was asked "
                        "(its /conformance/log): the tools offered, the picked model, the title "
                        "request, the stream dropped on a stop")
    args = p.parse_args()
    if args.threads < 22:
        p.error("--threads must be at least 22 (the default page is 20)")
    return Conformance(args).run()


if __name__ == "__main__":
    sys.exit(main())
