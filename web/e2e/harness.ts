/**
 * What every browser test shares: Debian's Chromium through playwright-core, pages that fail
 * the test on console errors, failed `/api/v1` calls (5xx) or page crashes, screenshots into
 * `e2e/artifacts/`, an axe accessibility check, and sign-up through the real form.
 */
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { AxeBuilder } from "@axe-core/playwright";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { inject, expect } from "vitest";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const ARTIFACTS = join(import.meta.dirname, "artifacts");
export const WIDTHS = { desktop: 1280, phone: 390 } as const;
export type Width = keyof typeof WIDTHS;

export const consoleUrl = () => inject("consoleUrl");
export const gatewayUrl = () => inject("gatewayUrl");

export async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

export interface TrackedPage {
  page: Page;
  context: BrowserContext;
  /** Problems seen so far: console errors, page errors, 5xx API answers. */
  problems: string[];
  /** Fails the test if anything went wrong on the page. */
  assertClean: () => void;
}

/** A new browser context (own cookies) at the given width, watched for errors. */
export async function openPage(browser: Browser, width: Width = "desktop", opts: { storageState?: string } = {}): Promise<TrackedPage> {
  const context = await browser.newContext({
    baseURL: consoleUrl(),
    viewport: { width: WIDTHS[width], height: width === "desktop" ? 800 : 844 },
    ...(width === "phone" ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : {}),
    permissions: ["clipboard-read", "clipboard-write"],
    ...(opts.storageState ? { storageState: opts.storageState } : {}),
  });
  const page = await context.newPage();
  const problems: string[] = [];
  // Expected refusals (401 before a silent refresh, 4xx validation answers) are logged by the
  // browser as "Failed to load resource"; they are not console errors of ours.
  page.on("console", (msg) => {
    if (msg.type() === "error" && !/Failed to load resource: the server responded with a status of 4\d\d/.test(msg.text())) {
      problems.push(`console error: ${msg.text()}`);
    }
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("response", (res) => {
    if (res.url().includes("/api/v1/") && res.status() >= 500) problems.push(`${res.status()} from ${res.url()}`);
  });
  return {
    page,
    context,
    problems,
    assertClean: () => expect(problems, problems.join("\n")).toEqual([]),
  };
}

let counter = 0;
/** A unique, valid email for this run. */
export function uniqueEmail(prefix = "user"): string {
  counter += 1;
  return `${prefix}-${Date.now().toString(36)}-${counter}@example.com`;
}

export const PASSWORD = "correct horse battery staple";

/** Signs up through the form; ends on the overview page, signed in. */
export async function signUp(page: Page, { email = uniqueEmail(), organization = "Acme Inc" } = {}) {
  await page.goto("/signup");
  await page.getByLabel("Work email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByLabel("Organization name").fill(organization);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL((u) => u.pathname === "/");
  return { email, organization };
}

/** Signs in through the form. */
export async function signIn(page: Page, email: string, password = PASSWORD) {
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((u) => u.pathname !== "/login");
}

/** Saves a full-page screenshot as `e2e/artifacts/<name>-<width>.png`. */
export async function screenshot(page: Page, name: string) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const width = page.viewportSize()?.width ?? 0;
  const suffix = width <= WIDTHS.phone ? "phone" : "desktop";
  await page.screenshot({ path: join(ARTIFACTS, `${name}-${suffix}.png`), fullPage: true });
}

/** Runs axe on the page; fails on any serious or critical violation. */
export async function checkA11y(page: Page, name: string) {
  const result = await new AxeBuilder({ page })
    .withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"])
    // Toasts fade in and out: axe would measure their contrast mid-animation.
    .exclude("[data-sonner-toaster]")
    .analyze();
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const summary = bad.map((v) => `${name}: ${v.id} (${v.impact}) ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`);
  expect(summary, summary.join("\n")).toEqual([]);
}

/** The page itself never scrolls sideways at its width (wide tables scroll inside their own box). */
export async function expectNoSidewaysScroll(page: Page, name: string) {
  const scroll = (await page.evaluate("document.documentElement.scrollWidth")) as number;
  const width = page.viewportSize()?.width ?? 0;
  expect(scroll, `${name}: the page is ${scroll}px wide at ${width}px`).toBeLessThanOrEqual(width);
}

/** Opens a console page through the navigation (below 1024 px it lives in a drawer). */
export async function navTo(page: Page, label: string) {
  if ((page.viewportSize()?.width ?? 1280) < 1024) await page.getByRole("button", { name: "Open navigation" }).click();
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: label, exact: true }).click();
}

/**
 * Visits a page at both widths: screenshot, axe and sideways-scroll checks at each.
 *
 * A refresh token works once (reuse signs the user out everywhere, by design), so the session
 * is handed on: each context loads `storageState`, refreshes on its first page load, and writes
 * the rotated cookie back to `storageState` for the next one. The context the state was saved
 * from must not refresh afterwards (its cookie is spent); save a new state from it if needed.
 */
export async function captureBothWidths(browser: Browser, storageState: string, path: string, name: string, ready: (page: Page) => Promise<void>) {
  for (const width of ["desktop", "phone"] as const) {
    const t = await openPage(browser, width, { storageState });
    await t.page.goto(path);
    await ready(t.page);
    await screenshot(t.page, name);
    await checkA11y(t.page, `${name}@${width}`);
    await expectNoSidewaysScroll(t.page, `${name}@${width}`);
    t.assertClean();
    await t.context.storageState({ path: storageState });
    await t.context.close();
  }
}
