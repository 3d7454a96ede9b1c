import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { server } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { apiError, BOB_ID, members, on, team, TEAM_ID } from "@/features/members/fixtures";
import { TeamsPage } from "./TeamsPage";
import { TeamDetail } from "./TeamDetail";

const models = on("get", "/api/v1/models", () => ({ data: [] }));

function detailHandlers() {
  return [
    models,
    on("get", "/api/v1/teams/{id}", () => team),
    on("get", "/api/v1/teams/{id}/members", () => ({
      data: [{ team_id: TEAM_ID, user_id: BOB_ID, email: "bob@example.com", role: "member" as const, created_at: "2026-11-21T10:00:00Z" }],
    })),
    on("get", "/api/v1/members", () => members),
    on("get", "/api/v1/keys", () => ({ data: [] })),
  ];
}

describe("TeamsPage", () => {
  it("lists teams with their limits and region policy", async () => {
    server.use(on("get", "/api/v1/teams", () => ({ data: [team, { id: BOB_ID, name: "ops", created_at: "2026-11-06T08:00:00Z" }] })));
    renderWithApp(<TeamsPage />);
    const link = await screen.findByRole("link", { name: "search" });
    const row = link.closest("tr")!;
    expect(within(row).getByText("eu")).toBeInTheDocument();
    expect(within(row).getByText("1,000")).toBeInTheDocument();
    expect(within(screen.getByRole("link", { name: "ops" }).closest("tr")!).getByText("Any")).toBeInTheDocument();
  });

  it("shows an empty state with a call to action", async () => {
    server.use(on("get", "/api/v1/teams", () => ({ data: [] })));
    renderWithApp(<TeamsPage />);
    expect(await screen.findByText("No teams yet")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Create team" })).toBeInTheDocument();
  });

  it("create dialog validates before sending and shows the server's field error", async () => {
    const user = userEvent.setup();
    let sent: unknown = null;
    server.use(
      models,
      on("get", "/api/v1/teams", () => ({ data: [] })),
      on("post", "/api/v1/teams", async ({ request }) => {
        sent = await request.json();
        return apiError(400, "validation_failed", "name: a team with this name already exists");
      }),
    );
    renderWithApp(<TeamsPage />);
    await user.click(await screen.findByRole("button", { name: "Create team" }));
    const dialog = await screen.findByRole("dialog", { name: "Create a team" });
    await user.type(within(dialog).getByLabelText("Requests per minute"), "lots");
    await user.click(within(dialog).getByRole("button", { name: "Create team" }));
    expect(await within(dialog).findByText("Name the team")).toBeInTheDocument();
    expect(within(dialog).getByText("Use a whole number, or leave empty for no limit")).toBeInTheDocument();
    expect(sent).toBeNull();

    await user.type(within(dialog).getByLabelText("Name"), "search");
    await user.clear(within(dialog).getByLabelText("Requests per minute"));
    await user.type(within(dialog).getByLabelText("Requests per minute"), "600");
    await user.type(within(dialog).getByLabelText("Allowed regions"), "eu{Enter}");
    await user.click(within(dialog).getByRole("button", { name: "Create team" }));
    expect(await within(dialog).findByText("a team with this name already exists")).toBeInTheDocument();
    expect(sent).toEqual({ name: "search", rpm_limit: 600, allowed_regions: ["eu"] });
  });

  it("asks for confirmation before deleting a team", async () => {
    const user = userEvent.setup();
    let deleted = false;
    server.use(
      on("get", "/api/v1/teams", () => ({ data: [team] })),
      on("delete", "/api/v1/teams/{id}", () => {
        deleted = true;
        return new Response(null, { status: 204 });
      }),
    );
    renderWithApp(<TeamsPage />);
    await user.click(await screen.findByRole("button", { name: "Delete team search" }));
    const dialog = await screen.findByRole("alertdialog", { name: "Delete team search?" });
    expect(deleted).toBe(false);
    await user.click(within(dialog).getByRole("button", { name: "Delete team" }));
    await waitFor(() => expect(deleted).toBe(true));
  });
});

describe("TeamDetail", () => {
  it("editing the region policy sends only the changed field", async () => {
    const user = userEvent.setup();
    let body: unknown = null;
    server.use(
      ...detailHandlers(),
      on("get", "/api/v1/teams", () => ({ data: [team] })),
      on("patch", "/api/v1/teams/{id}", async ({ request }) => {
        body = await request.json();
        return { ...team, allowed_regions: ["us-east"] };
      }),
    );
    renderWithApp(<TeamDetail teamId={TEAM_ID} />);
    expect(await screen.findByRole("heading", { name: "search", level: 1 })).toBeInTheDocument();
    expect(screen.getByText(/only go to deployments in these regions/)).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Remove region eu" }));
    await user.type(screen.getByLabelText("Allowed regions"), "us-east");
    await user.click(screen.getByRole("button", { name: "Add region to allowed regions" }));
    await user.click(screen.getByRole("button", { name: "Save changes" }));
    await waitFor(() => expect(body).toEqual({ allowed_regions: ["us-east"] }));
  });

  it("clearing the region policy sends null", async () => {
    const user = userEvent.setup();
    let body: unknown = null;
    server.use(
      ...detailHandlers(),
      on("get", "/api/v1/teams", () => ({ data: [team] })),
      on("patch", "/api/v1/teams/{id}", async ({ request }) => {
        body = await request.json();
        return { ...team, allowed_regions: null };
      }),
    );
    renderWithApp(<TeamDetail teamId={TEAM_ID} />);
    await user.click(await screen.findByRole("button", { name: "Remove region eu" }));
    await user.click(screen.getByRole("button", { name: "Save changes" }));
    await waitFor(() => expect(body).toEqual({ allowed_regions: null }));
  });

  it("adds an organization member to the team and asks before removing one", async () => {
    const user = userEvent.setup();
    let added: unknown = null;
    let removed: string | null = null;
    server.use(
      ...detailHandlers(),
      on(
        "post",
        "/api/v1/teams/{id}/members",
        async ({ request }) => {
          added = await request.json();
          return { team_id: TEAM_ID, user_id: members.data[0]!.user_id, email: "alice@example.com", role: "owner" as const, created_at: "2026-12-06T10:00:00Z" };
        },
        201,
      ),
      on("delete", "/api/v1/teams/{id}/members/{user_id}", ({ params }) => {
        removed = String(params.user_id);
        return new Response(null, { status: 204 });
      }),
    );
    renderWithApp(<TeamDetail teamId={TEAM_ID} />);
    const select = await screen.findByRole("combobox", { name: "Add a member of the organization" });
    // Bob is already in the team: only Alice is offered.
    await waitFor(() => expect(within(select).getAllByRole("option").map((o) => o.textContent)).toEqual(["Choose a member…", "alice@example.com (owner)"]));
    await user.click(screen.getByRole("button", { name: "Add to team" }));
    expect(await screen.findByText("Choose a member of the organization")).toBeInTheDocument();
    await user.selectOptions(select, members.data[0]!.user_id);
    await user.click(screen.getByRole("button", { name: "Add to team" }));
    await waitFor(() => expect(added).toEqual({ user_id: members.data[0]!.user_id }));

    await user.click(screen.getByRole("button", { name: "Remove bob@example.com from the team" }));
    const dialog = await screen.findByRole("alertdialog", { name: "Remove bob@example.com from search?" });
    expect(removed).toBeNull();
    await user.click(within(dialog).getByRole("button", { name: "Remove from team" }));
    await waitFor(() => expect(removed).toBe(BOB_ID));
  });

  it("is read-only for viewers", async () => {
    server.use(
      models,
      on("get", "/api/v1/teams/{id}", () => team),
      on("get", "/api/v1/teams/{id}/members", () => ({ data: [] })),
      on("get", "/api/v1/keys", () => ({ data: [] })),
    );
    renderWithApp(<TeamDetail teamId={TEAM_ID} />, { role: "viewer" as const });
    expect(await screen.findByLabelText("Name")).toBeDisabled();
    expect(screen.queryByRole("button", { name: "Save changes" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Remove region eu" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Delete team/ })).not.toBeInTheDocument();
    expect(screen.queryByRole("combobox", { name: "Add a member of the organization" })).not.toBeInTheDocument();
  });

  it("says so when the team does not exist", async () => {
    server.use(models, on("get", "/api/v1/teams/{id}", () => apiError(404, "not_found", "team not found")));
    renderWithApp(<TeamDetail teamId={TEAM_ID} />);
    expect(await screen.findByText("This team does not exist")).toBeInTheDocument();
  });

  it("lists the team's keys from GET /keys?team_id=", async () => {
    let asked: string | null = null;
    // MSW answers with the first matching handler: this one before detailHandlers' empty list.
    server.use(
      on("get", "/api/v1/keys", ({ request }) => {
        asked = new URL(request.url).searchParams.get("team_id");
        return {
          data: [
            {
              id: "00000000-0000-7000-8000-0000000000d4",
              name: "search backend",
              prefix: "sk-sy-ab12",
              created_at: "2026-11-20T10:00:00Z",
              created_by: BOB_ID,
              metadata: {},
              team_id: TEAM_ID,
              revoked_at: "2026-11-25T10:00:00Z",
            },
          ],
        };
      }),
      ...detailHandlers(),
    );
    renderWithApp(<TeamDetail teamId={TEAM_ID} />);
    const table = await screen.findByRole("table", { name: "Keys of search" });
    expect(asked).toBe(TEAM_ID);
    expect(within(table).getByText("search backend")).toBeInTheDocument();
    expect(within(table).getByText("Revoked")).toBeInTheDocument();
  });
});
