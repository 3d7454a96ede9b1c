import { createFileRoute } from "@tanstack/react-router";
import { RoutesPage } from "@/features/routing/RoutesPage";

export const Route = createFileRoute("/_app/routes")({
  component: RoutesPage,
});
