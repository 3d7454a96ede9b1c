import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/playground")({
  component: () => <PageHeader title="Playground" description="Coming soon." />,
});
