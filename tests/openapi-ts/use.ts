// A small client written against the generated types: if the document loses an operation,
// a field or an enum value this file uses, `tsc --noEmit` fails.
import type { components, operations, paths } from "./schema";

type Message = components["schemas"]["Message"];
type SendBody = operations["sendMessage"]["requestBody"]["content"]["application/json; charset=utf-8"];
type Sent = paths["/api/chatkit/messages"]["post"]["responses"][200]["content"]["application/json"];

const roles: Message["role"][] = ["user", "assistant"];
const statuses: Message["status"][] = ["pending", "completed", "failed"];

function describe(m: Message): string {
  const when: string = m.created_at;
  const rating: "positive" | "negative" | null | undefined = m.feedback;
  return `${m.role} at ${when}: ${m.content} (${m.status}, ${rating ?? "unrated"})`;
}

async function send(base: string, secret: string, body: SendBody): Promise<Sent> {
  const resp = await fetch(`${base}/api/chatkit/messages`, {
    method: "POST",
    headers: { Authorization: `Bearer ${secret}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return (await resp.json()) as Sent;
}

async function main(): Promise<void> {
  const sent = await send("http://127.0.0.1:8000", "secret", {
    thread_id: null,
    message: "Remind me to buy milk",
  });
  const tools: string[] = sent.tool_calls.map((c) => c.tool);
  const threadId: string = sent.thread_id;
  console.log(tools, threadId, roles, statuses, describe);
}

void main;
