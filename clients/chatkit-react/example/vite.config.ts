import { defineConfig } from "vite";

// No React plugin: the JSX transform built into Vite is enough for this page (no fast refresh).
export default defineConfig({
  server: { port: 5173 },
  build: { outDir: "dist", emptyOutDir: true },
});
