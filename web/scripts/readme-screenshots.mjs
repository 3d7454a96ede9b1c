// Copies the main pages' screenshots from the last browser-test run (e2e/artifacts/) into
// docs/console/, which README.md shows. Run after `npm run e2e` (or `cargo test --test console_e2e`).
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const from = join(import.meta.dirname, "..", "e2e", "artifacts");
const to = join(import.meta.dirname, "..", "..", "docs", "console");
const pages = ["overview", "playground", "keys", "usage", "requests", "request-detail", "routes", "budgets", "members", "billing"];
mkdirSync(to, { recursive: true });
let missing = 0;
for (const page of pages) {
  for (const width of ["desktop", "phone"]) {
    const file = `${page}-${width}.png`;
    if (existsSync(join(from, file))) copyFileSync(join(from, file), join(to, file));
    else {
      console.error(`missing ${file}`);
      missing += 1;
    }
  }
}
process.exit(missing ? 1 : 0);
