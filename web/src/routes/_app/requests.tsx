import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/requests")({
  component: () => <PageHeader title="Request log" description="Coming soon." />,
});
