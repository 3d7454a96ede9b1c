import { z } from "zod";
import type { FieldValues, Path, UseFormReturn } from "react-hook-form";
import type { Schemas } from "@/api/client";
import { ApiError, applyServerErrors } from "@/api/errors";
import { DEFAULT_RETRY, STRATEGIES, type RetryClass, type Strategy } from "./strategies";

/** The API's limits (control-plane `http/routes.rs`). */
export const LIMITS = { candidates: 50, weight: 1_000_000, priority: 1_000_000, attempts: 10, timeoutMs: 3_600_000, regions: 50 } as const;

const strategies = STRATEGIES.map((s) => s.value) as [Strategy, ...Strategy[]];
const REGION = /^[A-Za-z0-9_.](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_.])?$/;

/** An optional whole number typed into a text box ("" = not set). */
const intText = (min: number, max: number, message: string) =>
  z
    .string()
    .trim()
    .refine((s) => s === "" || (/^-?\d+$/.test(s) && Number(s) >= min && Number(s) <= max), message);

const ms = intText(1, LIMITS.timeoutMs, "1 to 3,600,000 milliseconds");

export const candidateSchema = z.object({
  model_id: z.string().min(1, "Choose a deployment"),
  weight: intText(0, LIMITS.weight, `A whole number from 0 to ${LIMITS.weight}`),
  priority: intText(-LIMITS.priority, LIMITS.priority, `A whole number from -${LIMITS.priority} to ${LIMITS.priority}`),
});

export const routeSchema = z
  .object({
    name: z
      .string()
      .trim()
      .min(1, "The name clients send as model")
      .max(200, "At most 200 characters")
      // eslint-disable-next-line no-control-regex
      .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), "No control characters"),
    strategy: z.enum(strategies),
    candidates: z.array(candidateSchema).min(1, "Add at least one deployment").max(LIMITS.candidates, `At most ${LIMITS.candidates} deployments`),
    sticky: z.boolean(),
    retry_custom: z.boolean(),
    retry_on: z.array(z.string()),
    max_attempts: intText(1, LIMITS.attempts, `1 to ${LIMITS.attempts} attempts`),
    timeouts: z.object({ connect_ms: ms, first_token_ms: ms, total_ms: ms }),
    hedge_after_ms: ms,
    allowed_regions: z.string(),
  })
  .superRefine((v, ctx) => {
    v.candidates.forEach((c, i) => {
      const j = v.candidates.findIndex((o) => o.model_id === c.model_id);
      if (c.model_id && j < i) ctx.addIssue({ code: "custom", path: ["candidates", i, "model_id"], message: `Already listed as candidate ${j + 1}` });
    });
    if (v.strategy === "weighted" && v.candidates.length > 0 && v.candidates.every((c) => c.weight.trim() === "0")) {
      ctx.addIssue({ code: "custom", path: ["candidates", "root"], message: "The weights must not all be 0 (an empty weight counts as 1)" });
    }
    const total = v.timeouts.total_ms ? Number(v.timeouts.total_ms) : null;
    if (total != null) {
      for (const f of ["connect_ms", "first_token_ms"] as const) {
        if (v.timeouts[f] && Number(v.timeouts[f]) > total) ctx.addIssue({ code: "custom", path: ["timeouts", f], message: "Must not exceed the total timeout" });
      }
    }
    if (v.hedge_after_ms) {
      if (v.candidates.length < 2) ctx.addIssue({ code: "custom", path: ["hedge_after_ms"], message: "Needs at least two candidates (the hedge goes to the next one)" });
      else if (total != null && Number(v.hedge_after_ms) >= total) ctx.addIssue({ code: "custom", path: ["hedge_after_ms"], message: "Must be less than the total timeout" });
    }
    const regions = splitRegions(v.allowed_regions);
    const bad = regions.find((r) => !REGION.test(r));
    if (bad !== undefined) ctx.addIssue({ code: "custom", path: ["allowed_regions"], message: `“${bad}” is not a region: letters, digits, -, _ and . (e.g. eu or eu-west-1)` });
    else if (regions.length > LIMITS.regions) ctx.addIssue({ code: "custom", path: ["allowed_regions"], message: `At most ${LIMITS.regions} regions` });
  });

export type RouteForm = z.infer<typeof routeSchema>;

export function splitRegions(s: string): string[] {
  return s
    .split(/[,\s]+/)
    .map((r) => r.trim())
    .filter(Boolean);
}

export function emptyRoute(firstModel?: string): RouteForm {
  return {
    name: "",
    strategy: "priority",
    candidates: [{ model_id: firstModel ?? "", weight: "", priority: "" }],
    sticky: false,
    retry_custom: false,
    retry_on: [...DEFAULT_RETRY],
    max_attempts: "",
    timeouts: { connect_ms: "", first_token_ms: "", total_ms: "" },
    hedge_after_ms: "",
    allowed_regions: "",
  };
}

const text = (n: number | null | undefined) => (n == null ? "" : String(n));
const num = (s: string) => (s.trim() === "" ? null : Number(s));

/** A stored route as form values (for editing). */
export function fromRoute(r: Schemas["RouteDto"]): RouteForm {
  return {
    name: r.name,
    strategy: r.strategy,
    candidates: r.candidates.map((c) => ({ model_id: c.model_id, weight: text(c.weight), priority: text(c.priority) })),
    sticky: r.sticky,
    retry_custom: r.retry_on != null,
    retry_on: r.retry_on ?? [...DEFAULT_RETRY],
    max_attempts: text(r.max_attempts),
    timeouts: { connect_ms: text(r.timeouts.connect_ms), first_token_ms: text(r.timeouts.first_token_ms), total_ms: text(r.timeouts.total_ms) },
    hedge_after_ms: text(r.hedge_after_ms),
    allowed_regions: (r.allowed_regions ?? []).join(", "),
  };
}

/**
 * The request body, complete (so it serves both POST and PATCH: `null` clears a setting). Only
 * the candidate fields the strategy reads are sent — the API refuses the others.
 */
export function toRouteRequest(v: RouteForm): Schemas["CreateRouteRequest"] & Schemas["UpdateRouteRequest"] {
  const t = { connect_ms: num(v.timeouts.connect_ms), first_token_ms: num(v.timeouts.first_token_ms), total_ms: num(v.timeouts.total_ms) };
  const regions = splitRegions(v.allowed_regions);
  return {
    name: v.name,
    strategy: v.strategy,
    candidates: v.candidates.map((c) => ({
      model_id: c.model_id,
      weight: v.strategy === "weighted" ? num(c.weight) : null,
      priority: v.strategy === "priority" ? num(c.priority) : null,
    })),
    sticky: v.strategy === "weighted" ? v.sticky : false,
    retry_on: v.retry_custom ? (v.retry_on as RetryClass[]) : null,
    max_attempts: num(v.max_attempts),
    timeouts: t.connect_ms == null && t.first_token_ms == null && t.total_ms == null ? null : t,
    hedge_after_ms: num(v.hedge_after_ms),
    allowed_regions: regions.length > 0 ? regions : null,
  };
}

/**
 * `applyServerErrors` plus the two paths the route form holds differently: `allowed_regions[1]`
 * (one text box for the list) and `candidates` itself (the list's own error).
 */
export function applyRouteErrors<T extends FieldValues>(form: UseFormReturn<T>, err: unknown): string | null {
  if (err instanceof ApiError) {
    const [entry] = Object.entries(err.fieldErrors);
    if (entry) {
      const [field, message] = entry;
      const region = /^allowed_regions\[(\d+)\]$/.exec(field);
      if (region) {
        form.setError("allowed_regions" as Path<T>, { type: "server", message: `Entry ${Number(region[1]) + 1}: ${message}` });
        return null;
      }
      if (field === "candidates") {
        form.setError("candidates.root" as Path<T>, { type: "server", message });
        return null;
      }
    }
  }
  return applyServerErrors(form, err);
}
