import { createFileRoute } from "@tanstack/react-router";
import { OverviewPage } from "@/features/onboarding/OverviewPage";

export const Route = createFileRoute("/_app/")({
  component: OverviewPage,
});
