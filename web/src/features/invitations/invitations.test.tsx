import "@/features/members/test-env";
import { describe, expect, it } from "vitest";
import { act, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { server } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { clearSession, getSession } from "@/auth/session";
import { apiError, me, on } from "@/features/members/fixtures";
import { AcceptInvitation } from "./AcceptInvitation";

describe("AcceptInvitation", () => {
  it("without a session, explains and links to sign-in and sign-up that come back here", async () => {
    renderWithApp(<AcceptInvitation token="inv_tok123" />);
    act(() => clearSession());
    expect(await screen.findByText(/Sign in or create an account with the invited email to join/)).toBeInTheDocument();
    const signIn = screen.getByRole("link", { name: "Sign in to accept" });
    const signUp = screen.getByRole("link", { name: "Create an account" });
    expect(new URL(signIn.getAttribute("href")!, "http://x").pathname).toBe("/login");
    expect(new URL(signIn.getAttribute("href")!, "http://x").searchParams.get("redirect")).toBe("/invitations/inv_tok123");
    expect(new URL(signUp.getAttribute("href")!, "http://x").pathname).toBe("/signup");
    expect(new URL(signUp.getAttribute("href")!, "http://x").searchParams.get("redirect")).toBe("/invitations/inv_tok123");
    expect(screen.queryByRole("button", { name: "Accept invitation" })).not.toBeInTheDocument();
  });

  it("accepts: stores the new session in the inviting organization", async () => {
    const user = userEvent.setup();
    let called = false;
    server.use(
      on("get", "/api/v1/me", () => me),
      on("post", "/api/v1/invitations/{token}/accept", ({ params, request }) => {
        called = params.token === "inv_tok123" && request.headers.get("x-switchyard-session") === "cookie";
        return {
          access_token: "new-token",
          refresh_token: "",
          token_type: "Bearer",
          expires_in: 900,
          role: "member" as const,
          tenant: { id: "00000000-0000-7000-8000-0000000000f6", name: "Globex", created_at: "2026-10-01T00:00:00Z" },
        };
      }),
    );
    renderWithApp(<AcceptInvitation token="inv_tok123" />);
    expect(await screen.findByText("alice@example.com")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Accept invitation" }));
    await waitFor(() => expect(getSession().tenant?.name).toBe("Globex"));
    expect(called).toBe(true);
    expect(getSession().accessToken).toBe("new-token");
    expect(getSession().role).toBe("member");
  });

  it("an unknown or expired token is a clear message", async () => {
    const user = userEvent.setup();
    server.use(
      on("get", "/api/v1/me", () => me),
      on("post", "/api/v1/invitations/{token}/accept", () => apiError(404, "not_found", "invitation not found")),
    );
    renderWithApp(<AcceptInvitation token="nope" />);
    await user.click(await screen.findByRole("button", { name: "Accept invitation" }));
    expect(await screen.findByText("This invitation link does not work")).toBeInTheDocument();
    expect(screen.getByText(/expired, been revoked or already been used/)).toBeInTheDocument();
    expect(getSession().accessToken).toBe("test-token");
  });

  it("an invitation for another email says to sign in with the invited one", async () => {
    const user = userEvent.setup();
    server.use(
      on("get", "/api/v1/me", () => me),
      on("post", "/api/v1/invitations/{token}/accept", () => apiError(403, "forbidden", "this invitation is for another email")),
    );
    renderWithApp(<AcceptInvitation token="tok" />);
    await user.click(await screen.findByRole("button", { name: "Accept invitation" }));
    expect(await screen.findByText("This invitation is for another email")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Sign in with another account" })).toBeInTheDocument();
  });
});
