import { createFileRoute, Outlet, useChildMatches } from "@tanstack/react-router";
import { RoutesPage } from "@/features/routing/RoutesPage";

export const Route = createFileRoute("/_app/routes")({
  component: RoutesRoute,
});

/** `/routes` lists; `/routes/$routeId` (a child) shows one route in its place. */
function RoutesRoute() {
  return useChildMatches().length > 0 ? <Outlet /> : <RoutesPage />;
}
