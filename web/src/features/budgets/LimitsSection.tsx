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
import { ResourceCard, ResourceCardList } from "@/components/ui/resource-card";
import { formatInt } from "@/lib/format";
import { useNarrow } from "@/lib/useNarrow";
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
  return v == null ? <span className="text-slate-500">No limit</span> : <span className="tabular-nums">{formatInt(v)}</span>;
}

function useLimitsEditor(row: LimitRow, onDone: () => void) {
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
  const formId = `limits-form-${row.id}`;
  const onKeyDown = (ev: KeyboardEvent) => {
    if (ev.key === "Escape") onDone();
  };
  return { form, onSubmit, formError, formId, onKeyDown };
}

function LimitInput({ row, field, editor, autoFocus, className }: { row: LimitRow; field: "rpm_limit" | "tpm_limit"; editor: ReturnType<typeof useLimitsEditor>; autoFocus?: boolean; className?: string }) {
  const err = editor.form.formState.errors[field];
  const errId = `${editor.formId}-${field}-err`;
  return (
    <>
      <Input
        aria-label={`${field === "rpm_limit" ? "Requests" : "Tokens"} per minute for ${row.name}`}
        inputMode="numeric"
        placeholder="No limit"
        className={className}
        aria-invalid={err ? true : undefined}
        aria-describedby={err ? errId : undefined}
        autoFocus={autoFocus}
        form={editor.formId}
        onKeyDown={editor.onKeyDown}
        {...editor.form.register(field)}
      />
      {err ? (
        <p id={errId} role="alert" className="mt-1 max-w-48 whitespace-normal text-xs font-medium text-red-600">
          {err.message}
        </p>
      ) : null}
    </>
  );
}

function EditorButtons({ row, editor, onDone }: { row: LimitRow; editor: ReturnType<typeof useLimitsEditor>; onDone: () => void }) {
  return (
    <form id={editor.formId} onSubmit={editor.onSubmit} className="inline-flex gap-2" aria-label={`Limits of ${row.name}`}>
      <Button variant="secondary" size="sm" onClick={onDone}>
        Cancel
      </Button>
      <Button type="submit" size="sm" loading={editor.form.formState.isSubmitting}>
        Save
      </Button>
    </form>
  );
}

function FormProblem({ message }: { message: string | null }) {
  return message ? (
    <p role="alert" className="mt-1 max-w-56 whitespace-normal text-xs font-medium text-red-600">
      {message}
    </p>
  ) : null;
}

function EditRow({ row, onDone }: { row: LimitRow; onDone: () => void }) {
  const editor = useLimitsEditor(row, onDone);
  return (
    <>
      <TD className="align-top">
        <LimitInput row={row} field="rpm_limit" editor={editor} autoFocus className="w-32" />
      </TD>
      <TD className="align-top">
        <LimitInput row={row} field="tpm_limit" editor={editor} className="w-36" />
        <FormProblem message={editor.formError} />
      </TD>
      <TD className="align-top text-right">
        <EditorButtons row={row} editor={editor} onDone={onDone} />
      </TD>
    </>
  );
}

function EditCard({ row, onDone }: { row: LimitRow; onDone: () => void }) {
  const editor = useLimitsEditor(row, onDone);
  return (
    <div className="mt-2 space-y-2">
      <div>
        <p className="mb-1 text-xs text-slate-500">Requests / min</p>
        <LimitInput row={row} field="rpm_limit" editor={editor} autoFocus />
      </div>
      <div>
        <p className="mb-1 text-xs text-slate-500">Tokens / min</p>
        <LimitInput row={row} field="tpm_limit" editor={editor} />
      </div>
      <FormProblem message={editor.formError} />
      <div className="flex justify-end">
        <EditorButtons row={row} editor={editor} onDone={onDone} />
      </div>
    </div>
  );
}

export function LimitsSection({ rows }: { rows: LimitRow[] }) {
  const [editing, setEditing] = useState<string | null>(null);
  const narrow = useNarrow();
  return (
    <Card aria-labelledby="limits-title">
      <CardHeader
        title={<span id="limits-title">Rate limits</span>}
        description="Requests and tokens per minute at each level. A request must fit every limit that applies: its key's, its team's and the organization's."
      />
      {narrow ? (
        <ResourceCardList label="Rate limits">
          {rows.map((r) => {
            const rowKey = `${r.level}:${r.id}`;
            const editButton = r.editable && editing !== rowKey ? (
              <Button variant="ghost" size="sm" onClick={() => setEditing(rowKey)} aria-label={`Edit limits of ${r.name}`}>
                <Pencil aria-hidden /> Edit
              </Button>
            ) : null;
            return editing === rowKey ? (
              <li key={rowKey} className="px-4 py-3">
                <span className="font-medium text-slate-900">{r.name}</span>{" "}
                <Badge tone={r.level === "organization" ? "brand" : "neutral"}>{LEVEL_LABEL[r.level]}</Badge>
                <EditCard row={r} onDone={() => setEditing(null)} />
              </li>
            ) : (
              <ResourceCard
                key={rowKey}
                title={r.name}
                badge={<Badge tone={r.level === "organization" ? "brand" : "neutral"}>{LEVEL_LABEL[r.level]}</Badge>}
                actions={editButton}
                fields={[
                  ...(r.detail ? [{ label: "Key", value: <span className="font-mono text-xs">{r.detail}</span> }] : []),
                  { label: "Requests / min", value: show(r.rpm_limit) },
                  { label: "Tokens / min", value: show(r.tpm_limit) },
                ]}
              />
            );
          })}
        </ResourceCardList>
      ) : (
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
      )}
    </Card>
  );
}
