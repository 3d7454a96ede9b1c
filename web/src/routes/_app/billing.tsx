import { createFileRoute } from "@tanstack/react-router";
import { z } from "zod";
import { $api } from "@/api/client";
import { getSession } from "@/auth/session";
import { canManage } from "@/auth/useSession";
import { BillingPage } from "@/features/billing/BillingPage";

export const Route = createFileRoute("/_app/billing")({
  // Stripe Checkout comes back with `?checkout=success`.
  validateSearch: z.object({ checkout: z.string().optional() }),
  loader: ({ context }) => {
    if (canManage(getSession().role)) void context.queryClient.prefetchQuery($api.queryOptions("get", "/api/v1/billing"));
  },
  component: BillingPage,
});
