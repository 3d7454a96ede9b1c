import { Link } from "@tanstack/react-router";
import { Webhook } from "lucide-react";
import type { Schemas } from "@/api/client";

/** Whether budget alerts are POSTed anywhere, with the way to change it (Settings). */
export function WebhookStatus({ org }: { org: Schemas["OrganizationDetails"] | undefined }) {
  const url = org?.alert_webhook_url;
  return (
    <div className="flex flex-wrap items-center gap-x-3 gap-y-1 rounded-lg border border-slate-200 bg-white px-4 py-3 text-sm shadow-sm">
      <p className="flex min-w-0 flex-1 items-start gap-2">
        <Webhook className="mt-0.5 size-4 shrink-0 text-slate-500" aria-hidden />
        {org === undefined ? (
          <span className="text-slate-500">Alert webhook…</span>
        ) : url ? (
          <span className="min-w-0 text-slate-700">
            Alerts are POSTed to <code className="break-all rounded bg-slate-100 px-1 py-0.5 text-xs">{url}</code>
            {org.alert_webhook_secret_set ? " (signed)" : ""}.
          </span>
        ) : (
          <span className="text-slate-700">No alert webhook: alerts are only listed on this page.</span>
        )}
      </p>
      <Link to="/settings" className="ml-auto font-medium text-brand-700 hover:underline">
        {url ? "Change in Settings" : "Set one in Settings"}
      </Link>
    </div>
  );
}
