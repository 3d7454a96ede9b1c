import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { server } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { BudgetsPage } from "./BudgetsPage";
import { apiError, budget, keys, on, org, TEAM_ID, teams } from "./fixtures";

function baseHandlers(budgets = [budget(), budget({ id: "00000000-0000-7000-8000-0000000000e6", scope: "team", scope_id: TEAM_ID, limit_usd: "10", limit_micros: 10_000_000, spent_usd: "9.5", reserved_usd: "0", hard: false, period: "daily" })]) {
  return [
    on("get", "/api/v1/budgets", () => ({ data: budgets })),
    on("get", "/api/v1/teams", () => teams),
    on("get", "/api/v1/keys", () => keys),
    on("get", "/api/v1/organization", () => org),
    on("get", "/api/v1/alerts", () => ({ data: [], next_before: null })),
  ];
}

describe("BudgetsPage", () => {
  it("shows each budget's spent and reserved against its cap", async () => {
    server.use(...baseHandlers());
    renderWithApp(<BudgetsPage />);
    const list = await screen.findByRole("list", { name: "Budgets" });
    const cards = within(list).getAllByRole("listitem");
    expect(cards).toHaveLength(2);
    // The organization's budget first: $5 spent + $1 reserved of $20.
    const orgMeter = within(cards[0]!).getByRole("meter");
    expect(orgMeter).toHaveAccessibleName("Whole organization: $5.00 spent and $1.00 reserved of $20.00");
    expect(orgMeter).toHaveAttribute("aria-valuenow", "5000000");
    expect(orgMeter).toHaveAttribute("aria-valuemax", "20000000");
    const [spentBar, reservedBar] = Array.from(orgMeter.firstElementChild!.children) as HTMLElement[];
    expect(spentBar!.style.width).toBe("25%");
    expect(reservedBar!.style.width).toBe("5%");
    expect(within(cards[0]!).getByText("Hard cap")).toBeInTheDocument();
    expect(within(cards[0]!).getByText("$12.50")).toBeInTheDocument();
    // The team's, named after the team; soft.
    expect(within(cards[1]!).getByRole("heading", { name: "search" })).toBeInTheDocument();
    expect(within(cards[1]!).getByText("Soft · alerts only")).toBeInTheDocument();
    expect(within(cards[1]!).getByRole("meter")).toHaveAttribute("aria-valuenow", "9500000");
    // Alerts: empty state; webhook: not set, with a link to Settings.
    expect(await screen.findByText("No alerts yet")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Set one in Settings" })).toHaveAttribute("href", "/settings");
  });

  it("validates a new budget with zod, then shows the server's field error", async () => {
    const user = userEvent.setup();
    let sent: unknown = null;
    server.use(
      ...baseHandlers([]),
      on("post", "/api/v1/budgets", async ({ request }) => {
        sent = await request.json();
        return apiError(400, "validation_failed", 'timezone: unknown time zone "Mars/Olympus" (expected an IANA name such as "Europe/Berlin" or "UTC")');
      }),
    );
    renderWithApp(<BudgetsPage />);
    await user.click((await screen.findAllByRole("button", { name: "New budget" }))[0]!);
    const dialog = await screen.findByRole("dialog", { name: "New budget" });
    await user.selectOptions(within(dialog).getByLabelText("Applies to"), "team");
    await user.clear(within(dialog).getByLabelText("Alert thresholds (%)"));
    await user.type(within(dialog).getByLabelText("Alert thresholds (%)"), "50, 2000");
    await user.click(within(dialog).getByRole("button", { name: "Create budget" }));
    expect(await within(dialog).findByText("Enter an amount")).toBeInTheDocument();
    expect(within(dialog).getByText("Choose a team")).toBeInTheDocument();
    expect(within(dialog).getByText("Each threshold is a percentage from 1 to 1000")).toBeInTheDocument();
    expect(sent).toBeNull();

    await user.type(within(dialog).getByLabelText("Amount (USD)"), "25");
    await user.selectOptions(within(dialog).getByLabelText("Team"), TEAM_ID);
    await user.clear(within(dialog).getByLabelText("Alert thresholds (%)"));
    await user.type(within(dialog).getByLabelText("Alert thresholds (%)"), "80 50");
    await user.clear(within(dialog).getByLabelText("Time zone"));
    await user.type(within(dialog).getByLabelText("Time zone"), "Mars/Olympus");
    await user.click(within(dialog).getByLabelText(/Soft cap/));
    await user.click(within(dialog).getByRole("button", { name: "Create budget" }));
    const tz = within(dialog).getByLabelText("Time zone");
    await waitFor(() => expect(tz).toHaveAttribute("aria-invalid", "true"));
    expect(tz).toHaveAccessibleDescription(expect.stringContaining('unknown time zone "Mars/Olympus"'));
    expect(sent).toEqual({
      scope: "team",
      scope_id: TEAM_ID,
      limit_usd: "25",
      period: "monthly",
      hard: false,
      alert_thresholds: [50, 80],
      timezone: "Mars/Olympus",
    });
  });

  it("asks for confirmation before deleting a budget", async () => {
    const user = userEvent.setup();
    let deleted: string | null = null;
    server.use(
      ...baseHandlers([budget()]),
      on("delete", "/api/v1/budgets/{id}", ({ params }) => {
        deleted = String(params.id);
        return new Response(null, { status: 204 });
      }),
    );
    renderWithApp(<BudgetsPage />);
    await user.click(await screen.findByRole("button", { name: "Delete budget for Whole organization" }));
    const confirm = await screen.findByRole("alertdialog", { name: "Delete this budget?" });
    expect(deleted).toBeNull();
    await user.click(within(confirm).getByRole("button", { name: "Cancel" }));
    expect(deleted).toBeNull();
    await user.click(screen.getByRole("button", { name: "Delete budget for Whole organization" }));
    await user.click(within(await screen.findByRole("alertdialog")).getByRole("button", { name: "Delete budget" }));
    await waitFor(() => expect(deleted).toBe(budget().id));
  });

  it("edits a rate limit inline and PATCHes the resource that owns it", async () => {
    const user = userEvent.setup();
    let patched: unknown = null;
    server.use(
      ...baseHandlers(),
      on("patch", "/api/v1/teams/{id}", async ({ request }) => {
        patched = await request.json();
        return { ...teams.data[0]!, rpm_limit: 1000 };
      }),
    );
    renderWithApp(<BudgetsPage />);
    const table = (await screen.findByRole("button", { name: "Edit limits of search" })).closest("table")!;
    // Organization, team and key rows, each with its own limits.
    expect(within(table).getAllByRole("row")).toHaveLength(4);
    expect(within(table).getByText("5,000")).toBeInTheDocument();
    expect(within(table).getByText("20,000")).toBeInTheDocument();
    await user.click(within(table).getByRole("button", { name: "Edit limits of search" }));
    const rpm = within(table).getByRole("textbox", { name: "Requests per minute for search" });
    await user.type(rpm, "0");
    await user.click(within(table).getByRole("button", { name: "Save" }));
    expect(await within(table).findByText("At least 1 (leave empty for no limit)")).toBeInTheDocument();
    await user.clear(rpm);
    await user.type(rpm, "1000{Enter}");
    await waitFor(() => expect(patched).toEqual({ rpm_limit: 1000, tpm_limit: null }));
  });

  it("lists alerts with their webhook delivery, and edits a budget with PATCH", async () => {
    const user = userEvent.setup();
    let patched: unknown = null;
    // The first matching handler answers: these come before the base ones.
    server.use(
      on("get", "/api/v1/alerts", () => ({
        data: [
          {
            id: "00000000-0000-7000-8000-0000000000a9",
            budget_id: budget().id,
            scope: "team",
            scope_id: TEAM_ID,
            threshold: 80,
            spent_usd: "8.01",
            limit_usd: "10",
            period_start: "2026-12-06T00:00:00Z",
            created_at: "2026-12-06T09:00:00Z",
            delivery: { id: "00000000-0000-7000-8000-0000000000aa", status: "failed", attempts: 10, last_error: "HTTP 500 from the receiver" },
          },
        ],
        next_before: null,
      })),
      on("patch", "/api/v1/budgets/{id}", async ({ request }) => {
        patched = await request.json();
        return budget({ limit_usd: "40", limit_micros: 40_000_000 });
      }),
      ...baseHandlers([budget()]),
    );
    renderWithApp(<BudgetsPage />);
    const alertRow = (await screen.findByText("80%")).closest("tr")!;
    expect(within(alertRow).getByText("search")).toBeInTheDocument();
    expect(within(alertRow).getByText("$8.01 / $10.00")).toBeInTheDocument();
    expect(within(alertRow).getByText("failed")).toBeInTheDocument();
    expect(within(alertRow).getByText("HTTP 500 from the receiver")).toBeInTheDocument();

    await user.click(screen.getByRole("button", { name: "Edit budget for Whole organization" }));
    const dialog = await screen.findByRole("dialog", { name: "Edit budget" });
    expect(within(dialog).getByLabelText("Applies to")).toHaveValue("Organization · Whole organization");
    const amount = within(dialog).getByLabelText("Amount (USD)");
    expect(amount).toHaveValue("20");
    await user.clear(amount);
    await user.type(amount, "40");
    await user.click(within(dialog).getByRole("button", { name: "Save changes" }));
    await waitFor(() => expect(patched).toEqual({ limit_usd: "40", period: "monthly", hard: true, alert_thresholds: [50, 80, 100], timezone: "UTC" }));
  });

  it("is read-only for viewers", async () => {
    server.use(...baseHandlers());
    renderWithApp(<BudgetsPage />, { role: "viewer" });
    await screen.findByRole("list", { name: "Budgets" });
    expect(screen.queryByRole("button", { name: "New budget" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Delete budget/ })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Edit limits/ })).not.toBeInTheDocument();
    // Alerts are for owners and admins.
    expect(screen.queryByRole("heading", { name: "Alerts" })).not.toBeInTheDocument();
  });
});
