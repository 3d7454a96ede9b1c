import { useEffect, useState, type ReactNode } from "react";
import { Link } from "@tanstack/react-router";
import { Check, ChevronDown, MessageSquareText, Activity, BarChart3 } from "lucide-react";
import { $api } from "@/api/client";
import { canManage, canWrite, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card, CardBody, CardHeader } from "@/components/ui/card";
import { Button, buttonVariants } from "@/components/ui/button";
import { ErrorState, Loading } from "@/components/states";
import { formatCompact, formatInt, formatMicros } from "@/lib/format";
import { cn } from "@/lib/cn";
import { FirstRequestStep, KeyStep, ProviderStep, RequestCard, SnippetStep } from "./steps";
import { useCreatedKey } from "./createdKey";

/** Local midnight as an RFC 3339 instant: "today" in the viewer's time zone. */
function startOfToday(): string {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.toISOString();
}

/** Poll every 2 s while there is no request yet and the tab is visible (never in the background). */
export function firstRequestInterval(hasRequest: boolean): number | false {
  if (hasRequest) return false;
  return typeof document === "undefined" || document.visibilityState === "visible" ? 2000 : false;
}

function Step({ n, title, done, open, children }: { n: number; title: string; done: boolean; open: boolean; children: ReactNode }) {
  return (
    <li className="relative flex gap-3 py-4 first:pt-0 last:pb-0">
      <span
        className={cn(
          "grid size-7 shrink-0 place-items-center rounded-full text-xs font-semibold",
          done ? "bg-emerald-600 text-white" : open ? "bg-brand-600 text-white" : "bg-slate-200 text-slate-600",
        )}
        aria-hidden
      >
        {done ? <Check className="size-4" /> : n}
      </span>
      <div className="min-w-0 flex-1">
        <h3 className={cn("text-sm font-semibold", done ? "text-slate-500" : "text-slate-900")}>
          {title}
          <span className="sr-only">{done ? " (done)" : " (to do)"}</span>
        </h3>
        {open ? <div className="mt-2">{children}</div> : null}
      </div>
    </li>
  );
}

function Stat({ label, value, hint }: { label: string; value: ReactNode; hint?: ReactNode }) {
  return (
    <Card className="px-4 py-3">
      <p className="text-xs font-medium uppercase tracking-wide text-slate-500">{label}</p>
      <p className="mt-1 text-2xl font-semibold tabular-nums text-slate-900">{value}</p>
      {hint ? <p className="mt-0.5 text-xs text-slate-500">{hint}</p> : null}
    </Card>
  );
}

export function OverviewPage() {
  const { role, tenant } = useSession();
  const providers = $api.useQuery("get", "/api/v1/providers");
  const models = $api.useQuery("get", "/api/v1/models");
  const keys = $api.useQuery("get", "/api/v1/keys");
  const latest = $api.useQuery(
    "get",
    "/api/v1/requests",
    { params: { query: { limit: 1 } } },
    {
      refetchInterval: (q) => firstRequestInterval((q.state.data?.data.length ?? 0) > 0),
      refetchIntervalInBackground: false,
    },
  );
  const [since] = useState(startOfToday);
  const today = $api.useQuery("get", "/api/v1/usage", { params: { query: { since, limit: 1 } } });
  const created = useCreatedKey();
  // A new latest request means today's totals moved: refresh them (not on every poll).
  const latestId = latest.data?.data[0]?.id;
  const refetchToday = today.refetch;
  useEffect(() => {
    if (latestId) void refetchToday();
  }, [latestId, refetchToday]);
  const [copied, setCopied] = useState(false);
  const [expanded, setExpanded] = useState<boolean | null>(null);
  // Set once the checklist was seen unfinished on this visit: then the first request arriving
  // shows up inside it (live) instead of collapsing it away.
  const [watched, setWatched] = useState(false);

  if (providers.isLoading || models.isLoading || keys.isLoading || latest.isLoading) {
    return (
      <>
        <PageHeader title="Overview" />
        <Card>
          <Loading label="Loading your organization" rows={5} />
        </Card>
      </>
    );
  }
  const failed = [providers, models, keys, latest].find((q) => q.isError);
  if (failed) {
    return (
      <>
        <PageHeader title="Overview" />
        <Card>
          <ErrorState
            error={failed.error}
            onRetry={() => {
              for (const q of [providers, models, keys, latest]) if (q.isError) void q.refetch();
            }}
          />
        </Card>
      </>
    );
  }

  const modelList = models.data?.data ?? [];
  const liveKeys = (keys.data?.data ?? []).filter((k) => !k.revoked_at && (!k.expires_at || new Date(k.expires_at).getTime() > Date.now()));
  const request = latest.data?.data[0];
  const steps = {
    provider: modelList.length > 0,
    key: liveKeys.length > 0 || created !== null,
    snippet: copied || request !== undefined,
    request: request !== undefined,
  };
  const doneCount = Object.values(steps).filter(Boolean).length;
  const complete = steps.request;
  if (!complete && !watched && latest.data) setWatched(true);
  // Until the first request the checklist is open; then it collapses (the user can reopen it).
  const showChecklist = expanded ?? (!complete || watched);
  const current = !steps.provider ? 1 : !steps.key ? 2 : !steps.request ? 3 : 0;
  const totals = today.data?.totals;

  const checklist = (
    <Card aria-labelledby="getting-started">
      <CardHeader
        title={<span id="getting-started">Get started</span>}
        description={complete ? "Done: your gateway is serving requests." : "Four steps to your first request through Switchyard."}
        actions={
          <div className="flex items-center gap-3">
            <span className="text-sm text-slate-600" aria-label={`${doneCount} of 4 steps done`}>
              {doneCount}/4
            </span>
            {complete ? (
              <Button variant="ghost" size="sm" aria-expanded={showChecklist} aria-controls="getting-started-steps" onClick={() => setExpanded(!showChecklist)}>
                {showChecklist ? "Hide steps" : "Show steps"}
                <ChevronDown className={cn("transition-transform", showChecklist && "rotate-180")} aria-hidden />
              </Button>
            ) : null}
          </div>
        }
      />
      <div className="h-1 bg-slate-100" aria-hidden>
        <div className="h-1 bg-emerald-500 transition-[width]" style={{ width: `${(doneCount / 4) * 100}%` }} />
      </div>
      {showChecklist ? (
        <CardBody id="getting-started-steps">
          <ol className="divide-y divide-slate-100">
            <Step n={1} title="Add a provider and a model" done={steps.provider} open={!steps.provider}>
              <ProviderStep canManage={canManage(role)} providers={providers.data?.data ?? []} />
            </Step>
            <Step n={2} title="Create an API key" done={steps.key} open={steps.provider && (!steps.key || created !== null)}>
              <KeyStep canWrite={canWrite(role)} isMember={role === "member"} done={steps.key} />
            </Step>
            <Step n={3} title="Copy a ready-to-run request" done={steps.snippet} open={steps.provider && steps.key}>
              <SnippetStep model={modelList[0]?.name ?? null} onCopied={() => setCopied(true)} />
            </Step>
            <Step n={4} title="Watch the first request arrive live" done={steps.request} open={current === 3 || steps.request}>
              <FirstRequestStep request={request} waiting={latest.fetchStatus === "fetching" || document.visibilityState === "visible"} />
            </Step>
          </ol>
        </CardBody>
      ) : null}
    </Card>
  );

  return (
    <>
      <PageHeader
        title="Overview"
        description={tenant ? `${tenant.name}: what your gateway did today.` : undefined}
        actions={
          <Link to="/playground" className={buttonVariants({ variant: "secondary" })}>
            <MessageSquareText aria-hidden /> Open the playground
          </Link>
        }
      />
      <div className="space-y-6">
        {complete && !watched ? null : checklist}
        <section aria-label="Today" className="grid grid-cols-2 gap-3 lg:grid-cols-4">
          <Stat label="Requests today" value={today.isError ? "—" : formatCompact(totals?.requests ?? 0)} />
          <Stat label="Cost today" value={today.isError ? "—" : formatMicros(totals?.cost_micros ?? 0)} />
          <Stat
            label="Tokens today"
            value={today.isError ? "—" : formatCompact((totals?.prompt_tokens ?? 0) + (totals?.completion_tokens ?? 0))}
            hint={totals ? `${formatInt(totals.prompt_tokens)} in · ${formatInt(totals.completion_tokens)} out` : undefined}
          />
          <Stat label="Active keys" value={formatInt(liveKeys.length)} hint={`${formatInt(modelList.length)} model ${modelList.length === 1 ? "deployment" : "deployments"}`} />
        </section>
        {complete && !watched && request ? (
          <Card>
            <CardHeader
              title="Latest request"
              actions={
                <>
                  <Link to="/requests" className={buttonVariants({ variant: "ghost", size: "sm" })}>
                    <Activity aria-hidden /> Request log
                  </Link>
                  <Link to="/usage" className={buttonVariants({ variant: "ghost", size: "sm" })}>
                    <BarChart3 aria-hidden /> Usage
                  </Link>
                </>
              }
            />
            <CardBody>
              <RequestCard request={request} />
            </CardBody>
          </Card>
        ) : null}
        {complete && !watched ? checklist : null}
      </div>
    </>
  );
}
