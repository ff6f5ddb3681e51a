import { ChatKit, useChatKit } from "@openai/chatkit-react";

import { createGatewayFetch } from "../../src/gatewayFetch";

const GATEWAY_URL = import.meta.env.VITE_GATEWAY_URL ?? "http://127.0.0.1:8000";

/** The signed-in user's Better Auth JWT, which the gateway trades for a client_secret. */
async function getUpstreamToken(): Promise<string> {
  const devToken = import.meta.env.VITE_DEV_UPSTREAM_TOKEN;
  if (devToken) return devToken;
  const authUrl = import.meta.env.VITE_BETTER_AUTH_URL ?? "";
  const res = await fetch(`${authUrl}/api/auth/token`, { credentials: "include" });
  if (!res.ok) throw new Error("not signed in to Better Auth");
  return ((await res.json()) as { token: string }).token;
}

// One per page, not per render: it holds the client_secret and the renewal in flight.
const gatewayFetch = createGatewayFetch({ gatewayUrl: GATEWAY_URL, getUpstreamToken });

export function App() {
  const { control } = useChatKit({
    api: {
      // Custom-backend mode: the widget speaks the ChatKit protocol to the gateway itself.
      url: `${GATEWAY_URL}/chatkit`,
      // Checked by the widget, never by the gateway; register real domains with OpenAI.
      domainKey: "domain_pk_localhost_dev",
      fetch: gatewayFetch,
    },
    startScreen: {
      greeting: "What should I add to your tasks?",
      prompts: [
        { label: "Add a task", prompt: "add a task to buy milk" },
        { label: "List my tasks", prompt: "list my tasks" },
      ],
    },
    onEffect: ({ name }) => {
      // The gateway's tools send `tasks.changed` after a mutation: refresh your task views here.
      if (name === "tasks.changed") console.info("tasks changed");
    },
    onError: ({ error }) => console.error("ChatKit error", error),
  });

  return (
    <main style={{ display: "flex", justifyContent: "center", padding: 24 }}>
      <ChatKit control={control} style={{ height: 640, width: 420 }} />
    </main>
  );
}
