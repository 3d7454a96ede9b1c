import { useState, type ReactNode } from "react";
import { Link, useNavigate } from "@tanstack/react-router";
import { useQueryClient } from "@tanstack/react-query";
import { ArrowLeft, Pencil, Trash2 } from "lucide-react";
import { toast } from "sonner";
import { $api, type Schemas } from "@/api/client";
import { ApiError, errorMessage } from "@/api/errors";
import { canManage, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card, CardBody, CardHeader } from "@/components/ui/card";
import { Button } from "@/components/ui/button";
import { Badge } from "@/components/ui/badge";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatDateTime, formatMs } from "@/lib/format";
import { formatPerMtok } from "@/features/models/price";
import { RouteFormDialog, ROUTES_KEY } from "./RouteFormDialog";
import { DEFAULT_RETRY, RETRY_CLASSES, STRATEGIES, strategyLabel } from "./strategies";

type Route = Schemas["RouteDto"];
type Model = Schemas["ModelDto"];

function retryLabel(c: string) {
  return RETRY_CLASSES.find((r) => r.value === c)?.label ?? c;
}

/** One route, everything it is configured with (read-only for members and viewers). */
export function RouteDetailPage({ routeId }: { routeId: string }) {
  const { role } = useSession();
  const manage = canManage(role);
  const route = $api.useQuery("get", "/api/v1/routes/{id}", { params: { path: { id: routeId } } });
  const models = $api.useQuery("get", "/api/v1/models");
  const back = (
    <Link to="/routes" className="inline-flex items-center gap-1 text-sm font-medium text-brand-700 hover:underline">
      <ArrowLeft className="size-4" aria-hidden /> All routes
    </Link>
  );
  if (route.isPending) {
    return (
      <>
        {back}
        <Card className="mt-4">
          <Loading label="Loading the route" />
        </Card>
      </>
    );
  }
  if (route.isError) {
    const missing = route.error instanceof ApiError && route.error.status === 404;
    return (
      <>
        {back}
        <Card className="mt-4">
          {missing ? (
            <Empty title="No such route" description="It may have been deleted." action={back} />
          ) : (
            <ErrorState error={route.error} onRetry={() => void route.refetch()} title="Could not load the route" />
          )}
        </Card>
      </>
    );
  }
  return <RouteDetail route={route.data} models={models.data?.data ?? []} manage={manage} back={back} />;
}

function RouteDetail({ route: r, models, manage, back }: { route: Route; models: Model[]; manage: boolean; back: ReactNode }) {
  const [editing, setEditing] = useState(false);
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const del = $api.useMutation("delete", "/api/v1/routes/{id}");
  const explain = STRATEGIES.find((s) => s.value === r.strategy)?.explain;
  const byId = new Map(models.map((m) => [m.id, m]));
  return (
    <>
      <div className="mb-3">{back}</div>
      <PageHeader
        title={<span className="font-mono">{r.name}</span>}
        description={
          <>
            <Badge tone="brand">{strategyLabel(r.strategy)}</Badge> {explain}
          </>
        }
        actions={
          manage ? (
            <>
              <Button variant="secondary" onClick={() => setEditing(true)} disabled={models.length === 0}>
                <Pencil aria-hidden /> Edit
              </Button>
              <ConfirmDialog
                trigger={
                  <Button variant="secondary" aria-label={`Delete route ${r.name}`}>
                    <Trash2 aria-hidden /> Delete
                  </Button>
                }
                title={`Delete route ${r.name}?`}
                description={`Clients calling "${r.name}" will reach the deployments of that name again, if any; otherwise they get an unknown-model error.`}
                confirmLabel="Delete route"
                onConfirm={async () => {
                  try {
                    await del.mutateAsync({ params: { path: { id: r.id } } });
                    await queryClient.invalidateQueries({ queryKey: ROUTES_KEY });
                    toast.success(`Route ${r.name} deleted`);
                    await navigate({ to: "/routes" });
                  } catch (err) {
                    toast.error(errorMessage(err));
                  }
                }}
              />
            </>
          ) : null
        }
      />
      <div className="grid items-start gap-6 lg:grid-cols-3">
        <Card className="lg:col-span-2">
          <CardHeader title="Candidates" description="In fallback order: the strategy picks the first, the rest follow." />
          <Table aria-label="Candidates">
            <THead>
              <tr>
                <TH>#</TH>
                <TH>Deployment</TH>
                <TH>Region</TH>
                <TH className="text-right">Input / 1M</TH>
                <TH className="text-right">Output / 1M</TH>
                {r.strategy === "weighted" ? <TH className="text-right">Weight</TH> : null}
                {r.strategy === "priority" ? <TH className="text-right">Priority</TH> : null}
              </tr>
            </THead>
            <TBody>
              {r.candidates.map((c, i) => {
                const m = byId.get(c.model_id);
                return (
                  <TR key={c.model_id}>
                    <TD className="text-slate-500">{i + 1}</TD>
                    <TD>
                      <span className="font-mono text-[13px] font-medium">{m?.name ?? c.model_id}</span>
                      {m ? <span className="block text-xs text-slate-500">{m.upstream_model}</span> : null}
                    </TD>
                    <TD>{m?.region ?? <span className="text-slate-500">none</span>}</TD>
                    <TD className="text-right tabular-nums">{formatPerMtok(m?.input_price_micros_per_mtok)}</TD>
                    <TD className="text-right tabular-nums">{formatPerMtok(m?.output_price_micros_per_mtok)}</TD>
                    {r.strategy === "weighted" ? <TD className="text-right tabular-nums">{c.weight ?? "1 (default)"}</TD> : null}
                    {r.strategy === "priority" ? <TD className="text-right tabular-nums">{c.priority ?? `${i} (list order)`}</TD> : null}
                  </TR>
                );
              })}
            </TBody>
          </Table>
        </Card>
        <Card>
          <CardHeader title="Settings" />
          <CardBody>
            <dl className="space-y-3 text-sm">
              <Setting label="Errors that fall back">
                {r.retry_on ? (r.retry_on.length ? r.retry_on.map(retryLabel).join(", ") : "none") : `Default: ${DEFAULT_RETRY.map(retryLabel).join(", ")}`}
              </Setting>
              <Setting label="Max attempts">{r.max_attempts ?? "Default: one per candidate (at most 10)"}</Setting>
              <Setting label="Hedge after">{r.hedge_after_ms != null ? formatMs(r.hedge_after_ms) : "Off"}</Setting>
              <Setting label="Timeouts">
                connect {r.timeouts.connect_ms != null ? formatMs(r.timeouts.connect_ms) : "default"} · first token{" "}
                {r.timeouts.first_token_ms != null ? formatMs(r.timeouts.first_token_ms) : "default"} · total{" "}
                {r.timeouts.total_ms != null ? formatMs(r.timeouts.total_ms) : "default"}
              </Setting>
              <Setting label="Allowed regions">{r.allowed_regions?.length ? r.allowed_regions.join(", ") : "Any (the organization's and team's policies still apply)"}</Setting>
              {r.strategy === "weighted" ? <Setting label="Sticky">{r.sticky ? "Yes: one user stays on one deployment" : "No"}</Setting> : null}
              <Setting label="Updated">{formatDateTime(r.updated_at)}</Setting>
              <Setting label="Created">{formatDateTime(r.created_at)}</Setting>
            </dl>
          </CardBody>
        </Card>
      </div>
      {manage && editing ? <RouteFormDialog route={r} models={models} onClose={() => setEditing(false)} /> : null}
    </>
  );
}

function Setting({ label, children }: { label: string; children: ReactNode }) {
  return (
    <div>
      <dt className="text-xs font-medium uppercase tracking-wide text-slate-500">{label}</dt>
      <dd className="mt-0.5 text-slate-800">{children}</dd>
    </div>
  );
}
