/**
 * Usage analytics, the request log and a request's detail against a real control plane: a fresh
 * organization with the built-in mock provider, a few gateway requests (one to an unknown model
 * for an error), then each page shows them.
 */
import { mkdtempSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { consoleUrl, gatewayUrl, launch, openPage, PASSWORD, screenshot, signUp, uniqueEmail, WIDTHS, type Width, checkA11y } from "./harness";

async function api<T>(token: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${consoleUrl()}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function chat(key: string, model: string, content: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  const res = await fetch(`${gatewayUrl()}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body: JSON.stringify({ model, messages: [{ role: "user", content }], ...extra }),
  });
  await res.text();
  return res.status;
}


/** Signs in through the form if the page landed on the login screen (no refresh cookie yet). */
async function ensureSignedIn(page: Page, email: string) {
  // Either the page itself or the login form (a console page without a session redirects).
  await page.getByRole("heading", { level: 1 }).first().waitFor();
  if (new URL(page.url()).pathname !== "/login") return;
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((u) => u.pathname !== "/login");
}

describe("usage, request log and request detail", () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("shows gateway traffic on the usage page, in the log and in a request's detail", async () => {
    const t = await openPage(browser);
    const { page } = t;
    const email = uniqueEmail("analytics");
    await signUp(page, { email, organization: "Analytics Inc" });

    // The mock provider, a model and a key through the control API (their pages belong to other
    // helpers), with a token of the same user.
    const { access_token: token } = await api<{ access_token: string }>("", "POST", "/auth/login", { email, password: PASSWORD });
    const provider = await api<{ id: string }>(token, "POST", "/providers", { name: "local-mock", kind: "mock" });
    await api(token, "POST", "/models", { name: "echo", provider_id: provider.id, upstream_model: "mock-1", input_price_per_mtok: 1, output_price_per_mtok: 2 });
    // Keep prompts and answers, so the detail shows a payload.
    await api(token, "PATCH", "/organization", { store_payloads: true });
    const { key } = await api<{ key: string }>(token, "POST", "/keys", { name: "e2e-key" });
    // With a separate data plane the key arrives through Redis (after the organization's
    // setting, which was published first): wait until the gateway knows it. Listing models is
    // not metered.
    await expect
      .poll(async () => (await fetch(`${gatewayUrl()}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status, { timeout: 10_000, interval: 100 })
      .toBe(200);

    expect(await chat(key, "echo", "Hello from the analytics test", {}, { "x-switchyard-tags": "feature=search" })).toBe(200);
    expect(await chat(key, "echo", "A second request")).toBe(200);
    expect(await chat(key, "echo", "A streamed request", { stream: true })).toBe(200);
    expect(await chat(key, "no-such-model", "This one fails")).toBe(404);

    // Usage: the metering pipeline is asynchronous, so refresh until the requests are counted.
    await page.getByRole("link", { name: "Usage" }).first().click();
    await page.getByRole("heading", { name: "Usage", level: 1 }).waitFor();
    const requestsTile = page.getByRole("definition").first();
    await expect.poll(async () => {
      await page.getByRole("button", { name: "Refresh" }).click();
      await page.getByRole("table", { name: /Breakdown/ }).waitFor({ timeout: 2_000 }).catch(() => undefined);
      return (await page.getByRole("table", { name: /Breakdown/ }).getByRole("cell", { name: "echo" }).count()) > 0;
    }, { timeout: 60_000, interval: 500 }).toBe(true);
    expect(Number(await requestsTile.textContent())).toBeGreaterThanOrEqual(3);
    await screenshot(page, "usage");
    await checkA11y(page, "usage@desktop");
    // The CSV export downloads the range's requests (a header row and one line per request);
    // after the axe check, as its toast is the shared Toaster's (contrast reported to the lead).
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export CSV" }).click()]);
    expect(download.suggestedFilename()).toMatch(/^usage-.*\.csv$/);
    const csv = await readFile((await download.path())!, "utf8");
    expect(csv.split("\n")[0]).toContain("started_at");
    expect(csv).toContain("no-such-model");
    // Its toast mid-animation trips axe's contrast check on the next page: let it go first.
    await page.getByText("Export downloaded").waitFor({ state: "detached", timeout: 15_000 });

    // The request log lists them, newest first.
    await page.getByRole("link", { name: "Request log" }).first().click();
    await page.getByRole("heading", { name: "Request log", level: 1 }).waitFor();
    const rowLinks = page.getByRole("region", { name: "Requests" }).getByRole("link", { name: /^Request / });
    await expect.poll(async () => {
      if ((await rowLinks.count()) >= 4) return true;
      await page.getByRole("button", { name: "Refresh" }).click();
      await rowLinks.first().waitFor({ timeout: 2_000 }).catch(() => undefined);
      return (await rowLinks.count()) >= 4;
    }, { timeout: 60_000, interval: 500 }).toBe(true);
    await expect.poll(() => page.getByRole("cell", { name: "no-such-model" }).count()).toBeGreaterThan(0);
    await screenshot(page, "requests");
    await checkA11y(page, "requests@desktop");

    // A filter lands in the URL.
    await page.getByLabel("Outcome").selectOption("error");
    await page.waitForURL((u) => u.searchParams.get("outcome") === "error");
    await expect.poll(() => rowLinks.count()).toBe(1);
    await page.getByLabel("Outcome").selectOption("");
    await expect.poll(() => rowLinks.count()).toBeGreaterThanOrEqual(4);

    // Open the oldest success (the tagged one): its attempt is listed.
    await page.getByRole("cell", { name: "feature=search" }).click();
    await page.waitForURL((u) => /^\/requests\/[0-9a-f-]{36}$/.test(u.pathname));
    const detailPath = new URL(page.url()).pathname;
    await page.getByRole("heading", { name: "Attempts" }).waitFor();
    await page.getByRole("list", { name: "Attempts" }).getByText("Attempt 1").waitFor();
    await page.getByText("mock-1").first().waitFor();
    // The stored payload is text in a pre (the prompt the test sent is in it).
    await page.getByRole("region", { name: "Request payload" }).getByText(/Hello from the analytics test/).waitFor();
    await screenshot(page, "request-detail");
    await checkA11y(page, "request-detail@desktop");
    t.assertClean();
    const state = join(mkdtempSync(join(tmpdir(), "sy-analytics-")), "state.json");
    await t.context.storageState({ path: state });

    // The phone width (and the desktop again from a fresh load, which restores the session from
    // the refresh cookie — or signs in when there is none yet).
    for (const width of ["phone"] as Width[]) {
      for (const [path, name, ready] of [
        ["/usage", "usage", (p: Page) => p.getByRole("table", { name: /Breakdown/ }).waitFor()],
        ["/requests", "requests", (p: Page) => p.getByRole("region", { name: "Requests" }).getByRole("link", { name: /^Request / }).first().waitFor()],
        [detailPath, "request-detail", (p: Page) => p.getByRole("list", { name: "Attempts" }).waitFor()],
      ] as const) {
        const v = await openPage(browser, width, { storageState: state });
        await v.page.goto(path);
        await ensureSignedIn(v.page, email);
        await ready(v.page);
        expect(v.page.viewportSize()?.width).toBe(WIDTHS[width]);
        await screenshot(v.page, name);
        await checkA11y(v.page, `${name}@${width}`);
        v.assertClean();
        await v.context.close();
      }
    }
    await t.context.close();
  });
});
