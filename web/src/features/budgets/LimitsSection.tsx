import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import { Pencil } from "lucide-react";
import { useState, type KeyboardEvent } from "react";
import { toast } from "sonner";
import { $api, type Schemas } from "@/api/client";
import { applyServerErrors } from "@/api/errors";
import { Card, CardHeader } from "@/components/ui/card";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Input } from "@/components/ui/input";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { formatInt } from "@/lib/format";
import { limitsSchema, toLimit, type ApiKey, type LimitsForm, type Team } from "./model";

type Level = "organization" | "team" | "key";

export interface LimitRow {
  level: Level;
  id: string;
  name: string;
  detail?: string | undefined;
  rpm_limit: number | null | undefined;
  tpm_limit: number | null | undefined;
  editable: boolean;
}

const LEVEL_LABEL: Record<Level, string> = { organization: "Organization", team: "Team", key: "API key" };

/** Every rate limit of the organization (its own, each team's, each key's) in one place. */
export function limitRows(
  org: Schemas["OrganizationDetails"] | undefined,
  teams: readonly Team[],
  keys: readonly ApiKey[],
  perms: { manage: boolean; write: boolean },
): LimitRow[] {
  const rows: LimitRow[] = [];
  if (org) rows.push({ level: "organization", id: org.id, name: org.name, rpm_limit: org.rpm_limit, tpm_limit: org.tpm_limit, editable: perms.manage });
  for (const t of teams) rows.push({ level: "team", id: t.id, name: t.name, rpm_limit: t.rpm_limit, tpm_limit: t.tpm_limit, editable: perms.manage });
  for (const k of keys) {
    if (k.revoked_at) continue;
    const team = k.team_id ? teams.find((t) => t.id === k.team_id)?.name : undefined;
    rows.push({
      level: "key",
      id: k.id,
      name: k.name,
      detail: team ? `${k.prefix} · team ${team}` : k.prefix,
      rpm_limit: k.rpm_limit,
      tpm_limit: k.tpm_limit,
      editable: perms.write,
    });
  }
  return rows;
}

function show(v: number | null | undefined) {
  return v == null ? <span className="text-slate-400">No limit</span> : <span className="tabular-nums">{formatInt(v)}</span>;
}

function EditRow({ row, onDone }: { row: LimitRow; onDone: () => void }) {
  const queryClient = useQueryClient();
  const [formError, setFormError] = useState<string | null>(null);
  const form = useForm<LimitsForm>({
    resolver: zodResolver(limitsSchema),
    defaultValues: { rpm_limit: row.rpm_limit == null ? "" : String(row.rpm_limit), tpm_limit: row.tpm_limit == null ? "" : String(row.tpm_limit) },
  });
  const org = $api.useMutation("patch", "/api/v1/organization");
  const team = $api.useMutation("patch", "/api/v1/teams/{id}");
  const key = $api.useMutation("patch", "/api/v1/keys/{id}");
  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    const body = { rpm_limit: toLimit(v.rpm_limit), tpm_limit: toLimit(v.tpm_limit) };
    try {
      if (row.level === "organization") {
        await org.mutateAsync({ body });
        await queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/organization"] });
      } else if (row.level === "team") {
        await team.mutateAsync({ params: { path: { id: row.id } }, body });
        await queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/teams"] });
      } else {
        await key.mutateAsync({ params: { path: { id: row.id } }, body });
        await queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/keys"] });
      }
      toast.success(`Limits of ${row.name} saved`);
      onDone();
    } catch (err) {
      setFormError(applyServerErrors(form, err));
    }
  });
  const e = form.formState.errors;
  const formId = `limits-form-${row.id}`;
  const onKeyDown = (ev: KeyboardEvent) => {
    if (ev.key === "Escape") onDone();
  };
  const rpmErr = `limit-rpm-err-${row.id}`;
  const tpmErr = `limit-tpm-err-${row.id}`;
  return (
    <>
      <TD className="align-top">
        <Input
          aria-label={`Requests per minute for ${row.name}`}
          inputMode="numeric"
          placeholder="No limit"
          className="w-32"
          aria-invalid={e.rpm_limit ? true : undefined}
          aria-describedby={e.rpm_limit ? rpmErr : undefined}
          autoFocus
          form={formId}
          onKeyDown={onKeyDown}
          {...form.register("rpm_limit")}
        />
        {e.rpm_limit ? (
          <p id={rpmErr} role="alert" className="mt-1 max-w-48 whitespace-normal text-xs font-medium text-red-600">
            {e.rpm_limit.message}
          </p>
        ) : null}
      </TD>
      <TD className="align-top">
        <Input
          aria-label={`Tokens per minute for ${row.name}`}
          inputMode="numeric"
          placeholder="No limit"
          className="w-36"
          aria-invalid={e.tpm_limit ? true : undefined}
          aria-describedby={e.tpm_limit ? tpmErr : undefined}
          form={formId}
          onKeyDown={onKeyDown}
          {...form.register("tpm_limit")}
        />
        {e.tpm_limit ? (
          <p id={tpmErr} role="alert" className="mt-1 max-w-48 whitespace-normal text-xs font-medium text-red-600">
            {e.tpm_limit.message}
          </p>
        ) : null}
        {formError ? (
          <p role="alert" className="mt-1 max-w-56 whitespace-normal text-xs font-medium text-red-600">
            {formError}
          </p>
        ) : null}
      </TD>
      <TD className="align-top text-right">
        <form id={formId} onSubmit={onSubmit} className="inline-flex gap-2" aria-label={`Limits of ${row.name}`}>
          <Button variant="secondary" size="sm" onClick={onDone}>
            Cancel
          </Button>
          <Button type="submit" size="sm" loading={form.formState.isSubmitting}>
            Save
          </Button>
        </form>
      </TD>
    </>
  );
}

export function LimitsSection({ rows }: { rows: LimitRow[] }) {
  const [editing, setEditing] = useState<string | null>(null);
  return (
    <Card aria-labelledby="limits-title">
      <CardHeader
        title={<span id="limits-title">Rate limits</span>}
        description="Requests and tokens per minute at each level. A request must fit every limit that applies: its key's, its team's and the organization's."
      />
      <Table>
        <THead>
          <tr>
            <TH>Level</TH>
            <TH>Name</TH>
            <TH>Requests / min</TH>
            <TH>Tokens / min</TH>
            <TH className="text-right">
              <span className="sr-only">Actions</span>
            </TH>
          </tr>
        </THead>
        <TBody>
          {rows.map((r) => {
            const rowKey = `${r.level}:${r.id}`;
            return (
              <TR key={rowKey}>
                <TD className="align-top">
                  <Badge tone={r.level === "organization" ? "brand" : "neutral"}>{LEVEL_LABEL[r.level]}</Badge>
                </TD>
                <TD className="align-top">
                  <span className="font-medium text-slate-900">{r.name}</span>
                  {r.detail ? <span className="block font-mono text-xs text-slate-500">{r.detail}</span> : null}
                </TD>
                {editing === rowKey ? (
                  <EditRow row={r} onDone={() => setEditing(null)} />
                ) : (
                  <>
                    <TD className="align-top">{show(r.rpm_limit)}</TD>
                    <TD className="align-top">{show(r.tpm_limit)}</TD>
                    <TD className="align-top text-right">
                      {r.editable ? (
                        <Button variant="ghost" size="sm" onClick={() => setEditing(rowKey)} aria-label={`Edit limits of ${r.name}`}>
                          <Pencil aria-hidden /> Edit
                        </Button>
                      ) : null}
                    </TD>
                  </>
                )}
              </TR>
            );
          })}
        </TBody>
      </Table>
    </Card>
  );
}
