import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/budgets")({
  component: () => <PageHeader title="Budgets & limits" description="Coming soon." />,
});
