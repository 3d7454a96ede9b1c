import "./test-env";
import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";
import { useNavigate, useRouterState, useSearch } from "@tanstack/react-router";
import { renderWithApp } from "@/test/render";
import { apiUrl, server } from "@/test/msw";
import { RequestLog } from "./RequestLog";
import { requestsSearch } from "./search";
import { lookupHandlers, summary, type RequestListBody, type Summary } from "./fixtures";

/** The page as its route mounts it: search params from the URL, changes navigate. */
function Page({ liveIntervalMs }: { liveIntervalMs?: number }) {
  const raw = useSearch({ strict: false });
  const navigate = useNavigate();
  const href = useRouterState({ select: (s) => s.location.href });
  return (
    <>
      <output data-testid="href">{href}</output>
      <RequestLog search={requestsSearch.parse(raw)} onSearch={(next) => void navigate({ to: ".", search: next as never })} liveIntervalMs={liveIntervalMs} />
    </>
  );
}

function logHandler(calls: URLSearchParams[]) {
  return http.get(apiUrl("/api/v1/requests"), ({ request }) => {
    const q = new URL(request.url).searchParams;
    calls.push(q);
    if (q.get("limit") === "1") return HttpResponse.json<RequestListBody>({ data: [summary(1)], next_cursor: null });
    if (q.get("outcome") === "error") {
      return HttpResponse.json<RequestListBody>({ data: [summary(9, { status: 404, outcome: "error", error_class: "model_not_found", model: "nope" })], next_cursor: null });
    }
    if (q.get("cursor") === "page-2") {
      return HttpResponse.json<RequestListBody>({ data: [summary(3), summary(4, { model: "echo-large" })], next_cursor: null });
    }
    return HttpResponse.json<RequestListBody>({ data: [summary(1, { tags: { feature: "search" } as unknown as Summary["tags"] }), summary(2, { status: 429, outcome: "error", error_class: "rate_limited" })], next_cursor: "page-2" });
  });
}

describe("RequestLog", () => {
  it("renders rows with names for ids and loads the next page through the cursor", async () => {
    const calls: URLSearchParams[] = [];
    server.use(...lookupHandlers, logHandler(calls));
    renderWithApp(<Page />, { path: "/?model=echo" });
    const region = await screen.findByRole("region", { name: "Requests" });
    // The second page (cursor `page-2`) arrives as the reader nears the end of the first.
    await within(region).findByText("echo-large");
    const rows = within(region).getAllByRole("link", { name: /^Request / });
    expect(rows).toHaveLength(4);
    expect(within(region).getByText("rate_limited")).toBeInTheDocument();
    expect(within(region).getByText("feature=search")).toBeInTheDocument();
    await waitFor(() => expect(within(region).getAllByText("prod-key").length).toBeGreaterThan(0));
    const pages = calls.filter((q) => q.get("limit") === "50");
    expect(pages.map((q) => q.get("cursor"))).toEqual([null, "page-2"]);
    // Every page carries the same filters and range.
    expect(pages[1]?.get("model")).toBe("echo");
    expect(pages[1]?.get("from")).toBe(pages[0]?.get("from"));
    expect(within(region).getByText("4 requests loaded")).toBeInTheDocument();
  });

  it("puts a filter in the URL and in the API query, starting again from the first page", async () => {
    const user = userEvent.setup();
    const calls: URLSearchParams[] = [];
    server.use(...lookupHandlers, logHandler(calls));
    renderWithApp(<Page />, { path: "/" });
    await screen.findByText("echo-large");
    await user.selectOptions(screen.getByLabelText("Outcome"), "error");
    await waitFor(() => expect(screen.getByTestId("href")).toHaveTextContent("outcome=error"));
    const region = await screen.findByRole("region", { name: "Requests" });
    await within(region).findByText("model_not_found");
    await waitFor(() => expect(within(region).getAllByRole("link", { name: /^Request / })).toHaveLength(1));
    const last = calls.filter((q) => q.get("limit") === "50").at(-1)!;
    expect(last.get("outcome")).toBe("error");
    expect(last.get("cursor")).toBeNull();
  });

  it("invites to the Playground when there is no traffic", async () => {
    server.use(
      ...lookupHandlers,
      http.get(apiUrl("/api/v1/requests"), () => HttpResponse.json<RequestListBody>({ data: [], next_cursor: null })),
    );
    renderWithApp(<Page />, { path: "/" });
    expect(await screen.findByText("No requests in this range")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: /Open the Playground/ })).toHaveAttribute("href", "/playground");
  });

  it("in live mode, shows newer requests as they arrive while the list is at the top", async () => {
    let arrived = false;
    const calls: URLSearchParams[] = [];
    server.use(
      ...lookupHandlers,
      http.get(apiUrl("/api/v1/requests"), ({ request }) => {
        const q = new URL(request.url).searchParams;
        calls.push(q);
        // A new request lands after the first probe.
        if (q.get("limit") === "1" && calls.filter((c) => c.get("limit") === "1").length >= 2) arrived = true;
        const older = summary(5, { model: "echo-old" });
        const data = arrived ? [summary(1, { model: "echo-new" }), older] : [older];
        return HttpResponse.json<RequestListBody>({ data: q.get("limit") === "1" ? data.slice(0, 1) : data, next_cursor: null });
      }),
    );
    renderWithApp(<Page liveIntervalMs={50} />, { path: "/?live=true" });
    await screen.findByText("echo-old");
    expect(screen.getByRole("switch", { name: "Live updates" })).toBeChecked();
    expect(await screen.findByText("echo-new", {}, { timeout: 3000 })).toBeInTheDocument();
    // Probes ask for one row only; the list itself is read again from its first page.
    expect(calls.filter((c) => c.get("limit") === "50").every((c) => c.get("cursor") === null)).toBe(true);
  });
});
