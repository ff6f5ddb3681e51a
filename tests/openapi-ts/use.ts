// A small client written against the generated types: if the document loses an operation,
// a field or an enum value this file uses, `tsc --noEmit` fails.
import type { components, operations, paths } from "./schema";

type Message = components["schemas"]["Message"];
type SendBody = operations["sendMessage"]["requestBody"]["content"]["application/json; charset=utf-8"];
type Sent = paths["/api/chatkit/messages"]["post"]["responses"][200]["content"]["application/json"];
type ThreadQuery = NonNullable<operations["getThread"]["parameters"]["query"]>;
type ChatKitBody = operations["chatkit"]["requestBody"]["content"]["application/json"];
type ChatKitJson = paths["/chatkit"]["post"]["responses"][200]["content"]["application/json"];
type ChatKitFrame = paths["/chatkit"]["post"]["responses"][200]["content"]["text/event-stream"];
type ChatKitItem = components["schemas"]["ChatKitItem"];

const roles: Message["role"][] = ["user", "assistant"];
const statuses: Message["status"][] = ["pending", "completed", "failed", "cancelled"];
const kinds: Message["type"][] = [
  "user_message",
  "assistant_message",
  "workflow",
  "widget",
  "client_tool_call",
  "structured_input",
];
const everything: ThreadQuery["include"] = "all";

function describe(m: Message): string {
  const when: string = m.created_at;
  const rating: "positive" | "negative" | null | undefined = m.feedback;
  return `${m.role} at ${when}: ${m.content} (${m.status}, ${rating ?? "unrated"})`;
}

/** What a REST client draws for an entry of `include=all`, by its typed field. */
function draw(m: Message): string {
  switch (m.type) {
    case "widget":
      return (m.tasks?.tasks ?? [])
        .map((t) => `${t.completed ? "[x]" : "[ ]"} ${t.task_id}. ${t.title}${t.deleted ? " (deleted)" : ""}`)
        .join("\n");
    case "workflow":
      return (m.tool_calls ?? []).map((c) => c.tool).join(", ");
    case "client_tool_call":
      return `${m.client_tool_call?.name}(${JSON.stringify(m.client_tool_call?.arguments)})`;
    case "structured_input":
      return (m.structured_input?.inputs ?? [])
        .map((i) => (i.type === "multiple_choice" ? `${i.question} ${i.options.map((o) => o.value).join("/")}` : i.question))
        .join("\n");
    default:
      return describe(m);
  }
}

async function send(base: string, secret: string, body: SendBody): Promise<Sent> {
  const resp = await fetch(`${base}/api/chatkit/messages`, {
    method: "POST",
    headers: { Authorization: `Bearer ${secret}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return (await resp.json()) as Sent;
}

async function chatkit(base: string, secret: string, body: ChatKitBody): Promise<ChatKitJson> {
  const resp = await fetch(`${base}/chatkit`, {
    method: "POST",
    headers: { Authorization: `Bearer ${secret}` },
    body: JSON.stringify(body),
  });
  return (await resp.json()) as ChatKitJson;
}

/** A stream's frame: its `data` is one event as JSON; a finished item is a `ChatKitItem`. */
function onFrame(frame: ChatKitFrame): string {
  const event = JSON.parse(frame.data) as { type: string; item?: ChatKitItem };
  return event.type === "thread.item.done" && event.item ? `${event.type}: ${event.item.type}` : event.type;
}

async function main(): Promise<void> {
  const sent = await send("http://127.0.0.1:8000", "secret", {
    thread_id: null,
    message: "Remind me to buy milk",
  });
  const tools: string[] = sent.tool_calls.map((c) => c.tool);
  const threadId: string = sent.thread_id;
  const threads = await chatkit("http://127.0.0.1:8000", "secret", { type: "threads.list", params: { limit: 10 } });
  console.log(tools, threadId, roles, statuses, kinds, everything, draw, threads, onFrame);
}

void main;
