import "@/features/requests/test-env";
import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";
import { useNavigate, useRouterState, useSearch } from "@tanstack/react-router";
import type { paths } from "@/api/client";
import { renderWithApp } from "@/test/render";
import { apiUrl, server } from "@/test/msw";
import { lookupHandlers, TEAM_ID } from "@/features/requests/fixtures";
import { UsagePage } from "./UsagePage";
import { usageSearch } from "./search";
import { zeroMetrics } from "./prepare";

type Json<P extends keyof paths> = paths[P]["get"] extends { responses: { 200: { content: { "application/json": infer B } } } } ? B : never;
type Timeseries = Json<"/api/v1/analytics/timeseries">;
type Breakdown = Json<"/api/v1/analytics/breakdown">;
type Usage = Json<"/api/v1/usage">;

function Page() {
  const raw = useSearch({ strict: false });
  const navigate = useNavigate();
  const href = useRouterState({ select: (s) => s.location.href });
  return (
    <>
      <output data-testid="href">{href}</output>
      <UsagePage search={usageSearch.parse(raw)} onSearch={(next) => void navigate({ to: ".", search: next as never })} />
    </>
  );
}

const total = { ...zeroMetrics(), requests: 40, successes: 38, total_tokens: 4200, prompt_tokens: 3000, completion_tokens: 1200, cost_micros: 1_250_000, cost_usd: "1.25", latency_ms: { p50: 210, p95: 840, p99: 990 } };

function handlers(calls: { timeseries: URLSearchParams[]; breakdown: URLSearchParams[] }, requests = 40) {
  return [
    ...lookupHandlers,
    http.get(apiUrl("/api/v1/usage"), () =>
      HttpResponse.json<Usage>({ data: [], next_before: null, totals: { requests, cost_micros: 0, cost_usd: "0", prompt_tokens: 0, completion_tokens: 0, cache_read_tokens: 500, cache_write_tokens: 0 } }),
    ),
    http.get(apiUrl("/api/v1/analytics/timeseries"), ({ request }) => {
      const q = new URL(request.url).searchParams;
      calls.timeseries.push(q);
      return HttpResponse.json<Timeseries>({
        from: "2026-12-05T12:00:00Z",
        to: "2026-12-06T12:00:00Z",
        interval: "hour",
        group_by: null,
        truncated: false,
        total,
        series: [{ group: null, points: [{ ...total, timestamp: "2026-12-06T11:00:00Z", error_classes: { rate_limited: 2 } }] }],
      });
    }),
    http.get(apiUrl("/api/v1/analytics/breakdown"), ({ request }) => {
      const q = new URL(request.url).searchParams;
      calls.breakdown.push(q);
      const group = q.get("group_by") === "team" ? TEAM_ID : "echo";
      return HttpResponse.json<Breakdown>({
        from: "2026-12-05T12:00:00Z",
        to: "2026-12-06T12:00:00Z",
        group_by: q.get("group_by"),
        truncated: false,
        total,
        data: [{ ...total, group, cost_per_1k_tokens_usd: "0.297619" }, { ...zeroMetrics(), group: null, requests: 0 }],
      });
    }),
  ];
}

describe("UsagePage", () => {
  it("shows the range's totals and a breakdown, and groups by team with team names", async () => {
    const user = userEvent.setup();
    const calls = { timeseries: [] as URLSearchParams[], breakdown: [] as URLSearchParams[] };
    server.use(...handlers(calls));
    renderWithApp(<Page />);
    const totals = await screen.findByLabelText("Totals for the range");
    await waitFor(() => expect(totals).toHaveTextContent("40"));
    expect(totals).toHaveTextContent("$1.25");
    expect(totals).toHaveTextContent("5.0%");
    expect(totals).toHaveTextContent("840 ms");
    expect(totals).toHaveTextContent("500 cached");
    const table = await screen.findByRole("table", { name: "Breakdown by model" });
    expect(within(table).getByText("echo")).toBeInTheDocument();
    expect(within(table).getByText("$0.297619")).toBeInTheDocument();
    expect(calls.timeseries[0]?.get("interval")).toBe("hour");

    await user.selectOptions(screen.getByLabelText("Group by"), "team");
    await waitFor(() => expect(screen.getByTestId("href")).toHaveTextContent("group_by=team"));
    const byTeam = await screen.findByRole("table", { name: "Breakdown by team" });
    expect(await within(byTeam).findByText("Search")).toBeInTheDocument();
    expect(calls.breakdown.at(-1)?.get("group_by")).toBe("team");
  });

  it("puts a filter in the URL and in both analytics queries, back on the first page", async () => {
    const user = userEvent.setup();
    const calls = { timeseries: [] as URLSearchParams[], breakdown: [] as URLSearchParams[] };
    server.use(...handlers(calls));
    renderWithApp(<Page />, { path: "/?page=2&range=7d" });
    await screen.findByRole("table", { name: "Breakdown by model" });
    await user.selectOptions(await screen.findByLabelText("Team"), TEAM_ID);
    await waitFor(() => expect(screen.getByTestId("href")).toHaveTextContent(`team_id=${TEAM_ID}`));
    expect(screen.getByTestId("href")).not.toHaveTextContent("page=");
    expect(screen.getByTestId("href")).toHaveTextContent("range=7d");
    await waitFor(() => expect(calls.breakdown.at(-1)?.get("team_id")).toBe(TEAM_ID));
    expect(calls.timeseries.at(-1)?.get("team_id")).toBe(TEAM_ID);

    await user.type(screen.getByLabelText("Tag"), "nonsense{Enter}");
    expect(await screen.findByText("Use key=value")).toBeInTheDocument();
    await user.clear(screen.getByLabelText("Tag"));
    await user.type(screen.getByLabelText("Tag"), "feature=search{Enter}");
    await waitFor(() => expect(calls.breakdown.at(-1)?.get("tag")).toBe("feature:search"));
    expect(screen.getByTestId("href")).toHaveTextContent("tag=feature%3Asearch");
  });

  it("invites an organization without traffic to the Playground", async () => {
    const calls = { timeseries: [] as URLSearchParams[], breakdown: [] as URLSearchParams[] };
    server.use(...handlers(calls, 0));
    renderWithApp(<Page />);
    expect(await screen.findByText("No traffic yet")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Open the Playground" })).toHaveAttribute("href", "/playground");
  });
});
