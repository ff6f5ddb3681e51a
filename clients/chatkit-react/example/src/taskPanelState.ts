// The task panel's logic, apart from React and the DOM so that Node tests can run it
// (test/taskPanelState.test.ts): what a `tasks.changed` effect and a `highlight_tasks`
// client tool call do to the panel. TaskPanel.tsx draws it; App.tsx wires it to the widget.
//
// The page knows only what the effects tell it (task ids and how they changed), not titles:
// the gateway has no task route to read. A real app would refresh its task list from its
// own task API on each `tasks.changed` instead, and keep only the marking from here.

/** How tasks changed: the gateway's `tasks.changed` effect data, `change`. */
export const TASK_CHANGES = ["added", "completed", "reopened", "updated", "deleted"] as const;
export type TaskChange = (typeof TASK_CHANGES)[number];

/** `tasks.changed` data: `{"task_ids": [3], "change": "completed"}`. */
export interface TasksChanged {
  taskIds: number[];
  change: TaskChange;
}

/** What the page knows of a task: from its last change, or nothing yet (`unknown`). */
export type TaskState = "open" | "done" | "deleted" | "unknown";

export interface PanelTask {
  id: number;
  state: TaskState;
  /** The last change an effect reported; null when only a highlight named the task. */
  lastChange: TaskChange | null;
  /** Marked just now: `changed` by an effect (briefly), `highlighted` by the client tool. */
  mark: { kind: "changed" | "highlighted"; seq: number } | null;
}

export interface PanelState {
  /** By id, ascending. */
  tasks: PanelTask[];
  /** The effects received, newest first, at most LOG_LIMIT: "Task 3 completed". */
  log: { seq: number; text: string }[];
  /** Counts the actions that mark tasks: a mark's `seq` says which one set it. */
  seq: number;
}

export const LOG_LIMIT = 20;
/** At most this many ids in one highlight call (a model could send any array). */
export const HIGHLIGHT_LIMIT = 100;

export const emptyPanel: PanelState = { tasks: [], log: [], seq: 0 };

export type PanelAction =
  | { type: "changed"; changed: TasksChanged }
  | { type: "highlight"; taskIds: number[] }
  /**
   * Clears the `changed` marks of the actions up to `seq` (the component sends it a moment
   * after a change). Highlights stay until the next highlight call.
   */
  | { type: "unmark"; seq: number };

const isTaskId = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v > 0;

/** Distinct, in first-seen order. */
const distinct = (ids: number[]) => [...new Set(ids)];

/**
 * The `tasks.changed` data of an effect as the widget hands it to `onEffect`
 * (`{name, data}`), or null: another effect, or data not of the documented shape.
 */
export function tasksChangedOf(effect: { name: string; data?: Record<string, unknown> }): TasksChanged | null {
  if (effect.name !== "tasks.changed") return null;
  const ids = effect.data?.task_ids;
  const change = effect.data?.change;
  if (!Array.isArray(ids) || ids.length === 0 || !ids.every(isTaskId)) return null;
  if (!(TASK_CHANGES as readonly unknown[]).includes(change)) return null;
  return { taskIds: distinct(ids), change: change as TaskChange };
}

/** "Task 3 completed", "Tasks 3, 4 deleted". */
export function describeChange({ taskIds, change }: TasksChanged): string {
  const noun = taskIds.length === 1 ? "Task" : "Tasks";
  return `${noun} ${taskIds.join(", ")} ${change}`;
}

function stateAfter(change: TaskChange, before: TaskState): TaskState {
  switch (change) {
    case "added":
    case "reopened":
      return "open";
    case "completed":
      return "done";
    case "deleted":
      return "deleted";
    case "updated":
      // An update may change the title, the due date or the completion: the effect does not
      // say which, so what the page knew still stands.
      return before;
  }
}

/** `tasks` with `apply` run on each of `ids` (added as `unknown` when new), by id. */
function upsert(tasks: PanelTask[], ids: number[], apply: (t: PanelTask) => PanelTask): PanelTask[] {
  const byId = new Map(tasks.map((t) => [t.id, t]));
  for (const id of ids) {
    byId.set(id, apply(byId.get(id) ?? { id, state: "unknown", lastChange: null, mark: null }));
  }
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

export function panelReducer(state: PanelState, action: PanelAction): PanelState {
  switch (action.type) {
    case "changed": {
      const seq = state.seq + 1;
      const { taskIds, change } = action.changed;
      return {
        seq,
        tasks: upsert(state.tasks, taskIds, (t) => ({
          ...t,
          state: stateAfter(change, t.state),
          lastChange: change,
          mark: { kind: "changed", seq },
        })),
        log: [{ seq, text: describeChange(action.changed) }, ...state.log].slice(0, LOG_LIMIT),
      };
    }
    case "highlight": {
      const seq = state.seq + 1;
      const ids = new Set(action.taskIds);
      // One highlight at a time: the previous call's highlights go.
      const cleared = state.tasks.map((t) =>
        t.mark?.kind === "highlighted" && !ids.has(t.id) ? { ...t, mark: null } : t,
      );
      return {
        ...state,
        seq,
        tasks: upsert(cleared, action.taskIds, (t) => ({ ...t, mark: { kind: "highlighted", seq } })),
      };
    }
    case "unmark": {
      const fading = (t: PanelTask) => t.mark?.kind === "changed" && t.mark.seq <= action.seq;
      if (!state.tasks.some(fading)) return state;
      return { ...state, tasks: state.tasks.map((t) => (fading(t) ? { ...t, mark: null } : t)) };
    }
  }
}

/** The client tool this example declares in the gateway's config (README, "Client tools"). */
export const HIGHLIGHT_TASKS = "highlight_tasks";

/** What a client tool call does: an action for the panel (or none), and the result. */
export interface ClientToolOutcome {
  action: PanelAction | null;
  /** Sent back to the gateway (`threads.add_client_tool_output`), where the model reads it. */
  result: Record<string, unknown>;
}

/**
 * A `highlight_tasks` call (`{task_ids: [int...]}`): highlight those tasks (replacing the
 * previous call's highlights; `[]` clears them) and answer `{"highlighted": n}`, n distinct
 * tasks. Malformed params highlight nothing and say why, so the model can correct itself.
 */
export function highlightCall(params: Record<string, unknown>): ClientToolOutcome {
  const ids = params.task_ids;
  if (!Array.isArray(ids) || !ids.every(isTaskId)) {
    return { action: null, result: { highlighted: 0, error: "task_ids must be an array of positive integer task ids" } };
  }
  const taskIds = distinct(ids).slice(0, HIGHLIGHT_LIMIT);
  return { action: { type: "highlight", taskIds }, result: { highlighted: taskIds.length } };
}

/**
 * The page's `onClientTool`, minus React: the widget calls it with `{name, params}` for every
 * client tool the model calls. A tool this page does not know gets an error result rather
 * than a thrown error, so the answer still continues.
 */
export function clientToolCall(call: { name: string; params: Record<string, unknown> }): ClientToolOutcome {
  if (call.name === HIGHLIGHT_TASKS) return highlightCall(call.params ?? {});
  return { action: null, result: { error: `this page has no client tool named ${JSON.stringify(call.name)}` } };
}
