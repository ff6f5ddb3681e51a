// The ChatKit protocol endpoint (`POST /chatkit`) read through createGatewayFetch, as the
// widget reads it in custom-backend mode. Run by `test.sh`.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createGatewayFetch } from "../src/gatewayFetch.js";
import { emptyPanel, panelReducer, tasksChangedOf, type PanelState } from "../example/src/taskPanelState.js";
import { recordingFetch, startGateway, type Gateway } from "./gateway.js";

interface Item {
  id: string;
  type: string;
  thread_id: string;
  content?: { type: string; text: string }[];
  widget?: Widget;
}
/** A widget component, as far as these tests read it. */
interface Widget {
  type: string;
  key?: string;
  children?: Widget[];
  onChangeAction?: { type: string; payload?: Record<string, unknown> };
}
interface StreamEvent {
  type: string;
  name?: string;
  data?: Record<string, unknown>;
  thread?: { id: string };
  item?: Item;
  item_id?: string;
  update?: { type: string; delta?: string };
}

let gw: Gateway;

before(async () => {
  gw = await startGateway();
});

after(async () => {
  await gw?.stop();
});

function kit(user: string) {
  const rec = recordingFetch();
  const gf = createGatewayFetch({
    gatewayUrl: gw.url,
    getUpstreamToken: () => gw.devToken(user),
    fetch: rec.fetch,
  });
  return { gf, ...rec };
}

/** One request to the endpoint, as the widget sends it. */
function chatkit(gf: typeof fetch, type: string, params: unknown): Promise<Response> {
  return gf(`${gw.url}/chatkit`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ type, params }),
  });
}

function userInput(text: string) {
  return { content: [{ type: "input_text", text }], attachments: [], inference_options: {} };
}

/** The stream's events, after checking the framing is exactly `data: <one line>\n\n`. */
async function events(res: Response): Promise<StreamEvent[]> {
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const text = await res.text();
  assert.match(text, /^(data: [^\n]+\n\n)+$/, "only `data:` frames: no event lines, comments or [DONE]");
  return text
    .split("\n\n")
    .filter((frame) => frame !== "")
    .map((frame) => JSON.parse(frame.slice("data: ".length)) as StreamEvent);
}

function assistantText(stream: StreamEvent[]): { id: string; text: string; deltas: string } {
  const done = stream.find((e) => e.type === "thread.item.done" && e.item?.type === "assistant_message");
  assert.ok(done?.item, "an assistant_message is done");
  const id = done.item.id;
  const added = stream.find((e) => e.type === "thread.item.added" && e.item?.id === id);
  assert.ok(added, "the assistant message keeps its id from added to done");
  const deltas = stream
    .filter((e) => e.item_id === id && e.update?.type === "assistant_message.content_part.text_delta")
    .map((e) => e.update!.delta ?? "")
    .join("");
  return { id, text: done.item.content!.map((c) => c.text).join(""), deltas };
}

/** Every component of `widget`, depth first. */
function components(widget: Widget): Widget[] {
  return [widget, ...(widget.children ?? []).flatMap(components)];
}

/** The stream's `tasks.changed` effects, their data as sent. */
function tasksChanged(stream: StreamEvent[]): Record<string, unknown>[] {
  return stream.filter((e) => e.type === "client_effect" && e.name === "tasks.changed").map((e) => e.data!);
}

describe("POST /chatkit through createGatewayFetch", () => {
  test("threads.create streams a turn the widget can render, and the thread lists afterwards", async () => {
    const { gf } = kit("kit-chatkit-create");
    const stream = await events(
      await chatkit(gf, "threads.create", { input: userInput("add a task to buy milk") }),
    );

    assert.equal(stream[0]!.type, "thread.created");
    const threadId = stream[0]!.thread!.id;
    const user = stream.find((e) => e.type === "thread.item.done" && e.item?.type === "user_message");
    assert.equal(user?.item?.content?.[0]?.text, "add a task to buy milk");
    const answer = assistantText(stream);
    assert.match(answer.text, /buy milk/);
    assert.equal(answer.deltas, answer.text);
    for (const e of stream) if (e.item) assert.equal(e.item.thread_id, threadId);

    const listed = await chatkit(gf, "threads.list", { limit: 10 });
    assert.equal(listed.status, 200);
    const page = (await listed.json()) as { data: { id: string }[] };
    assert.deepEqual(
      page.data.map((t) => t.id),
      [threadId],
    );

    const items = await chatkit(gf, "items.list", { thread_id: threadId, order: "asc" });
    assert.equal(items.status, 200);
    const ids = ((await items.json()) as { data: Item[] }).data.map((i) => i.id);
    assert.ok(ids.includes(user!.item!.id) && ids.includes(answer.id), "the streamed items are stored");
  });

  test("a revoked secret is renewed before any byte streams, and the turn goes through", async () => {
    const { gf, wire, count } = kit("kit-chatkit-revoked");
    const created = await events(await chatkit(gf, "threads.create", { input: userInput("list my tasks") }));
    const threadId = created[0]!.thread!.id;
    await fetch(`${gw.url}/api/chatkit/session`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${await gf.clientSecret()}` },
    });

    const stream = await events(
      await chatkit(gf, "threads.add_user_message", { thread_id: threadId, input: userInput("add a task to call mom") }),
    );
    assert.ok(!stream.some((e) => e.type === "thread.created"));
    assert.match(assistantText(stream).text, /call mom/);
    assert.deepEqual(
      wire.filter((e) => e.path === "/chatkit").map((e) => e.status),
      [200, 401, 200],
    );
    assert.equal(count("/api/chatkit/session"), 2);
  });

  test("adding a task sends tasks.changed {task_ids, change}; a click on the task widget too", async () => {
    const { gf } = kit("kit-chatkit-effects");
    const stream = await events(await chatkit(gf, "threads.create", { input: userInput("add a task to buy milk") }));
    const threadId = stream[0]!.thread!.id;

    const [added, ...more] = tasksChanged(stream);
    assert.deepEqual(more, [], "one effect for one added task");
    assert.deepEqual(Object.keys(added!).sort(), ["change", "task_ids"], "exactly {task_ids, change}");
    assert.equal(added!.change, "added");
    const ids = added!.task_ids as number[];
    assert.equal(ids.length, 1);
    const taskId = ids[0]!;
    assert.ok(Number.isInteger(taskId) && taskId > 0, `an integer task id: ${JSON.stringify(added)}`);

    // The turn ends with the task-list widget: its row for that task has the checkbox a user clicks.
    const widgetItem = stream.filter((e) => e.type === "thread.item.done" && e.item?.type === "widget").at(-1)?.item;
    assert.ok(widgetItem?.widget, "the turn shows a task widget");
    const row = components(widgetItem.widget).find((c) => c.key === `task-${taskId}`);
    assert.ok(row, `the widget has a row for task ${taskId}`);
    const checkbox = components(row).find((c) => c.type === "Checkbox");
    assert.deepEqual(checkbox?.onChangeAction?.payload, { task_id: taskId });

    // Ticking it: the widget sends the control's action as it was configured.
    const { type, payload } = checkbox!.onChangeAction!;
    const clicked = await events(
      await chatkit(gf, "threads.custom_action", { thread_id: threadId, item_id: widgetItem.id, action: { type, payload } }),
    );
    assert.deepEqual(tasksChanged(clicked), [{ task_ids: [taskId], change: "completed" }]);

    // The example page's panel reads both effects as sent (onEffect hands it {name, data}).
    let panel: PanelState = emptyPanel;
    for (const data of [added!, ...tasksChanged(clicked)]) {
      const changed = tasksChangedOf({ name: "tasks.changed", data });
      assert.ok(changed, `the example understands ${JSON.stringify(data)}`);
      panel = panelReducer(panel, { type: "changed", changed });
    }
    assert.deepEqual(
      panel.tasks.map((t) => [t.id, t.state]),
      [[taskId, "done"]],
    );
    assert.deepEqual(
      panel.log.map((e) => e.text),
      [`Task ${taskId} completed`, `Task ${taskId} added`],
    );
  });

  test("listing tasks changes none: no tasks.changed", async () => {
    const { gf } = kit("kit-chatkit-effects-list");
    await events(await chatkit(gf, "threads.create", { input: userInput("add a task to water the plants") }));
    const listed = await events(await chatkit(gf, "threads.create", { input: userInput("list my tasks") }));
    assert.deepEqual(tasksChanged(listed), []);
  });
});
