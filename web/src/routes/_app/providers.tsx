import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/providers")({
  component: () => <PageHeader title="Providers" description="Coming soon." />,
});
