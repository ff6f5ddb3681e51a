import { ChatKit, useChatKit } from "@openai/chatkit-react";
import { useEffect, useState } from "react";

import { createGatewayFetch, GatewaySessionError } from "../../src/gatewayFetch";
import { useChatKitScript } from "./chatkitScript";
import { ChatKitScriptProblem, SignInProblem, type SignInState } from "./Problems";
import { TaskPanel, useTaskPanel } from "./TaskPanel";

const GATEWAY_URL = import.meta.env.VITE_GATEWAY_URL ?? "http://127.0.0.1:8000";
const BETTER_AUTH_URL = import.meta.env.VITE_BETTER_AUTH_URL ?? "";
// Long enough for a slow network; a script that arrives later still clears the explanation.
const SCRIPT_TIMEOUT_MS = 5000;

/** Neither a development token nor a Better Auth session: the page has no one to sign in. */
class NotSignedInError extends Error {
  constructor(detail: string) {
    super(detail);
    this.name = "NotSignedInError";
  }
}

/** The signed-in user's Better Auth JWT, which the gateway trades for a client_secret. */
async function getUpstreamToken(): Promise<string> {
  const devToken = import.meta.env.VITE_DEV_UPSTREAM_TOKEN;
  if (devToken) return devToken;
  const tokenUrl = `${BETTER_AUTH_URL}/api/auth/token`;
  // Whatever goes wrong here (no server, no session, a page that is not Better Auth), the
  // user sees the same thing: nobody is signed in.
  let res: Response;
  try {
    res = await fetch(tokenUrl, { credentials: "include" });
  } catch (e) {
    throw new NotSignedInError(`${tokenUrl} could not be fetched (${String(e)})`);
  }
  if (!res.ok) throw new NotSignedInError(`${tokenUrl} answered ${res.status}`);
  const body: unknown = await res.json().catch(() => null);
  const token = (body as { token?: unknown } | null)?.token;
  if (typeof token !== "string") throw new NotSignedInError(`${tokenUrl} answered without a token`);
  return token;
}

// One per page, not per render: it holds the client_secret and the renewal in flight.
const gatewayFetch = createGatewayFetch({ gatewayUrl: GATEWAY_URL, getUpstreamToken });

/**
 * Signs in once at start-up, through the same gatewayFetch the widget uses (so no second
 * session), to say what is wrong even when the widget itself never loads.
 */
function useSignIn(): SignInState {
  const [state, setState] = useState<SignInState>({ status: "checking" });
  useEffect(() => {
    let active = true;
    gatewayFetch.clientSecret().then(
      () => active && setState({ status: "ok" }),
      (error: unknown) => {
        if (!active) return;
        if (error instanceof NotSignedInError) setState({ status: "not-signed-in", detail: error.message });
        else if (error instanceof GatewaySessionError) {
          setState({ status: "refused", httpStatus: error.status, code: error.code, detail: error.message });
        } else setState({ status: "unreachable", detail: String(error) });
      },
    );
    return () => {
      active = false;
    };
  }, []);
  return state;
}

export function App() {
  const script = useChatKitScript(SCRIPT_TIMEOUT_MS);
  const signIn = useSignIn();
  const tasks = useTaskPanel();
  const { control } = useChatKit({
    api: {
      // Custom-backend mode: the widget speaks the ChatKit protocol to the gateway itself.
      url: `${GATEWAY_URL}/chatkit`,
      // Checked by the widget, never by the gateway; register real domains with OpenAI.
      domainKey: "domain_pk_localhost_dev",
      fetch: gatewayFetch,
      // Two-phase (the widget's default, said here to be explicit): `attachments.create`
      // answers a signed upload link on the gateway, which takes the file. The other way,
      // { type: "direct", uploadUrl: `${GATEWAY_URL}/api/chatkit/attachments` }, posts the
      // file to the gateway with the client_secret in one request.
      uploadStrategy: { type: "two_phase" },
    },
    composer: {
      // What the gateway accepts by default (attachments.allowed_mime_types, max_bytes); it
      // checks again whatever the widget lets through.
      attachments: {
        enabled: true,
        maxCount: 10,
        maxSize: 10 * 1024 * 1024,
        accept: {
          "image/*": [".png", ".jpg", ".jpeg", ".gif", ".webp"],
          "text/plain": [".txt"],
          "text/markdown": [".md"],
          "text/csv": [".csv"],
          "application/pdf": [".pdf"],
        },
      },
      // input.transcribe: text from the OpenAI-compatible agent; the local agent answers
      // 501 transcription.unavailable.
      dictation: { enabled: true },
    },
    startScreen: {
      greeting: "What should I add to your tasks?",
      prompts: [
        { label: "Add a task", prompt: "add a task to buy milk" },
        { label: "List my tasks", prompt: "list my tasks" },
      ],
    },
    // `tasks.changed` {task_ids, change}: sent when a turn's tools or a click on a task
    // widget change tasks. The panel marks those tasks (a real app refetches its tasks here).
    onEffect: tasks.onEffect,
    // Client tools declared in the gateway's config ([[chatkit.client_tools]]) run here:
    // `highlight_tasks` {task_ids} highlights them in the panel and answers {highlighted: n}.
    onClientTool: tasks.onClientTool,
    onError: ({ error }) => console.error("ChatKit error", error),
  });

  return (
    <main
      // Where the page stands, for tests and for anyone inspecting a blank-looking page.
      data-chatkit-script={script.status}
      data-sign-in={signIn.status}
      style={{ display: "flex", flexDirection: "column", alignItems: "center", gap: 16, padding: 24 }}
    >
      {script.status === "loading" && <p>Loading the ChatKit widget from OpenAI's CDN…</p>}
      {script.status === "failed" && <ChatKitScriptProblem state={script} gatewayUrl={GATEWAY_URL} />}
      <SignInProblem state={signIn} gatewayUrl={GATEWAY_URL} betterAuthUrl={BETTER_AUTH_URL} />
      <div style={{ display: "flex", flexWrap: "wrap", alignItems: "flex-start", justifyContent: "center", gap: 16 }}>
        {/* Rendered even while the script is missing: the element upgrades when it arrives. */}
        <ChatKit control={control} style={{ height: 640, width: 420 }} />
        <TaskPanel state={tasks.state} />
      </div>
    </main>
  );
}
