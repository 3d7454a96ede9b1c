import { describe, expect, it } from "vitest";
import { screen, within, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";
import type { paths } from "@/api/client";
import { server, apiUrl } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { KeysPage } from "./KeysPage";

type Json<P extends keyof paths, M extends keyof paths[P], S extends number> = paths[P][M] extends {
  responses: { [K in S]: { content: { "application/json": infer T } } };
}
  ? T
  : never;
type KeyList = Json<"/api/v1/keys", "get", 200>;
type Created = Json<"/api/v1/keys", "post", 201>;
type CreateBody = NonNullable<paths["/api/v1/keys"]["post"]["requestBody"]>["content"]["application/json"];

const base = {
  created_at: "2026-12-01T10:00:00Z",
  created_by: "00000000-0000-7000-8000-0000000000aa",
  metadata: {},
};
const KEYS: KeyList = {
  data: [
    { ...base, id: "00000000-0000-7000-8000-000000000011", name: "search backend", prefix: "sk-sy-AbCd…wxyz", models: ["echo"], endpoints: ["chat"], rpm_limit: 600, team_id: "00000000-0000-7000-8000-000000000001" },
    { ...base, id: "00000000-0000-7000-8000-000000000012", name: "old key", prefix: "sk-sy-Old0…0000", revoked_at: "2026-12-02T10:00:00Z" },
    { ...base, id: "00000000-0000-7000-8000-000000000013", name: "expired key", prefix: "sk-sy-Exp0…0000", expires_at: "2026-01-01T00:00:00Z" },
  ],
};

function listHandlers(keys: KeyList = KEYS) {
  server.use(
    http.get(apiUrl("/api/v1/keys"), () => HttpResponse.json<KeyList>(keys)),
    http.get(apiUrl("/api/v1/teams"), () =>
      HttpResponse.json<Json<"/api/v1/teams", "get", 200>>({ data: [{ id: "00000000-0000-7000-8000-000000000001", name: "Search", created_at: base.created_at }] }),
    ),
    http.get(apiUrl("/api/v1/models"), () => HttpResponse.json<Json<"/api/v1/models", "get", 200>>({ data: [] })),
    http.get(apiUrl("/api/v1/routes"), () => HttpResponse.json<Json<"/api/v1/routes", "get", 200>>({ data: [] })),
  );
}

describe("KeysPage", () => {
  it("lists keys with scopes, limits and status badges, hiding revoked ones until asked", async () => {
    listHandlers();
    const user = userEvent.setup();
    renderWithApp(<KeysPage />);
    const table = await screen.findByRole("table", { name: "API keys" });
    const row = within(table).getByRole("row", { name: /search backend/ });
    expect(within(row).getByText("sk-sy-AbCd…wxyz")).toBeInTheDocument();
    expect(within(row).getByText("600 rpm")).toBeInTheDocument();
    expect(within(row).getByText("Active")).toBeInTheDocument();
    expect(within(table).getByRole("row", { name: /expired key/ })).toHaveTextContent("Expired");
    expect(within(table).queryByRole("row", { name: /old key/ })).not.toBeInTheDocument();
    await user.click(screen.getByRole("switch", { name: "Show revoked keys" }));
    expect(within(table).getByRole("row", { name: /old key/ })).toHaveTextContent("Revoked");
  });

  it("shows an empty state with a call to action", async () => {
    listHandlers({ data: [] });
    renderWithApp(<KeysPage />);
    expect(await screen.findByText("No API keys yet")).toBeInTheDocument();
    expect(screen.getAllByRole("button", { name: /Create key/ }).length).toBeGreaterThan(0);
  });

  it("validates the create form, shows the server's field error, then the secret once", async () => {
    listHandlers({ data: [] });
    const bodies: CreateBody[] = [];
    server.use(
      http.post(apiUrl("/api/v1/keys"), async ({ request }) => {
        const body = (await request.json()) as CreateBody;
        bodies.push(body);
        if (body.rpm_limit === 999999) {
          return HttpResponse.json({ error: { code: "validation_failed", message: "rpm_limit: must be at most 100000" } }, { status: 400 });
        }
        return HttpResponse.json<Created>({ ...base, ...KEYS.data[0]!, name: body.name, key: "sk-sy-SECRET-1234" }, { status: 201 });
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<KeysPage />);
    await user.click((await screen.findAllByRole("button", { name: /Create key/ }))[0]!);
    const dialog = await screen.findByRole("dialog", { name: "Create an API key" });
    await user.click(within(dialog).getByRole("button", { name: "Create key" }));
    expect(await within(dialog).findByText(/Name the key/)).toBeInTheDocument();
    expect(bodies).toHaveLength(0);

    await user.type(within(dialog).getByLabelText("Name"), "ci");
    await user.type(within(dialog).getByLabelText("Requests / minute"), "999999");
    await user.click(within(dialog).getByRole("button", { name: "Create key" }));
    const rpm = within(dialog).getByLabelText("Requests / minute");
    await waitFor(() => expect(rpm).toHaveAccessibleDescription("must be at most 100000"));

    await user.clear(rpm);
    await user.type(rpm, "60");
    await user.click(within(dialog).getByLabelText(/Chat completions/));
    await user.click(within(dialog).getByRole("button", { name: "Create key" }));
    expect(await screen.findByText("sk-sy-SECRET-1234")).toBeInTheDocument();
    expect(screen.getByText(/you will not see it again/i)).toBeInTheDocument();
    expect(bodies.at(-1)).toEqual({ name: "ci", rpm_limit: 60, endpoints: ["chat"] });
  });

  it("asks for confirmation before revoking", async () => {
    listHandlers();
    let deleted = "";
    server.use(
      http.delete(apiUrl("/api/v1/keys/:id"), ({ params }) => {
        deleted = String(params.id);
        return new HttpResponse(null, { status: 204 });
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<KeysPage />);
    await user.click(await screen.findByRole("button", { name: "Revoke search backend" }));
    const confirm = await screen.findByRole("alertdialog", { name: /Revoke “search backend”/ });
    expect(deleted).toBe("");
    await user.click(within(confirm).getByRole("button", { name: "Revoke key" }));
    await waitFor(() => expect(deleted).toBe("00000000-0000-7000-8000-000000000011"));
  });

  it("rotates with a grace period and shows the new secret", async () => {
    listHandlers();
    let grace: number | null | undefined;
    server.use(
      http.post(apiUrl("/api/v1/keys/:id/rotate"), async ({ request }) => {
        grace = ((await request.json()) as { grace_seconds?: number | null }).grace_seconds;
        return HttpResponse.json<Created>({ ...KEYS.data[0]!, key: "sk-sy-ROTATED" });
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<KeysPage />);
    await user.click(await screen.findByRole("button", { name: "Rotate search backend" }));
    const dialog = await screen.findByRole("dialog");
    const input = within(dialog).getByLabelText("Grace period (hours)");
    await user.clear(input);
    await user.type(input, "1");
    await user.click(within(dialog).getByRole("button", { name: "Rotate key" }));
    expect(await within(dialog).findByText("sk-sy-ROTATED")).toBeInTheDocument();
    expect(grace).toBe(3600);
  });

  it("is read-only for viewers", async () => {
    listHandlers();
    renderWithApp(<KeysPage />, { role: "viewer" });
    await screen.findByRole("table", { name: "API keys" });
    expect(screen.queryByRole("button", { name: /Create key/ })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Revoke/ })).not.toBeInTheDocument();
    expect(screen.getByText(/read-only access/)).toBeInTheDocument();
  });
});
