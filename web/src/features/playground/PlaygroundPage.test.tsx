import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";
import type { paths } from "@/api/client";
import { server, apiUrl } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { PlaygroundPage } from "./PlaygroundPage";
import { forgetPlaygroundKey } from "./playgroundKey";

type Json<P extends keyof paths, M extends keyof paths[P], S extends number> = paths[P][M] extends {
  responses: { [K in S]: { content: { "application/json": infer T } } };
}
  ? T
  : never;
type CreateBody = NonNullable<paths["/api/v1/keys"]["post"]["requestBody"]>["content"]["application/json"];

const NOW = "2026-12-06T12:00:00Z";
const DEPLOYMENT = "00000000-0000-7000-8000-000000000031";
const REQUEST_ID = "00000000-0000-7000-8000-000000000041";
const MODEL: Json<"/api/v1/models", "get", 200>["data"][number] = {
  id: DEPLOYMENT,
  name: "echo",
  provider_id: "00000000-0000-7000-8000-000000000021",
  upstream_model: "mock-1",
  input_price_per_mtok: 1,
  output_price_per_mtok: 2,
  input_price_micros_per_mtok: 1_000_000,
  output_price_micros_per_mtok: 2_000_000,
  mode: "chat",
  created_at: NOW,
};

function sse(chunks: string[]) {
  const enc = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(enc.encode(chunk));
      c.close();
    },
  });
}

function catalog(models = [MODEL]) {
  server.use(
    http.get(apiUrl("/api/v1/models"), () => HttpResponse.json<Json<"/api/v1/models", "get", 200>>({ data: models })),
    http.get(apiUrl("/api/v1/routes"), () => HttpResponse.json<Json<"/api/v1/routes", "get", 200>>({ data: [] })),
  );
}

function keyHandler(bodies: CreateBody[]) {
  server.use(
    http.post(apiUrl("/api/v1/keys"), async ({ request }) => {
      const body = (await request.json()) as CreateBody;
      bodies.push(body);
      return HttpResponse.json<Json<"/api/v1/keys", "post", 201>>(
        { id: "00000000-0000-7000-8000-000000000051", name: body.name, prefix: "sk-sy-Play…ground", created_at: NOW, created_by: DEPLOYMENT, metadata: {}, expires_at: body.expires_at ?? null, key: "sk-sy-PLAYGROUND" },
        { status: 201 },
      );
    }),
  );
}

describe("PlaygroundPage", () => {
  it("creates a temporary key once, streams the answer and shows tokens, deployment and cost", async () => {
    forgetPlaygroundKey();
    catalog();
    const keyBodies: CreateBody[] = [];
    keyHandler(keyBodies);
    const auth: string[] = [];
    let detailCalls = 0;
    server.use(
      http.post(apiUrl("/v1/chat/completions"), async ({ request }) => {
        auth.push(request.headers.get("authorization") ?? "");
        const body = (await request.json()) as { stream: boolean; messages: { content: string }[] };
        expect(body.stream).toBe(true);
        return new HttpResponse(
          sse([
            'data: {"choices":[{"delta":{"content":"Hello "}}]}\n\n',
            'data: {"choices":[{"delta":{"content":"wörld"},"finish_reason":"stop"}]}\n\n',
            'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\ndata: [DONE]\n\n',
          ]),
          {
            headers: {
              "content-type": "text/event-stream",
              "x-switchyard-request-id": REQUEST_ID,
              "x-switchyard-deployment": DEPLOYMENT,
              "x-switchyard-provider": "mock",
              "x-switchyard-region": "eu-west-1",
            },
          },
        );
      }),
      http.get(apiUrl("/api/v1/requests/:id"), () => {
        detailCalls += 1;
        // Usage arrives asynchronously: the first look finds nothing yet.
        if (detailCalls === 1) return HttpResponse.json({ error: { code: "not_found", message: "no such request" } }, { status: 404 });
        return HttpResponse.json({ id: REQUEST_ID, cost_usd: "0.000009", cost_micros: 9, attempts: [] });
      }),
    );
    const user = userEvent.setup();
    renderWithApp(<PlaygroundPage />);
    expect(await screen.findByLabelText("Model or route")).toHaveValue("echo");
    expect(screen.getByText(/temporary key “Playground \(console\)”/)).toBeInTheDocument();
    await user.type(screen.getByLabelText("System prompt"), "Be brief.");
    await user.type(screen.getByLabelText("Message"), "Hello");
    await user.click(screen.getByRole("button", { name: "Send" }));

    const output = screen.getByTestId("playground-output");
    await waitFor(() => expect(output).toHaveTextContent("Hello wörld"));
    const details = await screen.findByLabelText("Request details");
    await waitFor(() => expect(details).toHaveTextContent("5 in · 2 out"));
    expect(details).toHaveTextContent("echo (mock-1)");
    expect(details).toHaveTextContent("eu-west-1");
    await waitFor(() => expect(details).toHaveTextContent("$0.000009"), { timeout: 4000 });
    expect(within(details).getByRole("link")).toHaveAttribute("href", `/requests/${REQUEST_ID}`);

    expect(keyBodies).toHaveLength(1);
    expect(keyBodies[0]).toMatchObject({ name: "Playground (console)", endpoints: ["chat"] });
    const ttl = new Date(keyBodies[0]!.expires_at!).getTime() - Date.now();
    expect(ttl).toBeGreaterThan(55 * 60_000);
    expect(ttl).toBeLessThanOrEqual(60 * 60_000);

    // A second send reuses the key from memory.
    await user.click(screen.getByRole("button", { name: "Send" }));
    await waitFor(() => expect(auth).toHaveLength(2));
    expect(keyBodies).toHaveLength(1);
    expect(auth).toEqual(["Bearer sk-sy-PLAYGROUND", "Bearer sk-sy-PLAYGROUND"]);
    expect(window.localStorage.length + window.sessionStorage.length).toBe(0);
  });

  it("shows a gateway refusal readably", async () => {
    forgetPlaygroundKey();
    catalog();
    keyHandler([]);
    server.use(
      http.post(apiUrl("/v1/chat/completions"), () =>
        HttpResponse.json(
          { error: { message: "Your organization is suspended for non-payment.", type: "billing_error", code: "organization_suspended", param: null } },
          { status: 402 },
        ),
      ),
    );
    const user = userEvent.setup();
    renderWithApp(<PlaygroundPage />);
    await user.type(await screen.findByLabelText("Message"), "Hi");
    await user.click(screen.getByRole("button", { name: "Send" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Your organization is suspended");
    expect(alert).toHaveTextContent("non-payment");
  });

  it("validates the message and offers the setup when there is no model", async () => {
    forgetPlaygroundKey();
    catalog();
    const user = userEvent.setup();
    const { unmount } = renderWithApp(<PlaygroundPage />);
    await user.click(await screen.findByRole("button", { name: "Send" }));
    expect(await screen.findByText("Write a message to send")).toBeInTheDocument();
    unmount();
    catalog([]);
    renderWithApp(<PlaygroundPage />);
    expect(await screen.findByText("No models to try yet")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Go to the setup checklist" })).toBeInTheDocument();
  });

  it("does not let viewers send", async () => {
    catalog();
    renderWithApp(<PlaygroundPage />, { role: "viewer" });
    expect(await screen.findByRole("button", { name: "Send" })).toBeDisabled();
    expect(screen.getByText(/Viewers cannot send from the playground/)).toBeInTheDocument();
  });
});
