import "@/features/models/test-env";
import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";
import { server, apiUrl } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { listHandlers, MODEL_A, MODEL_B, ROUTE_ID, routes, validationError } from "@/features/models/fixtures";
import { RoutesPage } from "./RoutesPage";

describe("Routes page", () => {
  it("lists routes with strategy, candidates and regions", async () => {
    server.use(...listHandlers);
    renderWithApp(<RoutesPage />);
    const table = await screen.findByRole("table", { name: "Routes" });
    const rows = within(table).getAllByRole("row");
    expect(rows).toHaveLength(2);
    expect(within(rows[1]!).getByText("support")).toBeInTheDocument();
    expect(within(rows[1]!).getByText("Weighted")).toBeInTheDocument();
    expect(within(rows[1]!).getByText("eu, us")).toBeInTheDocument();
    await waitFor(() => expect(within(rows[1]!).getByText("mini-eu, mini-us")).toBeInTheDocument());
  }, 20_000);

  it("validates the route form with zod, then shows the API's error next to the candidate's weight", async () => {
    let body: Record<string, unknown> | null = null;
    server.use(
      ...listHandlers,
      http.post(apiUrl("/api/v1/routes"), async ({ request }) => {
        body = (await request.json()) as Record<string, unknown>;
        return validationError("candidates[1].weight: must be between 0 and 1000000");
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<RoutesPage />);
    await user.click(await screen.findByRole("button", { name: "Create route" }));
    const dialog = await screen.findByRole("dialog", { name: "Create a route" });
    await user.selectOptions(within(dialog).getByLabelText("Strategy"), "weighted");
    expect(within(dialog).getByText(/Splits traffic at random by weight/)).toBeInTheDocument();
    await user.click(within(dialog).getByRole("button", { name: "Add candidate" }));
    expect(within(dialog).getByLabelText("Candidate 2")).toHaveValue(MODEL_B);

    // Client-side rules first.
    await user.type(within(dialog).getByLabelText("Weight of candidate 1"), "-1");
    await user.type(within(dialog).getByLabelText("Total"), "1000");
    await user.type(within(dialog).getByLabelText("Connect"), "5000");
    await user.click(within(dialog).getByRole("button", { name: "Create route" }));
    expect(await within(dialog).findByText("The name clients send as model")).toBeInTheDocument();
    expect(within(dialog).getByText("A whole number from 0 to 1000000")).toBeInTheDocument();
    expect(within(dialog).getByText("Must not exceed the total timeout")).toBeInTheDocument();

    await user.type(within(dialog).getByLabelText("Name"), "support-chat");
    const w1 = within(dialog).getByLabelText("Weight of candidate 1");
    await user.clear(w1);
    await user.type(w1, "3");
    await user.type(within(dialog).getByLabelText("Weight of candidate 2"), "1");
    await user.clear(within(dialog).getByLabelText("Connect"));
    await user.click(within(dialog).getByRole("button", { name: "Create route" }));

    const w2 = within(dialog).getByLabelText("Weight of candidate 2");
    await waitFor(() => expect(w2).toHaveAttribute("aria-invalid", "true"));
    expect(within(dialog).getByText("must be between 0 and 1000000")).toBeInTheDocument();
    expect(w1).not.toHaveAttribute("aria-invalid");
    expect(body).toEqual({
      name: "support-chat",
      strategy: "weighted",
      candidates: [
        { model_id: MODEL_A, weight: 3, priority: null },
        { model_id: MODEL_B, weight: 1, priority: null },
      ],
      sticky: false,
      retry_on: null,
      max_attempts: null,
      timeouts: { connect_ms: null, first_token_ms: null, total_ms: 1000 },
      hedge_after_ms: null,
      allowed_regions: null,
    });
  }, 20_000);

  it("edits a route: reorders candidates and sends the whole change", async () => {
    let body: Record<string, unknown> | null = null;
    server.use(
      ...listHandlers,
      http.patch(apiUrl("/api/v1/routes/:id"), async ({ request }) => {
        body = (await request.json()) as Record<string, unknown>;
        return HttpResponse.json(routes.data[0]!);
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<RoutesPage />);
    await user.click(await screen.findByRole("button", { name: "Edit route support" }));
    const dialog = await screen.findByRole("dialog", { name: "Edit route support" });
    expect(within(dialog).getByLabelText("Weight of candidate 1")).toHaveValue("3");
    expect(within(dialog).getByLabelText("Allowed regions (optional)")).toHaveValue("eu, us");
    await user.click(within(dialog).getByRole("button", { name: "Move candidate 2 up" }));
    await user.click(within(dialog).getByRole("button", { name: "Save route" }));
    await waitFor(() => expect(screen.queryByRole("dialog")).not.toBeInTheDocument());
    expect(body).toMatchObject({
      candidates: [
        { model_id: MODEL_B, weight: 1 },
        { model_id: MODEL_A, weight: 3 },
      ],
      allowed_regions: ["eu", "us"],
      timeouts: { total_ms: 60000 },
    });
  }, 20_000);

  it("asks before deleting a route", async () => {
    let deleted: string | null = null;
    server.use(
      ...listHandlers,
      http.delete(apiUrl("/api/v1/routes/:id"), ({ params }) => {
        deleted = String(params.id);
        return new HttpResponse(null, { status: 204 });
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<RoutesPage />);
    await user.click(await screen.findByRole("button", { name: "Delete route support" }));
    const confirm = await screen.findByRole("alertdialog", { name: "Delete route support?" });
    await user.click(within(confirm).getByRole("button", { name: "Cancel" }));
    expect(deleted).toBeNull();
    await user.click(screen.getByRole("button", { name: "Delete route support" }));
    await user.click(within(await screen.findByRole("alertdialog")).getByRole("button", { name: "Delete route" }));
    await waitFor(() => expect(deleted).toBe(ROUTE_ID));
  }, 20_000);

  it("is read-only for viewers", async () => {
    server.use(...listHandlers);
    renderWithApp(<RoutesPage />, { role: "viewer" });
    await screen.findByRole("table", { name: "Routes" });
    expect(screen.queryByRole("button", { name: "Create route" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Edit route/ })).not.toBeInTheDocument();
  }, 20_000);
});
