import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/models")({
  component: () => <PageHeader title="Models" description="Coming soon." />,
});
