import "@/features/models/test-env";
import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";
import { server, apiUrl } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { listHandlers, MODEL_A, models, PROVIDER_ID, validationError } from "./fixtures";
import { ModelsPage } from "./ModelsPage";

describe("Models page", () => {
  it("lists deployments with exact prices per 1M tokens", async () => {
    server.use(...listHandlers);
    renderWithApp(<ModelsPage />);
    const table = await screen.findByRole("table", { name: "Model deployments" });
    const rows = within(table).getAllByRole("row");
    expect(rows).toHaveLength(3);
    expect(within(rows[1]!).getByText("mini-eu")).toBeInTheDocument();
    expect(within(rows[1]!).getByText("$0.15")).toBeInTheDocument();
    expect(within(rows[1]!).getByText("$0.60")).toBeInTheDocument();
    expect(within(rows[2]!).getByText("$0.075")).toBeInTheDocument();
    expect(within(rows[2]!).getByText("$2.50")).toBeInTheDocument();
    await waitFor(() => expect(within(rows[1]!).getByText("openai-prod")).toBeInTheDocument());
  }, 20_000);

  it("adds a deployment from the catalog, prices filled in and editable, with the server's field error", async () => {
    let body: Record<string, unknown> | null = null;
    let attempts = 0;
    server.use(
      ...listHandlers,
      http.post(apiUrl("/api/v1/models"), async ({ request }) => {
        body = (await request.json()) as Record<string, unknown>;
        attempts += 1;
        if (attempts === 1) return validationError("region: must be at most 64 characters");
        return HttpResponse.json({ ...models.data[0]!, name: "gpt-mini" }, { status: 201 });
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<ModelsPage />);
    await user.click(await screen.findByRole("button", { name: "Add deployment" }));
    const dialog = await screen.findByRole("dialog", { name: "Add a deployment" });
    await user.click(within(dialog).getByRole("button", { name: "Add deployment" }));
    expect(await within(dialog).findAllByText("Required for a custom deployment")).toHaveLength(3);

    await user.type(within(dialog).getByRole("searchbox", { name: "Search the catalog" }), "mini");
    await waitFor(() => expect(within(dialog).queryByText("Text Embedding 3 Small")).not.toBeInTheDocument());
    await user.click(within(dialog).getByRole("button", { name: /GPT-4o mini/ }));
    expect(within(dialog).getByLabelText("Upstream model")).toHaveValue("gpt-4o-mini");
    expect(within(dialog).getByLabelText("Input price, USD per 1M tokens")).toHaveValue("0.15");
    expect(within(dialog).getByLabelText("Output price, USD per 1M tokens")).toHaveValue("0.6");
    const name = within(dialog).getByLabelText("Name");
    await user.clear(name);
    await user.type(name, "gpt-mini");
    const output = within(dialog).getByLabelText("Output price, USD per 1M tokens");
    await user.clear(output);
    await user.type(output, "0.55");
    await user.type(within(dialog).getByLabelText("Region (optional)"), "eu-west-1");
    await user.click(within(dialog).getByRole("button", { name: "Add deployment" }));
    await waitFor(() => expect(within(dialog).getByLabelText("Region (optional)")).toHaveAttribute("aria-invalid", "true"));
    expect(within(dialog).getByText("must be at most 64 characters")).toBeInTheDocument();
    expect(body).toMatchObject({ name: "gpt-mini", provider_id: PROVIDER_ID, catalog_id: "openai/gpt-4o-mini", output_price_per_mtok: "0.55", input_price_per_mtok: "0.15" });

    await user.click(within(dialog).getByRole("button", { name: "Add deployment" }));
    await waitFor(() => expect(screen.queryByRole("dialog", { name: "Add a deployment" })).not.toBeInTheDocument());
  }, 20_000);

  it("asks before deleting and names the routes that list the deployment", async () => {
    let deleted: string | null = null;
    server.use(
      ...listHandlers,
      http.delete(apiUrl("/api/v1/models/:id"), ({ params }) => {
        deleted = String(params.id);
        return new HttpResponse(null, { status: 204 });
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<ModelsPage />);
    await user.click(await screen.findByRole("button", { name: "Delete deployment mini-eu" }));
    const confirm = await screen.findByRole("alertdialog");
    await waitFor(() => expect(within(confirm).getByText("support")).toBeInTheDocument());
    await user.click(within(confirm).getByRole("button", { name: "Delete deployment" }));
    await waitFor(() => expect(deleted).toBe(MODEL_A));
  }, 20_000);
});
