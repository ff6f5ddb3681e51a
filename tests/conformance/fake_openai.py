#!/usr/bin/env python3
"""A scripted OpenAI-compatible Chat Completions server for check.py --agent-faults.

    fake_openai.py PORT

POST /v1/chat/completions streams an answer chosen by the last user message:
  contains "conformance:fail-midway"  the first request with that text streams two deltas and
                                      then drops the connection (no finish, no [DONE]); later
                                      ones (a retry) answer normally
  contains "conformance:slow"         ten deltas, 0.3 s apart
  "conformance:add-task <title>"      a call of add_task {"title": <title>} (its arguments in
                                      two chunks); once the tool has answered (a `tool`
                                      message after the last user message): "Done."
  "conformance:add-two <a> | <b>"     two calls of add_task in one step; then "Done."
  "conformance:list-tasks"            a call of list_tasks {}; then "Done."
  anything else                       "Hello from the fake model." in three deltas
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = ["Hello ", "from the ", "fake model."]
AFTER_TOOLS = ["Do", "ne."]
SLOW = [f"slow {i}. " for i in range(10)]
failed_once: set[str] = set()
lock = threading.Lock()


def chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-conformance", "object": "chat.completion.chunk", "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def tool_calls(text: str) -> list[tuple[str, dict]]:
    """The calls a message scripts: (tool, arguments)."""
    for marker, tool in (("conformance:add-task ", "add_task"), ("conformance:add-two ", "add_task"),
                         ("conformance:list-tasks", "list_tasks")):
        if marker in text:
            rest = text.split(marker, 1)[1].strip()
            if tool == "list_tasks":
                return [(tool, {})]
            titles = [t.strip() for t in rest.split("|")] if "add-two" in marker else [rest]
            return [(tool, {"title": t}) for t in titles]
    return []


def call_chunks(calls: list[tuple[str, dict]]) -> list[bytes]:
    """One step of tool calls, as a model streams them: the name, then the arguments in two
    pieces per call."""
    out = [chunk({"role": "assistant", "content": None})]
    for i, (name, args) in enumerate(calls):
        raw = json.dumps(args)
        half = len(raw) // 2
        out.append(chunk({"tool_calls": [{"index": i, "id": f"call_conformance_{i}", "type": "function",
                                          "function": {"name": name, "arguments": ""}}]}))
        for piece in (raw[:half], raw[half:]):
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    out.append(chunk({}, "tool_calls"))
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(length) or b"{}")
        messages = req.get("messages", [])
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        text = str(messages[last_user].get("content", "")) if last_user >= 0 else ""
        answered = any(m.get("role") == "tool" for m in messages[last_user + 1:])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        if "conformance:fail-midway" in text:
            with lock:
                first = text not in failed_once
                failed_once.add(text)
            if first:
                self.wfile.write(chunk({"role": "assistant", "content": ""}))
                for part in ("Partial ", "answer "):
                    self.wfile.write(chunk({"content": part}))
                    self.wfile.flush()
                    time.sleep(0.05)
                self.close_connection = True
                return
        calls = tool_calls(text)
        if calls and not answered:
            for c in call_chunks(calls):
                self.wfile.write(c)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        parts, pause = (SLOW, 0.3) if "conformance:slow" in text else (ANSWER, 0.0)
        if calls:
            parts = AFTER_TOOLS
        self.wfile.write(chunk({"role": "assistant", "content": ""}))
        for part in parts:
            self.wfile.write(chunk({"content": part}))
            self.wfile.flush()
            time.sleep(pause)
        self.wfile.write(chunk({}, "stop"))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
