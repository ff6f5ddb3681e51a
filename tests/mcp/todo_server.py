"""A todo app's MCP server for the gateway's tests, written with the official SDK (FastMCP).

It verifies the gateway's identity token on every request (HS256, aud = its name,
iss = the gateway, exp within 60 s), keeps tasks per verified `sub`, and serves the eleven
task tools a todo app exposes, plus `slow_task` (for timeouts) and `enable_reports` (which
adds a tool and sends notifications/tools/list_changed).

    python todo_server.py --port 8765 --secret S [--name app] [--issuer chatkit-gateway]

GET /debug/identities lists the verified claims of the tool calls seen (for the tests).
"""

import argparse
import asyncio
import json
from typing import Any

import jwt
import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from starlette.requests import Request
from starlette.responses import JSONResponse

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--secret", required=True)
parser.add_argument("--name", default="app")
parser.add_argument("--issuer", default="chatkit-gateway")
args = parser.parse_args()

mcp = FastMCP("todo", host="127.0.0.1", port=args.port)

# sub -> {"next": int, "tasks": {number: task}}
STORE: dict[str, dict[str, Any]] = {}
IDENTITIES: list[dict[str, Any]] = []
REJECTED: list[str] = []


def verify(authorization: str | None) -> dict[str, Any]:
    """The claims of a valid identity token, or an exception."""
    if not authorization or not authorization.startswith("Bearer "):
        raise PermissionError("no bearer token")
    claims = jwt.decode(
        authorization.removeprefix("Bearer "),
        args.secret,
        algorithms=["HS256"],
        audience=args.name,
        issuer=args.issuer,
        options={"require": ["exp", "iat", "iss", "aud", "jti"]},
    )
    if claims["exp"] - claims["iat"] > 60:
        raise PermissionError("token lives longer than 60 s")
    return claims


class RequireIdentity:
    """Every MCP request must carry a valid token (tool calls also need a `sub`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/mcp"):
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            try:
                verify(headers.get("authorization"))
            except Exception as e:  # noqa: BLE001 - any failure is a 401
                REJECTED.append(str(e))
                response = JSONResponse({"error": str(e)}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def user_of(ctx: Context) -> str:
    request = ctx.request_context.request
    claims = verify(request.headers.get("authorization"))
    if not claims.get("sub"):
        raise ToolError("this tool acts for a user; the token names none")
    IDENTITIES.append(
        {
            "sub": claims["sub"],
            "aud": claims["aud"],
            "iss": claims["iss"],
            "ttl": claims["exp"] - claims["iat"],
            "jti": claims["jti"],
            "authorization": request.headers.get("authorization"),
            "x_app_version": request.headers.get("x-app-version"),
            "client": ctx.session.client_params.clientInfo.name,
        }
    )
    return claims["sub"]


def tasks_of(ctx: Context) -> dict[str, Any]:
    return STORE.setdefault(user_of(ctx), {"next": 1, "tasks": {}})


def find(ctx: Context, task_id: int) -> dict[str, Any]:
    task = tasks_of(ctx)["tasks"].get(task_id)
    if task is None:
        raise ToolError(f"task {task_id} not found")
    return task


@mcp.tool()
async def add_task(title: str, ctx: Context, description: str | None = None) -> dict[str, Any]:
    """Add a task to the user's list."""
    if not title.strip():
        raise ToolError("title must not be empty")
    store = tasks_of(ctx)
    n = store["next"]
    store["next"] += 1
    task = {"task_id": n, "title": title.strip(), "description": description,
            "completed": False, "due_date": None, "priority": "medium"}
    store["tasks"][n] = task
    return {"task": task}


@mcp.tool()
async def list_tasks(ctx: Context, status: str = "all") -> dict[str, Any]:
    """List the user's tasks (status: all, pending or completed)."""
    if status not in ("all", "pending", "completed"):
        raise ToolError("status must be all, pending or completed")
    tasks = list(tasks_of(ctx)["tasks"].values())
    if status != "all":
        tasks = [t for t in tasks if t["completed"] == (status == "completed")]
    return {"tasks": tasks}


@mcp.tool()
async def search_tasks(query: str, ctx: Context) -> dict[str, Any]:
    """Tasks whose title contains the query (case-insensitive)."""
    q = query.lower()
    return {"tasks": [t for t in tasks_of(ctx)["tasks"].values() if q in t["title"].lower()]}


@mcp.tool()
async def complete_task(task_id: int, ctx: Context) -> dict[str, Any]:
    """Mark a task as done."""
    task = find(ctx, task_id)
    task["completed"] = True
    return {"task": task}


@mcp.tool()
async def reopen_task(task_id: int, ctx: Context) -> dict[str, Any]:
    """Mark a done task as pending again."""
    task = find(ctx, task_id)
    task["completed"] = False
    return {"task": task}


@mcp.tool()
async def update_task(task_id: int, title: str, ctx: Context) -> dict[str, Any]:
    """Change a task's title."""
    task = find(ctx, task_id)
    task["title"] = title.strip()
    return {"task": task}


@mcp.tool()
async def set_due_date(task_id: int, due_date: str, ctx: Context) -> dict[str, Any]:
    """Set a task's due date (YYYY-MM-DD)."""
    task = find(ctx, task_id)
    task["due_date"] = due_date
    return {"task": task}


@mcp.tool()
async def set_priority(task_id: int, priority: str, ctx: Context) -> dict[str, Any]:
    """Set a task's priority: low, medium or high."""
    if priority not in ("low", "medium", "high"):
        raise ToolError("priority must be low, medium or high")
    task = find(ctx, task_id)
    task["priority"] = priority
    return {"task": task}


@mcp.tool()
async def delete_task(task_id: int, ctx: Context) -> dict[str, Any]:
    """Delete a task."""
    find(ctx, task_id)
    return {"deleted": tasks_of(ctx)["tasks"].pop(task_id)}


@mcp.tool()
async def clear_completed(ctx: Context) -> dict[str, Any]:
    """Delete every completed task."""
    tasks = tasks_of(ctx)["tasks"]
    done = [n for n, t in tasks.items() if t["completed"]]
    for n in done:
        del tasks[n]
    return {"cleared": len(done)}


@mcp.tool()
async def task_counts(ctx: Context) -> dict[str, Any]:
    """How many tasks the user has, pending and completed."""
    tasks = list(tasks_of(ctx)["tasks"].values())
    done = sum(1 for t in tasks if t["completed"])
    return {"total": len(tasks), "pending": len(tasks) - done, "completed": done}


@mcp.tool()
async def slow_task(seconds: float, ctx: Context) -> dict[str, Any]:
    """Takes its time (for timeout tests)."""
    user_of(ctx)
    await asyncio.sleep(seconds)
    return {"slept": seconds}


async def weekly_report(ctx: Context) -> dict[str, Any]:
    """A summary of the week (added at run time by enable_reports)."""
    return {"report": "all good", "for": user_of(ctx)}


@mcp.tool()
async def enable_reports(ctx: Context) -> dict[str, Any]:
    """Adds the weekly_report tool and tells clients the tool list changed."""
    user_of(ctx)
    mcp.add_tool(weekly_report)
    await ctx.session.send_tool_list_changed()
    return {"enabled": True}


@mcp.custom_route("/debug/identities", methods=["GET"])
async def identities(_: Request) -> JSONResponse:
    return JSONResponse({"calls": IDENTITIES, "rejected": REJECTED})


if __name__ == "__main__":
    app = mcp.streamable_http_app()
    app.add_middleware(RequireIdentity)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
