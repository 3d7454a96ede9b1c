import { createFileRoute, Outlet, useChildMatches } from "@tanstack/react-router";
import { TeamsPage } from "@/features/teams/TeamsPage";

export const Route = createFileRoute("/_app/teams")({
  component: TeamsRoute,
});

/** `/teams` lists the teams; `/teams/$teamId` (a child route) replaces the list with one team. */
function TeamsRoute() {
  const children = useChildMatches();
  return children.length > 0 ? <Outlet /> : <TeamsPage />;
}
