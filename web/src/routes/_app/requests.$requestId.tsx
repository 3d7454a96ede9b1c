import { createFileRoute } from "@tanstack/react-router";
import { RequestDetail } from "@/features/requests/RequestDetail";

export const Route = createFileRoute("/_app/requests/$requestId")({
  component: Detail,
});

function Detail() {
  const { requestId } = Route.useParams();
  // The log's filters ride along in the URL, so "back" returns to the same view.
  const search = Route.useSearch();
  return <RequestDetail requestId={requestId} backSearch={search} />;
}
