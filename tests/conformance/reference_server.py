#!/usr/bin/env python3
"""A reference ChatKit backend built on the official SDK, to validate check.py itself.

    reference_server.py PORT

`chatkit.server.ChatKitServer` with an in-memory store scoped per user, a trivial responder
(task tools as a workflow with a progress update before each task, a `tasks.changed`
client effect per change, a streamed assistant message, then a task-list widget whose
controls `action()`/`sync_action()` carry out; "complete buy" with several matches asks
which (a structured_input); fake_openai.py's scripts: a client tool call, ask_user, the
picked model said back, a slow answer; the first answer sets the title) and a minimal ASGI
app: `POST /chatkit`, streamed as Starlette would (a client that goes away cancels the
turn, and the SDK keeps what was said), and a `POST /api/chatkit/session` that hands any
bearer back as `ref-<bearer>`. It has what the SDK has and no more (but for one rule:
answers must fit their question, else a 500): no auth on /chatkit, 500 for malformed input
and unknown threads, no CORS, no inline validation, no model list. So against it every
`shape` check of check.py must pass and only `gateway` checks may fail (run.sh --self-test
asserts exactly that).

REF_STRICT=1 adds a front that does what the gateway promises on top of the SDK (issued
client_secrets, 4xx envelopes, ...): then every check passes. REF_MUTATE=<fault> injects
one protocol fault that check.py must catch. Both are driven by self_test.py.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import os
import sys
import uuid
from typing import Any, AsyncIterator

import chatkit.server as ck_server
import uvicorn
from pydantic import TypeAdapter, ValidationError
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError, Store
from chatkit.types import (
    ChatKitReq,
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ClientEffectEvent,
    ClientToolCallItem,
    CustomTask,
    Page,
    ProgressUpdateEvent,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
    SyncCustomActionResponse,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    UserMessageItem,
    WidgetItem,
    Workflow,
    WorkflowItem,
    WorkflowTaskAdded,
)


class _UtcDatetime(_dt.datetime):
    """The SDK stamps naive local times; check.py wants RFC 3339, so stamp aware UTC."""

    @classmethod
    def now(cls, tz=None):  # noqa: ANN001
        return _dt.datetime.now(tz or _dt.timezone.utc)


ck_server.datetime = _UtcDatetime  # type: ignore[misc]
# The SDK logs a traceback for every unknown thread it is asked about; the checker asks often.
logging.getLogger("chatkit").setLevel(logging.CRITICAL)
# check.py hangs up mid-stream on purpose; asyncio would warn about every later write.
logging.getLogger("asyncio").setLevel(logging.ERROR)


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class MemoryStore(Store[str]):
    """Threads and items per user; the context is the user id."""

    def __init__(self) -> None:
        self.threads: dict[str, tuple[str, ThreadMetadata]] = {}
        self.items: dict[str, list[Any]] = {}

    def _thread(self, thread_id: str, user: str) -> ThreadMetadata:
        owner, meta = self.threads.get(thread_id, (None, None))
        if owner != user or meta is None:
            raise NotFoundError(thread_id)
        return meta

    async def load_thread(self, thread_id: str, context: str) -> ThreadMetadata:
        return self._thread(thread_id, context).model_copy(deep=True)

    async def save_thread(self, thread: ThreadMetadata, context: str) -> None:
        # Only the metadata: a Thread with items would break later loads (protocol doc 8.1).
        meta = ThreadMetadata(**thread.model_dump(exclude={"items"}))
        owner = self.threads.get(thread.id, (context, None))[0]
        if owner != context:
            raise NotFoundError(thread.id)
        self.threads[thread.id] = (context, meta)
        self.items.setdefault(thread.id, [])

    @staticmethod
    def _page(rows: list[Any], after: str | None, limit: int, order: str) -> Page:
        rows = list(rows) if order == "asc" else list(reversed(rows))
        start = 0
        if after:
            ids = [r.id for r in rows]
            start = ids.index(after) + 1 if after in ids else 0
        chunk = rows[start:start + limit]
        more = start + limit < len(rows)
        return Page(data=chunk, has_more=more, after=chunk[-1].id if more and chunk else None)

    async def load_thread_items(self, thread_id, after, limit, order, context) -> Page:  # noqa: ANN001
        self._thread(thread_id, context)
        return self._page(self.items[thread_id], after, limit, order)

    async def load_threads(self, limit, after, order, context) -> Page:  # noqa: ANN001
        mine = [m for owner, m in self.threads.values() if owner == context]
        return self._page(mine, after, limit, order)

    async def add_thread_item(self, thread_id, item, context) -> None:  # noqa: ANN001
        await self.save_item(thread_id, item, context)

    async def save_item(self, thread_id, item, context) -> None:  # noqa: ANN001
        self._thread(thread_id, context)
        rows = self.items[thread_id]
        for i, row in enumerate(rows):
            if row.id == item.id:
                rows[i] = item
                return
        rows.append(item)

    async def load_item(self, thread_id, item_id, context):  # noqa: ANN001
        self._thread(thread_id, context)
        for row in self.items[thread_id]:
            if row.id == item_id:
                return row
        raise NotFoundError(item_id)

    async def delete_thread(self, thread_id, context) -> None:  # noqa: ANN001
        self._thread(thread_id, context)
        del self.threads[thread_id]
        del self.items[thread_id]

    async def delete_thread_item(self, thread_id, item_id, context) -> None:  # noqa: ANN001
        self._thread(thread_id, context)
        self.items[thread_id] = [r for r in self.items[thread_id] if r.id != item_id]

    async def save_attachment(self, attachment, context) -> None:  # noqa: ANN001
        raise NotImplementedError

    async def load_attachment(self, attachment_id, context):  # noqa: ANN001
        raise NotFoundError(attachment_id)

    async def delete_attachment(self, attachment_id, context) -> None:  # noqa: ANN001
        raise NotImplementedError


# The task tools and widgets, as the gateway has them: tasks per user (deleted ones are
# gone), and what each widget shows (its change and rows) by widget id.
TASKS: dict[str, list[dict[str, Any]]] = {}
WIDGETS: dict[str, tuple[str, list[dict[str, Any]]]] = {}
HEADINGS = {"added": ("Task added", "Tasks added"), "listed": ("Your tasks", "Your tasks"),
            "completed": ("Task completed", "Tasks completed"),
            "reopened": ("Task reopened", "Tasks reopened"), "deleted": ("Task deleted", "Tasks deleted")}
ACTIONS = {"task.complete": ("completed", "Completed", "check"),
           "task.reopen": ("reopened", "Reopened", "reload"),
           "task.delete": ("deleted", "Deleted", "empty-circle")}


def tool_calls(text: str) -> list[tuple[str, str]]:
    """The task tools a message asks for, as the local agent and fake_openai.py read it:
    ("add", title) or ("list", "")."""
    for marker in ("conformance:add-two ", "conformance:add-task ", "add a task to "):
        if marker in text:
            rest = text.split(marker, 1)[1]
            titles = rest.split("|") if marker == "conformance:add-two " else [rest]
            return [("add", t.strip()) for t in titles]
    if "conformance:list-tasks" in text or text.startswith("list my tasks"):
        return [("list", "")]
    return []


def complete_words(text: str) -> str | None:
    """The words of "complete buy" (a task named by its words), as the local agent reads it."""
    if text.startswith("complete ") and not text[len("complete "):].strip().startswith("task "):
        return text[len("complete "):].strip() or None
    return None


PROGRESS = {"add": "Adding a task…", "complete": "Completing a task…", "list": "Looking at your tasks…"}
# fake_openai.py's ask_user question and the title it writes.
FAKE_QUESTION = {"id": "choice", "question": "Which list?", "options": ["Home", "Work"]}
FAKE_TITLE = "Weekend groceries"


def question_item(thread_id: str, q: dict[str, Any]) -> StructuredInputItem:
    """A pending question with one single-choice input."""
    return StructuredInputItem(
        id=f"si_{uuid.uuid4().hex}", thread_id=thread_id, created_at=now(),
        inputs=[StructuredInputMultipleChoice(
            id=q["id"], question=q["question"],
            options=[StructuredInputMultipleChoiceOption(value=o) for o in q["options"]])])


def task_widget(change: str, rows: list[dict[str, Any]]) -> tuple[Any, str]:
    """A Card with a row per task (a checkbox that completes or reopens it, its title, a
    delete button; a deleted one struck out without controls) and its copy_text."""
    heading = HEADINGS[change][0 if len(rows) <= 1 else 1]
    lines, children = [], []
    for r in rows:
        def action(kind: str, n: int = r["id"]) -> dict[str, Any]:
            return {"type": kind, "payload": {"task_id": n}, "loadingBehavior": "self"}
        row: list[dict[str, Any]] = []
        if not r["deleted"]:
            kind = "task.reopen" if r["completed"] else "task.complete"
            row.append({"type": "Checkbox", "name": f"{kind[5:]}_task_{r['id']}",
                        "defaultChecked": r["completed"], "onChangeAction": action(kind)})
        text = {"type": "Text", "value": r["title"]}
        if r["completed"] or r["deleted"]:
            text["lineThrough"] = True
        row.append(text)
        if not r["deleted"]:
            row.append({"type": "Button", "label": "Delete", "onClickAction": action("task.delete")})
        children.append({"type": "Row", "key": f"task-{r['id']}", "children": row})
        mark = "-" if r["deleted"] else "x" if r["completed"] else " "
        lines.append(f"[{mark}] {r['id']}. {r['title']}" + (" (deleted)" if r["deleted"] else ""))
    body = {"type": "Col", "children": children} if rows else {"type": "Text", "value": "No tasks yet."}
    widget = {"type": "Card", "children": [{"type": "Title", "value": heading}, body]}
    return widget, "\n".join([heading, *(lines or ["No tasks yet."])])


def widget_item(id_: str, thread_id: str, created_at: Any, change: str, rows: list[dict[str, Any]]) -> WidgetItem:
    widget, copy_text = task_widget(change, rows)
    WIDGETS[id_] = (change, rows)
    return WidgetItem.model_validate({"id": id_, "thread_id": thread_id, "created_at": created_at,
                                      "widget": widget, "copy_text": copy_text})


class Reference(ChatKitServer[str]):
    failed_once: set[str] = set()

    def _click(self, thread: ThreadMetadata, action: Any, sender: WidgetItem | None, user: str):
        """Carries out a click on a task widget: the events, the widget as it now stands and
        the workflow item recording the call (None when there was nothing to do)."""
        change_name, verb, icon = ACTIONS[action.type]
        n = action.payload["task_id"]
        change, rows = WIDGETS[sender.id]
        row = next(r for r in rows if r["id"] == n)
        tasks = TASKS.setdefault(user, [])
        task = next((t for t in tasks if t["id"] == n), None)
        events: list[Any] = []
        wf = None
        if not row["deleted"] and task is not None:
            if action.type == "task.delete":
                tasks.remove(task)
                row["deleted"] = True
            else:
                task["completed"] = row["completed"] = action.type == "task.complete"
            wf = WorkflowItem(
                id=self.store.generate_item_id("workflow", thread, user), thread_id=thread.id,
                created_at=now(), workflow=Workflow(type="custom", tasks=[CustomTask(
                    title=f"{verb} task {n}: {row['title']}", icon=icon, status_indicator="complete")]),
            )
            events.append(ThreadItemDoneEvent(item=wf))
        updated = widget_item(sender.id, sender.thread_id, sender.created_at, change, rows)
        events.append(ThreadItemReplacedEvent(item=updated))
        if wf is not None:
            events.append(ClientEffectEvent(name="tasks.changed",
                                            data={"task_ids": [n], "change": change_name}))
        return events, updated, wf

    async def action(self, thread, action, sender, context) -> AsyncIterator[Any]:  # noqa: ANN001
        for event in self._click(thread, action, sender, context)[0]:
            yield event

    async def sync_action(self, thread, action, sender, context) -> SyncCustomActionResponse:  # noqa: ANN001
        _, updated, wf = self._click(thread, action, sender, context)
        if wf is not None:
            await self.store.add_thread_item(thread.id, wf, context)
        await self.store.save_item(thread.id, updated, context)
        return SyncCustomActionResponse(updated_item=updated)

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: str
    ) -> AsyncIterator[Any]:
        if input_user_message is None:
            # A client tool's output or a question's answer: the SDK has saved the item the
            # answer paused on, answered; it is the thread's newest.
            async for event in self._resumed(thread, context):
                yield event
            return
        text = "".join(getattr(p, "text", "") for p in input_user_message.content)
        async for event in self._respond(thread, input_user_message, context, text):
            yield event
        if not thread.title and text:
            # Set last: the SDK pushes the change as thread.updated once the answer is over.
            thread.title = FAKE_TITLE if "conformance:title" in text else text[:30]

    async def _respond(self, thread: ThreadMetadata, input_user_message: UserMessageItem,
                       context: str, text: str) -> AsyncIterator[Any]:
        # The page's tool and the model's question (fake_openai.py's scripts): the turn
        # ends on the pending item, nothing said.
        if "conformance:client-tool" in text:
            rest = text.split("conformance:client-tool", 1)[1]
            yield ThreadItemDoneEvent(item=ClientToolCallItem(
                id=self.store.generate_item_id("tool_call", thread, context), thread_id=thread.id,
                created_at=now(), call_id="call_conformance_0", name="highlight_tasks",
                arguments={"task_ids": [int(w) for w in rest.split() if w.isdigit()]}))
            return
        if "conformance:ask-user" in text:
            yield ThreadItemDoneEvent(item=question_item(thread.id, FAKE_QUESTION))
            return
        words = ["Hello ", "from the ", "fake model."]
        if "conformance:which-model" in text:
            model = getattr(input_user_message.inference_options, "model", None) or "fake"
            words = ["You picked the model ", f"{model}."]
        calls = tool_calls(text)
        named = complete_words(text)
        if named is not None:
            # The local agent's "complete buy": one open match is completed, several asked about.
            found = [t for t in TASKS.get(context, []) if not t["completed"]
                     and all(w in t["title"].lower() for w in named.lower().split())]
            if len(found) > 1:
                async for event in self._say(thread, context, [
                        f"{len(found)} open tasks match \"{named}\". ",
                        "Which one should I mark as done?"]):
                    yield event
                yield ThreadItemDoneEvent(item=question_item(thread.id, {
                    "id": "task", "question": "Which task should I mark as done?",
                    "options": [f"{t['id']}. {t['title']}" for t in found[:8]]}))
                return
            calls = [("complete", str(t["id"])) for t in found]
            if found:
                words = [f"Marked task {found[0]['id']} as done: {found[0]['title']}."]
        async for event in self._tools_and_answer(thread, context, calls, words, text):
            yield event

    async def _resumed(self, thread: ThreadMetadata, context: str) -> AsyncIterator[Any]:
        newest = (await self.store.load_thread_items(thread.id, None, 1, "desc", context)).data
        item = newest[0] if newest else None
        if isinstance(item, ClientToolCallItem):
            # The gateway shows the call completed in the stream; the SDK only saves it.
            yield ThreadItemReplacedEvent(item=item)
            shown = item.output.get("highlighted") if isinstance(item.output, dict) else item.output
            words = ["The page ", f"highlighted {json.dumps(shown)}."]
            async for event in self._say(thread, context, words):
                yield event
            return
        question = item.inputs[0] if isinstance(item, StructuredInputItem) and item.inputs else None
        picked = question.answer.values if question and question.answer and \
            item.status == "answered" else []
        if question is not None and question.id == "task":
            n = picked[0].split(".", 1)[0] if picked else ""
            task = next((t for t in TASKS.get(context, []) if str(t["id"]) == n), None)
            if task is None:
                words, calls = ["Okay, I left your tasks as they are."], []
            else:
                words = [f"Marked task {n} as done: {task['title']}."]
                calls = [("complete", n)]
            async for event in self._tools_and_answer(thread, context, calls, words, ""):
                yield event
            return
        words = ["You picked ", f"{picked[0]}."] if picked else ["Okay, no choice ", "made."]
        async for event in self._say(thread, context, words):
            yield event

    async def _say(self, thread: ThreadMetadata, context: str, words: list[str],
                   pause: float = 0.0) -> AsyncIterator[Any]:
        """A streamed assistant message of `words`."""
        msg = AssistantMessageItem(
            id=self.store.generate_item_id("message", thread, context), thread_id=thread.id,
            created_at=now(), content=[],
        )
        yield ThreadItemAddedEvent(item=msg)
        yield ThreadItemUpdatedEvent(item_id=msg.id, update=AssistantMessageContentPartAdded(
            content_index=0, content=AssistantMessageContent(text="")))
        for w in words:
            yield ThreadItemUpdatedEvent(item_id=msg.id, update=AssistantMessageContentPartTextDelta(
                content_index=0, delta=w))
            if pause:
                # Only a slow answer waits: a quick one is written whole at once, as the local
                # agent's is, so a client that leaves early cannot stop it half way.
                await asyncio.sleep(pause)
        final = AssistantMessageContent(text="".join(words))
        yield ThreadItemUpdatedEvent(item_id=msg.id, update=AssistantMessageContentPartDone(
            content_index=0, content=final))
        msg.content = [final]
        yield ThreadItemDoneEvent(item=msg)

    async def _tools_and_answer(self, thread: ThreadMetadata, context: str,
                                calls: list[tuple[str, str]], words: list[str],
                                text: str) -> AsyncIterator[Any]:
        """The task tools as a workflow (a progress update before each task, a tasks.changed
        effect per change), the answer, then a task widget."""
        shown: list[dict[str, Any]] = []
        change = "listed"
        if calls:
            wf = WorkflowItem(
                id=self.store.generate_item_id("workflow", thread, context), thread_id=thread.id,
                created_at=now(), workflow=Workflow(type="custom", tasks=[]),
            )
            tasks = TASKS.setdefault(context, [])
            for i, (tool, arg) in enumerate(calls):
                yield ProgressUpdateEvent(text=PROGRESS[tool], icon="bolt")
                if i == 0:
                    yield ThreadItemAddedEvent(item=wf)
                if tool == "add":
                    n = max((t["id"] for t in tasks), default=0) + 1
                    tasks.append({"id": n, "title": arg, "completed": False})
                    rows = [{**tasks[-1], "deleted": False}]
                    task = CustomTask(title=f"Added task {n}: {arg}", icon="plus",
                                      status_indicator="complete")
                    change = "added"
                elif tool == "complete":
                    done = next(t for t in tasks if str(t["id"]) == arg)
                    done["completed"] = True
                    n = done["id"]
                    rows = [{**done, "deleted": False}]
                    task = CustomTask(title=f"Completed task {n}: {done['title']}", icon="check",
                                      status_indicator="complete")
                    change = "completed"
                else:
                    rows = [{**t, "deleted": False} for t in tasks]
                    task = CustomTask(title=f"Listed {len(rows)} tasks", icon="search",
                                      status_indicator="complete")
                shown += [r for r in rows if r["id"] not in {s["id"] for s in shown}]
                yield ThreadItemUpdatedEvent(item_id=wf.id, update=WorkflowTaskAdded(task_index=i, task=task))
                wf.workflow.tasks.append(task)
                if tool != "list":
                    yield ClientEffectEvent(name="tasks.changed", data={"task_ids": [n], "change": change})
            yield ThreadItemDoneEvent(item=wf)
        # The same script as fake_openai.py, for check.py --agent-faults.
        pause = 0.0
        if "conformance:slow" in text:
            words, pause = [f"slow {i}. " for i in range(10)], 0.3
        if "conformance:fail-midway" in text and text not in self.failed_once:
            self.failed_once.add(text)
            msg = AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context), thread_id=thread.id,
                created_at=now(), content=[],
            )
            yield ThreadItemAddedEvent(item=msg)
            yield ThreadItemUpdatedEvent(item_id=msg.id, update=AssistantMessageContentPartAdded(
                content_index=0, content=AssistantMessageContent(text="")))
            for w in ["Partial ", "answer "]:
                yield ThreadItemUpdatedEvent(item_id=msg.id, update=AssistantMessageContentPartTextDelta(
                    content_index=0, delta=w))
            # What the gateway does: take back the unfinished item, then fail (the SDK turns
            # the exception into a retryable stream.error).
            yield ThreadItemRemovedEvent(item_id=msg.id)
            raise RuntimeError("the model died half-way")
        async for event in self._say(thread, context, words, pause):
            yield event
        if calls:
            yield ThreadItemDoneEvent(item=widget_item(f"wgt_{uuid.uuid4().hex}", thread.id, now(),
                                                       change, shown))


SERVER = Reference(MemoryStore())


async def _read_body(receive) -> bytes:  # noqa: ANN001
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def _send(send, status: int, ctype: bytes, body: bytes, headers=()) -> None:  # noqa: ANN001
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), *headers]})
    await send({"type": "http.response.body", "body": body})


# REF_STRICT=1 puts in front of the SDK what the gateway promises on top of it (auth with
# issued client_secrets, 4xx envelopes before streaming, chatkit.unsupported, clamped
# limits, checked cursors, inline validation errors, the model list, 409 for an output or
# an answer nothing waits for, 422 for answers that do not fit, CORS), so that the
# self-test can show
# every gateway check of check.py is satisfiable, not just the shape checks.
STRICT = os.environ.get("REF_STRICT") == "1"
SESSIONS: dict[str, str] = {}  # client_secret -> user
RUNNING: set[str] = set()  # threads with a turn in progress
TURNS: set[asyncio.Task] = set()  # the turns streaming now
REQUEST = TypeAdapter(ChatKitReq)
UNSUPPORTED = {"attachments.create", "attachments.delete", "input.transcribe"}
MODELS = {"conformance-model"}  # what the composer may pick
CUSTOM_ACTIONS = {"threads.custom_action", "threads.sync_custom_action"}


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def _refuse(send, e: Refusal) -> None:  # noqa: ANN001
    headers = [(b"www-authenticate", b"Bearer")] if e.status == 401 else []
    body = json.dumps({"error": {"code": e.code, "message": e.message}}).encode()
    await _send(send, e.status, b"application/json", body, headers)


def _task_action(params: dict[str, Any]) -> int:
    """The task a click names, or the refusal: a known action type, the widget it came
    from, a payload {"task_id": N} of at most 2 KiB."""
    action = params.get("action") or {}
    if action.get("type") not in ACTIONS:
        raise Refusal(400, "action.unknown", f"unknown action type {str(action.get('type'))[:64]!r}")
    if not params.get("item_id"):
        raise Refusal(400, "action.invalid", "a task action names its widget (item_id)")
    payload = action.get("payload")
    if MUTATE == "action_500" and len(json.dumps(payload)) > 2048:
        raise Refusal(500, "internal", "a refusal gone wrong")
    if not isinstance(payload, dict) or len(json.dumps(payload)) > 2048:
        raise Refusal(400, "action.invalid", "the payload must be an object of at most 2 KiB")
    n = payload.get("task_id")
    if type(n) is not int or not 1 <= n < 2**31:
        raise Refusal(400, "action.invalid", "task_id must be a task number")
    return n


def answer_problem(item: StructuredInputItem, submission: Any) -> str | None:
    """Why answers do not fit the question they answer (the SDK takes any): an input the
    question has not, values that are not a list of strings, a value not among a choice's
    options, several for a single choice, a status other than answered or skipped."""
    if not isinstance(submission, dict):
        return "input must be an object"
    if submission.get("status", "answered") not in ("answered", "skipped"):
        return "input.status must be \"answered\" or \"skipped\""
    answers = submission.get("answers") or {}
    if not isinstance(answers, dict):
        return "input.answers must be an object"
    questions = {q.id: q for q in item.inputs}
    for qid, answer in answers.items():
        question = questions.get(qid)
        values = answer.get("values") if isinstance(answer, dict) else None
        values = [] if values is None else values
        if question is None:
            return f"no question {qid[:64]!r} was asked"
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return f"answers.{qid}.values must be a list of strings"
        if isinstance(question, StructuredInputMultipleChoice):
            if any(v not in [o.value for o in question.options] for v in values):
                return f"a value is not one of the options of {qid}"
            if len(values) > 1 and not question.multiple:
                return f"question {qid} takes one choice"
    return None


async def _fitting_answers(body: bytes, user: str) -> None:
    """The one rule of the reference's own on top of the SDK without the front: answers must
    fit their question (the SDK would record any, and the question could not be answered
    right any more). A ValueError, which the stock wiring answers with a 500."""
    try:
        raw = json.loads(body)
        params = raw["params"] if raw.get("type") == "threads.add_structured_input" else None
        item = await SERVER.store.load_item(params["thread_id"], params["item_id"], user) \
            if isinstance(params, dict) else None
    except (ValueError, KeyError, TypeError, AttributeError, NotFoundError):
        return
    if isinstance(item, StructuredInputItem):
        problem = answer_problem(item, params.get("input"))
        if problem is not None:
            raise ValueError(problem)


async def _structured_input(raw: dict[str, Any], user: str) -> None:
    """threads.add_structured_input, checked before the SDK parses it: 404 for a thread or
    question that is not the user's, 422 for answers that do not fit, 409 once answered."""
    params = raw.get("params")
    if not isinstance(params, dict) or not all(isinstance(params.get(k), str)
                                               for k in ("thread_id", "item_id")):
        raise Refusal(400, "request.invalid", "thread_id and item_id are required")
    try:
        await SERVER.store.load_thread(params["thread_id"], user)
    except NotFoundError:
        raise Refusal(404, "thread.not_found", "no such thread") from None
    try:
        item = await SERVER.store.load_item(params["thread_id"], params["item_id"], user)
    except NotFoundError:
        item = None
    if not isinstance(item, StructuredInputItem):
        raise Refusal(404, "item.not_found", "no such question")
    problem = answer_problem(item, params.get("input"))
    if problem is not None and MUTATE != "answer_lenient":
        raise Refusal(422, "request.invalid", problem)
    if item.status != "pending":
        raise Refusal(409, "item.not_pending", "the question was answered already")


async def _strict_request(body: bytes, user: str) -> tuple[bytes, bytes | None]:
    """The body to hand to the SDK, or a ready SSE answer (inline validation error)."""
    try:
        raw = json.loads(body)
    except ValueError:
        raise Refusal(400, "request.malformed", "the body is not JSON") from None
    if isinstance(raw, dict) and raw.get("type") == "threads.add_structured_input":
        await _structured_input(raw, user)
        return body, None
    try:
        req = REQUEST.validate_python(raw)
    except ValidationError as e:
        raise Refusal(400, "request.invalid", str(e.errors()[0]["msg"])) from None
    if req.type in UNSUPPORTED:
        raise Refusal(400, "chatkit.unsupported", f"{req.type} is not supported")
    params = raw["params"]
    store = SERVER.store
    task = _task_action(params) if req.type in CUSTOM_ACTIONS else None
    tid = getattr(req.params, "thread_id", None)
    if tid is not None:
        try:
            await store.load_thread(tid, user)
        except NotFoundError:
            raise Refusal(404, "thread.not_found", "no such thread") from None
        if req.type == "threads.retry_after_item" and tid in RUNNING:
            raise Refusal(409, "turn.in_progress", "a turn is running in this thread")
        if req.type == "threads.add_client_tool_output":
            newest = (await store.load_thread_items(tid, None, 1, "desc", user)).data
            if not (newest and isinstance(newest[0], ClientToolCallItem)
                    and newest[0].status == "pending"):
                raise Refusal(409, "item.not_pending", "no client tool call waits for its output")
    for item_id in [getattr(req.params, "item_id", None), *getattr(req.params, "item_ids", [])]:
        if item_id is None:
            continue
        try:
            item = await store.load_item(tid, item_id, user)
        except NotFoundError:
            raise Refusal(404, "item.not_found", "no such item") from None
        if req.type == "threads.retry_after_item" and item.type != "user_message":
            raise Refusal(400, "request.invalid", "retry needs a user message")
        if task is not None:
            if item.type != "widget" or item.id not in WIDGETS:
                raise Refusal(404, "item.not_found", "no such widget")
            if task not in [r["id"] for r in WIDGETS[item.id][1]]:
                raise Refusal(400, "action.invalid", "the widget does not show this task")
    if req.type in ("threads.list", "items.list"):
        if params.get("limit") is not None:
            params["limit"] = max(1, min(100, params["limit"]))
        after = params.get("after")
        if after is not None:
            if req.type == "threads.list":
                ids = [t.id for t in (await store.load_threads(10**6, None, "asc", user)).data]
            else:
                ids = [i.id for i in (await store.load_thread_items(tid, None, 10**6, "asc", user)).data]
            if after not in ids:
                raise Refusal(400, "request.invalid_cursor", "unknown cursor")
    if req.type in ("threads.create", "threads.add_user_message"):
        if req.params.input.attachments:
            raise Refusal(400, "chatkit.unsupported", "attachments are not supported")
        model = getattr(req.params.input.inference_options, "model", None)
        if model is not None and model not in MODELS and MUTATE != "model_any":
            raise Refusal(400, "model.not_allowed", f"the composer may pick {sorted(MODELS)}")
        text = "".join(getattr(p, "text", "") for p in req.params.input.content)
        if not text.strip() or len(text) > 8000:
            event = {"type": "error", "code": "custom", "allow_retry": False,
                     "message": "Type a message of 1 to 8000 characters."}
            return b"", b"data: " + json.dumps(event).encode() + b"\n\n"
    return json.dumps(raw).encode(), None


# Deliberate protocol faults (REF_MUTATE=<name>) so that run.sh --self-test can prove that
# check.py notices each of them.
MUTATE = os.environ.get("REF_MUTATE", "")


def _mutate_value(obj: Any) -> Any:
    if isinstance(obj, dict):
        out = {k: _mutate_value(v) for k, v in obj.items()}
        if "thread_id" in out and "created_at" in out:  # an item
            if MUTATE == "null":
                out["quoted_text"] = None
            elif MUTATE == "unknown_key":
                out["x_extra"] = 1
        if isinstance(out.get("created_at"), str):
            if MUTATE == "epoch":
                out["created_at"] = 1762092191
            elif MUTATE == "naive":
                out["created_at"] = out["created_at"].rstrip("Z")
        if MUTATE == "drop_default" and "status" in out and "items" in out:  # a thread
            out.pop("metadata", None)
        if MUTATE == "cursor" and out.get("after") and out.get("data"):
            out["after"] = out["data"][0]["id"]
        if MUTATE == "bad_delta" and out.get("type") == "assistant_message.content_part.text_delta":
            out["delta"] = out["delta"] + "!"
        return _mutate_widgets(out)
    if isinstance(obj, list):
        return [_mutate_value(v) for v in obj]
    return obj


def _mutate_widgets(out: dict[str, Any]) -> dict[str, Any]:
    """Faults of the task widgets and their actions."""
    if MUTATE == "widget_key" and out.get("type") == "Text" and "value" in out:
        out["colour"] = "red"  # a key no SDK widget model has
    elif MUTATE == "widget_dynamic" and out.get("type") == "Checkbox":
        out["type"] = "Toggle"  # the SDK's catch-all component takes it, its strict ones do not
    elif MUTATE == "effect_shape" and out.get("name") == "tasks.changed":
        out["data"] = {"tool": "add_task", "task_id": (out["data"].get("task_ids") or [0])[0]}
    elif MUTATE == "action_payload" and "loadingBehavior" in out and isinstance(out.get("payload"), dict):
        out["payload"] = {"task": out["payload"].get("task_id")}
    elif MUTATE == "replaced_id" and out.get("type") == "thread.item.replaced":
        out["item"] = {**out["item"], "id": "wgt_mutated"}
    elif MUTATE == "question_context" and out.get("type") == "structured_input":
        out["context"] = {"tool": "complete_task"}  # the agent's own note, which stays server-side
    elif MUTATE == "sync_shape" and set(out) == {"updated_item"}:
        out = {"item": out["updated_item"]}
    elif MUTATE == "hidden_item" and isinstance(out.get("data"), list):
        widgets = [i for i in out["data"] if isinstance(i, dict) and i.get("type") == "widget"]
        if widgets:
            out["data"] = out["data"] + [{
                "type": "hidden_context_item", "id": "hc_mutated", "thread_id": widgets[0]["thread_id"],
                "created_at": widgets[0]["created_at"], "content": "The user marked as done task 1."}]
    return out


JSON_MUTATIONS = ("null", "unknown_key", "epoch", "naive", "bad_delta", "cursor", "drop_default",
                  "widget_key", "widget_dynamic", "effect_shape", "action_payload", "replaced_id",
                  "sync_shape", "hidden_item", "question_context")


def _mutate_json(body: bytes) -> bytes:
    if MUTATE in JSON_MUTATIONS:
        return json.dumps(_mutate_value(json.loads(body)), separators=(",", ":")).encode()
    return body


def _mutate_chunk(chunk: bytes) -> bytes:
    if not chunk.startswith(b"data: "):
        return chunk
    payload = _mutate_json(chunk[len(b"data: "):-2])
    if MUTATE == "no_progress" and payload.startswith(b'{"type":"progress_update"'):
        return b""
    if MUTATE == "no_replaced" and payload.startswith(b'{"type":"thread.item.replaced"') \
            and b'"client_tool_call"' in payload:
        return b""
    if MUTATE == "event_line":
        return b"event: message\ndata: " + payload + b"\n\n"
    if MUTATE == "comment":
        return b": keep-alive\n\ndata: " + payload + b"\n\n"
    if MUTATE == "pretty":
        return b"data: " + json.dumps(json.loads(payload), indent=1).encode().replace(b"\n", b"\ndata: ") + b"\n\n"
    return b"data: " + payload + b"\n\n"


async def app(scope, receive, send) -> None:  # noqa: ANN001
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    authorization = headers.get(b"authorization", b"").decode()
    bearer = authorization.removeprefix("Bearer ").strip()
    body = await _read_body(receive)
    if STRICT:
        await _strict_app(scope, receive, send, headers, authorization, body)
        return
    if scope["method"] == "POST" and scope["path"] == "/api/chatkit/session":
        secret = f"ref-{bearer or 'anonymous'}"
        await _send(send, 200, b"application/json", json.dumps({"client_secret": secret}).encode())
        return
    if scope["method"] != "POST" or scope["path"] != "/chatkit":
        await _send(send, 404, b"application/json", b'{"error":{"code":"route.not_found","message":"no"}}')
        return
    user = bearer.removeprefix("ref-") or "anonymous"
    try:
        await _fitting_answers(body, user)
        result = await SERVER.process(body, user)
    except Exception as e:  # noqa: BLE001 - the stock SDK wiring answers 500
        await _send(send, 500, b"text/plain", f"{type(e).__name__}: {e}".encode())
        return
    if isinstance(result, StreamingResult):
        await _stream(result, receive, send)
    else:
        await _send(send, 200, b"application/json", _mutate_json(result.json))


async def _stream(result: StreamingResult, receive, send, thread_id: str | None = None) -> None:  # noqa: ANN001
    """Streams a turn, as an ASGI server with Starlette's StreamingResponse would: when the
    client goes away (the stop button), the turn is cancelled where it waits, and the SDK's
    handle_stream_cancelled keeps what was said. The turn runs on a task of its own that
    only waits inside the SDK, so the cancellation lands there."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        if thread_id:
            RUNNING.add(thread_id)
        try:
            async for chunk in result:
                await queue.put(chunk)
        except Exception:  # noqa: BLE001 - the SDK cuts the stream off, as here
            pass
        finally:
            RUNNING.discard(thread_id)
            await queue.put(None)

    turn = asyncio.create_task(pump())
    TURNS.add(turn)
    turn.add_done_callback(TURNS.discard)

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if MUTATE != "stop_ignored":
            turn.cancel()

    watcher = asyncio.create_task(watch())
    try:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        chunks = []
        while (chunk := await queue.get()) is not None:
            chunks.append(_mutate_chunk(chunk))
            if MUTATE != "order":
                await send({"type": "http.response.body", "body": chunks[-1], "more_body": True})
        if MUTATE == "order":
            # stream_options before the user message
            opts = [i for i, c in enumerate(chunks) if b'"stream_options"' in c][:1]
            if opts and opts[0] > 0:
                i = opts[0]
                chunks[i - 1], chunks[i] = chunks[i], chunks[i - 1]
            for c in chunks:
                await send({"type": "http.response.body", "body": c, "more_body": True})
        if MUTATE == "done":
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()


async def _strict_app(scope, receive, send, headers, authorization: str, body: bytes) -> None:  # noqa: ANN001
    method, path = scope["method"], scope["path"]
    bearer = authorization[len("Bearer "):] if authorization.startswith("Bearer ") else ""
    try:
        if path == "/api/chatkit/session" and method == "POST":
            if not bearer or bearer in SESSIONS:
                raise Refusal(401, "auth.invalid_token", "an upstream token is required")
            secret = f"cs_{uuid.uuid4().hex}"
            SESSIONS[secret] = bearer
            await _send(send, 200, b"application/json", json.dumps({"client_secret": secret}).encode())
        elif path == "/api/chatkit/session" and method == "DELETE":
            if SESSIONS.pop(bearer, None) is None:
                raise Refusal(401, "auth.invalid_token", "unknown session")
            await _send(send, 204, b"application/json", b"")
        elif path == "/chatkit" and method == "OPTIONS":
            origin = headers.get(b"origin", b"*")
            await _send(send, 204, b"text/plain", b"", [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", b"POST"),
                (b"access-control-allow-headers", b"authorization, content-type, accept-language"),
            ])
        elif path == "/chatkit" and method == "POST":
            user = SESSIONS.get(bearer)
            if user is None:
                raise Refusal(401, "auth.invalid_token", "a client_secret is required")
            body, inline = await _strict_request(body, user)
            if inline is not None:
                await _send(send, 200, b"text/event-stream", inline)
                return
            result = await SERVER.process(body, user)
            if isinstance(result, StreamingResult):
                await _stream(result, receive, send, json.loads(body)["params"].get("thread_id"))
            else:
                await _send(send, 200, b"application/json", _mutate_json(result.json))
        else:
            raise Refusal(404, "route.not_found", "no such route")
    except Refusal as e:
        await _refuse(send, e)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
