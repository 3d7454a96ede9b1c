import type { Schemas } from "@/api/client";

export type Strategy = Schemas["CreateRouteRequest"]["strategy"];
export type RetryClass = NonNullable<Schemas["CreateRouteRequest"]["retry_on"]>[number];

/** Each strategy the API documents, with README "Routing"'s one-line explanation. */
export const STRATEGIES: { value: Strategy; label: string; explain: string }[] = [
  { value: "priority", label: "Priority", explain: "Tries candidates in order (lowest priority first, default the list order); the rest are the fallback." },
  { value: "weighted", label: "Weighted", explain: "Splits traffic at random by weight (default 1); sticky keeps one user on one deployment." },
  { value: "cheapest", label: "Cheapest", explain: "Picks the lowest expected cost for each request (prompt × input price + max output × output price)." },
  { value: "fastest", label: "Fastest", explain: "Picks the lowest recent time to first token seen on the serving node." },
  { value: "reliable", label: "Most reliable", explain: "Picks the highest recent success rate seen on the serving node." },
  { value: "least_busy", label: "Least busy", explain: "Picks the deployment with the fewest requests in flight on the serving node." },
];

export function strategyLabel(s: string): string {
  return STRATEGIES.find((x) => x.value === s)?.label ?? s;
}

/** Upstream error classes a route may fall back on (README "Fallback rules"). */
export const RETRY_CLASSES: { value: RetryClass; label: string }[] = [
  { value: "rate_limited", label: "Rate limited (429)" },
  { value: "server_error", label: "Server error (5xx)" },
  { value: "timeout", label: "Timeout" },
  { value: "connection", label: "Connection failure" },
  { value: "context_length_exceeded", label: "Context length exceeded (moves to a larger window)" },
  { value: "content_filter", label: "Content filter" },
];

export const DEFAULT_RETRY: RetryClass[] = ["rate_limited", "server_error", "timeout", "connection"];
