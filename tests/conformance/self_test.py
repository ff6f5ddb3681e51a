#!/usr/bin/env python3
"""Validates check.py itself against reference_server.py (the official SDK).

1. Against the unmodified SDK server, every `shape` check must pass: what fails may only be
   behaviour the SDK leaves to the integrator (`gateway` checks: auth, 4xx envelopes,
   isolation 404s, unsupported types, inline validation, clamping).
2. With REF_STRICT=1 (a front doing what the gateway promises on top of the SDK) every
   check must pass, so no gateway check asks for something impossible.
3. Against the same server with one deliberate protocol fault at a time (REF_MUTATE), the
   named shape check must fail: check.py does see nulls, unknown keys, number or
   offset-less timestamps, `event:` lines, comments, `[DONE]`, multi-line JSON, wrong
   order, deltas that do not add up, wrong cursors, and a widget the SDK's models refuse
   or only take as their catch-all component.
4. Behind the front (REF_STRICT=1), one fault of the task widgets, questions or the model
   picker at a time: the named check (of any kind) must fail: effects of the old shape,
   actions without the task, no progress updates, a replaced widget under another id, a
   hidden item on reload, a sync answer of another shape, a 5xx refusal, a question that
   shows its context, any model allowed, answers that do not fit the question taken.
5. The same with check.py --agent-faults: a stop that lets the answer run to its end, a
   client tool's output that does not replace the call in the stream.

Prints `N passed, M failed` and exits 1 on any failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

# fault -> a substring of a check name that must fail because of it
MUTATIONS = {
    "null": "no null values",
    "unknown_key": "no unknown keys",
    "drop_default": "every field the SDK sends is present",
    "epoch": "created_at are RFC 3339 strings",
    "naive": "created_at are RFC 3339 strings",
    "event_line": "exact SSE framing",
    "comment": "exact SSE framing",
    "done": "exact SSE framing",
    "pretty": "exact SSE framing",
    "order": "the user message comes as thread.item.done next",
    "bad_delta": "event order",
    "cursor": "follow `after`",
    "widget_key": "validates as a WidgetItem",
    "widget_dynamic": "validates as a WidgetItem",
}
# fault -> a check that must fail with the front in place (most widget checks are `gateway`
# checks, which the plain SDK fails anyway)
STRICT_MUTATIONS = {
    "effect_shape": "a client_effect tasks.changed {task_ids",
    "action_payload": "each open task with task.complete and task.delete",
    "no_progress": "a progress_update (text, icon) before each workflow task",
    "replaced_id": "the replaced widget keeps the widget's id",
    "hidden_item": "no hidden item and no note of the click",
    "sync_shape": "threads.sync_custom_action: {\"updated_item\"",
    "action_500": "a payload over 2 KiB: 400 action.invalid",
    "question_context": "the question: one multiple_choice input with the options, pending, no context",
    "model_any": "400 model.not_allowed",
    "answer_lenient": "an answer with an option not offered: 422 request.invalid",
}
# fault -> a check of check.py --agent-faults that must fail with the front in place
AGENT_MUTATIONS = {
    "stop_ignored": "stop: the user message stays and the answer is recorded as far as it went",
    "no_replaced": "threads.add_client_tool_output: thread.item.replaced next",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_against_reference(mutation: str, extra: list[str], strict: bool = False) -> list[dict]:
    port = free_port()
    env = dict(os.environ, REF_MUTATE=mutation, REF_STRICT="1" if strict else "")
    server = subprocess.Popen([sys.executable, os.path.join(HERE, "reference_server.py"), str(port)],
                              env=env)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            except urllib.error.HTTPError:
                break  # the app answers (404): up
            except OSError:
                time.sleep(0.1)
        with tempfile.NamedTemporaryFile(suffix=".json") as report:
            cors = [] if strict else ["--cors-origin", ""]
            cmd = [sys.executable, os.path.join(HERE, "check.py"), f"http://127.0.0.1:{port}",
                   *cors, "--json-report", report.name, *extra]
            env = dict(os.environ, CONFORMANCE_UPSTREAM_TOKENS="ref-a,ref-b,ref-c")
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False)
            with open(report.name, encoding="utf-8") as f:
                return json.load(f)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    passed = failed = 0

    def check(name: str, ok: bool, detail: str = "") -> None:
        nonlocal passed, failed
        print(f"  {'PASS' if ok else 'FAIL'} {name}")
        if not ok:
            for line in detail.splitlines():
                print(f"       {line}")
        passed += ok
        failed += not ok

    print("== check.py against the unmodified SDK reference server")
    results = run_against_reference("", [])
    shape_fail = [f"{r['section']}: {r['name']}\n  {r['detail'][:300]}"
                  for r in results if not r["ok"] and r["kind"] == "shape"]
    check(f"{len(results)} checks ran", len(results) > 200, str(len(results)))
    check("every shape check passes", not shape_fail, "\n".join(shape_fail))
    gateway_fail = [r for r in results if not r["ok"] and r["kind"] == "gateway"]
    check("the SDK's known gaps show up as gateway failures (500s, no auth)",
          any("401" in r["name"] for r in gateway_fail)
          and any("404 thread.not_found" in r["name"] for r in gateway_fail),
          "\n".join(r["name"] for r in gateway_fail[:10]))

    print("== check.py against the SDK behind a front that does what the gateway promises")
    results = run_against_reference("", [], strict=True)
    failures = [f"{r['section']}: {r['name']}\n  {r['detail'][:300]}" for r in results if not r["ok"]]
    check(f"every one of the {len(results)} checks passes (each gateway check is satisfiable)",
          not failures and len(results) > 200, "\n".join(failures))

    print("== check.py --agent-faults against the same two servers")
    results = run_against_reference("", ["--agent-faults"])
    shape_fail = [f"{r['name']}\n  {r['detail'][:300]}" for r in results if not r["ok"] and r["kind"] == "shape"]
    check(f"plain SDK: every shape check passes ({len(results)} checks)",
          not shape_fail and len(results) > 30, "\n".join(shape_fail))
    results = run_against_reference("", ["--agent-faults"], strict=True)
    failures = [f"{r['name']}\n  {r['detail'][:300]}" for r in results if not r["ok"]]
    check(f"with the front: every one of the {len(results)} checks passes",
          not failures and len(results) > 30, "\n".join(failures))

    print("== check.py notices deliberate protocol faults")
    for mutation, expected in MUTATIONS.items():
        results = run_against_reference(mutation, ["--threads", "22"])
        hit = [r for r in results if not r["ok"] and r["kind"] == "shape" and expected in r["name"]]
        check(f"REF_MUTATE={mutation}: a failing check '… {expected} …'", bool(hit),
              "\n".join(f"{r['name']}: {r['ok']}" for r in results if not r["ok"])[:2000])

    print("== check.py notices deliberate faults of the task widgets, questions and models "
          "(behind the front)")
    for mutation, expected in STRICT_MUTATIONS.items():
        results = run_against_reference(mutation, ["--threads", "22"], strict=True)
        hit = [r for r in results if not r["ok"] and expected in r["name"]]
        check(f"REF_STRICT=1 REF_MUTATE={mutation}: a failing check '… {expected} …'", bool(hit),
              "\n".join(f"{r['name']}: {r['ok']}" for r in results if not r["ok"])[:2000])

    print("== check.py --agent-faults notices deliberate faults of stops and hand-overs (behind the front)")
    for mutation, expected in AGENT_MUTATIONS.items():
        results = run_against_reference(mutation, ["--agent-faults"], strict=True)
        hit = [r for r in results if not r["ok"] and expected in r["name"]]
        check(f"REF_STRICT=1 REF_MUTATE={mutation} --agent-faults: a failing check '… {expected} …'",
              bool(hit), "\n".join(f"{r['name']}: {r['ok']}" for r in results if not r["ok"])[:2000])

    print(f"\n{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
