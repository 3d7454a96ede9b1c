import "@/features/models/test-env";
import { describe, expect, it } from "vitest";
import { screen, within } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { server, apiUrl } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { listHandlers, ROUTE_ID, routes } from "@/features/models/fixtures";
import { RouteDetailPage } from "./RouteDetailPage";

describe("Route detail page", () => {
  it("shows the candidates in order with their weights, and every setting", async () => {
    server.use(...listHandlers, http.get(apiUrl("/api/v1/routes/:id"), () => HttpResponse.json(routes.data[0]!)));
    renderWithApp(<RouteDetailPage routeId={ROUTE_ID} />, { role: "viewer" });
    expect(await screen.findByRole("heading", { level: 1, name: "support" })).toBeInTheDocument();
    const rows = within(screen.getByRole("table", { name: "Candidates" })).getAllByRole("row");
    expect(rows).toHaveLength(3);
    expect(await within(rows[1]!).findByText("mini-eu")).toBeInTheDocument();
    expect(within(rows[1]!).getByText("3")).toBeInTheDocument();
    expect(screen.getByText(/total 60\.0 s/)).toBeInTheDocument();
    expect(screen.getByText(/Default: Rate limited/)).toBeInTheDocument();
    // Viewers read; they do not edit.
    expect(screen.queryByRole("button", { name: "Edit" })).not.toBeInTheDocument();
  });

  it("says so when the route does not exist", async () => {
    server.use(
      ...listHandlers,
      http.get(apiUrl("/api/v1/routes/:id"), () => HttpResponse.json({ error: { code: "not_found", message: "route not found" } }, { status: 404 })),
    );
    renderWithApp(<RouteDetailPage routeId={ROUTE_ID} />);
    expect(await screen.findByText("No such route")).toBeInTheDocument();
  });
});
