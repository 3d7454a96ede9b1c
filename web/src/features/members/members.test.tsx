import "./test-env";
import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { server } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { MembersPage } from "./MembersPage";
import { acceptLink } from "./schemas";
import { apiError, BOB_ID, me, members, on } from "./fixtures";

function baseHandlers() {
  return [
    on("get", "/api/v1/members", () => members),
    on("get", "/api/v1/me", () => me),
    on("get", "/api/v1/invitations", () => ({
      data: [
        {
          id: "00000000-0000-7000-8000-0000000000d4",
          email: "carol@example.com",
          role: "viewer" as const,
          invited_by: me.user.id,
          created_at: "2026-12-01T10:00:00Z",
          expires_at: "2026-12-08T10:00:00Z",
          team_id: null,
        },
      ],
    })),
    on("get", "/api/v1/teams", () => ({ data: [] })),
  ];
}

describe("MembersPage", () => {
  it("lists the members from the API with their role and join date", async () => {
    server.use(...baseHandlers());
    renderWithApp(<MembersPage />);
    const table = (await screen.findByText("bob@example.com")).closest("table")!;
    const rows = within(table).getAllByRole("row");
    expect(rows).toHaveLength(3);
    expect(within(rows[1]!).getByText("alice@example.com")).toBeInTheDocument();
    expect(within(rows[1]!).getByText("(you)")).toBeInTheDocument();
    expect(within(rows[2]!).getByRole("combobox", { name: "Role of bob@example.com" })).toHaveValue("member");
    // The owner cannot remove themselves from the list; Bob can be removed.
    expect(screen.queryByRole("button", { name: "Remove alice@example.com" })).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Remove bob@example.com" })).toBeInTheDocument();
    expect(await screen.findByText("carol@example.com")).toBeInTheDocument();
  });

  it("asks for confirmation before removing a member", async () => {
    const user = userEvent.setup();
    let deleted: string | null = null;
    server.use(
      ...baseHandlers(),
      on("delete", "/api/v1/members/{user_id}", ({ params }) => {
        deleted = String(params.user_id);
        return new Response(null, { status: 204 });
      }),
    );
    renderWithApp(<MembersPage />);
    await user.click(await screen.findByRole("button", { name: "Remove bob@example.com" }));
    const dialog = await screen.findByRole("alertdialog", { name: "Remove bob@example.com?" });
    expect(deleted).toBeNull();
    await user.click(within(dialog).getByRole("button", { name: "Remove member" }));
    await waitFor(() => expect(deleted).toBe(BOB_ID));
  });

  it("changes a member's role with a PATCH", async () => {
    const user = userEvent.setup();
    let body: unknown = null;
    server.use(
      ...baseHandlers(),
      on("patch", "/api/v1/members/{user_id}", async ({ request }) => {
        body = await request.json();
        return { ...members.data[1]!, role: "admin" as const };
      }),
    );
    renderWithApp(<MembersPage />);
    await user.selectOptions(await screen.findByRole("combobox", { name: "Role of bob@example.com" }), "admin");
    await waitFor(() => expect(body).toEqual({ role: "admin" as const }));
  });

  it("invite dialog: validates the email, shows the server's field error, then the accept link", async () => {
    const user = userEvent.setup();
    let attempt = 0;
    let sent: unknown = null;
    server.use(
      ...baseHandlers(),
      on(
        "post",
        "/api/v1/invitations",
        async ({ request }) => {
          attempt += 1;
          sent = await request.json();
          if (attempt === 1) return apiError(400, "validation_failed", "email: must be a valid email address");
          return {
            id: "00000000-0000-7000-8000-0000000000e5",
            email: "dave@example.com",
            role: "member" as const,
            invited_by: me.user.id,
            created_at: "2026-12-06T10:00:00Z",
            expires_at: "2026-12-13T10:00:00Z",
            team_id: null,
            token: "inv_tok123",
            accept_path: "/api/v1/invitations/inv_tok123/accept",
          };
        },
        201,
      ),
    );
    renderWithApp(<MembersPage />);
    await user.click(await screen.findByRole("button", { name: "Invite" }));
    const dialog = await screen.findByRole("dialog", { name: "Invite a teammate" });
    await user.click(within(dialog).getByRole("button", { name: "Create invitation" }));
    expect(await within(dialog).findByText("Enter a valid email address")).toBeInTheDocument();
    expect(attempt).toBe(0);

    await user.type(within(dialog).getByLabelText("Email"), "dave@example.com");
    await user.click(within(dialog).getByRole("button", { name: "Create invitation" }));
    expect(await within(dialog).findByText("must be a valid email address")).toBeInTheDocument();
    expect(within(dialog).getByLabelText("Email")).toHaveAttribute("aria-invalid", "true");

    await user.click(within(dialog).getByRole("button", { name: "Create invitation" }));
    const shared = await screen.findByRole("dialog", { name: "Share the invitation link" });
    expect(sent).toEqual({ email: "dave@example.com", role: "member" as const });
    expect(within(shared).getByLabelText("Invitation link")).toHaveValue(acceptLink("inv_tok123"));
    expect(acceptLink("inv_tok123")).toBe(`${window.location.origin}/invitations/inv_tok123`);
    expect(within(shared).getByRole("button", { name: "Copy link" })).toBeInTheDocument();
    expect(within(shared).getByText(/sends no email/)).toBeInTheDocument();
  });

  it("only owners can invite owners", async () => {
    const user = userEvent.setup();
    server.use(...baseHandlers());
    renderWithApp(<MembersPage />, { role: "admin" as const });
    await user.click(await screen.findByRole("button", { name: "Invite" }));
    const dialog = await screen.findByRole("dialog", { name: "Invite a teammate" });
    const options = within(within(dialog).getByLabelText("Role")).getAllByRole("option").map((o) => o.textContent);
    expect(options).toEqual(["Admin", "Member", "Viewer"]);
  });

  it("is read-only for viewers", async () => {
    server.use(on("get", "/api/v1/members", () => members), on("get", "/api/v1/me", () => me));
    renderWithApp(<MembersPage />, { role: "viewer" as const });
    expect(await screen.findByText("bob@example.com")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Invite" })).not.toBeInTheDocument();
    expect(screen.queryByRole("combobox")).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Remove/ })).not.toBeInTheDocument();
    expect(screen.queryByText("Pending invitations")).not.toBeInTheDocument();
  });
});
