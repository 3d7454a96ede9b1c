import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { checkA11y, launch, openPage, screenshot, signUp, uniqueEmail, PASSWORD } from "./harness";

describe("sign-up and sessions", () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("signs up, survives a reload through the refresh cookie, and signs out", async () => {
    const t = await openPage(browser);
    await t.page.goto("/signup");
    await screenshot(t.page, "signup");
    await checkA11y(t.page, "signup");
    const { email } = await signUp(t.page, { email: uniqueEmail("smoke") });
    // The access token lives in memory only: a reload restores the session from the HttpOnly cookie.
    const storage = await t.page.evaluate(() => ({ local: localStorage.length, session: JSON.stringify({ ...sessionStorage }) }));
    expect(storage.local).toBe(0);
    expect(storage.session).not.toMatch(/eyJ|refresh|access_token/);
    const cookies = await t.context.cookies();
    const refresh = cookies.find((c) => c.name === "switchyard_refresh");
    expect(refresh?.httpOnly).toBe(true);
    expect(refresh?.sameSite).toBe("Strict");
    await t.page.reload();
    await t.page.getByRole("heading", { level: 1 }).waitFor();
    expect(new URL(t.page.url()).pathname).toBe("/");
    // Two tabs share the single-use refresh cookie: reloaded at the same moment, they take turns
    // refreshing (a lock across tabs) instead of presenting the same cookie twice, which the
    // server would take for theft and end every session.
    const second = await t.context.newPage();
    await second.goto("/keys");
    await second.getByRole("heading", { name: "API keys", level: 1 }).waitFor();
    await Promise.all([t.page.reload(), second.reload()]);
    await Promise.all([
      t.page.getByRole("heading", { name: "Overview", level: 1 }).waitFor(),
      second.getByRole("heading", { name: "API keys", level: 1 }).waitFor(),
    ]);
    expect(new URL(second.url()).pathname).toBe("/keys");
    await second.close();
    await t.page.reload();
    await t.page.getByRole("heading", { name: "Overview", level: 1 }).waitFor();
    await t.page.getByRole("button", { name: /Account menu/ }).click();
    await t.page.getByRole("menuitem", { name: "Sign out" }).click();
    await t.page.waitForURL((u) => u.pathname === "/login");
    // Signed out: a console page sends you to the login page, remembering where you were going.
    await t.page.goto("/keys");
    await t.page.waitForURL((u) => u.pathname === "/login");
    expect(new URL(t.page.url()).searchParams.get("redirect")).toBe("/keys");
    await screenshot(t.page, "login");
    // Signing in on that page goes back to where the user was going.
    await t.page.getByLabel("Email").fill(email);
    await t.page.getByLabel("Password").fill(PASSWORD);
    await t.page.getByRole("button", { name: "Sign in" }).click();
    await t.page.waitForURL((u) => u.pathname === "/keys");
    t.assertClean();
    await t.context.close();
  });
});
