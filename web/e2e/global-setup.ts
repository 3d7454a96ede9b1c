/**
 * Starts what the browser tests talk to, once per run:
 * - `SWITCHYARD_E2E_CONSOLE_URL` set (the Rust test `control-plane/tests/console_e2e.rs` does this
 *   after starting Postgres-backed control and data planes): use it as is;
 * - otherwise spawn the zero-setup control plane (`SWITCHYARD_E2E_BIN`, default
 *   `$CARGO_TARGET_DIR/debug/control-plane`) on a free port with a temporary data directory;
 *   with `SWITCHYARD_E2E_PREVIEW=1`, serve this checkout's `dist/` with `vite preview` in front of it
 *   (so a console change is tested without rebuilding the Rust binary).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    consoleUrl: string;
    gatewayUrl: string;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function waitHealthy(url: string, child: ChildProcess, what: string) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not answer ${url} within 60 s`);
}

export default async function setup(project: TestProject) {
  const given = process.env.SWITCHYARD_E2E_CONSOLE_URL;
  if (given) {
    project.provide("consoleUrl", given.replace(/\/+$/, ""));
    project.provide("gatewayUrl", (process.env.SWITCHYARD_E2E_GATEWAY_URL ?? given).replace(/\/+$/, ""));
    return;
  }
  const children: ChildProcess[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), "sy-e2e-"));
  const port = await freePort();
  const bin =
    process.env.SWITCHYARD_E2E_BIN ?? join(process.env.CARGO_TARGET_DIR ?? "/var/tmp/switchyard-target", "debug", "control-plane");
  const cp = spawn(bin, [], {
    env: {
      // Zero-setup: none of the developer's Switchyard, database or Redis settings leak in.
      ...Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !k.startsWith("SWITCHYARD_") && k !== "DATABASE_URL" && k !== "REDIS_URL"),
      ),
      SWITCHYARD_LISTEN: `127.0.0.1:${port}`,
      SWITCHYARD_DATA_DIR: dataDir,
      RUST_LOG: process.env.RUST_LOG ?? "warn",
      // Sign-ups from one address in quick succession are rate-limited; tests sign up often.
      SWITCHYARD_SIGNUPS_PER_IP_PER_HOUR: "1000",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  children.push(cp);
  const apiUrl = `http://127.0.0.1:${port}`;
  await waitHealthy(`${apiUrl}/healthz`, cp, "control-plane");
  let consoleUrl = apiUrl;
  if (process.env.SWITCHYARD_E2E_PREVIEW === "1") {
    const previewPort = await freePort();
    // vite's own entry point, not `npx` (whose grandchild would outlive a kill of npx).
    const vite = join(import.meta.dirname, "..", "node_modules", "vite", "bin", "vite.js");
    const preview = spawn(process.execPath, [vite, "preview", "--strictPort", "--host", "127.0.0.1", "--port", String(previewPort)], {
      cwd: join(import.meta.dirname, ".."),
      env: { ...process.env, SWITCHYARD_DEV_API: apiUrl },
      stdio: ["ignore", "ignore", "inherit"],
    });
    children.push(preview);
    consoleUrl = `http://127.0.0.1:${previewPort}`;
    await waitHealthy(`${consoleUrl}/`, preview, "vite preview");
  }
  project.provide("consoleUrl", consoleUrl);
  project.provide("gatewayUrl", apiUrl);
  return () => {
    for (const c of children) c.kill("SIGTERM");
    rmSync(dataDir, { recursive: true, force: true });
  };
}
