import { describe, expect, it } from "vitest";
import { breakdownRows, bucketStarts, errorClassRows, fillBuckets, groupedRows, kpis, toChartRows, zeroMetrics, type Point } from "./prepare";
import { chooseInterval, resolveRange } from "./range";

const point = (timestamp: string, over: Partial<Point> = {}): Point => ({ ...zeroMetrics(), timestamp, ...over });

describe("fillBuckets", () => {
  it("fills missing buckets with zero points in time order", () => {
    const pts = [
      point("2026-12-06T10:00:00Z", { requests: 3, successes: 3 }),
      point("2026-12-06T13:00:00Z", { requests: 1, successes: 0 }),
    ];
    const filled = fillBuckets(pts, "2026-12-06T10:00:00Z", "2026-12-06T14:00:00Z", "hour");
    expect(filled.map((p) => p.timestamp)).toEqual([
      "2026-12-06T10:00:00Z",
      "2026-12-06T11:00:00.000Z",
      "2026-12-06T12:00:00.000Z",
      "2026-12-06T13:00:00Z",
    ]);
    expect(filled.map((p) => p.requests)).toEqual([3, 0, 0, 1]);
    // A gap has no percentile: the chart draws no line through it.
    expect(filled[1]?.latency_ms.p95).toBeNull();
  });

  it("aligns buckets to UTC and stops before the exclusive end", () => {
    expect(bucketStarts("2026-12-06T10:30:00Z", "2026-12-06T12:00:00Z", "hour").map((t) => new Date(t).toISOString())).toEqual([
      "2026-12-06T10:00:00.000Z",
      "2026-12-06T11:00:00.000Z",
    ]);
    expect(bucketStarts("2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z", "day")).toHaveLength(2);
  });
});

describe("toChartRows", () => {
  it("keeps the p50/p95 latency and TTFT series, nulls where there is no data", () => {
    const rows = toChartRows([
      point("2026-12-06T10:00:00Z", { requests: 2, successes: 1, cost_micros: 1500, latency_ms: { p50: 120, p95: 840, p99: 900 }, ttft_ms: { p50: 40, p95: 95 } }),
      point("2026-12-06T11:00:00Z"),
    ]);
    expect(rows[0]).toMatchObject({ requests: 2, errors: 1, cost: 0.0015, latency_p50: 120, latency_p95: 840, ttft_p50: 40, ttft_p95: 95 });
    expect(rows[1]).toMatchObject({ latency_p95: null, ttft_p95: null });
    expect(rows.map((r) => r.latency_p95)).toEqual([840, null]);
  });
});

describe("errorClassRows", () => {
  it("stacks every class in every bucket, largest class first", () => {
    const { keys, rows } = errorClassRows([
      point("2026-12-06T10:00:00Z", { error_classes: { rate_limited: 1 } }),
      point("2026-12-06T11:00:00Z", { error_classes: { upstream_timeout: 4, rate_limited: 1 } }),
      point("2026-12-06T12:00:00Z"),
    ]);
    expect(keys).toEqual(["upstream_timeout", "rate_limited"]);
    expect(rows).toEqual([
      { t: Date.parse("2026-12-06T10:00:00Z"), upstream_timeout: 0, rate_limited: 1 },
      { t: Date.parse("2026-12-06T11:00:00Z"), upstream_timeout: 4, rate_limited: 1 },
      { t: Date.parse("2026-12-06T12:00:00Z"), upstream_timeout: 0, rate_limited: 0 },
    ]);
  });

  it("has no keys when nothing failed", () => {
    expect(errorClassRows([point("2026-12-06T10:00:00Z", { requests: 5, successes: 5 })]).keys).toEqual([]);
  });
});

describe("kpis and breakdownRows", () => {
  it("derives the error rate and keeps exact cost strings", () => {
    const total = { ...zeroMetrics(), requests: 10, successes: 8, cost_micros: 2_500_000, cost_usd: "2.5", total_tokens: 1000, latency_ms: { p50: 100, p95: 400, p99: 500 } };
    expect(kpis(total)).toMatchObject({ requests: 10, errorRate: 0.2, costUsd: "2.5", latencyP95: 400, tokens: 1000 });
    expect(kpis(zeroMetrics()).errorRate).toBeNull();
    const rows = breakdownRows(
      [{ ...total, group: "team-1", requests: 4, successes: 3, cost_per_1k_tokens_usd: "0.0025" }, { ...zeroMetrics(), group: null }],
      total,
      (g) => (g === "team-1" ? "Search" : "Not set"),
    );
    expect(rows[0]).toMatchObject({ label: "Search", errorRate: 0.25, share: 0.4, costPer1k: "0.0025" });
    expect(rows[1]).toMatchObject({ label: "Not set", errorRate: null, costPer1k: null });
  });
});

describe("ranges", () => {
  const now = Date.parse("2026-12-06T12:00:00Z");
  it("resolves presets against the anchor and keeps custom ranges in UTC", () => {
    expect(resolveRange({ range: "1h" }, now)).toEqual({ from: "2026-12-06T11:00:00.000Z", to: "2026-12-06T12:00:00.000Z", fixed: false });
    expect(resolveRange({}, now).from).toBe("2026-12-05T12:00:00.000Z");
    expect(resolveRange({ range: "custom", from: "2026-12-01T00:00:00+01:00", to: "2026-12-02T00:00:00Z" }, now)).toEqual({
      from: "2026-11-30T23:00:00.000Z",
      to: "2026-12-02T00:00:00.000Z",
      fixed: true,
    });
    // An inverted custom range falls back to the default.
    expect(resolveRange({ range: "custom", from: "2026-12-02T00:00:00Z", to: "2026-12-01T00:00:00Z" }, now).fixed).toBe(false);
  });

  it("chooses a grain that keeps the point count bounded", () => {
    const r = (preset: "1h" | "24h" | "7d" | "30d") => resolveRange({ range: preset }, now);
    expect(chooseInterval(r("1h").from, r("1h").to, now)).toBe("minute");
    expect(chooseInterval(r("24h").from, r("24h").to, now)).toBe("hour");
    expect(chooseInterval(r("7d").from, r("7d").to, now)).toBe("hour");
    expect(chooseInterval(r("30d").from, r("30d").to, now)).toBe("day");
    // Minute rollups exist for 48 hours only.
    expect(chooseInterval("2026-11-01T00:00:00Z", "2026-11-01T02:00:00Z", now)).toBe("hour");
  });
});

describe("groupedRows", () => {
  it("stacks one column per group in every bucket, naming ids", () => {
    const { keys, rows, labels } = groupedRows(
      [
        { group: "team-1", points: [point("2026-12-06T10:00:00Z", { requests: 5, cost_micros: 2_000_000 })] },
        { group: null, points: [point("2026-12-06T11:00:00Z", { requests: 2, cost_micros: 500_000 })] },
      ],
      "2026-12-06T10:00:00Z",
      "2026-12-06T12:00:00Z",
      "hour",
      "cost",
      (g) => (g === "team-1" ? "Search" : "Not set"),
    );
    expect(keys).toEqual(["g0", "g1"]);
    expect(labels).toEqual({ g0: "Search", g1: "Not set" });
    expect(rows).toEqual([
      { t: Date.parse("2026-12-06T10:00:00Z"), g0: 2, g1: 0 },
      { t: Date.parse("2026-12-06T11:00:00Z"), g0: 0, g1: 0.5 },
    ]);
  });
});
