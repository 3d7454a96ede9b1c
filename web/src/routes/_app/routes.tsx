import { createFileRoute, Outlet, useChildMatches } from "@tanstack/react-router";
import { $api } from "@/api/client";
import { RoutesPage } from "@/features/routing/RoutesPage";

export const Route = createFileRoute("/_app/routes")({
  // Prefetch (on hover too); the pages show their own loading and error states, so this never throws.
  loader: ({ context }) =>
    Promise.all([
      context.queryClient.prefetchQuery($api.queryOptions("get", "/api/v1/routes")),
      context.queryClient.prefetchQuery($api.queryOptions("get", "/api/v1/models")),
    ]),
  component: RoutesRoute,
});

/** `/routes` lists; `/routes/$routeId` (a child) shows one route in its place. */
function RoutesRoute() {
  return useChildMatches().length > 0 ? <Outlet /> : <RoutesPage />;
}
