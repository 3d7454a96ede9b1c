import { z } from "zod";
import { rangeSearch } from "@/features/analytics/range";

export const OUTCOMES = ["success", "error", "truncated", "client_disconnected"] as const;
export type Outcome = (typeof OUTCOMES)[number];
export const OUTCOME_LABEL: Record<Outcome, string> = {
  success: "Succeeded",
  error: "Failed",
  truncated: "Truncated",
  client_disconnected: "Client disconnected",
};

const text = z.string().trim().min(1).max(200).optional().catch(undefined);

/** `/requests` search params: what `GET /api/v1/requests` can filter on, plus the live toggle. */
export const requestsSearch = z.object({
  ...rangeSearch,
  outcome: z.enum(OUTCOMES).optional().catch(undefined),
  status: z.coerce.number().int().min(100).max(599).optional().catch(undefined),
  model: text,
  key_id: text,
  /** `key:value`. */
  tag: text,
  live: z.boolean().optional().catch(undefined),
});
export type RequestsSearch = z.infer<typeof requestsSearch>;

export function hasRequestFilters(s: RequestsSearch): boolean {
  return Boolean(s.outcome || s.status || s.model || s.key_id || s.tag);
}

/** The request's tags as display pairs (the spec types `tags` as an open object). */
export function tagEntries(tags: unknown): Array<[string, string]> {
  if (!tags || typeof tags !== "object") return [];
  return Object.entries(tags as Record<string, unknown>).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]);
}

/** HTTP status → badge tone. */
export function statusTone(status: number, outcome: string): "success" | "warning" | "danger" {
  if (outcome === "success" && status < 400) return "success";
  if (outcome === "truncated" || outcome === "client_disconnected" || status === 429) return "warning";
  return "danger";
}
