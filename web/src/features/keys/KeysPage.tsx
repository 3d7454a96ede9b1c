import { useState, useSyncExternalStore } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { KeyRound, Pencil, Plus, RefreshCw, Trash2 } from "lucide-react";
import { toast } from "sonner";
import { $api, type Schemas } from "@/api/client";
import { errorMessage } from "@/api/errors";
import { canWrite } from "@/auth/useSession";
import { useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card } from "@/components/ui/card";
import { Button } from "@/components/ui/button";
import { Badge } from "@/components/ui/badge";
import { Switch } from "@/components/ui/switch";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatDateTime, formatInt, formatRelative } from "@/lib/format";
import { KeyFormDialog } from "./KeyFormDialog";
import { RotateKeyDialog } from "./RotateKeyDialog";
import { keyStatus, type KeyStatus } from "./schema";

type KeyDto = Schemas["KeyDto"];

const STATUS: Record<KeyStatus, { label: string; tone: "success" | "danger" | "warning" | "brand" }> = {
  active: { label: "Active", tone: "success" },
  rotating: { label: "Rotating", tone: "brand" },
  expired: { label: "Expired", tone: "warning" },
  revoked: { label: "Revoked", tone: "danger" },
};

export function StatusBadge({ k }: { k: KeyDto }) {
  const s = keyStatus(k);
  const title = s === "rotating" ? `The previous secret works until ${formatDateTime(k.previous_expires_at)}` : undefined;
  return (
    <Badge tone={s === "revoked" ? "danger" : STATUS[s].tone} title={title}>
      {STATUS[s].label}
    </Badge>
  );
}

function Scopes({ k }: { k: KeyDto }) {
  return (
    <div className="space-y-0.5 text-xs">
      <p>
        <span className="text-slate-500">Models: </span>
        {k.models?.length ? <span className="font-mono">{k.models.join(", ")}</span> : <span className="text-slate-700">all</span>}
      </p>
      <p>
        <span className="text-slate-500">Endpoints: </span>
        {k.endpoints?.length ? k.endpoints.join(", ") : "all"}
      </p>
      {k.allowed_cidrs?.length ? (
        <p>
          <span className="text-slate-500">Networks: </span>
          <span className="font-mono">
            {k.allowed_cidrs.length > 2
              ? `${k.allowed_cidrs.slice(0, 2).join(", ")} +${k.allowed_cidrs.length - 2}`
              : k.allowed_cidrs.join(", ")}
          </span>
        </p>
      ) : null}
    </div>
  );
}

function Limits({ k }: { k: KeyDto }) {
  const parts = [
    k.rpm_limit != null ? `${formatInt(k.rpm_limit)} rpm` : null,
    k.tpm_limit != null ? `${formatInt(k.tpm_limit)} tpm` : null,
    k.max_tokens_per_request != null ? `≤ ${formatInt(k.max_tokens_per_request)} out` : null,
  ].filter(Boolean);
  return parts.length ? <span className="text-xs">{parts.join(" · ")}</span> : <span className="text-xs text-slate-500">None</span>;
}

function Activity({ k }: { k: KeyDto }) {
  return (
    <div className="space-y-0.5 text-xs">
      <p title={formatDateTime(k.created_at)}>
        <span className="text-slate-500">Created </span>
        {formatRelative(k.created_at)}
      </p>
      <p title={k.last_used_at ? formatDateTime(k.last_used_at) : undefined}>
        <span className="text-slate-500">Last used </span>
        {formatRelative(k.last_used_at)}
      </p>
      <p>
        <span className="text-slate-500">Expires </span>
        {k.expires_at ? formatDateTime(k.expires_at) : "never"}
      </p>
    </div>
  );
}

const WIDE = "(min-width: 768px)";

/** Tables on tablets and up, cards on phones (jsdom has no matchMedia: tables). */
function useWide(): boolean {
  return useSyncExternalStore(
    (cb) => {
      if (typeof window.matchMedia !== "function") return () => undefined;
      const mq = window.matchMedia(WIDE);
      mq.addEventListener("change", cb);
      return () => mq.removeEventListener("change", cb);
    },
    () => (typeof window.matchMedia === "function" ? window.matchMedia(WIDE).matches : true),
  );
}

export function KeysPage() {
  const wide = useWide();
  const { role } = useSession();
  const writable = canWrite(role);
  const queryClient = useQueryClient();
  const keys = $api.useQuery("get", "/api/v1/keys");
  const teams = $api.useQuery("get", "/api/v1/teams");
  const revoke = $api.useMutation("delete", "/api/v1/keys/{id}");
  const [showRevoked, setShowRevoked] = useState(false);
  const [createOpen, setCreateOpen] = useState(false);
  const [editing, setEditing] = useState<KeyDto | null>(null);
  const [rotating, setRotating] = useState<KeyDto | null>(null);

  // The team column shows only when the organization has teams (or a key names one).
  const hasTeams = (teams.data?.data.length ?? 0) > 0 || (keys.data?.data ?? []).some((k) => k.team_id);
  const teamName = new Map((teams.data?.data ?? []).map((t) => [t.id, t.name]));
  const all = keys.data?.data ?? [];
  const revokedCount = all.filter((k) => k.revoked_at).length;
  const rows = showRevoked ? all : all.filter((k) => !k.revoked_at);

  const actions = (k: KeyDto) => (
    <div className="flex justify-end gap-1">
      <Button variant="ghost" size="icon" aria-label={`Edit ${k.name}`} title="Edit scopes and limits" onClick={() => setEditing(k)}>
        <Pencil aria-hidden />
      </Button>
      <Button variant="ghost" size="icon" aria-label={`Rotate ${k.name}`} title="Rotate (new secret)" onClick={() => setRotating(k)}>
        <RefreshCw aria-hidden />
      </Button>
      <ConfirmDialog
        trigger={
          <Button variant="ghost" size="icon" aria-label={`Revoke ${k.name}`} title="Revoke" className="text-red-700 hover:bg-red-50">
            <Trash2 aria-hidden />
          </Button>
        }
        title={`Revoke “${k.name}”?`}
        description="Requests with this key (and with its previous secret, during a rotation) are refused at once. This cannot be undone."
        confirmLabel="Revoke key"
        onConfirm={async () => {
          try {
            await revoke.mutateAsync({ params: { path: { id: k.id } } });
            toast.success(`Revoked “${k.name}”`);
            await queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/keys"] });
          } catch (err) {
            toast.error(errorMessage(err));
          }
        }}
      />
    </div>
  );

  const createButton = writable ? (
    <Button onClick={() => setCreateOpen(true)}>
      <Plus aria-hidden /> Create key
    </Button>
  ) : null;

  return (
    <>
      <PageHeader
        title="API keys"
        description="Keys authenticate clients to the gateway. Scope each one to the models, endpoints and limits it needs."
        actions={createButton}
      />
      {!writable ? (
        <p className="mb-4 rounded-md border border-slate-200 bg-slate-50 px-3 py-2 text-sm text-slate-600">
          You have read-only access: ask an admin to create or change keys.
        </p>
      ) : null}
      <Card>
        <div className="flex flex-wrap items-center justify-between gap-3 border-b border-slate-100 px-4 py-3 sm:px-5">
          <p className="text-sm text-slate-600" aria-live="polite">
            {keys.data ? `${rows.length} ${rows.length === 1 ? "key" : "keys"}` : "\u00a0"}
          </p>
          {revokedCount > 0 ? (
            <label className="flex items-center gap-2 text-sm text-slate-700">
              <Switch checked={showRevoked} onCheckedChange={setShowRevoked} aria-label="Show revoked keys" />
              Show revoked ({revokedCount})
            </label>
          ) : null}
        </div>
        {keys.isLoading ? (
          <Loading label="Loading keys" rows={4} />
        ) : keys.isError ? (
          <ErrorState error={keys.error} onRetry={() => void keys.refetch()} title="Could not load the keys" />
        ) : rows.length === 0 ? (
          <Empty
            icon={<KeyRound className="size-8" />}
            title={all.length ? "Only revoked keys" : "No API keys yet"}
            description="Create a key, then send it as a bearer token to the gateway's /v1 endpoints."
            action={createButton}
          />
        ) : !wide ? (
          <ul aria-label="API keys" className="divide-y divide-slate-100">
            {rows.map((k) => (
              <li key={k.id} className="space-y-2 px-4 py-3">
                <div className="flex items-start justify-between gap-2">
                  <div className="min-w-0">
                    <p className="truncate font-medium text-slate-900">{k.name}</p>
                    <p className="font-mono text-xs text-slate-500">{k.prefix}</p>
                  </div>
                  <StatusBadge k={k} />
                </div>
                {k.team_id ? (
                  <p className="text-xs">
                    <span className="text-slate-500">Team: </span>
                    {teamName.get(k.team_id) ?? "—"}
                  </p>
                ) : null}
                <Scopes k={k} />
                <p className="text-xs">
                  <span className="text-slate-500">Limits: </span>
                  <Limits k={k} />
                </p>
                <Activity k={k} />
                {writable && !k.revoked_at ? <div className="-ml-2">{actions(k)}</div> : null}
              </li>
            ))}
          </ul>
        ) : (
          <Table aria-label="API keys">
            <THead>
              <tr>
                <TH>Name</TH>
                {hasTeams ? <TH>Team</TH> : null}
                <TH>Scopes</TH>
                <TH>Limits</TH>
                <TH>Activity</TH>
                <TH>Status</TH>
                {writable ? <TH className="text-right">Actions</TH> : null}
              </tr>
            </THead>
            <TBody>
              {rows.map((k) => {
                const live = !k.revoked_at;
                return (
                  <TR key={k.id}>
                    <TD>
                      <p className="font-medium text-slate-900">{k.name}</p>
                      <p className="font-mono text-xs text-slate-500">{k.prefix}</p>
                    </TD>
                    {hasTeams ? (
                      <TD className="text-slate-700">
                        {k.team_id ? (teamName.get(k.team_id) ?? "—") : <span className="text-slate-500">—</span>}
                      </TD>
                    ) : null}
                    <TD>
                      <Scopes k={k} />
                    </TD>
                    <TD>
                      <Limits k={k} />
                    </TD>
                    <TD>
                      <Activity k={k} />
                    </TD>
                    <TD>
                      <StatusBadge k={k} />
                    </TD>
                    {writable ? <TD className="text-right">{live ? actions(k) : null}</TD> : null}
                  </TR>
                );
              })}
            </TBody>
          </Table>
        )}
      </Card>
      <KeyFormDialog open={createOpen} onOpenChange={setCreateOpen} />
      <KeyFormDialog open={editing !== null} onOpenChange={(o) => !o && setEditing(null)} editing={editing} />
      <RotateKeyDialog open={rotating !== null} onOpenChange={(o) => !o && setRotating(null)} apiKey={rotating} />
    </>
  );
}
