import { createFileRoute, redirect } from "@tanstack/react-router";
import { restoreSession, getSession } from "@/auth/session";
import { AppShell } from "@/app/AppShell";

export const Route = createFileRoute("/_app")({
  // Every console page needs a session: restore it from the refresh cookie once, or go to the
  // login page remembering this one.
  beforeLoad: async ({ location }) => {
    if (!getSession().accessToken && !(await restoreSession())) {
      throw redirect({ to: "/login", search: { redirect: location.href } });
    }
  },
  component: AppShell,
});
