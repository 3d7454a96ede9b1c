import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/usage")({
  component: () => <PageHeader title="Usage" description="Coming soon." />,
});
