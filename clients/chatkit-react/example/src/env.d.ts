/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The gateway's base URL (default http://127.0.0.1:8000). */
  readonly VITE_GATEWAY_URL?: string;
  /** Better Auth's base URL: the upstream JWT comes from its jwt plugin's /api/auth/token. */
  readonly VITE_BETTER_AUTH_URL?: string;
  /** Local development without Better Auth: a token from `chatkit-gateway dev-token`. */
  readonly VITE_DEV_UPSTREAM_TOKEN?: string;
}
