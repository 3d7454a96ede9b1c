import { useState } from "react";
import { Link } from "@tanstack/react-router";
import { useQueryClient } from "@tanstack/react-query";
import { Boxes, Plus, Trash2 } from "lucide-react";
import { toast } from "sonner";
import { $api, type Schemas } from "@/api/client";
import { errorMessage } from "@/api/errors";
import { canManage, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card } from "@/components/ui/card";
import { Button, buttonVariants } from "@/components/ui/button";
import { Badge } from "@/components/ui/badge";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { ResourceCard, ResourceCardList } from "@/components/ui/resource-card";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatCompact } from "@/lib/format";
import { kindLabel } from "@/features/providers/kinds";
import { useNarrow } from "@/lib/useNarrow";
import { AddDeploymentDialog, MODELS_KEY } from "./AddDeploymentDialog";
import { formatPerMtok } from "./price";

type Model = Schemas["ModelDto"];
type Provider = Schemas["ProviderDto"];
type Route = Schemas["RouteDto"];

export function ModelsPage() {
  const { role } = useSession();
  const manage = canManage(role);
  const [adding, setAdding] = useState(false);
  const models = $api.useQuery("get", "/api/v1/models");
  const providers = $api.useQuery("get", "/api/v1/providers");
  const routes = $api.useQuery("get", "/api/v1/routes");
  const narrow = useNarrow();
  const usedBy = (m: Model) => (routes.data?.data ?? []).filter((r) => r.candidates.some((c) => c.model_id === m.id));
  const providerOf = (m: Model) => providerList.find((p) => p.id === m.provider_id);
  const providerList = providers.data?.data ?? [];
  const noProviders = providers.isSuccess && providerList.length === 0;
  const addButton = manage ? (
    noProviders ? (
      <Link to="/providers" className={buttonVariants({ variant: "secondary" })}>
        Add a provider first
      </Link>
    ) : (
      <Button onClick={() => setAdding(true)} disabled={!providers.isSuccess}>
        <Plus aria-hidden /> Add deployment
      </Button>
    )
  ) : null;

  return (
    <>
      <PageHeader
        title="Models"
        description="Deployments: the model names clients call, each served by a provider credential at a price per million tokens. Deployments sharing a name fall back among themselves; routes choose among any of them."
        actions={addButton}
      />
      <Card>
        {models.isPending ? (
          <Loading label="Loading deployments" />
        ) : models.isError ? (
          <ErrorState error={models.error} onRetry={() => void models.refetch()} title="Could not load deployments" />
        ) : models.data.data.length === 0 ? (
          <Empty
            icon={<Boxes className="size-8" />}
            title="No deployments yet"
            description={manage ? "Add one from the priced catalog (or a custom model) so clients can call it by name." : "An owner or admin adds model deployments."}
            action={addButton}
          />
        ) : narrow ? (
          <ResourceCardList label="Model deployments">
            {models.data.data.map((m) => (
              <ResourceCard
                key={m.id}
                title={<span className="font-mono text-[13px]">{m.name}</span>}
                actions={manage ? <DeleteModel model={m} routes={usedBy(m)} /> : null}
                fields={[
                  { label: "Provider", value: <ProviderName provider={providerOf(m)} /> },
                  { label: "Upstream", value: <span className="font-mono text-xs">{m.upstream_model}</span> },
                  { label: "Region", value: m.region ?? "any" },
                  { label: "Per 1M tokens", value: `${formatPerMtok(m.input_price_micros_per_mtok)} in · ${formatPerMtok(m.output_price_micros_per_mtok)} out` },
                  { label: "Mode", value: <ModeBadges model={m} /> },
                ]}
              />
            ))}
          </ResourceCardList>
        ) : (
          <Table aria-label="Model deployments">
            <THead>
              <tr>
                <TH>Name</TH>
                <TH>Provider</TH>
                <TH>Upstream model</TH>
                <TH>Region</TH>
                <TH className="text-right">Input / 1M</TH>
                <TH className="text-right">Output / 1M</TH>
                <TH>Mode</TH>
                {manage ? <TH className="relative"><span className="sr-only">Actions</span></TH> : null}
              </tr>
            </THead>
            <TBody>
              {models.data.data.map((m) => (
                <ModelRow key={m.id} model={m} provider={providerOf(m)} routes={usedBy(m)} manage={manage} />
              ))}
            </TBody>
          </Table>
        )}
      </Card>
      {manage && adding ? <AddDeploymentDialog open={adding} onOpenChange={setAdding} providers={providerList} /> : null}
    </>
  );
}

function ProviderName({ provider }: { provider: Provider | undefined }) {
  if (!provider) return <span className="text-slate-500">—</span>;
  return (
    <>
      {provider.name} <span className="text-xs text-slate-500">{kindLabel(provider.kind)}</span>
    </>
  );
}

function ModeBadges({ model: m }: { model: Model }) {
  return (
    <div className="flex flex-wrap items-center gap-1">
      <Badge tone={m.mode === "embedding" ? "warning" : "neutral"}>{m.mode}</Badge>
      {(m.capabilities ?? []).map((c) => (
        <Badge key={c} tone="brand">
          {c.replace("_", " ")}
        </Badge>
      ))}
      {m.context_window ? <span className="text-xs text-slate-500">{formatCompact(m.context_window)} ctx</span> : null}
    </div>
  );
}

function ModelRow({ model: m, provider, routes, manage }: { model: Model; provider: Provider | undefined; routes: Route[]; manage: boolean }) {
  return (
    <TR>
      <TD className="font-medium text-slate-900">
        <span className="font-mono text-[13px]">{m.name}</span>
        {m.catalog_id ? <span className="block text-xs font-normal text-slate-500">{m.catalog_id}</span> : null}
      </TD>
      <TD>
        <ProviderName provider={provider} />
      </TD>
      <TD className="font-mono text-xs text-slate-700">{m.upstream_model}</TD>
      <TD>{m.region ?? <span className="text-slate-500">any</span>}</TD>
      <TD className="text-right tabular-nums">{formatPerMtok(m.input_price_micros_per_mtok)}</TD>
      <TD className="text-right tabular-nums">{formatPerMtok(m.output_price_micros_per_mtok)}</TD>
      <TD>
        <ModeBadges model={m} />
      </TD>
      {manage ? (
        <TD className="text-right">
          <DeleteModel model={m} routes={routes} />
        </TD>
      ) : null}
    </TR>
  );
}

function DeleteModel({ model: m, routes }: { model: Model; routes: Route[] }) {
  const queryClient = useQueryClient();
  const del = $api.useMutation("delete", "/api/v1/models/{id}");
  return (
    <ConfirmDialog
      trigger={
        <Button variant="ghost" size="icon" aria-label={`Delete deployment ${m.name}`}>
          <Trash2 aria-hidden />
        </Button>
      }
      title={`Delete deployment ${m.name}?`}
      description={
        routes.length > 0 ? (
          <>
            {routes.length === 1 ? "Route" : "Routes"} <strong>{routes.map((r) => r.name).join(", ")}</strong> list it; the gateway refuses to delete it until they stop
            listing it.
          </>
        ) : (
          `Clients calling "${m.name}" will no longer reach this deployment.`
        )
      }
      confirmLabel="Delete deployment"
      onConfirm={async () => {
        try {
          await del.mutateAsync({ params: { path: { id: m.id } } });
          await queryClient.invalidateQueries({ queryKey: MODELS_KEY });
          toast.success(`Deployment ${m.name} deleted`);
        } catch (err) {
          toast.error(errorMessage(err));
        }
      }}
    />
  );
}
