import { createFileRoute } from "@tanstack/react-router";
import { $api } from "@/api/client";
import { ModelsPage } from "@/features/models/ModelsPage";

export const Route = createFileRoute("/_app/models")({
  // Prefetch (on hover too); the page shows its own loading and error states, so this never throws.
  loader: ({ context }) =>
    Promise.all([
      context.queryClient.prefetchQuery($api.queryOptions("get", "/api/v1/models")),
      context.queryClient.prefetchQuery($api.queryOptions("get", "/api/v1/providers")),
      context.queryClient.prefetchQuery($api.queryOptions("get", "/api/v1/routes")),
    ]),
  component: ModelsPage,
});
