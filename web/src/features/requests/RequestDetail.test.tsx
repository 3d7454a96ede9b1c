import "./test-env";
import { describe, expect, it } from "vitest";
import { screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";
import { renderWithApp } from "@/test/render";
import { apiUrl, server } from "@/test/msw";
import { PAYLOAD_PREVIEW_CHARS, RequestDetail } from "./RequestDetail";
import { FALLBACK_ID, lookupHandlers, summary, type RequestBody } from "./fixtures";

const ID = summary(1).id;

function detail(over: Partial<RequestBody> = {}): RequestBody {
  return {
    ...summary(1, { attempt_count: 2, route: "chat", region: "eu", ttft_ms: 45, stream: true, tags: { feature: "search" } as unknown as RequestBody["tags"] }),
    attempts: [
      { number: 1, deployment_id: FALLBACK_ID, region: "us", status: 503, outcome: "failed", error_class: "server_error", error_code: "upstream_unavailable", latency_ms: 80 },
      { number: 2, deployment_id: summary(1).deployment_id, region: "eu", status: 200, outcome: "success", error_class: null, error_code: null, latency_ms: null },
    ],
    payload: null,
    ...over,
  };
}

describe("RequestDetail", () => {
  it("shows the summary and every attempt in order", async () => {
    server.use(...lookupHandlers, http.get(apiUrl(`/api/v1/requests/${ID}`), () => HttpResponse.json<RequestBody>(detail())));
    renderWithApp(<RequestDetail requestId={ID} />);
    const attempts = await screen.findByRole("list", { name: "Attempts" });
    const items = within(attempts).getAllByRole("listitem");
    expect(items).toHaveLength(2);
    expect(items[0]).toHaveTextContent("Attempt 1: echo-backup");
    expect(items[0]).toHaveTextContent("HTTP 503");
    expect(items[0]).toHaveTextContent("server_error (upstream_unavailable)");
    expect(items[1]).toHaveTextContent("Attempt 2: echo (mock)");
    expect(items[1]).toHaveTextContent("success");
    expect(screen.getByText("mock-1")).toBeInTheDocument();
    expect(screen.getByText("feature=search")).toBeInTheDocument();
    expect(await screen.findByText("prod-key")).toBeInTheDocument();
    expect(screen.getByText("No payload stored")).toBeInTheDocument();
  });

  it("lists the guardrail decisions, never the matched text", async () => {
    const guardrails: RequestBody["guardrails"] = [
      { guardrail_id: FALLBACK_ID, rule: "pii.email", action: "redacted", count: 2 },
      { guardrail_id: FALLBACK_ID, rule: "pii", action: "restored", count: 2 },
    ];
    server.use(...lookupHandlers, http.get(apiUrl(`/api/v1/requests/${ID}`), () => HttpResponse.json<RequestBody>(detail({ guardrails }))));
    renderWithApp(<RequestDetail requestId={ID} />);
    const decisions = await screen.findByLabelText("Guardrail decisions");
    expect(decisions).toHaveTextContent("pii.email · redacted ×2");
    expect(decisions).toHaveTextContent("pii · restored ×2");
  });

  it("renders a stored payload as text, collapsed when huge", async () => {
    const user = userEvent.setup();
    const huge = "x".repeat(PAYLOAD_PREVIEW_CHARS * 3);
    server.use(
      ...lookupHandlers,
      http.get(apiUrl(`/api/v1/requests/${ID}`), () =>
        HttpResponse.json<RequestBody>(detail({ payload: { request: '{"messages":[{"role":"user","content":"<img src=x onerror=alert(1)>"}]}', response: huge, truncated: true } })),
      ),
    );
    const { container } = renderWithApp(<RequestDetail requestId={ID} />);
    const request = await screen.findByRole("region", { name: "Request payload" });
    expect(within(request).getByText(/<img src=x onerror=alert\(1\)>/)).toBeInTheDocument();
    expect(container.querySelector("img")).toBeNull();
    expect(screen.getByText("truncated")).toBeInTheDocument();
    const response = screen.getByRole("region", { name: "Response payload" });
    expect(within(response).getByText(/^x+…$/).textContent).toHaveLength(PAYLOAD_PREVIEW_CHARS + 1);
    await user.click(within(response).getByRole("button", { name: /Show all/ }));
    expect(within(response).getByText(/^x+$/).textContent).toHaveLength(huge.length);
  });

  it("says so when the request does not exist", async () => {
    server.use(
      ...lookupHandlers,
      http.get(apiUrl(`/api/v1/requests/${ID}`), () => HttpResponse.json({ error: { code: "not_found", message: "request not found" } }, { status: 404 })),
    );
    renderWithApp(<RequestDetail requestId={ID} />);
    expect(await screen.findByText("Request not found")).toBeInTheDocument();
  });
});
