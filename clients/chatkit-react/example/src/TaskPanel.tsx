// The page's side of the gateway's task effects: a panel beside the widget that follows
// `tasks.changed` and answers the `highlight_tasks` client tool. The logic is in
// taskPanelState.ts (tested in Node); this file holds the React state and draws it.

import { useCallback, useEffect, useReducer } from "react";

import {
  clientToolCall,
  emptyPanel,
  panelReducer,
  tasksChangedOf,
  type PanelState,
  type PanelTask,
} from "./taskPanelState";

/** How long an effect's tasks stay marked as just changed. */
const CHANGED_MARK_MS = 4000;

/** The panel's state, and the two handlers for useChatKit's options. */
export function useTaskPanel() {
  const [state, dispatch] = useReducer(panelReducer, emptyPanel);

  // Changes fade a moment after the newest one (an unmark clears the earlier ones too).
  const newestChange = Math.max(0, ...state.tasks.map((t) => (t.mark?.kind === "changed" ? t.mark.seq : 0)));
  useEffect(() => {
    if (newestChange === 0) return;
    const timer = setTimeout(() => dispatch({ type: "unmark", seq: newestChange }), CHANGED_MARK_MS);
    return () => clearTimeout(timer);
  }, [newestChange]);

  const onEffect = useCallback((effect: { name: string; data?: Record<string, unknown> }) => {
    const changed = tasksChangedOf(effect);
    // A real app refreshes its task list from its own task API here (e.g. refetch
    // GET /api/tasks, or invalidate that query); this example has none, so the panel keeps
    // what the effect says: which tasks changed, and how.
    if (changed) dispatch({ type: "changed", changed });
  }, []);

  const onClientTool = useCallback((call: { name: string; params: Record<string, unknown> }) => {
    const { action, result } = clientToolCall(call);
    if (action) dispatch(action);
    return result;
  }, []);

  return { state, onEffect, onClientTool };
}

const panelStyle = {
  width: 280,
  minHeight: 200,
  border: "1px solid #ddd",
  borderRadius: 8,
  padding: "12px 16px",
  fontFamily: "system-ui, sans-serif",
  fontSize: 14,
  lineHeight: 1.45,
  color: "#222",
  background: "#fafafa",
} as const;

const STATE_LABEL: Record<PanelTask["state"], string> = {
  open: "open",
  done: "done",
  deleted: "deleted",
  unknown: "state unknown",
};

function markStyle(task: PanelTask) {
  if (task.mark?.kind === "highlighted") return { background: "#fff3b0", outline: "2px solid #e0b400" };
  if (task.mark?.kind === "changed") return { background: "#e3f2ff", transition: "background 0.3s" };
  return { transition: "background 1s" };
}

function TaskLine({ task }: { task: PanelTask }) {
  return (
    <li
      data-task-id={task.id}
      data-state={task.state}
      data-mark={task.mark?.kind ?? "none"}
      style={{ display: "flex", gap: 8, padding: "4px 6px", borderRadius: 4, ...markStyle(task) }}
    >
      <span aria-hidden>{task.state === "done" ? "☑" : task.state === "deleted" ? "☒" : "☐"}</span>
      <span style={{ whiteSpace: "nowrap", textDecoration: task.state === "deleted" ? "line-through" : undefined }}>
        Task {task.id}
      </span>
      <span style={{ marginLeft: "auto", color: "#666", textAlign: "right" }}>
        {STATE_LABEL[task.state]}
        {task.mark?.kind === "highlighted" ? " · highlighted" : ""}
      </span>
    </li>
  );
}

export function TaskPanel({ state }: { state: PanelState }) {
  return (
    <aside id="task-panel" aria-labelledby="task-panel-title" data-task-count={state.tasks.length} style={panelStyle}>
      <h2 id="task-panel-title" style={{ fontSize: 16, margin: "0 0 4px" }}>
        Tasks changed on this page
      </h2>
      <p style={{ margin: "0 0 8px", color: "#666", fontSize: 12 }}>
        Kept from the widget's <code>tasks.changed</code> effects, which carry task ids and the change, not titles. A
        real app reloads its task list from its own API on each effect.
      </p>
      {state.tasks.length === 0 ? (
        <p id="task-panel-empty" style={{ color: "#666" }}>
          No task has changed yet. Ask the assistant to add one.
        </p>
      ) : (
        <ul style={{ listStyle: "none", margin: 0, padding: 0 }}>
          {state.tasks.map((task) => (
            <TaskLine key={task.id} task={task} />
          ))}
        </ul>
      )}
      {state.log.length > 0 && (
        <>
          <h3 style={{ fontSize: 13, margin: "12px 0 4px" }}>Effects received, newest first</h3>
          <ul id="task-panel-log" style={{ margin: 0, paddingLeft: 20, color: "#444", fontSize: 12 }}>
            {state.log.map((entry) => (
              <li key={entry.seq}>{entry.text}</li>
            ))}
          </ul>
        </>
      )}
    </aside>
  );
}
