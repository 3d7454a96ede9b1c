// CI check: the committed `src/api/schema.d.ts` is exactly what openapi-typescript generates
// from the committed `openapi/control-plane.json`. Fails (exit 1) when they drift.
import { execFileSync } from "node:child_process";
import { readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const out = join(mkdtempSync(join(tmpdir(), "sy-api-")), "schema.d.ts");
execFileSync("npx", ["openapi-typescript", "../openapi/control-plane.json", "-o", out], { stdio: "ignore" });
if (readFileSync(out, "utf8") !== readFileSync("src/api/schema.d.ts", "utf8")) {
  console.error("web/src/api/schema.d.ts is stale: run `npm run gen:api` in web/ and commit it");
  process.exit(1);
}
console.log("api types: up to date");
