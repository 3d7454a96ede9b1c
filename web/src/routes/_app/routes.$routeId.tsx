import { createFileRoute } from "@tanstack/react-router";
import { RouteDetailPage } from "@/features/routing/RouteDetailPage";

export const Route = createFileRoute("/_app/routes/$routeId")({
  component: RouteDetail,
});

function RouteDetail() {
  const { routeId } = Route.useParams();
  return <RouteDetailPage key={routeId} routeId={routeId} />;
}
