#!/usr/bin/env python3
"""A scripted OpenAI-compatible Chat Completions server for check.py --agent-faults.

    fake_openai.py PORT

POST /v1/chat/completions streams an answer chosen by the last user message:
  contains "conformance:fail-midway"  the first request with that text streams two deltas and
                                      then drops the connection (no finish, no [DONE]); later
                                      ones (a retry) answer normally
  contains "conformance:slow"         ten deltas, 0.3 s apart
  anything else                       "Hello from the fake model." in three deltas
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = ["Hello ", "from the ", "fake model."]
SLOW = [f"slow {i}. " for i in range(10)]
failed_once: set[str] = set()
lock = threading.Lock()


def chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-conformance", "object": "chat.completion.chunk", "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(length) or b"{}")
        users = [m for m in req.get("messages", []) if m.get("role") == "user"]
        text = str(users[-1].get("content", "")) if users else ""
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
        parts, pause = (SLOW, 0.3) if "conformance:slow" in text else (ANSWER, 0.0)
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
