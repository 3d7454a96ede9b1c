import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { createMemoryHistory, createRootRoute, createRoute, createRouter, RouterProvider, Outlet } from "@tanstack/react-router";
import { render } from "@testing-library/react";
import type { ReactElement } from "react";
import { setTokens } from "@/auth/session";

/**
 * Renders a component inside a fresh QueryClient and a one-route memory router (so `Link`,
 * `useNavigate` and `useSearch` work), signed in as `role`.
 */
export function renderWithApp(ui: ReactElement, { role = "owner" as const, path = "/" }: { role?: "owner" | "admin" | "member" | "viewer"; path?: string } = {}) {
  setTokens({ access_token: "test-token", expires_in: 900, tenant: { id: "00000000-0000-7000-8000-000000000001", name: "Acme" }, role });
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false }, mutations: { retry: false } } });
  const rootRoute = createRootRoute({ component: Outlet });
  const pageRoute = createRoute({ getParentRoute: () => rootRoute, path: "$", component: () => ui });
  const indexRoute = createRoute({ getParentRoute: () => rootRoute, path: "/", component: () => ui });
  const router = createRouter({
    routeTree: rootRoute.addChildren([indexRoute, pageRoute]),
    history: createMemoryHistory({ initialEntries: [path] }),
  });
  return { queryClient, ...render(<QueryClientProvider client={queryClient}><RouterProvider router={router as never} /></QueryClientProvider>) };
}
