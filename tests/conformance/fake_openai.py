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
  "conformance:client-tool <n> ..."   a call of the page's highlight_tasks {"task_ids": [n, ...]}
                                      when it is offered ("highlight_tasks was not offered."
                                      otherwise); after its output {"highlighted": X}: "The page
                                      highlighted X."
  "conformance:ask-user"              a call of ask_user {"question": "Which list?", "options":
                                      ["Home", "Work"]} when it is offered; after the answer:
                                      "You picked Work." (or "Okay, no choice made." if skipped)
  "conformance:which-model"           "You picked the model <the request's model>."
  anything else                       "Hello from the fake model." in three deltas
A request with "stream": false is a title request: it must ask for at most 24 tokens (else
HTTP 400) and gets a JSON completion: "\\"Weekend groceries.\\"" when the message holds
"conformance:title", "Fake title" otherwise.

GET /conformance/log: every request so far, in order: {"model", "stream", "max_tokens",
"tools" (the offered function names), "user" (the last user message), "parts" (text deltas
written), "dropped" (true when the client went away before the answer was written whole)}.
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
QUESTION = {"question": "Which list?", "options": ["Home", "Work"]}
failed_once: set[str] = set()
log: list[dict] = []
lock = threading.Lock()


def chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-conformance", "object": "chat.completion.chunk", "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def tool_calls(text: str, offered: list[str]) -> list[tuple[str, dict]]:
    """The calls a message scripts: (tool, arguments); only tools the request offers."""
    for marker, tool in (("conformance:add-task ", "add_task"), ("conformance:add-two ", "add_task"),
                         ("conformance:list-tasks", "list_tasks"),
                         ("conformance:client-tool", "highlight_tasks"),
                         ("conformance:ask-user", "ask_user")):
        if marker in text:
            if tool not in offered:
                return []
            rest = text.split(marker, 1)[1].strip()
            if tool == "list_tasks":
                return [(tool, {})]
            if tool == "highlight_tasks":
                return [(tool, {"task_ids": [int(w) for w in rest.split() if w.isdigit()]})]
            if tool == "ask_user":
                return [(tool, QUESTION)]
            titles = [t.strip() for t in rest.split("|")] if "add-two" in marker else [rest]
            return [(tool, {"title": t}) for t in titles]
    return []


def after_tools(text: str, result: str) -> list[str]:
    """What the model says once its calls have answered (`result`: the last tool message)."""
    try:
        value = json.loads(result)
    except ValueError:
        value = result
    if "conformance:client-tool" in text:
        shown = value.get("highlighted") if isinstance(value, dict) else value
        return ["The page ", f"highlighted {json.dumps(shown)}."]
    if "conformance:ask-user" in text:
        answers = value.get("answers", {}) if isinstance(value, dict) else {}
        picked = (answers.get("choice") or {}).get("values") or []
        if isinstance(value, dict) and value.get("status") == "answered" and picked:
            return ["You picked ", f"{picked[0]}."]
        return ["Okay, no choice ", "made."]
    return AFTER_TOOLS


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

    def send_json(self, status: int, value: object) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        with lock:
            entries = [dict(e) for e in log]
        self.send_json(200, entries if self.path == "/conformance/log" else {"fake": "openai"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(length) or b"{}")
        messages = req.get("messages", [])
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        text = str(messages[last_user].get("content", "")) if last_user >= 0 else ""
        tools_said = [m for m in messages[last_user + 1:] if m.get("role") == "tool"]
        offered = [t.get("function", {}).get("name") for t in req.get("tools") or []]
        entry = {"model": req.get("model"), "stream": req.get("stream"),
                 "max_tokens": req.get("max_tokens"), "tools": offered, "user": text,
                 "parts": 0, "dropped": False}
        with lock:
            log.append(entry)
        if req.get("stream") is False:
            if req.get("max_tokens") != 24:
                self.send_json(400, {"error": {"message": "a title needs max_tokens 24"}})
            else:
                title = '"Weekend groceries."' if "conformance:title" in text else "Fake title"
                self.send_json(200, {"id": "chatcmpl-title", "object": "chat.completion",
                                     "model": req.get("model"), "choices": [{
                                         "index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": title}}]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.answer(text, tools_said, offered, req, entry)
        except (BrokenPipeError, ConnectionResetError):
            with lock:
                entry["dropped"] = True

    def answer(self, text: str, tools_said: list[dict], offered: list[str], req: dict,
               entry: dict) -> None:
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
                return
        calls = tool_calls(text, offered)
        if calls and not tools_said:
            for c in call_chunks(calls):
                self.wfile.write(c)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            return
        parts, pause = (SLOW, 0.3) if "conformance:slow" in text else (ANSWER, 0.0)
        if tools_said:
            parts = after_tools(text, str(tools_said[-1].get("content", "")))
        elif "conformance:client-tool" in text:
            parts = ["highlight_tasks was ", "not offered."]
        elif "conformance:ask-user" in text:
            parts = ["ask_user was ", "not offered."]
        elif "conformance:which-model" in text:
            parts = ["You picked the model ", f"{req.get('model')}."]
        self.wfile.write(chunk({"role": "assistant", "content": ""}))
        for part in parts:
            self.wfile.write(chunk({"content": part}))
            self.wfile.flush()
            with lock:
                entry["parts"] += 1
            time.sleep(pause)
        self.wfile.write(chunk({}, "stop"))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
