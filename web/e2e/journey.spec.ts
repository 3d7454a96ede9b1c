/**
 * The customer journey of issue 12, through the console only (plus the API calls an app makes):
 * sign up → add the built-in mock provider → create a key → copy the snippet and run it → the
 * playground streams an answer → the usage page and the request log show the traffic → invite a
 * teammate who accepts → a team budget refuses a request once it is spent → revoke the key.
 *
 * Against whatever `global-setup.ts` provides: in `cargo test` (console_e2e.rs) the control plane
 * and a separate data plane on Postgres and Redis, the gateway on another origin.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { checkA11y, gatewayUrl, launch, navTo, openPage, PASSWORD, screenshot, signUp, uniqueEmail, type TrackedPage } from "./harness";

interface Chat {
  status: number;
  code: string | null;
  requestId: string | null;
}

/** What an app does: one chat completion through the gateway with `key`. */
async function chat(key: string, content: string, extra: Record<string, unknown> = {}): Promise<Chat> {
  const res = await fetch(`${gatewayUrl()}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "echo", messages: [{ role: "user", content }], ...extra }),
  });
  const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
  return { status: res.status, code: body.error?.code ?? null, requestId: res.headers.get("x-switchyard-request-id") };
}

describe("the customer journey", () => {
  let browser: Browser;
  let owner: TrackedPage;
  const ownerEmail = uniqueEmail("journey-owner");
  const teammateEmail = uniqueEmail("journey-teammate");
  const org = `Journey ${Date.now().toString(36)}`;

  beforeAll(async () => {
    browser = await launch();
    owner = await openPage(browser);
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("signs up, adds the mock provider, creates a key and runs the copied snippet", async () => {
    const { page } = owner;
    await signUp(page, { email: ownerEmail, organization: org });
    await page.getByRole("heading", { name: "Get started" }).waitFor();
    await page.getByRole("button", { name: "Use the built-in mock" }).click();

    const keyForm = page.getByRole("form", { name: "Create an API key" });
    await keyForm.getByRole("button", { name: "Create key" }).click();
    const key = ((await page.getByTestId("api-key-secret").textContent()) ?? "").trim();
    expect(key).toMatch(/^sk-sy-/);

    await page.getByRole("button", { name: "Copy curl" }).click();
    await page.getByRole("button", { name: "Copied" }).waitFor();
    const snippet = String(await page.evaluate("navigator.clipboard.readText()"));
    expect(snippet).toContain(`Bearer ${key}`);
    expect(snippet).toContain("/v1/chat/completions");

    // The app runs the snippet's request; the checklist shows it arriving, without a reload.
    // With a separate data plane the new key arrives through Redis within moments (401 before).
    await expect.poll(async () => (await chat(key, "Hello, Switchyard!")).status, { timeout: 10_000, interval: 100 }).toBe(200);
    const latest = page.getByLabel("Latest request");
    await latest.waitFor({ timeout: 20_000 });
    await expect.poll(() => latest.textContent(), { timeout: 20_000 }).toContain("echo");
    await screenshot(page, "journey-onboarding");
    owner.assertClean();
  });

  it("streams an answer in the playground", async () => {
    const { page } = owner;
    await navTo(page, "Playground");
    await page.getByLabel("Model or route").waitFor();
    await page.getByLabel("Message").fill("Stream me a journey");
    await page.getByRole("button", { name: "Send" }).click();
    const output = page.getByTestId("playground-output");
    await expect.poll(() => output.textContent(), { timeout: 20_000 }).toContain("Stream me a journey");
    const details = page.getByLabel("Request details");
    await expect.poll(() => details.textContent(), { timeout: 20_000 }).toMatch(/\d+ in · \d+ out/);
    expect(await details.textContent()).toContain("echo (mock-1)");
    await screenshot(page, "journey-playground");
    owner.assertClean();
  });

  it("shows the requests on the usage page and in the request log", async () => {
    const { page } = owner;
    await navTo(page, "Usage");
    await page.getByRole("heading", { name: "Usage", level: 1 }).waitFor();
    const breakdown = page.getByRole("table", { name: /Breakdown/ });
    // Earlier steps' notifications sit over the header's buttons until they fade, and a toast
    // under the pointer never fades: move the pointer away and let them go, as a user would.
    await page.mouse.move(0, 0);
    await expect.poll(() => page.locator("[data-sonner-toast]").count(), { timeout: 20_000 }).toBe(0);
    // Usage is ingested asynchronously (through Redis in distributed mode): refresh until it is in.
    await expect
      .poll(
        async () => {
          await page.getByRole("button", { name: "Refresh" }).click();
          return breakdown.getByRole("cell", { name: "echo" }).count();
        },
        { timeout: 30_000, interval: 1000 },
      )
      .toBeGreaterThan(0);
    await screenshot(page, "journey-usage");

    await navTo(page, "Request log");
    const rows = page.getByRole("region", { name: "Requests" }).getByRole("link", { name: /^Request / });
    await expect
      .poll(
        async () => {
          await page.getByRole("button", { name: "Refresh" }).click();
          return rows.count();
        },
        { timeout: 30_000, interval: 1000 },
      )
      .toBeGreaterThanOrEqual(2);
    owner.assertClean();
  });

  it("invites a teammate who accepts", async () => {
    const { page } = owner;
    await navTo(page, "Members");
    await page.getByRole("button", { name: "Invite", exact: true }).click();
    const invite = page.getByRole("dialog", { name: "Invite a teammate" });
    await invite.getByLabel("Email").fill(teammateEmail);
    await invite.getByLabel("Role").selectOption("member");
    await invite.getByRole("button", { name: "Create invitation" }).click();
    const shared = page.getByRole("dialog", { name: "Share the invitation link" });
    const link = await shared.getByLabel("Invitation link").inputValue();
    await shared.getByRole("button", { name: "Done" }).click();

    const teammate = await openPage(browser);
    await teammate.page.goto(link);
    await teammate.page.getByRole("link", { name: "Create an account" }).click();
    await teammate.page.getByLabel("Work email").fill(teammateEmail);
    await teammate.page.getByLabel("Password").fill(PASSWORD);
    await teammate.page.getByLabel("Organization name").fill("Teammate's own");
    await teammate.page.getByRole("button", { name: "Create account" }).click();
    await teammate.page.waitForURL((u) => u.pathname.startsWith("/invitations/"));
    await teammate.page.getByRole("button", { name: "Accept invitation" }).click();
    await teammate.page.waitForURL((u) => u.pathname === "/");
    await teammate.page.getByRole("button", { name: `Organization: ${org}. Switch organization` }).waitFor();
    teammate.assertClean();
    await teammate.context.close();

    await navTo(page, "Teams");
    await navTo(page, "Members");
    await page.getByRole("combobox", { name: `Role of ${teammateEmail}` }).waitFor();
    owner.assertClean();
  });

  it("refuses a request once the team budget is spent, then revokes the key", async () => {
    const { page } = owner;
    const team = `budgeted-${Date.now().toString(36)}`;
    await navTo(page, "Teams");
    await page.getByRole("button", { name: "Create team" }).first().click();
    const create = page.getByRole("dialog", { name: "Create a team" });
    await create.getByLabel("Name").fill(team);
    await create.getByRole("button", { name: "Create team" }).click();
    await page.getByRole("heading", { name: team, level: 1 }).waitFor();

    // A key of that team.
    await navTo(page, "API keys");
    await page.getByRole("button", { name: "Create key" }).first().click();
    const keyDialog = page.getByRole("dialog", { name: "Create an API key" });
    await keyDialog.getByLabel("Name").fill("team-key");
    await keyDialog.getByLabel("Team").selectOption({ label: team });
    await keyDialog.getByRole("button", { name: "Create key" }).click();
    const shown = page.getByRole("dialog", { name: "Key created" });
    const key = ((await shown.getByTestId("api-key-secret").textContent()) ?? "").trim();
    expect(key).toMatch(/^sk-sy-/);
    await shown.getByRole("button", { name: "I have saved it" }).click();

    // A hard team budget of $0.0001: echo costs $1 / $2 per million tokens, so a few small
    // requests spend it.
    await navTo(page, "Budgets & limits");
    await page.getByRole("button", { name: "New budget" }).first().click();
    const dialog = page.getByRole("dialog", { name: "New budget" });
    await dialog.getByLabel("Applies to").selectOption("team");
    await dialog.getByLabel("Team").selectOption({ label: team });
    await dialog.getByLabel("Amount (USD)").fill("0.0001");
    await dialog.getByRole("button", { name: "Create budget" }).click();
    await dialog.waitFor({ state: "hidden" });

    // The app keeps calling with the team's key: some requests pass, then the budget refuses.
    const results: Chat[] = [];
    for (let i = 0; i < 40; i += 1) {
      const r = await chat(key, `spend ${i}`, { max_tokens: 16 });
      results.push(r);
      if (r.status === 429) break;
      // Before the key reaches the gateway (config travels through Redis), it is unknown: 401.
      expect([200, 401], JSON.stringify(r)).toContain(r.status);
    }
    const refused = results.at(-1);
    expect(refused?.status, JSON.stringify(results)).toBe(429);
    expect(refused?.code).toBe("budget_exceeded");
    expect(results.filter((r) => r.status === 200).length, JSON.stringify(results)).toBeGreaterThan(0);

    // The budget's bar shows the spend.
    const card = page.getByRole("list", { name: "Budgets" }).getByRole("listitem").filter({ has: page.getByRole("heading", { name: team }) });
    await expect
      .poll(
        async () => {
          await page.reload();
          return (await card.getByRole("meter").getAttribute("aria-label")) ?? "";
        },
        { timeout: 30_000, interval: 1500 },
      )
      .not.toMatch(/\$0\.00 spent/);
    await screenshot(page, "journey-budget-spent");
    await checkA11y(page, "journey-budget-spent");

    // Revoke the key (confirmed): the gateway refuses it from then on.
    await navTo(page, "API keys");
    await page.getByRole("button", { name: "Revoke team-key" }).click();
    await page.getByRole("alertdialog", { name: /Revoke “team-key”/ }).getByRole("button", { name: "Revoke key" }).click();
    await page.getByRole("row", { name: /team-key/ }).waitFor({ state: "detached" });
    await expect.poll(async () => (await chat(key, "after revoke")).status, { timeout: 10_000 }).toBe(401);
    owner.assertClean();
  });
});
