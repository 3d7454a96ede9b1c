import { Link } from "@tanstack/react-router";
import { OctagonAlert } from "lucide-react";
import { $api } from "@/api/client";
import { canManage, useSession } from "@/auth/useSession";
import { formatDateTime } from "@/lib/format";

const REASON: Record<string, string> = {
  payment_failed: "A payment failed and the grace period is over",
  credit_exhausted: "The free plan's monthly credit is used up",
  manual: "Suspended by the operator of this gateway",
};

/**
 * Shown on every page while the organization is suspended (the gateway answers its requests
 * with 402 `organization_suspended`). Every member reads the suspension from
 * `GET /organization`; owners and admins also get a link to the billing page.
 */
export function SuspensionBanner() {
  const { role, accessToken } = useSession();
  const org = $api.useQuery("get", "/api/v1/organization", undefined, { enabled: !!accessToken, refetchInterval: 60_000, refetchIntervalInBackground: false });
  const suspension = org.data?.suspension;
  if (!suspension) return null;
  const headline = REASON[suspension.reason] ?? "This organization is suspended";
  return (
    <div role="alert" className="border-b border-red-200 bg-red-50">
      <div className="mx-auto flex max-w-7xl flex-wrap items-start gap-x-4 gap-y-2 px-3 py-3 sm:px-6 lg:px-8">
        <OctagonAlert className="mt-0.5 size-5 shrink-0 text-red-600" aria-hidden />
        <div className="min-w-0 flex-1 text-sm">
          <p className="font-semibold text-red-800">
            API requests are refused: this organization is suspended. <span className="font-normal">{headline}.</span>
          </p>
          <p className="mt-0.5 text-red-700">{suspension.message}</p>
          {suspension.since ? <p className="mt-0.5 text-xs text-red-600">Since {formatDateTime(suspension.since)}</p> : null}
        </div>
        {canManage(role) ? (
          <Link
            to="/billing"
            className="inline-flex h-8 shrink-0 items-center rounded-md bg-red-600 px-3 text-sm font-medium text-white shadow-sm hover:bg-red-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-red-700"
          >
            Go to billing
          </Link>
        ) : (
          <p className="shrink-0 text-xs text-red-700">Ask an owner or admin of the organization to resolve it.</p>
        )}
      </div>
    </div>
  );
}
