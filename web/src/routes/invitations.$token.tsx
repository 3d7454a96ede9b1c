import { createFileRoute } from "@tanstack/react-router";
import { getSession, restoreSession } from "@/auth/session";
import { AcceptInvitation } from "@/features/invitations/AcceptInvitation";

export const Route = createFileRoute("/invitations/$token")({
  // A public page: restore a session from the refresh cookie when there is one, never redirect.
  beforeLoad: async () => {
    if (!getSession().accessToken) await restoreSession();
  },
  component: InvitationRoute,
});

function InvitationRoute() {
  const { token } = Route.useParams();
  return <AcceptInvitation token={token} />;
}
