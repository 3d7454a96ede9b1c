import { useState } from "react";
import { Link } from "@tanstack/react-router";
import { useQueryClient } from "@tanstack/react-query";
import { Network, Pencil, Plus, Trash2 } from "lucide-react";
import { toast } from "sonner";
import { $api, type Schemas } from "@/api/client";
import { errorMessage } from "@/api/errors";
import { canManage, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card, CardBody } from "@/components/ui/card";
import { Button, buttonVariants } from "@/components/ui/button";
import { Badge } from "@/components/ui/badge";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { ResourceCard, ResourceCardList } from "@/components/ui/resource-card";
import { Empty, ErrorState, Loading } from "@/components/states";
import { useNarrow } from "@/lib/useNarrow";
import { formatRelative } from "@/lib/format";
import { RouteFormDialog, ROUTES_KEY } from "./RouteFormDialog";
import { STRATEGIES, strategyLabel } from "./strategies";

type Route = Schemas["RouteDto"];

export function RoutesPage() {
  const { role } = useSession();
  const manage = canManage(role);
  const [editing, setEditing] = useState<Route | "new" | null>(null);
  const routes = $api.useQuery("get", "/api/v1/routes");
  const models = $api.useQuery("get", "/api/v1/models");
  const modelList = models.data?.data ?? [];
  const narrow = useNarrow();
  const names = (r: Route) => r.candidates.map((c) => modelList.find((m) => m.id === c.model_id)?.name ?? "unknown").join(", ");
  const noModels = models.isSuccess && modelList.length === 0;
  const createButton = manage ? (
    noModels ? (
      <Link to="/models" className={buttonVariants({ variant: "secondary" })}>
        Add a deployment first
      </Link>
    ) : (
      <Button onClick={() => setEditing("new")} disabled={!models.isSuccess}>
        <Plus aria-hidden /> Create route
      </Button>
    )
  ) : null;

  return (
    <>
      <PageHeader
        title="Routes"
        description="A route is a model name that chooses among deployments by a strategy and falls back on failure. Every deployment name is already an implicit route; an explicit one shadows it."
        actions={createButton}
      />
      <Card>
        {routes.isPending ? (
          <Loading label="Loading routes" />
        ) : routes.isError ? (
          <ErrorState error={routes.error} onRetry={() => void routes.refetch()} title="Could not load routes" />
        ) : routes.data.data.length === 0 ? (
          <Empty
            icon={<Network className="size-8" />}
            title="No routes yet"
            description={
              manage
                ? "Clients can already call each deployment by name. Create a route to split traffic, pick the cheapest or fastest deployment, or fall back across providers."
                : "An owner or admin creates routes."
            }
            action={createButton}
          />
        ) : narrow ? (
          <ResourceCardList label="Routes">
            {routes.data.data.map((r) => (
              <ResourceCard
                key={r.id}
                title={
                  <Link to="/routes/$routeId" params={{ routeId: r.id }} className="font-mono text-[13px] text-brand-700 hover:underline">
                    {r.name}
                  </Link>
                }
                badge={<StrategyBadges route={r} />}
                actions={manage ? <RouteActions route={r} onEdit={() => setEditing(r)} /> : null}
                fields={[
                  { label: "Candidates", value: `${r.candidates.length}: ${names(r)}` },
                  { label: "Regions", value: r.allowed_regions?.length ? r.allowed_regions.join(", ") : "any" },
                  { label: "Updated", value: formatRelative(r.updated_at) },
                ]}
              />
            ))}
          </ResourceCardList>
        ) : (
          <Table aria-label="Routes">
            <THead>
              <tr>
                <TH>Name</TH>
                <TH>Strategy</TH>
                <TH>Candidates</TH>
                <TH>Allowed regions</TH>
                <TH>Updated</TH>
                {manage ? <TH className="relative"><span className="sr-only">Actions</span></TH> : null}
              </tr>
            </THead>
            <TBody>
              {routes.data.data.map((r) => (
                <RouteRow key={r.id} route={r} names={names(r)} manage={manage} onEdit={() => setEditing(r)} />
              ))}
            </TBody>
          </Table>
        )}
      </Card>
      <Card className="mt-6">
        <CardBody>
          <details>
            <summary className="cursor-pointer text-sm font-semibold text-slate-900">How routing works</summary>
            <div className="mt-3 space-y-3 text-sm text-slate-600">
              <p>
                The strategy picks the first candidate for each request; the other candidates are the fallback order. Candidates that cannot serve a request
                (wrong mode, outside the region policy, missing a capability, too small a context window) are set aside first.
              </p>
              <dl className="grid gap-x-4 gap-y-1.5 sm:grid-cols-[10rem_1fr]">
                {STRATEGIES.map((s) => (
                  <div key={s.value} className="contents">
                    <dt className="font-medium text-slate-800">{s.label}</dt>
                    <dd>{s.explain}</dd>
                  </div>
                ))}
              </dl>
              <p>
                A failed attempt moves on only for the error classes the route retries (default: rate limited, server error, timeout, connection) and while max
                attempts allows. Client errors are never retried; a stream is retried only before its first byte. A deployment a route lists cannot be deleted
                until the route stops listing it.
              </p>
            </div>
          </details>
        </CardBody>
      </Card>
      {manage && editing ? (
        <RouteFormDialog key={editing === "new" ? "new" : editing.id} route={editing === "new" ? undefined : editing} models={modelList} onClose={() => setEditing(null)} />
      ) : null}
    </>
  );
}

function StrategyBadges({ route: r }: { route: Route }) {
  return (
    <>
      <Badge tone="brand">{strategyLabel(r.strategy)}</Badge>
      {r.sticky ? <Badge className="ml-1">sticky</Badge> : null}
    </>
  );
}

function RouteRow({ route: r, names, manage, onEdit }: { route: Route; names: string; manage: boolean; onEdit: () => void }) {
  return (
    <TR>
      <TD className="font-mono text-[13px] font-medium">
        <Link to="/routes/$routeId" params={{ routeId: r.id }} className="text-brand-700 hover:underline">
          {r.name}
        </Link>
      </TD>
      <TD>
        <StrategyBadges route={r} />
      </TD>
      <TD className="max-w-80 truncate" title={names}>
        <span className="font-medium">{r.candidates.length}</span> <span className="text-slate-500">{names}</span>
      </TD>
      <TD>{r.allowed_regions?.length ? r.allowed_regions.join(", ") : <span className="text-slate-500">any</span>}</TD>
      <TD className="text-slate-600">{formatRelative(r.updated_at)}</TD>
      {manage ? (
        <TD className="text-right">
          <RouteActions route={r} onEdit={onEdit} />
        </TD>
      ) : null}
    </TR>
  );
}

function RouteActions({ route: r, onEdit }: { route: Route; onEdit: () => void }) {
  const queryClient = useQueryClient();
  const del = $api.useMutation("delete", "/api/v1/routes/{id}");
  return (
    <>
      <Button variant="ghost" size="icon" aria-label={`Edit route ${r.name}`} onClick={onEdit}>
        <Pencil aria-hidden />
      </Button>
      <ConfirmDialog
        trigger={
          <Button variant="ghost" size="icon" aria-label={`Delete route ${r.name}`}>
            <Trash2 aria-hidden />
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
          } catch (err) {
            toast.error(errorMessage(err));
          }
        }}
      />
    </>
  );
}
