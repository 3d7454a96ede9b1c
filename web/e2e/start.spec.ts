/**
 * The first minutes of a new user: sign up, the onboarding checklist (built-in mock, a key, the
 * curl snippet through the clipboard, the first request arriving live), the API keys page
 * (create, edit, rotate, revoke) and the playground streaming from the mock model.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import {
  ARTIFACTS, WIDTHS, checkA11y, consoleUrl, expectNoSidewaysScroll, gatewayUrl, launch, openPage, screenshot, signUp, uniqueEmail,
  type TrackedPage,
} from "./harness";

let browser: Browser;
let t: TrackedPage;

/** The newest storage state not used yet (a refresh token works once: never reuse one). */
let freshState: string | null = null;
let states = 0;

/**
 * Screenshot + axe at 1280 and 390 px. With cookie sessions (a reload keeps the session) each
 * width is a fresh context loading `path` (like the harness's `captureBothWidths`), chaining
 * storage states so every context refreshes with a refresh token nobody used yet; without them
 * (the access token lives in this page's memory only) the same page is resized in place.
 */
async function captureStartPage(path: string, name: string, pageReady: (page: Page) => Promise<void>) {
  // Screenshots without the toasts of the actions just taken (they time out after 4 s).
  const ready = async (page: Page) => {
    await pageReady(page);
    await expect.poll(() => page.locator("[data-sonner-toast]").count(), { timeout: 15_000 }).toBe(0);
  };
  const cookies = await t.context.cookies();
  if (cookies.some((c) => c.name === "switchyard_refresh")) {
    for (const width of ["desktop", "phone"] as const) {
      if (!freshState) {
        freshState = join(ARTIFACTS, `start-state-${states++}.json`);
        await t.context.storageState({ path: freshState });
      }
      const c = await openPage(browser, width, { storageState: freshState });
      await c.page.goto(path);
      await ready(c.page);
      await screenshot(c.page, name);
      await checkA11y(c.page, `${name}@${width}`);
      await expectNoSidewaysScroll(c.page, `${name}@${width}`);
      c.assertClean();
      freshState = join(ARTIFACTS, `start-state-${states++}.json`);
      await c.context.storageState({ path: freshState });
      await c.context.close();
    }
    return;
  }
  for (const width of ["desktop", "phone"] as const) {
    await t.page.setViewportSize({ width: WIDTHS[width], height: width === "desktop" ? 800 : 844 });
    await ready(t.page);
    await screenshot(t.page, name);
    await checkA11y(t.page, `${name}@${width}`);
    await expectNoSidewaysScroll(t.page, `${name}@${width}`);
  }
  await t.page.setViewportSize({ width: WIDTHS.desktop, height: 800 });
}

/** Goes to a console page through the main navigation (no reload: works without cookie sessions). */
async function navigate(page: Page, label: string, path: string) {
  await page.getByRole("navigation", { name: "Main" }).first().getByRole("link", { name: label, exact: true }).click();
  await page.waitForURL((u) => u.pathname === path);
}

describe("getting started: overview, keys, playground", () => {
  beforeAll(async () => {
    browser = await launch();
    t = await openPage(browser, "desktop");
    await signUp(t.page, { email: uniqueEmail("start"), organization: "Start Inc" });
  });
  afterAll(async () => {
    await t?.context.close();
    await browser?.close();
  });

  it("walks the checklist: mock provider, a key, the copied curl snippet, the first request live", async () => {
    const { page } = t;
    await page.getByRole("heading", { name: "Get started" }).waitFor();
    await page.getByRole("button", { name: "Use the built-in mock" }).click();

    const keyForm = page.getByRole("form", { name: "Create an API key" });
    await keyForm.getByRole("button", { name: "Create key" }).click();
    const secret = (await page.getByTestId("api-key-secret").textContent())?.trim() ?? "";
    expect(secret).toMatch(/^sk-sy-/);

    await page.getByRole("button", { name: "Copy curl" }).click();
    await page.getByRole("button", { name: "Copied" }).waitFor();
    const copied = String(await page.evaluate("navigator.clipboard.readText()"));
    expect(copied).toContain(`Bearer ${secret}`);
    // The base URL is the server's published gateway URL, else the console's own origin.
    const meta = (await (await fetch(`${consoleUrl()}/api/v1/meta`)).json()) as { gateway_base_url?: string | null };
    const base = (meta.gateway_base_url ?? consoleUrl()).replace(/\/+$/, "");
    expect(copied).toContain(`curl ${base}/v1/chat/completions`);
    expect(copied).toContain('"model":"echo"');

    // Run the snippet's request from here, against the gateway. With a separate data plane the
    // new key arrives through Redis within moments (401 before); listing models is not metered.
    await expect
      .poll(async () => (await fetch(`${gatewayUrl()}/v1/models`, { headers: { authorization: `Bearer ${secret}` } })).status, { timeout: 10_000, interval: 100 })
      .toBe(200);
    const res = await fetch(`${gatewayUrl()}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "echo", messages: [{ role: "user", content: "Hello, Switchyard!" }] }),
    });
    expect(res.status).toBe(200);
    const requestId = res.headers.get("x-switchyard-request-id");
    expect(requestId).toBeTruthy();

    // The checklist polls every 2 s: the request shows up without a reload.
    const card = page.getByLabel("Latest request");
    await card.waitFor({ timeout: 20_000 });
    await expect.poll(() => card.textContent()).toContain("echo");
    expect(await card.getByRole("link", { name: "View request" }).getAttribute("href")).toBe(`/requests/${requestId}`);
    await screenshot(page, "overview-first-request");

    await captureStartPage("/", "overview", async (p) => {
      await p.getByLabel("Latest request").waitFor();
    });
    t.assertClean();
  });

  it("creates, edits, rotates and revokes a key", async () => {
    const { page } = t;
    await navigate(page, "API keys", "/keys");
    await page.getByRole("table", { name: "API keys" }).waitFor();

    await page.getByRole("button", { name: "Create key" }).first().click();
    const create = page.getByRole("dialog", { name: "Create an API key" });
    await create.getByRole("button", { name: "Create key" }).click();
    await create.getByText(/Name the key/).waitFor(); // zod: a name is required
    await create.getByLabel("Name").fill("ci-key");
    await create.getByLabel("Requests / minute").fill("60");
    await create.getByLabel(/Chat completions/).check();
    await create.getByRole("button", { name: "Create key" }).click();
    const shown = page.getByRole("dialog", { name: "Key created" });
    expect(await shown.getByTestId("api-key-secret").textContent()).toMatch(/^sk-sy-/);
    await shown.getByText(/you will not see it again/i).waitFor();
    await shown.getByRole("button", { name: "I have saved it" }).click();
    const row = page.getByRole("row", { name: /ci-key/ });
    await expect.poll(() => row.textContent()).toContain("60 rpm");

    await page.getByRole("button", { name: "Edit ci-key" }).click();
    const edit = page.getByRole("dialog", { name: "Edit “ci-key”" });
    await edit.getByLabel("Tokens / minute").fill("1000");
    await edit.getByRole("button", { name: "Save changes" }).click();
    await edit.waitFor({ state: "detached" });
    await expect.poll(() => row.textContent()).toContain("1,000 tpm");

    await page.getByRole("button", { name: "Rotate ci-key" }).click();
    const rotate = page.getByRole("dialog", { name: "Rotate “ci-key”" });
    await rotate.getByLabel("Grace period (hours)").fill("1");
    await rotate.getByRole("button", { name: "Rotate key" }).click();
    const rotated = page.getByRole("dialog", { name: "Key rotated" });
    expect(await rotated.getByTestId("api-key-secret").textContent()).toMatch(/^sk-sy-/);
    await rotated.getByRole("button", { name: "I have saved it" }).click();
    await expect.poll(() => row.textContent()).toContain("Rotating");

    // A table from 768 px up, cards on phones.
    await captureStartPage("/keys", "keys", async (p) => {
      await p.getByText("ci-key").first().waitFor();
      if ((p.viewportSize()?.width ?? 0) <= WIDTHS.phone) await p.getByRole("list", { name: "API keys" }).waitFor();
      else await p.getByRole("table", { name: "API keys" }).waitFor();
    });

    await page.getByRole("button", { name: "Revoke ci-key" }).click();
    const confirm = page.getByRole("alertdialog", { name: /Revoke “ci-key”/ });
    await confirm.getByRole("button", { name: "Revoke key" }).click();
    await row.waitFor({ state: "detached" });
    await page.getByRole("switch", { name: "Show revoked keys" }).click();
    await expect.poll(() => page.getByRole("row", { name: /ci-key/ }).textContent()).toContain("Revoked");
    t.assertClean();
  });

  it("streams an answer from the mock model in the playground, with tokens, the deployment and the cost", async () => {
    const { page } = t;
    await navigate(page, "Playground", "/playground");
    await page.getByLabel("Model or route").waitFor();
    expect(await page.getByLabel("Model or route").inputValue()).toBe("echo");
    await page.getByLabel("Message").fill("Hello from the playground");
    await page.getByRole("button", { name: "Send" }).click();
    const output = page.getByTestId("playground-output");
    await expect.poll(() => output.textContent(), { timeout: 20_000 }).toContain("Hello from the playground");
    const details = page.getByLabel("Request details");
    await expect.poll(() => details.textContent(), { timeout: 20_000 }).toMatch(/\d+ in · \d+ out/);
    expect(await details.textContent()).toContain("echo (mock-1)");
    expect(await details.textContent()).toContain("mock");
    // Usage is ingested asynchronously: the cost arrives a moment later.
    await expect.poll(() => details.textContent(), { timeout: 20_000 }).toMatch(/Cost\$/);
    // The temporary key is reused: a second send creates no second key.
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByRole("status").filter({ hasText: "Done" }).waitFor();
    await page.getByText(/Sending with the temporary key/).waitFor();

    await captureStartPage("/playground", "playground", async (p) => {
      await p.getByLabel("Model or route").waitFor();
    });
    t.assertClean();
  });
});
