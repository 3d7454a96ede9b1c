import { useState } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { Plus, PlugZap, Trash2 } from "lucide-react";
import { toast } from "sonner";
import { $api, type Schemas } from "@/api/client";
import { errorMessage } from "@/api/errors";
import { canManage, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card } from "@/components/ui/card";
import { Button } from "@/components/ui/button";
import { Badge } from "@/components/ui/badge";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { ResourceCard, ResourceCardList } from "@/components/ui/resource-card";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatDate } from "@/lib/format";
import { CreateProviderDialog, PROVIDERS_KEY } from "./CreateProviderDialog";
import { kindLabel } from "./kinds";
import { useNarrow } from "@/lib/useNarrow";

type Provider = Schemas["ProviderDto"];
type Model = Schemas["ModelDto"];

export function ProvidersPage() {
  const { role } = useSession();
  const manage = canManage(role);
  const [creating, setCreating] = useState(false);
  const providers = $api.useQuery("get", "/api/v1/providers");
  const models = $api.useQuery("get", "/api/v1/models");
  const narrow = useNarrow();
  const dependents = (p: Provider) => (models.data?.data ?? []).filter((m) => m.provider_id === p.id);
  const addButton = manage ? (
    <Button onClick={() => setCreating(true)}>
      <Plus aria-hidden /> Add provider
    </Button>
  ) : null;

  return (
    <>
      <PageHeader
        title="Providers"
        description="Credentials for the LLM providers the gateway calls. Secrets are encrypted at rest and never shown again; add model deployments on a provider under Models."
        actions={addButton}
      />
      <Card>
        {providers.isPending ? (
          <Loading label="Loading providers" />
        ) : providers.isError ? (
          <ErrorState error={providers.error} onRetry={() => void providers.refetch()} title="Could not load providers" />
        ) : providers.data.data.length === 0 ? (
          <Empty
            icon={<PlugZap className="size-8" />}
            title="No providers yet"
            description={manage ? "Add a credential for OpenAI, Anthropic, Bedrock, a local server — or the offline mock provider to try things out." : "An owner or admin adds provider credentials."}
            action={addButton}
          />
        ) : narrow ? (
          <ResourceCardList label="Providers">
            {providers.data.data.map((p) => (
              <ResourceCard
                key={p.id}
                title={p.name}
                badge={<Badge tone="brand">{kindLabel(p.kind)}</Badge>}
                actions={manage ? <DeleteProvider provider={p} dependents={dependents(p)} /> : null}
                fields={[
                  { label: "Base URL", value: <BaseUrl provider={p} /> },
                  ...(p.options.region ? [{ label: "Region", value: p.options.region }] : []),
                  { label: "Secret", value: <Secret provider={p} /> },
                  { label: "Created", value: formatDate(p.created_at) },
                ]}
              />
            ))}
          </ResourceCardList>
        ) : (
          <Table aria-label="Providers">
            <THead>
              <tr>
                <TH>Name</TH>
                <TH>Kind</TH>
                <TH>Base URL</TH>
                <TH>Region</TH>
                <TH>Secret</TH>
                <TH>Created</TH>
                {manage ? <TH className="relative"><span className="sr-only">Actions</span></TH> : null}
              </tr>
            </THead>
            <TBody>
              {providers.data.data.map((p) => (
                <ProviderRow key={p.id} provider={p} manage={manage} dependents={dependents(p)} />
              ))}
            </TBody>
          </Table>
        )}
      </Card>
      {manage ? <CreateProviderDialog open={creating} onOpenChange={setCreating} /> : null}
    </>
  );
}

function BaseUrl({ provider: p }: { provider: Provider }) {
  const apiVersion = p.options.api_version;
  return (
    <>
      {p.effective_base_url ? <span className="break-all font-mono text-xs text-slate-600">{p.effective_base_url}</span> : <span className="text-slate-500">none (offline)</span>}
      {p.base_url == null && p.effective_base_url ? <span className="ml-1 text-xs text-slate-500">(default)</span> : null}
      {apiVersion ? <span className="ml-1 text-xs text-slate-500">api-version {apiVersion}</span> : null}
    </>
  );
}

function Secret({ provider: p }: { provider: Provider }) {
  const accessKey = p.options.access_key_id;
  return (
    <>
      {p.has_api_key ? <Badge tone="success">set</Badge> : <Badge>none</Badge>}
      {accessKey ? <span className="ml-2 font-mono text-xs text-slate-500">{accessKey}</span> : null}
    </>
  );
}

function ProviderRow({ provider: p, manage, dependents }: { provider: Provider; manage: boolean; dependents: Model[] }) {
  return (
    <TR>
      <TD className="font-medium text-slate-900">{p.name}</TD>
      <TD>
        <Badge tone="brand">{kindLabel(p.kind)}</Badge>
      </TD>
      <TD className="max-w-80 truncate" title={p.effective_base_url ?? undefined}>
        <BaseUrl provider={p} />
      </TD>
      <TD>{p.options.region ?? <span className="text-slate-500">—</span>}</TD>
      <TD>
        <Secret provider={p} />
      </TD>
      <TD className="text-slate-600">{formatDate(p.created_at)}</TD>
      {manage ? (
        <TD className="text-right">
          <DeleteProvider provider={p} dependents={dependents} />
        </TD>
      ) : null}
    </TR>
  );
}

function DeleteProvider({ provider: p, dependents }: { provider: Provider; dependents: Model[] }) {
  const queryClient = useQueryClient();
  const del = $api.useMutation("delete", "/api/v1/providers/{id}");
  return (
    <ConfirmDialog
      trigger={
        <Button variant="ghost" size="icon" aria-label={`Delete provider ${p.name}`}>
          <Trash2 aria-hidden />
        </Button>
      }
      title={`Delete provider ${p.name}?`}
      description={
        dependents.length > 0 ? (
          <>
            {dependents.length === 1 ? "1 deployment uses" : `${dependents.length} deployments use`} it:{" "}
            <strong>{dependents.map((m) => m.name).join(", ")}</strong>. The gateway refuses to delete a provider in use: delete those deployments first.
          </>
        ) : (
          "No deployment uses it. Its stored secret is destroyed; this cannot be undone."
        )
      }
      confirmLabel="Delete provider"
      onConfirm={async () => {
        try {
          await del.mutateAsync({ params: { path: { id: p.id } } });
          await queryClient.invalidateQueries({ queryKey: PROVIDERS_KEY });
          toast.success(`Provider ${p.name} deleted`);
        } catch (err) {
          toast.error(errorMessage(err));
        }
      }}
    />
  );
}
