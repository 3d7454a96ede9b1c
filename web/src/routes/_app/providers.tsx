import { createFileRoute } from "@tanstack/react-router";
import { $api } from "@/api/client";
import { ProvidersPage } from "@/features/providers/ProvidersPage";

export const Route = createFileRoute("/_app/providers")({
  // Prefetch (on hover too); the page shows its own loading and error states, so this never throws.
  loader: ({ context }) =>
    Promise.all([
      context.queryClient.prefetchQuery($api.queryOptions("get", "/api/v1/providers")),
      context.queryClient.prefetchQuery($api.queryOptions("get", "/api/v1/models")),
    ]),
  component: ProvidersPage,
});
