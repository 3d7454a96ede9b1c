import { createFileRoute, Outlet, useChildMatches } from "@tanstack/react-router";
import { RequestLog } from "@/features/requests/RequestLog";
import { requestsSearch } from "@/features/requests/search";

export const Route = createFileRoute("/_app/requests")({
  validateSearch: requestsSearch,
  component: Requests,
});

function Requests() {
  const search = Route.useSearch();
  const navigate = Route.useNavigate();
  // `/requests/$requestId` nests under this route: show the detail instead of the log.
  const child = useChildMatches();
  if (child.length > 0) return <Outlet />;
  return <RequestLog search={search} onSearch={(next) => void navigate({ search: next })} />;
}
