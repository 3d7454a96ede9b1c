import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/routes")({
  component: () => <PageHeader title="Routes" description="Coming soon." />,
});
