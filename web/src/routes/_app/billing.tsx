import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/billing")({
  component: () => <PageHeader title="Billing" description="Coming soon." />,
});
