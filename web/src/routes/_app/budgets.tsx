import { createFileRoute } from "@tanstack/react-router";
import { $api } from "@/api/client";
import { BudgetsPage } from "@/features/budgets/BudgetsPage";

export const Route = createFileRoute("/_app/budgets")({
  // Start the reads while the route's code loads; the page shows its own loading and error states.
  loader: ({ context }) => {
    for (const path of ["/api/v1/budgets", "/api/v1/teams", "/api/v1/keys", "/api/v1/organization"] as const) {
      void context.queryClient.prefetchQuery($api.queryOptions("get", path));
    }
  },
  component: BudgetsPage,
});
