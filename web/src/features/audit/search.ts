import { z } from "zod";

export const ACTIONS = ["create", "update", "delete", "revoke", "rotate"] as const;

/** Object kinds the control API records (`object_kind`). */
export const OBJECT_KINDS: Record<string, string> = {
  api_key: "API key",
  budget: "Budget",
  catalog_entry: "Catalog entry",
  invitation: "Invitation",
  member: "Member",
  model_deployment: "Model",
  organization: "Organization",
  provider: "Provider",
  route: "Route",
  team: "Team",
  team_member: "Team member",
};

const iso = z
  .string()
  .refine((v) => !Number.isNaN(new Date(v).getTime()))
  .optional()
  .catch(undefined);

/** The audit log's filters, kept in the URL (`/audit?action=create&object_kind=budget`). */
export const auditSearchSchema = z.object({
  action: z.enum(ACTIONS).optional().catch(undefined),
  object_kind: z.string().trim().min(1).max(200).optional().catch(undefined),
  object_id: z.string().trim().min(1).max(200).optional().catch(undefined),
  actor_user_id: z.uuid().optional().catch(undefined),
  since: iso,
  until: iso,
});
export type AuditSearch = z.infer<typeof auditSearchSchema>;

/** The API query for a search: only the filters that are set. */
export function auditQuery(s: AuditSearch) {
  const q: { action?: string; object_kind?: string; object_id?: string; actor_user_id?: string; since?: string; until?: string } = {};
  if (s.action) q.action = s.action;
  if (s.object_kind) q.object_kind = s.object_kind;
  if (s.object_id) q.object_id = s.object_id;
  if (s.actor_user_id) q.actor_user_id = s.actor_user_id;
  if (s.since) q.since = new Date(s.since).toISOString();
  if (s.until) q.until = new Date(s.until).toISOString();
  return q;
}

/** An ISO timestamp → the value of a `datetime-local` input (the viewer's time zone). */
export function toLocalInput(iso: string | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A `datetime-local` value (local time) → ISO UTC, or undefined when empty. */
export function fromLocalInput(value: string): string | undefined {
  if (!value) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** Fields whose value differs between `before` and `after` (top level). */
export function changedFields(before: Record<string, unknown> | null | undefined, after: Record<string, unknown> | null | undefined): string[] {
  if (!before || !after) return [];
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])).sort();
}

export function kindLabel(kind: string): string {
  return OBJECT_KINDS[kind] ?? kind.replace(/_/g, " ");
}
