// Copies the main pages' screenshots from the last browser-test run (e2e/artifacts/) into
// docs/console/, which README.md shows. Run after `npm run e2e` (or `cargo test --test console_e2e`).
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const from = join(import.meta.dirname, "..", "e2e", "artifacts");
const to = join(import.meta.dirname, "..", "..", "docs", "console");
// [artifact name, file in docs/console]: what README.md shows.
const shots = [
  ["overview-desktop", "overview"],
  ["journey-playground-desktop", "playground"],
  ["keys-desktop", "keys"],
  ["usage-desktop", "usage"],
  ["requests-desktop", "requests"],
  ["request-detail-desktop", "request-detail"],
  ["routes-desktop", "routes"],
  ["journey-budget-spent-desktop", "budgets"],
  ["members-desktop", "members"],
  ["usage-phone", "usage-phone"],
];
mkdirSync(to, { recursive: true });
let missing = 0;
for (const [artifact, name] of shots) {
  const file = join(from, `${artifact}.png`);
  if (existsSync(file)) copyFileSync(file, join(to, `${name}.png`));
  else {
    console.error(`missing ${artifact}.png`);
    missing += 1;
  }
}
process.exit(missing ? 1 : 0);
