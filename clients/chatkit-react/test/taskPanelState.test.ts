// The example's task panel logic (example/src/taskPanelState.ts) without React or a
// widget: what `tasks.changed` effects and `highlight_tasks` client tool calls do to the
// panel. The real widget cannot run in CI (it loads from OpenAI's CDN);
// chatkit-endpoint.test.ts checks that a real gateway's effects parse here, and
// tests/browser/example.test.mjs that the page wires this to the widget's events.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  clientToolCall,
  describeChange,
  emptyPanel,
  HIGHLIGHT_LIMIT,
  LOG_LIMIT,
  panelReducer,
  tasksChangedOf,
  type PanelAction,
  type PanelState,
} from "../example/src/taskPanelState.js";

const effect = (data: Record<string, unknown>, name = "tasks.changed") => ({ name, data });

/** `actions` applied in order from the empty panel. */
const run = (...actions: PanelAction[]): PanelState => actions.reduce(panelReducer, emptyPanel);

const changed = (taskIds: number[], change: "added" | "completed" | "reopened" | "updated" | "deleted"): PanelAction => ({
  type: "changed",
  changed: { taskIds, change },
});

/** `[id, state, mark]` per task: the panel as a test reads it. */
const rows = (state: PanelState) => state.tasks.map((t) => [t.id, t.state, t.mark?.kind ?? null]);

describe("tasksChangedOf: the effect's data", () => {
  test("reads {task_ids, change}", () => {
    assert.deepEqual(tasksChangedOf(effect({ task_ids: [3], change: "completed" })), {
      taskIds: [3],
      change: "completed",
    });
    assert.deepEqual(tasksChangedOf(effect({ task_ids: [4, 2, 4], change: "deleted" })), {
      taskIds: [4, 2],
      change: "deleted",
    });
  });

  test("ignores other effects and other shapes", () => {
    for (const bad of [
      effect({ task_ids: [1], change: "added" }, "thread.renamed"),
      effect({ tool: "add_task", task_id: 1 }), // the shape before {task_ids, change}
      effect({ task_ids: [], change: "added" }),
      effect({ task_ids: [1], change: "listed" }),
      effect({ task_ids: ["1"], change: "added" }),
      effect({ task_ids: [1.5], change: "added" }),
      effect({ task_ids: [0], change: "added" }),
      effect({ task_ids: 1, change: "added" }),
      { name: "tasks.changed" },
    ]) {
      assert.equal(tasksChangedOf(bad), null, JSON.stringify(bad));
    }
  });
});

describe("panelReducer", () => {
  test("the empty panel lists nothing", () => {
    assert.deepEqual(emptyPanel, { tasks: [], log: [], seq: 0 });
  });

  test("each change sets the tasks' state, marks them, and logs it", () => {
    let s = run(changed([3], "added"));
    assert.deepEqual(rows(s), [[3, "open", "changed"]]);
    assert.deepEqual(s.log.map((e) => e.text), ["Task 3 added"]);

    s = panelReducer(s, changed([1, 3], "completed"));
    assert.deepEqual(rows(s), [
      [1, "done", "changed"],
      [3, "done", "changed"],
    ]);
    s = panelReducer(s, changed([3], "reopened"));
    s = panelReducer(s, changed([1], "deleted"));
    assert.deepEqual(rows(s).map(([id, state]) => [id, state]), [
      [1, "deleted"],
      [3, "open"],
    ]);
    assert.deepEqual(s.log.map((e) => e.text), ["Task 1 deleted", "Task 3 reopened", "Tasks 1, 3 completed", "Task 3 added"]);
    assert.equal(s.tasks.find((t) => t.id === 1)?.lastChange, "deleted");
  });

  test("an update keeps what the page knew, and a task first seen by it is unknown", () => {
    const s = run(changed([2], "completed"), changed([2, 5], "updated"));
    assert.deepEqual(rows(s).map(([id, state]) => [id, state]), [
      [2, "done"],
      [5, "unknown"],
    ]);
  });

  test("unmark fades the changes up to its seq, newer ones stay", () => {
    const first = run(changed([1], "added"));
    const second = panelReducer(first, changed([2], "added"));
    assert.deepEqual(rows(panelReducer(second, { type: "unmark", seq: first.seq })), [
      [1, "open", null],
      [2, "open", "changed"],
    ]);
    const faded = panelReducer(second, { type: "unmark", seq: second.seq });
    assert.deepEqual(rows(faded), [
      [1, "open", null],
      [2, "open", null],
    ]);
    assert.equal(panelReducer(faded, { type: "unmark", seq: second.seq }), faded, "nothing to fade: same state");
  });

  test("the log keeps the newest LOG_LIMIT effects", () => {
    const s = run(...Array.from({ length: LOG_LIMIT + 5 }, (_, i) => changed([i + 1], "added")));
    assert.equal(s.log.length, LOG_LIMIT);
    assert.equal(s.log[0]!.text, `Task ${LOG_LIMIT + 5} added`);
    assert.equal(s.tasks.length, LOG_LIMIT + 5);
  });

  test("describeChange", () => {
    assert.equal(describeChange({ taskIds: [7], change: "updated" }), "Task 7 updated");
    assert.equal(describeChange({ taskIds: [7, 8], change: "completed" }), "Tasks 7, 8 completed");
  });
});

describe("highlight_tasks", () => {
  /** Runs a call on `state`: the new state and the result for the model. */
  function call(state: PanelState, params: Record<string, unknown>, name = "highlight_tasks") {
    const { action, result } = clientToolCall({ name, params });
    return { state: action ? panelReducer(state, action) : state, result };
  }

  test("highlights the given tasks and answers {highlighted: n}", () => {
    const start = run(changed([1], "added"), changed([2], "completed"));
    const { state, result } = call(start, { task_ids: [2, 3, 2] });
    assert.deepEqual(result, { highlighted: 2 });
    // Task 3 had no effect on this page yet: it is listed, highlighted, state unknown.
    assert.deepEqual(rows(state), [
      [1, "open", "changed"],
      [2, "done", "highlighted"],
      [3, "unknown", "highlighted"],
    ]);
    // Highlights do not fade with the changes.
    assert.deepEqual(rows(panelReducer(state, { type: "unmark", seq: state.seq }))[1], [2, "done", "highlighted"]);
  });

  test("a new call replaces the previous highlights; [] clears them", () => {
    const first = call(emptyPanel, { task_ids: [1, 2] }).state;
    const second = call(first, { task_ids: [2] });
    assert.deepEqual(second.result, { highlighted: 1 });
    assert.deepEqual(rows(second.state), [
      [1, "unknown", null],
      [2, "unknown", "highlighted"],
    ]);
    const cleared = call(second.state, { task_ids: [] });
    assert.deepEqual(cleared.result, { highlighted: 0 });
    assert.ok(cleared.state.tasks.every((t) => t.mark === null));
  });

  test("a change after a highlight marks the task as changed", () => {
    const highlighted = call(emptyPanel, { task_ids: [4] }).state;
    assert.deepEqual(rows(panelReducer(highlighted, changed([4], "completed"))), [[4, "done", "changed"]]);
  });

  test("malformed params highlight nothing and say why", () => {
    for (const params of [{}, { task_ids: "1,2" }, { task_ids: [1, "2"] }, { task_ids: [-1] }, { ids: [1] }]) {
      const { state, result } = call(emptyPanel, params);
      assert.equal(state, emptyPanel, JSON.stringify(params));
      assert.equal(result.highlighted, 0);
      assert.match(String(result.error), /task_ids must be an array/);
    }
  });

  test("at most HIGHLIGHT_LIMIT tasks", () => {
    const ids = Array.from({ length: HIGHLIGHT_LIMIT + 10 }, (_, i) => i + 1);
    const { state, result } = call(emptyPanel, { task_ids: ids });
    assert.deepEqual(result, { highlighted: HIGHLIGHT_LIMIT });
    assert.equal(state.tasks.length, HIGHLIGHT_LIMIT);
  });

  test("another tool name is answered with an error, not thrown", () => {
    const { state, result } = call(emptyPanel, { task_ids: [1] }, "open_settings");
    assert.equal(state, emptyPanel);
    assert.deepEqual(result, { error: 'this page has no client tool named "open_settings"' });
  });
});
