import { Link, useNavigate } from "@tanstack/react-router";
import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { toast } from "sonner";
import { AlertTriangle, MailCheck } from "lucide-react";
import { $api } from "@/api/client";
import { ApiError, errorMessage } from "@/api/errors";
import { logout } from "@/auth/actions";
import { setTokens } from "@/auth/session";
import { useSession } from "@/auth/useSession";
import { AuthLayout } from "@/features/auth/AuthLayout";
import { Button, buttonVariants } from "@/components/ui/button";

/** What went wrong with an accept, in the invitee's words. */
export function acceptProblem(err: unknown): { title: string; detail: string } {
  if (err instanceof ApiError) {
    if (err.status === 404)
      return {
        title: "This invitation link does not work",
        detail: "It may have expired, been revoked or already been used. Ask whoever invited you for a new link.",
      };
    if (err.status === 403)
      return {
        title: "This invitation is for another email",
        detail: `${err.message}. Sign in with the email address the invitation was sent to.`,
      };
    if (err.status === 409) return { title: "Could not accept the invitation", detail: err.message };
  }
  return { title: "Could not accept the invitation", detail: errorMessage(err) };
}

function SignedOut({ token }: { token: string }) {
  const redirect = `/invitations/${encodeURIComponent(token)}`;
  return (
    <AuthLayout title="You're invited to Switchyard" subtitle="Someone invited you to join their organization.">
      <div className="space-y-4">
        <p className="text-sm text-slate-700">
          Sign in or create an account with the invited email to join. You come back here to accept afterwards.
        </p>
        <div className="flex flex-col gap-2">
          {/* Links styled as buttons (Button's asChild cannot wrap a Link while it renders its spinner slot). */}
          <Link to="/login" search={{ redirect }} className={buttonVariants({ className: "w-full" })}>
            Sign in to accept
          </Link>
          <Link to="/signup" search={{ redirect }} className={buttonVariants({ variant: "secondary", className: "w-full" })}>
            Create an account
          </Link>
        </div>
      </div>
    </AuthLayout>
  );
}

function SignedIn({ token }: { token: string }) {
  const session = useSession();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const me = $api.useQuery("get", "/api/v1/me");
  const accept = $api.useMutation("post", "/api/v1/invitations/{token}/accept");
  const [problem, setProblem] = useState<{ title: string; detail: string } | null>(null);
  const email = me.data?.user.email;

  const onAccept = async () => {
    setProblem(null);
    try {
      const next = await accept.mutateAsync({ params: { path: { token } } });
      queryClient.clear();
      setTokens(next);
      toast.success(`You joined ${next.tenant.name}`);
      await navigate({ to: "/" });
    } catch (err) {
      setProblem(acceptProblem(err));
    }
  };

  const switchAccount = async () => {
    await logout(queryClient);
    await navigate({ to: "/login", search: { redirect: `/invitations/${encodeURIComponent(token)}` } });
  };

  return (
    <AuthLayout
      title="Join an organization"
      subtitle={
        email ? (
          <>
            You are signed in as <span className="font-medium text-slate-900">{email}</span>
            {session.tenant ? <> (in {session.tenant.name})</> : null}.
          </>
        ) : (
          "Accept to join the organization that invited you."
        )
      }
      footer={
        <>
          Invited with another email?{" "}
          <button type="button" onClick={switchAccount} className="font-medium text-brand-700 hover:underline">
            Sign in with another account
          </button>
        </>
      }
    >
      <div className="space-y-4">
        {problem ? (
          <div role="alert" className="flex gap-2 rounded-md border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800">
            <AlertTriangle className="mt-0.5 size-4 shrink-0" aria-hidden />
            <div>
              <p className="font-medium">{problem.title}</p>
              <p className="mt-0.5">{problem.detail}</p>
            </div>
          </div>
        ) : (
          <p className="flex gap-2 text-sm text-slate-700">
            <MailCheck className="mt-0.5 size-4 shrink-0 text-brand-600" aria-hidden />
            Accepting adds you to the inviting organization with the role it chose, and switches the console to it. You keep
            your other organizations.
          </p>
        )}
        <Button className="w-full" onClick={onAccept} loading={accept.isPending}>
          Accept invitation
        </Button>
        {problem ? (
          <Link to="/" className={buttonVariants({ variant: "secondary", className: "w-full" })}>
            Go to the console
          </Link>
        ) : null}
      </div>
    </AuthLayout>
  );
}

/** `/invitations/$token`: the page an invitation link opens. */
export function AcceptInvitation({ token }: { token: string }) {
  const { accessToken } = useSession();
  return accessToken ? <SignedIn token={token} /> : <SignedOut token={token} />;
}
