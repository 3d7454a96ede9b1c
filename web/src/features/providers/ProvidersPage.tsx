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
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatDate } from "@/lib/format";
import { CreateProviderDialog, PROVIDERS_KEY } from "./CreateProviderDialog";
import { kindLabel } from "./kinds";

type Provider = Schemas["ProviderDto"];
type Model = Schemas["ModelDto"];

export function ProvidersPage() {
  const { role } = useSession();
  const manage = canManage(role);
  const [creating, setCreating] = useState(false);
  const providers = $api.useQuery("get", "/api/v1/providers");
  const models = $api.useQuery("get", "/api/v1/models");
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
                <ProviderRow key={p.id} provider={p} manage={manage} dependents={(models.data?.data ?? []).filter((m) => m.provider_id === p.id)} />
              ))}
            </TBody>
          </Table>
        )}
      </Card>
      {manage ? <CreateProviderDialog open={creating} onOpenChange={setCreating} /> : null}
    </>
  );
}

function ProviderRow({ provider: p, manage, dependents }: { provider: Provider; manage: boolean; dependents: Model[] }) {
  const queryClient = useQueryClient();
  const del = $api.useMutation("delete", "/api/v1/providers/{id}");
  const region = p.options.region;
  const accessKey = p.options.access_key_id;
  const apiVersion = p.options.api_version;
  return (
    <TR>
      <TD className="font-medium text-slate-900">{p.name}</TD>
      <TD>
        <Badge tone="brand">{kindLabel(p.kind)}</Badge>
      </TD>
      <TD className="max-w-72 truncate font-mono text-xs text-slate-600" title={p.effective_base_url ?? undefined}>
        {p.effective_base_url ?? <span className="font-sans text-slate-500">offline</span>}
        {p.base_url == null && p.effective_base_url ? <span className="ml-1 font-sans text-slate-500">(default)</span> : null}
        {apiVersion ? <span className="ml-1 font-sans text-slate-500">api-version {apiVersion}</span> : null}
      </TD>
      <TD>{region ?? <span className="text-slate-500">—</span>}</TD>
      <TD>
        {p.has_api_key ? <Badge tone="success">set</Badge> : <Badge>none</Badge>}
        {accessKey ? <span className="ml-2 font-mono text-xs text-slate-500">{accessKey}</span> : null}
      </TD>
      <TD className="text-slate-600">{formatDate(p.created_at)}</TD>
      {manage ? (
        <TD className="text-right">
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
                  <strong>{dependents.map((m) => m.name).join(", ")}</strong>. The gateway refuses to delete a provider in use:
                  delete those deployments first.
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
        </TD>
      ) : null}
    </TR>
  );
}
