import { createFileRoute } from "@tanstack/react-router";
import { TeamDetail } from "@/features/teams/TeamDetail";

export const Route = createFileRoute("/_app/teams/$teamId")({
  component: TeamRoute,
});

function TeamRoute() {
  const { teamId } = Route.useParams();
  return <TeamDetail teamId={teamId} />;
}
