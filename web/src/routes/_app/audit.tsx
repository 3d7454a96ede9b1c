import { createFileRoute, useNavigate } from "@tanstack/react-router";
import { AuditView } from "@/features/audit/AuditPage";
import { auditSearchSchema, type AuditSearch } from "@/features/audit/search";

export const Route = createFileRoute("/_app/audit")({
  validateSearch: auditSearchSchema,
  component: AuditRoute,
});

function AuditRoute() {
  const search = Route.useSearch();
  const navigate = useNavigate({ from: Route.fullPath });
  // Filters live in the URL (shareable, kept on reload); a change starts a new list from the top.
  const onSearch = (next: AuditSearch) => void navigate({ search: next, replace: true });
  return <AuditView search={search} onSearch={onSearch} />;
}
