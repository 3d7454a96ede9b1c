/**
 * Governance: an owner signs up, creates an organization budget and a team budget through the
 * budget dialog, sees both with their cap bars, the (empty) alerts list and the rate limits,
 * sets the organization's rate limit inline, finds billing off in the zero-setup default, and
 * finds the budget creations in the audit log (filtered through the URL, one event expanded);
 * then screenshots and axe checks of the budgets, billing and audit pages at both widths.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { captureBothWidths, checkA11y, launch, navTo, openPage, PASSWORD, screenshot, signIn, signUp, uniqueEmail, type Width } from "./harness";


/** Ready checks per page: the content that says the page has loaded. */
const READY: Record<string, (page: Page) => Promise<void>> = {
  budgets: async (page) => {
    await page.getByRole("heading", { name: "Budgets & limits", level: 1 }).waitFor();
    await page.getByRole("list", { name: "Budgets" }).getByRole("meter").nth(1).waitFor();
    await page.getByText("No alerts yet").waitFor();
    await page.getByRole("button", { name: /Edit limits of/ }).first().waitFor();
  },
  billing: async (page) => {
    await page.getByRole("heading", { name: "Billing", level: 1 }).waitFor();
    await page.getByText("Billing is not enabled on this server").waitFor();
  },
  audit: async (page) => {
    await page.getByRole("heading", { name: "Audit log", level: 1 }).waitFor();
    await page.getByRole("list", { name: "Audit events" }).waitFor();
  },
};
const NAV_LABEL: Record<string, string> = { budgets: "Budgets & limits", billing: "Billing", audit: "Audit log" };
const PATHS: Record<string, string> = { budgets: "/budgets", billing: "/billing", audit: "/audit?object_kind=budget" };

describe("governance: budgets, limits, billing and the audit log", () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("creates an organization and a team budget, sees them, and finds them in the audit log", async () => {
    const email = uniqueEmail("govern");
    const teamName = `search-${Date.now().toString(36)}`;
    const t = await openPage(browser);
    const { page } = t;
    await signUp(page, { email, organization: "Govern Inc" });
    const cookieSessions = (await t.context.cookies()).some((c) => c.name === "switchyard_refresh");

    // The Teams page belongs to another part of the console: make the team through the API.
    const login = await page.request.post("/api/v1/auth/login", { data: { email, password: PASSWORD } });
    expect(login.status()).toBe(200);
    const token = ((await login.json()) as { access_token: string }).access_token;
    const team = await page.request.post("/api/v1/teams", { data: { name: teamName }, headers: { authorization: `Bearer ${token}` } });
    expect(team.status()).toBe(201);

    await navTo(page, "Budgets & limits");
    await page.getByRole("heading", { name: "Budgets & limits", level: 1 }).waitFor();
    await page.getByText("No budgets yet").waitFor();

    // The organization's budget: the form checks the amount first.
    await page.getByRole("button", { name: "New budget" }).first().click();
    let dialog = page.getByRole("dialog", { name: "New budget" });
    await dialog.getByRole("button", { name: "Create budget" }).click();
    await dialog.getByText("Enter an amount").waitFor();
    await dialog.getByLabel("Amount (USD)").fill("25");
    await dialog.getByRole("button", { name: "Create budget" }).click();
    await dialog.waitFor({ state: "hidden" });
    const list = page.getByRole("list", { name: "Budgets" });
    await list.getByRole("meter", { name: /^Whole organization: \$0\.00 spent/ }).waitFor();

    // The team's: daily, alerts only, alerting at 80 % and 100 %.
    await page.getByRole("button", { name: "New budget" }).first().click();
    dialog = page.getByRole("dialog", { name: "New budget" });
    await dialog.getByLabel("Applies to").selectOption("team");
    await dialog.getByLabel("Team").selectOption({ label: teamName });
    await dialog.getByLabel("Amount (USD)").fill("10.50");
    await dialog.getByLabel("Period").selectOption("daily");
    await dialog.getByLabel("Alert thresholds (%)").fill("80, 100");
    await dialog.getByLabel(/Soft cap/).check();
    await dialog.getByRole("button", { name: "Create budget" }).click();
    await dialog.waitFor({ state: "hidden" });
    const teamCard = list.getByRole("listitem").filter({ has: page.getByRole("heading", { name: teamName }) });
    await teamCard.getByRole("meter", { name: `${teamName}: $0.00 spent and $0.00 reserved of $10.50` }).waitFor();
    await teamCard.getByText("Soft · alerts only").waitFor();
    await teamCard.getByText("80%, 100%").waitFor();
    expect(await list.getByRole("meter").count()).toBe(2);

    // No threshold crossed yet; no webhook set.
    await page.getByText("No alerts yet").waitFor();
    await page.getByRole("link", { name: "Set one in Settings" }).waitFor();

    // Every rate limit in one table: set the organization's inline.
    await page.getByRole("button", { name: "Edit limits of Govern Inc" }).click();
    await page.getByRole("textbox", { name: "Requests per minute for Govern Inc" }).fill("5000");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByRole("cell", { name: "5,000" }).waitFor();
    await screenshot(page, "budgets-flow");

    // Billing is off in the zero-setup default: said plainly, not as an error.
    await navTo(page, "Billing");
    await page.getByText("Billing is not enabled on this server").waitFor();
    await page.getByText(/STRIPE_SECRET_KEY/).waitFor();

    // The audit log has both creations; filtering by resource goes to the URL and the API.
    await navTo(page, "Audit log");
    const events = page.getByRole("list", { name: "Audit events" });
    await events.waitFor();
    await page.getByRole("combobox", { name: "Resource" }).selectOption("budget");
    await page.waitForURL((u) => u.searchParams.get("object_kind") === "budget");
    await expect.poll(() => events.getByRole("button", { name: /create Budget/ }).count()).toBe(2);
    const first = events.getByRole("button", { name: /create Budget/ }).first();
    await first.click();
    expect(await first.getAttribute("aria-expanded")).toBe("true");
    await page.getByText("After", { exact: true }).waitFor();
    await page.getByText(/"limit_usd": "10\.5"/).waitFor();
    await screenshot(page, "audit-expanded");
    t.assertClean();

    // Each page at both widths: screenshot and axe.
    if (cookieSessions) {
      const state = `${await import("node:os").then((o) => o.tmpdir())}/govern-owner-${Date.now()}.json`;
      await t.context.storageState({ path: state });
      for (const name of Object.keys(READY)) {
        await captureBothWidths(browser, state, PATHS[name]!, name, READY[name]!);
      }
    } else {
      // Without the cookie session a reload loses the in-memory token: sign in and click through.
      for (const width of ["desktop", "phone"] as Width[]) {
        const w = await openPage(browser, width);
        await signIn(w.page, email);
        for (const name of Object.keys(READY)) {
          await navTo(w.page, NAV_LABEL[name]!);
          await READY[name]!(w.page);
          await screenshot(w.page, name);
          await checkA11y(w.page, `${name}@${width}`);
        }
        w.assertClean();
        await w.context.close();
      }
    }
    await t.context.close();
  });
});
