import { useEffect, useState } from "react";

/** The only place the <openai-chatkit> element comes from: it is not on npm. */
export const CHATKIT_SCRIPT_URL = "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js";
const ELEMENT = "openai-chatkit";

export type ChatKitScriptState =
  | { status: "loading" }
  | { status: "ready" }
  /** `error`: the script's load failed (offline, blocked, CSP); `timeout`: no element in time. */
  | { status: "failed"; reason: "error" | "timeout"; afterMs: number };

/**
 * The page's <script> for CHATKIT_SCRIPT_URL, added if missing. It is added from here
 * rather than written in index.html so that its `error` event cannot fire before anyone
 * listens: a failed async script in the HTML may finish before this module runs.
 */
function chatkitScript(): HTMLScriptElement {
  const existing = document.querySelector<HTMLScriptElement>(`script[src="${CHATKIT_SCRIPT_URL}"]`);
  if (existing) return existing;
  const script = document.createElement("script");
  script.src = CHATKIT_SCRIPT_URL;
  script.async = true;
  // Remembered on the element: a component mounted after the failure still learns of it.
  script.addEventListener("error", () => (script.dataset.failed = "true"), { once: true });
  document.head.append(script);
  return script;
}

/**
 * Whether <openai-chatkit> is defined: `failed` as soon as the script errors, or after
 * `timeoutMs` without the element. A script that arrives late still turns it `ready`.
 */
export function useChatKitScript(timeoutMs: number): ChatKitScriptState {
  const [state, setState] = useState<ChatKitScriptState>(() =>
    customElements.get(ELEMENT) ? { status: "ready" } : { status: "loading" },
  );

  useEffect(() => {
    if (customElements.get(ELEMENT)) {
      setState({ status: "ready" });
      return;
    }
    let active = true;
    const started = performance.now();
    const fail = (reason: "error" | "timeout") => {
      if (!active) return;
      const afterMs = Math.round(performance.now() - started);
      setState((s) => (s.status === "loading" ? { status: "failed", reason, afterMs } : s));
    };
    const script = chatkitScript();
    const onError = () => fail("error");
    if (script.dataset.failed) fail("error");
    else script.addEventListener("error", onError);
    const timer = setTimeout(() => fail("timeout"), timeoutMs);
    void customElements.whenDefined(ELEMENT).then(() => {
      if (active) setState({ status: "ready" });
    });
    return () => {
      active = false;
      clearTimeout(timer);
      script.removeEventListener("error", onError);
    };
  }, [timeoutMs]);

  return state;
}
