import "@/features/models/test-env";
import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";
import { server, apiUrl } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { listHandlers, PROVIDER_ID, validationError } from "@/features/models/fixtures";
import { ProvidersPage } from "./ProvidersPage";

describe("Providers page", () => {
  it("lists provider credentials without secrets", async () => {
    server.use(...listHandlers);
    renderWithApp(<ProvidersPage />);
    const table = await screen.findByRole("table", { name: "Providers" });
    const rows = within(table).getAllByRole("row");
    expect(rows).toHaveLength(3);
    expect(within(rows[1]!).getByText("openai-prod")).toBeInTheDocument();
    expect(within(rows[1]!).getByText("set")).toBeInTheDocument();
    expect(within(rows[2]!).getByText("eu-central-1")).toBeInTheDocument();
    expect(within(rows[2]!).getByText("AWS Bedrock")).toBeInTheDocument();
  }, 20_000);

  it("shows the empty state with a call to action", async () => {
    server.use(http.get(apiUrl("/api/v1/providers"), () => HttpResponse.json({ data: [] })), ...listHandlers);
    renderWithApp(<ProvidersPage />);
    expect(await screen.findByText("No providers yet")).toBeInTheDocument();
    expect(screen.getAllByRole("button", { name: "Add provider" }).length).toBeGreaterThan(0);
  }, 20_000);

  it("validates the create form by kind and shows the server's refusal next to the base URL", async () => {
    let body: unknown = null;
    server.use(
      ...listHandlers,
      http.post(apiUrl("/api/v1/providers"), async ({ request }) => {
        body = await request.json();
        return validationError("base_url: the address 10.0.0.5 is refused by the egress policy (SWITCHYARD_UPSTREAM_ALLOW_CIDRS)");
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<ProvidersPage />);
    await user.click((await screen.findAllByRole("button", { name: "Add provider" }))[0]!);
    const dialog = await screen.findByRole("dialog", { name: "Add a provider" });
    await user.type(within(dialog).getByLabelText("Name"), "openai-prod");
    await user.click(within(dialog).getByRole("button", { name: "Add provider" }));
    expect(await within(dialog).findByText("An API key is required for OpenAI")).toBeInTheDocument();
    expect(within(dialog).getByLabelText("API key")).toHaveAttribute("type", "password");
    expect(within(dialog).getByLabelText("API key")).toHaveAttribute("autocomplete", "off");

    // Bedrock asks for its own fields.
    await user.selectOptions(within(dialog).getByLabelText("Kind"), "bedrock");
    expect(within(dialog).getByLabelText("AWS region")).toBeInTheDocument();
    expect(within(dialog).getByLabelText("Secret access key")).toHaveAttribute("type", "password");
    expect(within(dialog).queryByLabelText("API key")).not.toBeInTheDocument();

    await user.selectOptions(within(dialog).getByLabelText("Kind"), "openai_compatible");
    await user.type(within(dialog).getByLabelText("Base URL"), "http://10.0.0.5:8000/v1");
    await user.click(within(dialog).getByRole("button", { name: "Add provider" }));
    const url = within(dialog).getByLabelText("Base URL");
    await waitFor(() => expect(url).toHaveAttribute("aria-invalid", "true"));
    expect(within(dialog).getByText(/refused by the egress policy/)).toBeInTheDocument();
    expect(body).toEqual({ name: "openai-prod", kind: "openai_compatible", base_url: "http://10.0.0.5:8000/v1" });
  }, 20_000);

  it("asks before deleting and names the deployments that use the provider", async () => {
    let deleted: string | null = null;
    server.use(
      ...listHandlers,
      http.delete(apiUrl("/api/v1/providers/:id"), ({ params }) => {
        deleted = String(params.id);
        return new HttpResponse(null, { status: 204 });
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<ProvidersPage />);
    await user.click(await screen.findByRole("button", { name: "Delete provider openai-prod" }));
    const confirm = await screen.findByRole("alertdialog");
    await waitFor(() => expect(within(confirm).getByText("mini-eu, mini-us")).toBeInTheDocument());
    expect(deleted).toBeNull();
    await user.click(within(confirm).getByRole("button", { name: "Delete provider" }));
    await waitFor(() => expect(deleted).toBe(PROVIDER_ID));
  }, 20_000);

  it("collapses to cards on a phone, actions included", async () => {
    server.use(...listHandlers);
    const original = window.matchMedia;
    window.matchMedia = ((query: string) => ({ matches: true, media: query, addEventListener: () => {}, removeEventListener: () => {} })) as unknown as typeof window.matchMedia;
    try {
      renderWithApp(<ProvidersPage />);
      const list = await screen.findByRole("list", { name: "Providers" });
      expect(within(list).getAllByRole("listitem")).toHaveLength(2);
      expect(within(list).getByRole("button", { name: "Delete provider bedrock-eu" })).toBeInTheDocument();
      expect(screen.queryByRole("table")).not.toBeInTheDocument();
    } finally {
      window.matchMedia = original;
    }
  }, 20_000);

  it("is read-only for viewers", async () => {
    server.use(...listHandlers);
    renderWithApp(<ProvidersPage />, { role: "viewer" });
    await screen.findByRole("table", { name: "Providers" });
    expect(screen.queryByRole("button", { name: "Add provider" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Delete provider/ })).not.toBeInTheDocument();
  }, 20_000);
});
