import { createFileRoute } from "@tanstack/react-router";
import { UsagePage } from "@/features/analytics/UsagePage";
import { usageSearch } from "@/features/analytics/search";

export const Route = createFileRoute("/_app/usage")({
  validateSearch: usageSearch,
  component: Usage,
});

function Usage() {
  const search = Route.useSearch();
  const navigate = Route.useNavigate();
  return <UsagePage search={search} onSearch={(next) => void navigate({ search: next })} />;
}
