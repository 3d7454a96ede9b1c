import { createFileRoute } from "@tanstack/react-router";
import { PageHeader } from "@/components/ui/page-header";

export const Route = createFileRoute("/_app/members")({
  component: () => <PageHeader title="Members" description="Coming soon." />,
});
