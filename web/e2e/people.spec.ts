/**
 * People: an owner invites a teammate, the teammate signs up through the invitation link and
 * accepts, the owner puts them in a team with a region policy and takes them out again; then
 * screenshots and axe checks of the members, invitation, teams, team and settings pages at both
 * widths.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launch, openPage, PASSWORD, screenshot, signIn, signUp, uniqueEmail, type TrackedPage, type Width, checkA11y, expectNoSidewaysScroll, navTo } from "./harness";




describe("people: members, invitations, teams and settings", () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("invites a teammate who joins through the link, then manages them in a team", async () => {
    const ownerEmail = uniqueEmail("owner");
    const inviteeEmail = uniqueEmail("invitee");
    const ownerOrg = `Owner Org ${Date.now().toString(36)}`;
    const inviteeOrg = `Invitee Org ${Date.now().toString(36)}`;
    const teamName = `eu-support-${Date.now().toString(36)}`;

    // The owner signs up and invites a teammate as a member.
    const owner = await openPage(browser);
    await signUp(owner.page, { email: ownerEmail, organization: ownerOrg });
    const cookieSessions = (await owner.context.cookies()).some((c) => c.name === "switchyard_refresh");
    await navTo(owner.page, "Members");
    await owner.page.getByRole("heading", { name: "Members", level: 1 }).waitFor();
    await owner.page.getByRole("cell", { name: `${ownerEmail} (you)` }).waitFor();
    await owner.page.getByRole("button", { name: "Invite", exact: true }).click();
    const invite = owner.page.getByRole("dialog", { name: "Invite a teammate" });
    await invite.getByRole("button", { name: "Create invitation" }).click();
    await invite.getByText("Enter a valid email address").waitFor();
    await invite.getByLabel("Email").fill(inviteeEmail);
    await invite.getByLabel("Role").selectOption("member");
    await invite.getByRole("button", { name: "Create invitation" }).click();
    const shared = owner.page.getByRole("dialog", { name: "Share the invitation link" });
    const link = await shared.getByLabel("Invitation link").inputValue();
    expect(link).toMatch(/\/invitations\/[^/]+$/);
    await shared.getByRole("button", { name: "Copy link" }).click();
    await shared.getByRole("button", { name: "Copied" }).waitFor();
    expect(await owner.page.evaluate("navigator.clipboard.readText()")).toBe(link);
    await screenshot(owner.page, "members-invite-link");
    await checkA11y(owner.page, "members-invite-link");
    await shared.getByRole("button", { name: "Done" }).click();
    await owner.page.getByRole("cell", { name: inviteeEmail, exact: true }).waitFor();

    // A second browser opens the link: no session yet, so it signs up with the invited email.
    const invitee = await openPage(browser);
    await invitee.page.goto(link);
    await invitee.page.getByText("Sign in or create an account with the invited email to join").waitFor();
    await invitee.page.getByRole("link", { name: "Create an account" }).click();
    await invitee.page.waitForURL((u) => u.pathname === "/signup" && (u.searchParams.get("redirect") ?? "").startsWith("/invitations/"));
    await invitee.page.getByLabel("Work email").fill(inviteeEmail);
    await invitee.page.getByLabel("Password").fill(PASSWORD);
    await invitee.page.getByLabel("Organization name").fill(inviteeOrg);
    await invitee.page.getByRole("button", { name: "Create account" }).click();
    await invitee.page.waitForURL((u) => u.pathname.startsWith("/invitations/"));
    await invitee.page.getByText(inviteeEmail).waitFor();
    await screenshot(invitee.page, "invitation-accept-signed-in");
    await checkA11y(invitee.page, "invitation-accept-signed-in");
    await invitee.page.getByRole("button", { name: "Accept invitation" }).click();
    await invitee.page.waitForURL((u) => u.pathname === "/");
    // The session is now in the owner's organization, and the switcher lists both.
    const switcher = invitee.page.getByRole("button", { name: `Organization: ${ownerOrg}. Switch organization` });
    await switcher.click();
    await invitee.page.getByRole("menuitem", { name: new RegExp(ownerOrg) }).waitFor();
    await invitee.page.getByRole("menuitem", { name: new RegExp(inviteeOrg) }).waitFor();
    await invitee.page.keyboard.press("Escape");
    invitee.assertClean();
    await invitee.context.close();

    // The owner sees the new member (the members page refetches whenever it opens).
    await navTo(owner.page, "Teams");
    await owner.page.getByRole("heading", { name: "Teams", level: 1 }).waitFor();
    await navTo(owner.page, "Members");
    await owner.page.getByRole("combobox", { name: `Role of ${inviteeEmail}` }).waitFor();
    expect(await owner.page.getByRole("combobox", { name: `Role of ${inviteeEmail}` }).inputValue()).toBe("member");

    // A team with a region policy; add the new member, then remove them (with confirmation).
    await navTo(owner.page, "Teams");
    await owner.page.getByRole("button", { name: "Create team" }).first().click();
    const create = owner.page.getByRole("dialog", { name: "Create a team" });
    await create.getByLabel("Name").fill(teamName);
    await create.getByLabel("Requests per minute").fill("600");
    await create.getByRole("combobox", { name: "Allowed regions", exact: true }).fill("eu");
    await create.getByRole("button", { name: "Add region to allowed regions" }).click();
    await create.getByRole("button", { name: "Create team" }).click();
    await owner.page.getByRole("heading", { name: teamName, level: 1 }).waitFor();
    const teamUrl = new URL(owner.page.url()).pathname;
    expect(teamUrl).toMatch(/^\/teams\/[0-9a-f-]{36}$/);
    await owner.page.getByRole("button", { name: "Remove region eu" }).waitFor();
    const add = owner.page.getByRole("combobox", { name: "Add a member of the organization" });
    await add.selectOption({ label: `${inviteeEmail} (member)` });
    await owner.page.getByRole("button", { name: "Add to team" }).click();
    await owner.page.getByRole("button", { name: `Remove ${inviteeEmail} from the team` }).click();
    const confirm = owner.page.getByRole("alertdialog", { name: `Remove ${inviteeEmail} from ${teamName}?` });
    await confirm.getByRole("button", { name: "Remove from team" }).click();
    await owner.page.getByText("Nobody in this team yet").waitFor();

    // The team's region policy is edited in place: add us-east, save, and it sticks.
    await owner.page.getByRole("combobox", { name: "Allowed regions", exact: true }).fill("us-east");
    await owner.page.getByRole("button", { name: "Add region to allowed regions" }).click();
    await owner.page.getByRole("button", { name: "Save changes" }).click();
    await owner.page.getByText("Team settings saved").waitFor();
    await owner.page.getByRole("button", { name: "Remove region us-east" }).waitFor();
    owner.assertClean();

    // Screenshots and axe at both widths.
    const states: Record<string, (p: Page) => Promise<void>> = {
      members: async (p) => {
        await p.getByRole("heading", { name: "Pending invitations" }).waitFor();
        await p.getByRole("cell", { name: inviteeEmail, exact: true }).waitFor();
      },
      teams: async (p) => {
        await p.getByRole("link", { name: teamName }).waitFor();
      },
      "team-detail": async (p) => {
        await p.getByRole("heading", { name: teamName, level: 1 }).waitFor();
        await p.getByText("Nobody in this team yet").waitFor();
      },
      settings: async (p) => {
        await p.getByRole("heading", { name: "Region policy" }).waitFor();
        await p.locator("#main").getByText(ownerOrg).waitFor();
      },
    };
    const pageLinks: Record<string, string> = { members: "Members", teams: "Teams", settings: "Settings" };
    let state: string | null = null;
    if (cookieSessions) {
      state = join(tmpdir(), `people-owner-${Date.now()}.json`);
      await owner.context.storageState({ path: state });
    }
    for (const width of ["desktop", "phone"] as Width[]) {
      let t: TrackedPage;
      if (state) {
        t = await openPage(browser, width, { storageState: state });
      } else {
        // Without the cookie session a reload loses the in-memory token: sign in, then click through.
        t = await openPage(browser, width);
        await signIn(t.page, ownerEmail);
      }
      for (const [name, ready] of Object.entries(states)) {
        if (state) {
          await t.page.goto(name === "team-detail" ? teamUrl : `/${name}`);
        } else if (name === "team-detail") {
          await navTo(t.page, "Teams");
          await t.page.getByRole("link", { name: teamName }).click();
        } else {
          await navTo(t.page, pageLinks[name]!);
        }
        await ready(t.page);
        await screenshot(t.page, name);
        await checkA11y(t.page, `${name}@${width}`);
        await expectNoSidewaysScroll(t.page, `${name}@${width}`);
        if (name === "members") {
          // The invite dialog fits the screen too.
          await t.page.getByRole("button", { name: "Invite", exact: true }).click();
          await t.page.getByRole("dialog", { name: "Invite a teammate" }).getByLabel("Team (optional)").waitFor();
          await screenshot(t.page, "members-invite-dialog");
          await checkA11y(t.page, `members-invite-dialog@${width}`);
          await t.page.keyboard.press("Escape");
          await t.page.getByRole("dialog").waitFor({ state: "detached" });
        }
      }
      t.assertClean();
      // A refresh token works once: hand the rotated cookie on to the next context.
      if (state) await t.context.storageState({ path: state });
      await t.context.close();
    }
    await owner.context.close();

    // The invitation page, signed out, at both widths (it is public).
    for (const width of ["desktop", "phone"] as Width[]) {
      const t = await openPage(browser, width);
      await t.page.goto(link);
      await t.page.getByRole("link", { name: "Sign in to accept" }).waitFor();
      await screenshot(t.page, "invitation-accept");
      await checkA11y(t.page, `invitation-accept@${width}`);
      await expectNoSidewaysScroll(t.page, `invitation-accept@${width}`);
      t.assertClean();
      await t.context.close();
    }
  });
});
