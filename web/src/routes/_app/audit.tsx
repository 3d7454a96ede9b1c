import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/audit")({
  component: () => <PageHeader title="Audit log" description="Coming soon." />,
});
