import { afterEach, describe, expect, it, vi } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";
import type { paths } from "@/api/client";
import { server, apiUrl } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { OverviewPage, firstRequestInterval } from "./OverviewPage";
import { rememberCreatedKey } from "./createdKey";
import { snippet } from "./snippets";

type Json<P extends keyof paths, M extends keyof paths[P], S extends number> = paths[P][M] extends {
  responses: { [K in S]: { content: { "application/json": infer T } } };
}
  ? T
  : never;

const NOW = "2026-12-06T12:00:00Z";
const PROVIDER_ID = "00000000-0000-7000-8000-000000000021";
const MODEL: Json<"/api/v1/models", "get", 200>["data"][number] = {
  id: "00000000-0000-7000-8000-000000000031",
  name: "echo",
  provider_id: PROVIDER_ID,
  upstream_model: "mock-1",
  input_price_per_mtok: 1,
  output_price_per_mtok: 2,
  input_price_micros_per_mtok: 1_000_000,
  output_price_micros_per_mtok: 2_000_000,
  mode: "chat",
  created_at: NOW,
};
const REQUEST: Json<"/api/v1/requests", "get", 200>["data"][number] = {
  id: "00000000-0000-7000-8000-000000000041",
  started_at: NOW,
  model: "echo",
  endpoint: "chat.completions",
  stream: false,
  status: 200,
  outcome: "success",
  cache_hit: false,
  attempt_count: 1,
  prompt_tokens: 4,
  completion_tokens: 3,
  cache_read_tokens: 0,
  cache_write_tokens: 0,
  tokens_estimated: false,
  cost_usd: "0.00001",
  cost_micros: 10,
  latency_ms: 12,
  provider: "mock",
  tags: {},
  guardrails: [],
};

interface State {
  models: (typeof MODEL)[];
  requests: (typeof REQUEST)[];
  keys: Json<"/api/v1/keys", "get", 200>["data"];
}

function handlers(state: State) {
  server.use(
    http.get(apiUrl("/api/v1/providers"), () =>
      HttpResponse.json<Json<"/api/v1/providers", "get", 200>>({
        data: state.models.length ? [{ id: PROVIDER_ID, name: "local-mock", kind: "mock", has_api_key: false, options: {}, created_at: NOW }] : [],
      }),
    ),
    http.get(apiUrl("/api/v1/models"), () => HttpResponse.json<Json<"/api/v1/models", "get", 200>>({ data: state.models })),
    http.get(apiUrl("/api/v1/keys"), () => HttpResponse.json<Json<"/api/v1/keys", "get", 200>>({ data: state.keys })),
    http.get(apiUrl("/api/v1/requests"), () => HttpResponse.json<Json<"/api/v1/requests", "get", 200>>({ data: state.requests })),
    http.get(apiUrl("/api/v1/usage"), () =>
      HttpResponse.json<Json<"/api/v1/usage", "get", 200>>({
        data: [],
        totals: {
          requests: state.requests.length,
          prompt_tokens: 4,
          completion_tokens: 3,
          cache_read_tokens: 0,
          cache_write_tokens: 0,
          cost_micros: 10,
          cost_usd: "0.00001",
        },
      }),
    ),
  );
}

afterEach(() => rememberCreatedKey(null));

describe("OverviewPage onboarding checklist", () => {
  it("walks a new organization from the mock provider to a key and a snippet with that key", async () => {
    const state: State = { models: [], requests: [], keys: [] };
    handlers(state);
    const posted: string[] = [];
    server.use(
      http.post(apiUrl("/api/v1/providers"), async ({ request }) => {
        posted.push(`provider ${JSON.stringify(await request.json())}`);
        return HttpResponse.json<Json<"/api/v1/providers", "post", 201>>(
          { id: PROVIDER_ID, name: "local-mock", kind: "mock", has_api_key: false, options: {}, created_at: NOW },
          { status: 201 },
        );
      }),
      http.post(apiUrl("/api/v1/models"), async ({ request }) => {
        posted.push(`model ${JSON.stringify(await request.json())}`);
        state.models = [MODEL];
        return HttpResponse.json(MODEL, { status: 201 });
      }),
      http.post(apiUrl("/api/v1/keys"), async () => {
        const k = { id: "00000000-0000-7000-8000-000000000051", name: "my-first-key", prefix: "sk-sy-Abcd…wxyz", created_at: NOW, created_by: PROVIDER_ID, metadata: {} };
        state.keys = [k];
        return HttpResponse.json<Json<"/api/v1/keys", "post", 201>>({ ...k, key: "sk-sy-FIRSTKEY" }, { status: 201 });
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<OverviewPage />);
    await user.click(await screen.findByRole("button", { name: "Use the built-in mock" }));
    await waitFor(() => expect(posted).toHaveLength(2));
    expect(posted[0]).toBe('provider {"name":"local-mock","kind":"mock"}');
    expect(JSON.parse(posted[1]!.slice(6))).toMatchObject({ name: "echo", provider_id: PROVIDER_ID, upstream_model: "mock-1" });

    const form = await screen.findByRole("form", { name: "Create an API key" });
    await user.clear(within(form).getByLabelText("Key name"));
    await user.click(within(form).getByRole("button", { name: "Create key" }));
    expect(await within(form).findByText("Name the key")).toBeInTheDocument();
    await user.type(within(form).getByLabelText("Key name"), "my-first-key");
    await user.click(within(form).getByRole("button", { name: "Create key" }));

    expect(await screen.findByText("sk-sy-FIRSTKEY")).toBeInTheDocument();
    const curl = screen.getByRole("region", { name: "curl snippet" });
    expect(curl).toHaveTextContent("Bearer sk-sy-FIRSTKEY");
    expect(curl).toHaveTextContent(`${window.location.origin}/v1/chat/completions`);
    expect(curl).toHaveTextContent('"model":"echo"');
    expect(screen.getByRole("status")).toHaveTextContent(/Listening for your first request/);
  });

  it("shows the first request live once the log has one", async () => {
    const state: State = {
      models: [MODEL],
      requests: [],
      keys: [{ id: "00000000-0000-7000-8000-000000000051", name: "k", prefix: "sk-sy-Abcd…wxyz", created_at: NOW, created_by: PROVIDER_ID, metadata: {} }],
    };
    handlers(state);
    renderWithApp(<OverviewPage />);
    // The key's secret is not known any more: the snippet reads it from the environment.
    expect(await screen.findByRole("region", { name: "curl snippet" })).toHaveTextContent("Bearer $SWITCHYARD_API_KEY");
    expect(await screen.findByText(/Listening for your first request/)).toBeInTheDocument();
    state.requests = [REQUEST];
    const card = await screen.findByLabelText("Latest request", {}, { timeout: 4000 });
    expect(card).toHaveTextContent("echo");
    expect(card).toHaveTextContent("4 in · 3 out");
    expect(within(card).getByRole("link", { name: "View request" })).toHaveAttribute("href", `/requests/${REQUEST.id}`);
  });

  it("collapses the checklist for returning users and shows today's numbers", async () => {
    handlers({ models: [MODEL], requests: [REQUEST], keys: [] });
    const user = userEvent.setup();
    renderWithApp(<OverviewPage />);
    expect(await screen.findByText("Requests today")).toBeInTheDocument();
    expect(screen.getByLabelText("Latest request")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Use the built-in mock" })).not.toBeInTheDocument();
    const toggle = screen.getByRole("button", { name: /Show steps/ });
    expect(toggle).toHaveAttribute("aria-expanded", "false");
    await user.click(toggle);
    expect(screen.getByRole("button", { name: /Hide steps/ })).toHaveAttribute("aria-expanded", "true");
  });

  it("is read-only for viewers", async () => {
    handlers({ models: [], requests: [], keys: [] });
    renderWithApp(<OverviewPage />, { role: "viewer" });
    expect(await screen.findByText(/Owners and admins add providers/)).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Use the built-in mock" })).not.toBeInTheDocument();
  });

  it("polls only while no request exists and the tab is visible", () => {
    expect(firstRequestInterval(true)).toBe(false);
    expect(firstRequestInterval(false)).toBe(2000);
    const spy = vi.spyOn(document, "visibilityState", "get").mockReturnValue("hidden");
    expect(firstRequestInterval(false)).toBe(false);
    spy.mockRestore();
  });
});

describe("snippets", () => {
  it("fill in the key, or read it from the environment when it is not known", () => {
    const withKey = { baseUrl: "https://gw.example/v1", apiKey: "sk-sy-X", model: "echo" };
    expect(snippet("curl", withKey)).toContain('-H "Authorization: Bearer sk-sy-X"');
    expect(snippet("python", withKey)).toContain('OpenAI(base_url="https://gw.example/v1", api_key="sk-sy-X")');
    expect(snippet("typescript", withKey)).toContain('apiKey: "sk-sy-X"');
    const without = { ...withKey, apiKey: null };
    expect(snippet("curl", without)).toContain("Bearer $SWITCHYARD_API_KEY");
    expect(snippet("python", without)).toContain('os.environ["SWITCHYARD_API_KEY"]');
    expect(snippet("typescript", without)).toContain("process.env.SWITCHYARD_API_KEY");
  });
});
