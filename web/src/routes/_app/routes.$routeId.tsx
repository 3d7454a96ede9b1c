import { createFileRoute } from "@tanstack/react-router";
import { $api } from "@/api/client";
import { RouteDetailPage } from "@/features/routing/RouteDetailPage";

export const Route = createFileRoute("/_app/routes/$routeId")({
  loader: ({ context, params }) => context.queryClient.prefetchQuery($api.queryOptions("get", "/api/v1/routes/{id}", { params: { path: { id: params.routeId } } })),
  component: RouteDetail,
});

function RouteDetail() {
  const { routeId } = Route.useParams();
  return <RouteDetailPage key={routeId} routeId={routeId} />;
}
