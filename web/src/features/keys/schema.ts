import { z } from "zod";
import type { Schemas } from "@/api/client";

type KeyDto = Schemas["KeyDto"];
type CreateKeyRequest = Schemas["CreateKeyRequest"];
type UpdateKeyRequest = Schemas["UpdateKeyRequest"];

/** What the API knows as key endpoints (README "Rate limits and key scopes"). */
export const ENDPOINTS = [
  { value: "chat", label: "Chat completions", hint: "/v1/chat/completions" },
  { value: "messages", label: "Messages", hint: "/v1/messages" },
  { value: "embeddings", label: "Embeddings", hint: "/v1/embeddings" },
] as const;

const count = z
  .string()
  .trim()
  .regex(/^\d*$/, "Enter a whole number, or leave empty for no limit")
  .refine((v) => v === "" || Number(v) > 0, "Must be at least 1, or empty for no limit");

const TAG_KEY = /^[a-zA-Z0-9_.-]{1,64}$/;

/**
 * The key form. Text inputs hold strings; `toCreateBody` / `toUpdateBody` turn them into the
 * API's shape. Field names are the API's, so its field errors land next to the right input.
 */
export const keyFormSchema = z.object({
  name: z.string().trim().min(1, "Name the key (what uses it, e.g. “search backend”)").max(200, "At most 200 characters"),
  team_id: z.string(),
  models: z.array(z.string()),
  endpoints: z.array(z.string()),
  rpm_limit: count,
  tpm_limit: count,
  max_tokens_per_request: count,
  expires_at: z
    .string()
    .refine((v) => v === "" || !Number.isNaN(new Date(v).getTime()), "Enter a date and time"),
  allowed_cidrs: z.string().refine((v) => lines(v).length <= 100, "At most 100 networks"),
  metadata: z.string().superRefine((v, ctx) => {
    const rows = lines(v);
    if (rows.length > 32) ctx.addIssue({ code: "custom", message: "At most 32 tags" });
    for (const row of rows) {
      const eq = row.indexOf("=");
      const key = eq === -1 ? row : row.slice(0, eq).trim();
      if (eq === -1 || !TAG_KEY.test(key)) {
        ctx.addIssue({ code: "custom", message: `“${row}”: write key=value; keys use letters, digits, _ . - (up to 64)` });
        return;
      }
      if (row.slice(eq + 1).trim().length > 256) {
        ctx.addIssue({ code: "custom", message: `“${key}”: values are at most 256 characters` });
        return;
      }
    }
  }),
});
export type KeyForm = z.infer<typeof keyFormSchema>;

/** The form's schema; a new expiry must be in the future (an unchanged past one may stay). */
export function keyFormSchemaFor(originalExpiry = "") {
  return keyFormSchema.refine((f) => f.expires_at === "" || f.expires_at === originalExpiry || new Date(f.expires_at).getTime() > Date.now(), {
    path: ["expires_at"],
    message: "Pick a time in the future",
  });
}

function lines(v: string): string[] {
  return v
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);
}

const num = (v: string) => (v.trim() === "" ? null : Number(v));

function parseMetadata(v: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const row of v.split("\n").map((s) => s.trim()).filter(Boolean)) {
    const eq = row.indexOf("=");
    out[row.slice(0, eq).trim()] = row.slice(eq + 1).trim();
  }
  return out;
}

/** A `datetime-local` value (the viewer's time zone) → RFC 3339 UTC. */
export function localToIso(v: string): string | null {
  return v ? new Date(v).toISOString() : null;
}

/** RFC 3339 → a `datetime-local` value in the viewer's time zone. */
export function isoToLocal(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export const emptyKeyForm: KeyForm = {
  name: "",
  team_id: "",
  models: [],
  endpoints: [],
  rpm_limit: "",
  tpm_limit: "",
  max_tokens_per_request: "",
  expires_at: "",
  allowed_cidrs: "",
  metadata: "",
};

export function keyToForm(k: KeyDto): KeyForm {
  return {
    name: k.name,
    team_id: k.team_id ?? "",
    models: k.models ?? [],
    endpoints: k.endpoints ?? [],
    rpm_limit: k.rpm_limit?.toString() ?? "",
    tpm_limit: k.tpm_limit?.toString() ?? "",
    max_tokens_per_request: k.max_tokens_per_request?.toString() ?? "",
    expires_at: isoToLocal(k.expires_at),
    allowed_cidrs: (k.allowed_cidrs ?? []).join("\n"),
    metadata: Object.entries(k.metadata).map(([key, v]) => `${key}=${v}`).join("\n"),
  };
}

/** Empty choices mean "no restriction": the API's null. */
export function toCreateBody(f: KeyForm): CreateKeyRequest {
  const body: CreateKeyRequest = { name: f.name.trim() };
  if (f.team_id) body.team_id = f.team_id;
  if (f.models.length) body.models = f.models;
  if (f.endpoints.length) body.endpoints = f.endpoints;
  if (num(f.rpm_limit) !== null) body.rpm_limit = num(f.rpm_limit);
  if (num(f.tpm_limit) !== null) body.tpm_limit = num(f.tpm_limit);
  if (num(f.max_tokens_per_request) !== null) body.max_tokens_per_request = num(f.max_tokens_per_request);
  if (f.expires_at) body.expires_at = localToIso(f.expires_at);
  if (lines(f.allowed_cidrs).length) body.allowed_cidrs = lines(f.allowed_cidrs);
  const meta = parseMetadata(f.metadata);
  if (Object.keys(meta).length) body.metadata = meta;
  return body;
}

/** Every field is sent: an emptied one becomes `null`, which clears it on the server. */
export function toUpdateBody(f: KeyForm): UpdateKeyRequest {
  const cidrs = lines(f.allowed_cidrs);
  const meta = parseMetadata(f.metadata);
  return {
    name: f.name.trim(),
    models: f.models.length ? f.models : null,
    endpoints: f.endpoints.length ? f.endpoints : null,
    rpm_limit: num(f.rpm_limit),
    tpm_limit: num(f.tpm_limit),
    max_tokens_per_request: num(f.max_tokens_per_request),
    expires_at: localToIso(f.expires_at),
    allowed_cidrs: cidrs.length ? cidrs : null,
    metadata: Object.keys(meta).length ? meta : null,
  };
}

export type KeyStatus = "active" | "revoked" | "expired" | "rotating";

export function keyStatus(k: KeyDto, now = Date.now()): KeyStatus {
  if (k.revoked_at) return "revoked";
  if (k.expires_at && new Date(k.expires_at).getTime() <= now) return "expired";
  if (k.previous_expires_at && new Date(k.previous_expires_at).getTime() > now) return "rotating";
  return "active";
}
