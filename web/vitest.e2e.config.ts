import { defineConfig } from "vitest/config";

// Browser end-to-end tests: headless Debian Chromium driven by playwright-core against a real
// control plane (see e2e/README.md). One file at a time; the stack is started once.
export default defineConfig({
  resolve: { alias: { "@": new URL("./src", import.meta.url).pathname } },
  test: {
    include: ["e2e/**/*.spec.ts"],
    environment: "node",
    globalSetup: ["./e2e/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ["default"],
  },
});
