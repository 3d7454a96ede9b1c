import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/settings")({
  component: () => <PageHeader title="Settings" description="Coming soon." />,
});
