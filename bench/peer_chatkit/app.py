"""The ChatKit peer of chatkit-gateway, for `bench/bench.sh --chatkit-peer`.

What the ChatKit rows are compared against: the official `openai-chatkit` 1.6.5
`ChatKitServer` over a SQLAlchemy 2 async store, served by FastAPI under uvicorn, written
the way a competent Python team would write it:

- the SDK's request handling unchanged, but for one thing a competent developer does: the
  `TypeAdapter` of the request union is built once at start-up, not on every request as
  `ChatKitServer.process` does (pydantic builds its validator anew each time, ~1.5 ms);
- a store of two tables, each item kept as its JSON (what the SDK's own examples do), read
  one statement per call, every query scoped to the user (the context), through adapters
  also built once;
- `POST /chatkit` authenticates the gateway's own client_secrets (HS256, the gateway's
  `CHATKIT_SESSION_SECRET`, its issuer and audience), so one seed and one set of tokens
  serve both sides of a run;
- `respond` streams the answer text the gateway's built-in agent gives the same message
  (`PEER_ANSWERS`), word by word as the gateway does, as one assistant message. It runs
  no tool: for a message the gateway answers with a tool (`list my tasks`), the gateway
  does more work than the peer.

Not part of the product and not tested by the suite: a benchmark fixture.

    python app.py init             # creates the tables in $DATABASE_URL
    python app.py copy BASE_URL CLIENT_SECRET [MESSAGE...]
        # stores the user's threads and items as the gateway's POST /chatkit lists them;
        # prints the answers the gateway last gave each MESSAGE (a JSON object), for
        # PEER_ANSWERS
    uvicorn app:app --workers 2
"""

import asyncio
import json
import os
import sys
import urllib.request
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import jwt
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import NotFoundError, Store
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ChatKitReq,
    Page,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    is_streaming_req,
)
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import TypeAdapter
from sqlalchemy import DateTime, ForeignKey, Index, String, Text, delete, event, select, tuple_
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ["DATABASE_URL"]
SESSION_SECRET = os.environ.get("CHATKIT_SESSION_SECRET", "")
ISSUER = "chatkit-gateway"
AUDIENCE = "chatkit"
# The text to stream for each message, as a JSON object (`copy` prints it).
ANSWERS: dict[str, str] = json.loads(os.environ.get("PEER_ANSWERS", "{}"))
DEFAULT_ANSWER = "Hello! How can I help with your tasks?"

# Built once (the SDK's process() builds the request adapter on every call).
REQUEST_ADAPTER: TypeAdapter[Any] = TypeAdapter(ChatKitReq)
ITEM_ADAPTER: TypeAdapter[Any] = TypeAdapter(ThreadItem)

SQLITE = DATABASE_URL.startswith("sqlite")
if SQLITE:
    engine = create_async_engine(DATABASE_URL)

    # WAL, as the gateway runs its file, so readers do not wait for the writer.
    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(conn, _record):  # noqa: ANN001
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
else:
    # Plain TCP to the local server, as bench/bench.sh connects the gateway.
    engine = create_async_engine(
        DATABASE_URL, pool_size=10, max_overflow=10, connect_args={"ssl": False}
    )
Session = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class ThreadRow(Base):
    __tablename__ = "ck_peer_threads"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    user_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ck_peer_threads_user", "user_id", "created_at", "id"),)


class ItemRow(Base):
    __tablename__ = "ck_peer_items"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("ck_peer_threads.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ck_peer_items_thread", "thread_id", "created_at", "id"),)


def utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.astimezone(timezone.utc)


def page_after(column_at, column_id, anchor, after: str, order: str):  # noqa: ANN001
    """Keyset condition: rows strictly after the row `after` (by (created_at, id))."""
    key = tuple_(column_at, column_id)
    bound = tuple_(anchor, after)
    return key > bound if order == "asc" else key < bound


def ordered(query, column_at, column_id, order: str):  # noqa: ANN001
    if order == "asc":
        return query.order_by(column_at.asc(), column_id.asc())
    return query.order_by(column_at.desc(), column_id.desc())


class SqlStore(Store[str]):
    """Threads and items of each user (the context is the user id), items as JSON."""

    async def load_thread(self, thread_id: str, context: str) -> ThreadMetadata:
        async with Session() as s:
            data = await s.scalar(
                select(ThreadRow.data).where(ThreadRow.id == thread_id, ThreadRow.user_id == context)
            )
        if data is None:
            raise NotFoundError(f"thread {thread_id} not found")
        return ThreadMetadata.model_validate_json(data)

    async def save_thread(self, thread: ThreadMetadata, context: str) -> None:
        data = thread.model_dump_json(exclude={"items"} if hasattr(thread, "items") else None)
        async with Session() as s, s.begin():
            row = await s.get(ThreadRow, thread.id)
            if row is None:
                s.add(ThreadRow(id=thread.id, user_id=context, created_at=utc(thread.created_at), data=data))
            elif row.user_id == context:
                row.data = data
            else:
                raise NotFoundError(f"thread {thread.id} not found")

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: str
    ) -> Page[ThreadItem]:
        query = select(ItemRow.id, ItemRow.data).where(
            ItemRow.thread_id == thread_id, ItemRow.user_id == context
        )
        if after:
            anchor = select(ItemRow.created_at).where(
                ItemRow.id == after, ItemRow.user_id == context
            ).scalar_subquery()
            query = query.where(page_after(ItemRow.created_at, ItemRow.id, anchor, after, order))
        query = ordered(query, ItemRow.created_at, ItemRow.id, order).limit(limit + 1)
        async with Session() as s:
            rows = (await s.execute(query)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            data=[ITEM_ADAPTER.validate_json(r.data) for r in rows],
            has_more=more,
            after=rows[-1].id if more and rows else None,
        )

    async def load_threads(self, limit: int, after: str | None, order: str, context: str) -> Page[ThreadMetadata]:
        query = select(ThreadRow.id, ThreadRow.data).where(ThreadRow.user_id == context)
        if after:
            anchor = select(ThreadRow.created_at).where(
                ThreadRow.id == after, ThreadRow.user_id == context
            ).scalar_subquery()
            query = query.where(page_after(ThreadRow.created_at, ThreadRow.id, anchor, after, order))
        query = ordered(query, ThreadRow.created_at, ThreadRow.id, order).limit(limit + 1)
        async with Session() as s:
            rows = (await s.execute(query)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            data=[ThreadMetadata.model_validate_json(r.data) for r in rows],
            has_more=more,
            after=rows[-1].id if more and rows else None,
        )

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: str) -> None:
        async with Session() as s, s.begin():
            owner = await s.scalar(select(ThreadRow.user_id).where(ThreadRow.id == thread_id))
            if owner != context:
                raise NotFoundError(f"thread {thread_id} not found")
            s.add(ItemRow(id=item.id, thread_id=thread_id, user_id=context,
                          created_at=utc(item.created_at), data=item.model_dump_json()))

    async def save_item(self, thread_id: str, item: ThreadItem, context: str) -> None:
        async with Session() as s, s.begin():
            row = await s.get(ItemRow, item.id)
            if row is None:
                s.add(ItemRow(id=item.id, thread_id=thread_id, user_id=context,
                              created_at=utc(item.created_at), data=item.model_dump_json()))
            elif row.user_id == context and row.thread_id == thread_id:
                row.data = item.model_dump_json()
            else:
                raise NotFoundError(f"item {item.id} not found")

    async def load_item(self, thread_id: str, item_id: str, context: str) -> ThreadItem:
        async with Session() as s:
            data = await s.scalar(select(ItemRow.data).where(
                ItemRow.id == item_id, ItemRow.thread_id == thread_id, ItemRow.user_id == context))
        if data is None:
            raise NotFoundError(f"item {item_id} not found")
        return ITEM_ADAPTER.validate_json(data)

    async def delete_thread(self, thread_id: str, context: str) -> None:
        async with Session() as s, s.begin():
            await s.execute(delete(ItemRow).where(ItemRow.thread_id == thread_id, ItemRow.user_id == context))
            await s.execute(delete(ThreadRow).where(ThreadRow.id == thread_id, ThreadRow.user_id == context))

    async def delete_thread_item(self, thread_id: str, item_id: str, context: str) -> None:
        async with Session() as s, s.begin():
            await s.execute(delete(ItemRow).where(
                ItemRow.id == item_id, ItemRow.thread_id == thread_id, ItemRow.user_id == context))

    async def save_attachment(self, attachment, context: str) -> None:  # noqa: ANN001
        raise NotImplementedError

    async def load_attachment(self, attachment_id: str, context: str):  # noqa: ANN201
        raise NotFoundError(attachment_id)

    async def delete_attachment(self, attachment_id: str, context: str) -> None:
        raise NotImplementedError


def words(text: str) -> list[str]:
    """Word-sized pieces that concatenate back to the text, as the gateway streams them."""
    pieces, start = [], 0
    for i, ch in enumerate(text):
        if ch in " \n":
            pieces.append(text[start:i + 1])
            start = i + 1
    if start < len(text):
        pieces.append(text[start:])
    return pieces


class PeerServer(ChatKitServer[str]):
    async def process(self, request: str | bytes | bytearray, context: str) -> StreamingResult | NonStreamingResult:
        # ChatKitServer.process, with the adapter built once.
        parsed = REQUEST_ADAPTER.validate_json(request)
        if is_streaming_req(parsed):
            return StreamingResult(self._process_streaming(parsed, context))
        return NonStreamingResult(await self._process_non_streaming(parsed, context))

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: str
    ) -> AsyncIterator[ThreadStreamEvent]:
        item = AssistantMessageItem(
            id=self.store.generate_item_id("message", thread, context),
            thread_id=thread.id,
            created_at=datetime.now(timezone.utc),
            content=[],
        )
        asked = "".join(getattr(p, "text", "") for p in input_user_message.content) \
            if input_user_message else ""
        answer = ANSWERS.get(asked, DEFAULT_ANSWER)
        yield ThreadItemAddedEvent(item=item)
        yield ThreadItemUpdatedEvent(item_id=item.id, update=AssistantMessageContentPartAdded(
            content_index=0, content=AssistantMessageContent(text="")))
        for piece in words(answer):
            yield ThreadItemUpdatedEvent(item_id=item.id, update=AssistantMessageContentPartTextDelta(
                content_index=0, delta=piece))
        done = AssistantMessageContent(text=answer)
        yield ThreadItemUpdatedEvent(item_id=item.id, update=AssistantMessageContentPartDone(
            content_index=0, content=done))
        item.content = [done]
        yield ThreadItemDoneEvent(item=item)


store = SqlStore()
server = PeerServer(store)
app = FastAPI(title="chatkit peer")


# async: a plain `def` dependency would run on FastAPI's thread pool, a thread hop per request.
async def current_user(authorization: str | None = Header(default=None)) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "no bearer token")
    try:
        claims = jwt.decode(authorization[7:], SESSION_SECRET, algorithms=["HS256"],
                            audience=AUDIENCE, issuer=ISSUER, leeway=30)
    except jwt.PyJWTError as e:
        raise HTTPException(401, str(e)) from e
    if claims.get("typ") != "chatkit_session":
        raise HTTPException(401, "not a client secret")
    return claims["sub"]


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.post("/chatkit")
async def chatkit(request: Request, user: str = Depends(current_user)):
    result = await server.process(await request.body(), user)
    if isinstance(result, StreamingResult):
        return StreamingResponse(result, media_type="text/event-stream")
    return Response(content=result.json, media_type="application/json")


async def init() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


def gateway(base: str, secret: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + "/chatkit", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def every(base: str, secret: str, kind: str, params: dict) -> list[dict]:
    """Every element of a ChatKit list, oldest first, page by page."""
    out, after = [], None
    while True:
        page = gateway(base, secret, {"type": kind, "params": {
            **params, "limit": 100, "order": "asc", **({"after": after} if after else {})}})
        out += page["data"]
        if not page.get("has_more"):
            return out
        after = page["after"]


async def copy(base: str, secret: str, messages: list[str]) -> None:
    """The user's threads and items as the gateway's ChatKit API lists them, stored here
    under the same ids: both sides of a run then serve the same data. Prints the text of
    the last answer the gateway gave each of `messages`, as a JSON object."""
    user = jwt.decode(secret, options={"verify_signature": False})["sub"]
    asked, answers = None, {}
    for thread in every(base, secret, "threads.list", {}):
        meta = ThreadMetadata.model_validate({k: v for k, v in thread.items() if k != "items"})
        await store.save_thread(meta, user)
        for item in every(base, secret, "items.list", {"thread_id": meta.id}):
            await store.add_thread_item(meta.id, ITEM_ADAPTER.validate_python(item), user)
            if item["type"] == "user_message":
                asked = "".join(p.get("text") or "" for p in item["content"])
            elif item["type"] == "assistant_message" and asked in messages:
                answers[asked] = "".join(p["text"] for p in item["content"])
                asked = None
    await engine.dispose()
    missing = [m for m in messages if m not in answers]
    if missing:
        sys.exit(f"the gateway never answered {missing!r}")
    if messages:
        print(json.dumps(answers))


if __name__ == "__main__":
    if sys.argv[1:] == ["init"]:
        asyncio.run(init())
    elif sys.argv[1:2] == ["copy"] and len(sys.argv) >= 4:
        asyncio.run(copy(sys.argv[2], sys.argv[3], sys.argv[4:]))
    else:
        sys.exit(__doc__)
