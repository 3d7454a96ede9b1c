/**
 * Pure "prepare" functions: API answers in, chart rows and table rows out. The chart components
 * only draw what these return (STYLE.md: charts decide nothing). Timestamps stay epoch ms (UTC);
 * they are formatted in the viewer's zone only when a tick or tooltip is rendered.
 */
import type { Schemas } from "@/api/client";
import { INTERVAL_MS, type Interval } from "./range";

export type Metrics = Schemas["Metrics"];
export type Point = Schemas["Point"];
export type Group = Schemas["Group"];

export function zeroMetrics(): Metrics {
  return {
    requests: 0,
    successes: 0,
    success_rate: null,
    error_classes: {},
    prompt_tokens: 0,
    completion_tokens: 0,
    total_tokens: 0,
    cost_micros: 0,
    cost_usd: "0",
    cost_per_1k_tokens_usd: null,
    cache_hits: 0,
    latency_ms: { p50: null, p95: null, p99: null },
    ttft_ms: { p50: null, p95: null },
  };
}

/** Bucket starts (epoch ms, UTC-aligned) covering [from, to). */
export function bucketStarts(from: string, to: string, interval: Interval): number[] {
  const step = INTERVAL_MS[interval];
  const start = Math.floor(Date.parse(from) / step) * step;
  const end = Date.parse(to);
  const out: number[] = [];
  // Bounded: the API answers at most 1500 points; never build more than that.
  for (let t = start; t < end && out.length < 1500; t += step) out.push(t);
  return out;
}

/**
 * One point per bucket of the range, in time order: the API's points where it has them, a zero
 * point (null percentiles) where a bucket is missing, so charts never draw a line across a gap.
 */
export function fillBuckets(points: Point[], from: string, to: string, interval: Interval): Point[] {
  const step = INTERVAL_MS[interval];
  const byBucket = new Map<number, Point>();
  for (const p of points) byBucket.set(Math.floor(Date.parse(p.timestamp) / step) * step, p);
  return bucketStarts(from, to, interval).map(
    (t) => byBucket.get(t) ?? { ...zeroMetrics(), timestamp: new Date(t).toISOString() },
  );
}

export interface ChartRow {
  /** Bucket start, epoch ms. */
  t: number;
  requests: number;
  errors: number;
  /** USD (a float, for drawing only; tables use the exact strings). */
  cost: number;
  prompt_tokens: number;
  completion_tokens: number;
  latency_p50: number | null;
  latency_p95: number | null;
  ttft_p50: number | null;
  ttft_p95: number | null;
}

export function toChartRows(points: Point[]): ChartRow[] {
  return points.map((p) => ({
    t: Date.parse(p.timestamp),
    requests: p.requests,
    errors: p.requests - p.successes,
    cost: p.cost_micros / 1_000_000,
    prompt_tokens: p.prompt_tokens,
    completion_tokens: p.completion_tokens,
    latency_p50: p.latency_ms.p50 ?? null,
    latency_p95: p.latency_ms.p95 ?? null,
    ttft_p50: p.ttft_ms.p50 ?? null,
    ttft_p95: p.ttft_ms.p95 ?? null,
  }));
}

export interface StackedRows {
  /** The stack's keys, largest total first (the bottom of the stack). */
  keys: string[];
  /** One row per bucket with every key present (0 when the class did not occur). */
  rows: Array<{ t: number } & Record<string, number>>;
}

/** Failed requests per error class per bucket, ready for a stacked chart. */
export function errorClassRows(points: Point[]): StackedRows {
  const totals = new Map<string, number>();
  for (const p of points) {
    for (const [k, v] of Object.entries(p.error_classes)) totals.set(k, (totals.get(k) ?? 0) + v);
  }
  const keys = [...totals.entries()]
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([k]) => k);
  const rows = points.map((p) => {
    const row: { t: number } & Record<string, number> = { t: Date.parse(p.timestamp) };
    for (const k of keys) row[k] = p.error_classes[k] ?? 0;
    return row;
  });
  return { keys, rows };
}

export interface Kpis {
  requests: number;
  costMicros: number;
  costUsd: string;
  tokens: number;
  promptTokens: number;
  completionTokens: number;
  /** Failed / all, null without requests. */
  errorRate: number | null;
  latencyP95: number | null;
}

export function kpis(total: Metrics): Kpis {
  return {
    requests: total.requests,
    costMicros: total.cost_micros,
    costUsd: total.cost_usd,
    tokens: total.total_tokens,
    promptTokens: total.prompt_tokens,
    completionTokens: total.completion_tokens,
    errorRate: total.requests > 0 ? (total.requests - total.successes) / total.requests : null,
    latencyP95: total.latency_ms.p95 ?? null,
  };
}

export interface BreakdownRow {
  /** The raw group value (null: "not set"). */
  group: string | null;
  label: string;
  requests: number;
  costMicros: number;
  costUsd: string;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  costPer1k: string | null;
  latencyP50: number | null;
  latencyP95: number | null;
  errorRate: number | null;
  /** Share of all requests in the range (0..1). */
  share: number;
}

/** Breakdown groups as table rows; `labelOf` turns an id into a name (teams, keys). */
export function breakdownRows(groups: Group[], total: Metrics, labelOf: (g: string | null) => string): BreakdownRow[] {
  return groups.map((g) => ({
    group: g.group ?? null,
    label: labelOf(g.group ?? null),
    requests: g.requests,
    costMicros: g.cost_micros,
    costUsd: g.cost_usd,
    promptTokens: g.prompt_tokens,
    completionTokens: g.completion_tokens,
    totalTokens: g.total_tokens,
    costPer1k: g.cost_per_1k_tokens_usd ?? null,
    latencyP50: g.latency_ms.p50 ?? null,
    latencyP95: g.latency_ms.p95 ?? null,
    errorRate: g.requests > 0 ? (g.requests - g.successes) / g.requests : null,
    share: total.requests > 0 ? g.requests / total.requests : 0,
  }));
}

export type Series = Schemas["Series"];
export type GroupMetric = "requests" | "cost";

/**
 * One stacked row per bucket with a column per group (gaps filled with 0), for "requests / cost
 * by model" over time. Keys are `g0`, `g1`, … in the API's order (most requests first); `labels`
 * names them (`labelOf` turns ids into names, null is "Not set").
 */
export function groupedRows(
  series: Series[],
  from: string,
  to: string,
  interval: Interval,
  metric: GroupMetric,
  labelOf: (g: string | null) => string,
): StackedRows & { labels: Record<string, string> } {
  const keys = series.map((_, i) => `g${i}`);
  const labels = Object.fromEntries(series.map((s, i) => [`g${i}`, labelOf(s.group ?? null)]));
  const filled = series.map((s) => fillBuckets(s.points, from, to, interval));
  const rows = bucketStarts(from, to, interval).map((t, b) => {
    const row: { t: number } & Record<string, number> = { t };
    filled.forEach((points, i) => {
      const p = points[b];
      row[`g${i}`] = p ? (metric === "cost" ? p.cost_micros / 1_000_000 : p.requests) : 0;
    });
    return row;
  });
  return { keys, rows, labels };
}

/** Readable name of an error class: `upstream_timeout` → "Upstream timeout". */
export function errorClassLabel(k: string): string {
  const s = k.replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}
