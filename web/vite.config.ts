// Vite builds the UI into dist/, which `omni gateway` serves at /. In development (`npm run dev`)
// the API is proxied to a gateway on localhost:8080.
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

const gateway = "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 600 },
  server: { proxy: { "/v1": gateway, "/health": gateway, "/metrics": gateway } },
});
