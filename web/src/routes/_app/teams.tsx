import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/teams")({
  component: () => <PageHeader title="Teams" description="Coming soon." />,
});
