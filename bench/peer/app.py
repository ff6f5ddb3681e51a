"""The Python peer of chatkit-gateway's REST API, for `bench/bench.sh --db postgres --peer`.

What the REST benchmark compares the gateway against: the FastAPI + SQLAlchemy (asyncpg) backend
the Python teams built, written here the way their notes describe it (../shared/seeds), not
tuned and not crippled. It serves the four rows the comparison measures, with the same
semantics as the gateway's:

- POST /api/chatkit/session: verifies an HS256 upstream JWT (BETTER_AUTH_SECRET) and mints
  an HS256 client secret with its own audience and type;
- GET  /api/chatkit/threads: the user's 20 most recently active threads;
- GET  /api/chatkit/threads/{id}: the thread and its latest 50 messages, oldest first
  (another user's thread is a 404);
- POST /api/chatkit/messages: records the user's message, reads the history window, answers
  with a fixed fallback text (the gateway's built-in agent answers "hello" the same way,
  without a tool), records the answer and bumps the thread, in one transaction.

Not part of the product and not tested by the suite: a benchmark fixture.

    python app.py init        # creates the tables in $DATABASE_URL
    uvicorn app:app --workers 2
"""

import asyncio
import os
import sys
import time
import uuid
from datetime import datetime, timezone

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import DateTime, ForeignKey, Index, String, Text, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SECRET = os.environ["BETTER_AUTH_SECRET"]
# Client secrets get their own key, as the gateway's do.
CLIENT_SECRET_KEY = SECRET + ":chatkit"
DATABASE_URL = os.environ["DATABASE_URL"]
SECRET_TTL = 900
FALLBACK = (
    "I can help you manage your tasks: ask me to add, list, complete, update or delete one."
)

# Plain TCP to a local server, as bench/bench.sh connects the gateway (sslmode=disable;
# asyncpg, like sqlx, would otherwise negotiate TLS with a server that offers it).
engine = create_async_engine(
    DATABASE_URL, pool_size=10, max_overflow=10, connect_args={"ssl": False}
)
Session = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


def now() -> datetime:
    return datetime.now(timezone.utc)


class Thread(Base):
    __tablename__ = "peer_threads"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    user_id: Mapped[str] = mapped_column(String)
    title: Mapped[str] = mapped_column(String, default="New chat")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    __table_args__ = (Index("peer_threads_activity", "user_id", "updated_at"),)


class Message(Base):
    __tablename__ = "peer_messages"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("peer_threads.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    __table_args__ = (Index("peer_messages_thread", "thread_id", "created_at"),)


app = FastAPI(title="chatkit peer")


async def db():
    async with Session() as session:
        yield session


def error(status: int, code: str, message: str) -> HTTPException:
    return HTTPException(status, detail={"code": code, "message": message})


def bearer(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise error(401, "auth.missing", "no bearer token")
    return authorization[7:]


# async: a plain `def` dependency would run on FastAPI's thread pool, a thread hop per request.
async def current_user(authorization: str | None = Header(default=None)) -> str:
    try:
        claims = jwt.decode(
            bearer(authorization),
            CLIENT_SECRET_KEY,
            algorithms=["HS256"],
            audience="chatkit",
            leeway=30,
        )
    except jwt.PyJWTError as e:
        raise error(401, "auth.invalid", str(e)) from e
    if claims.get("typ") != "chatkit_client_secret":
        raise error(401, "auth.invalid", "not a client secret")
    return claims["sub"]


def thread_json(t: Thread, count: int) -> dict:
    return {
        "id": t.id,
        "title": t.title,
        "created_at": t.created_at.isoformat(),
        "updated_at": t.updated_at.isoformat(),
        "message_count": count,
        "metadata": {},
    }


def message_json(m: Message) -> dict:
    return {
        "id": m.id,
        "role": m.role,
        "content": m.content,
        "created_at": m.created_at.isoformat(),
        "status": "completed",
        "feedback": None,
    }


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.post("/api/chatkit/session")
async def session(authorization: str | None = Header(default=None)):
    try:
        claims = jwt.decode(bearer(authorization), SECRET, algorithms=["HS256"], leeway=30,
                            options={"verify_aud": False})
    except jwt.PyJWTError as e:
        raise error(401, "auth.invalid", str(e)) from e
    user = claims.get("sub")
    if not user:
        raise error(401, "auth.invalid", "no subject")
    issued = int(time.time())
    secret = jwt.encode(
        {"sub": user, "aud": "chatkit", "typ": "chatkit_client_secret", "iat": issued,
         "exp": issued + SECRET_TTL, "jti": uuid.uuid4().hex},
        CLIENT_SECRET_KEY,
        algorithm="HS256",
    )
    expires = datetime.fromtimestamp(issued + SECRET_TTL, timezone.utc)
    return {"client_secret": secret, "user_id": user, "expires_at": expires.isoformat(),
            "expires_in": SECRET_TTL}


# Each thread with its message count, in the same statement.
message_count = (
    select(func.count()).where(Message.thread_id == Thread.id).correlate(Thread)
    .scalar_subquery()
)


@app.get("/api/chatkit/threads")
async def list_threads(user: str = Depends(current_user), db: AsyncSession = Depends(db)):
    rows = (await db.execute(
        select(Thread, message_count).where(Thread.user_id == user)
        .order_by(Thread.updated_at.desc()).limit(20)
    )).all()
    return {"data": [thread_json(t, n) for t, n in rows], "has_more": False}


async def own_thread(db: AsyncSession, user: str, thread_id: str) -> Thread:
    thread = await db.scalar(
        select(Thread).where(Thread.id == thread_id, Thread.user_id == user)
    )
    if thread is None:
        raise error(404, "thread.not_found", "no such thread")
    return thread


@app.post("/api/chatkit/threads")
async def create_thread(user: str = Depends(current_user), db: AsyncSession = Depends(db)):
    thread = Thread(id="thr_" + uuid.uuid4().hex, user_id=user)
    db.add(thread)
    await db.commit()
    return thread_json(thread, 0)


@app.get("/api/chatkit/threads/{thread_id}")
async def get_thread(thread_id: str, user: str = Depends(current_user),
                     db: AsyncSession = Depends(db)):
    row = (await db.execute(
        select(Thread, message_count).where(Thread.id == thread_id, Thread.user_id == user)
    )).first()
    if row is None:
        raise error(404, "thread.not_found", "no such thread")
    thread, count = row
    latest = (await db.scalars(
        select(Message).where(Message.thread_id == thread.id)
        .order_by(Message.created_at.desc()).limit(51)
    )).all()
    messages = list(reversed(latest[:50]))
    return {**thread_json(thread, count),
            "messages": [message_json(m) for m in messages],
            "has_more": len(latest) > 50, "after": None}


class SendMessage(BaseModel):
    thread_id: str | None = None
    message: str


@app.post("/api/chatkit/messages")
async def send_message(body: SendMessage, user: str = Depends(current_user),
                       db: AsyncSession = Depends(db)):
    text = body.message.strip()
    if not text or len(text) > 8000:
        raise error(422, "request.invalid", "message is empty or too long")
    if body.thread_id is None:
        thread = Thread(id="thr_" + uuid.uuid4().hex, user_id=user, title=text[:60])
        db.add(thread)
        await db.flush()
    else:
        thread = await own_thread(db, user, body.thread_id)
    mine = Message(id="msg_" + uuid.uuid4().hex, thread_id=thread.id, role="user", content=text)
    db.add(mine)
    await db.flush()
    # The history window the agent would be given: read as the peers do, though the
    # fallback answer does not use it.
    (await db.scalars(
        select(Message).where(Message.thread_id == thread.id)
        .order_by(Message.created_at.desc()).limit(20)
    )).all()
    answer = Message(id="msg_" + uuid.uuid4().hex, thread_id=thread.id, role="assistant",
                     content=FALLBACK)
    db.add(answer)
    await db.execute(update(Thread).where(Thread.id == thread.id).values(updated_at=now()))
    await db.commit()
    return {"message_id": mine.id, "response_id": answer.id, "response": FALLBACK,
            "thread_id": thread.id, "tool_calls": []}


async def init() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


if __name__ == "__main__" and sys.argv[1:] == ["init"]:
    asyncio.run(init())
