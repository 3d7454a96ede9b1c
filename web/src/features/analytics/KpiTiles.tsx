import type { ReactNode } from "react";
import { formatCompact, formatInt, formatMs, formatPercent, formatUsd } from "@/lib/format";
import type { Kpis } from "./prepare";

function Tile({ label, value, sub, tone }: { label: string; value: ReactNode; sub?: ReactNode; tone?: "danger" }) {
  return (
    <div className="min-w-0 rounded-lg border border-slate-200 bg-white px-4 py-3 shadow-sm">
      <dt className="truncate text-xs font-medium uppercase tracking-wide text-slate-500">{label}</dt>
      <dd className={`mt-1 truncate text-2xl font-semibold tabular-nums ${tone === "danger" ? "text-red-700" : "text-slate-900"}`}>{value}</dd>
      {sub ? <dd className="mt-0.5 truncate text-xs text-slate-500">{sub}</dd> : null}
    </div>
  );
}

/** The range's headline numbers; `loading` keeps the tiles' size while data arrives. */
export function KpiTiles({ kpis, cachedTokens, loading }: { kpis: Kpis | null; cachedTokens?: number | undefined; loading?: boolean }) {
  const dash = loading ? <span className="inline-block h-7 w-16 animate-pulse rounded bg-slate-200 align-middle" aria-hidden /> : "—";
  const k = kpis;
  return (
    <dl className="grid grid-cols-2 gap-3 md:grid-cols-3 xl:grid-cols-5" aria-label="Totals for the range" aria-busy={loading || undefined}>
      <Tile label="Requests" value={k ? formatInt(k.requests) : dash} />
      <Tile label="Cost" value={k ? formatUsd(k.costUsd) : dash} />
      <Tile
        label="Tokens"
        value={k ? formatCompact(k.tokens) : dash}
        sub={
          k
            ? `${formatCompact(k.promptTokens)} in · ${formatCompact(k.completionTokens)} out${cachedTokens ? ` · ${formatCompact(cachedTokens)} cached` : ""}`
            : undefined
        }
      />
      <Tile label="Error rate" value={k ? formatPercent(k.errorRate) : dash} tone={k && (k.errorRate ?? 0) >= 0.05 ? "danger" : undefined} />
      <Tile label="p95 latency" value={k ? formatMs(k.latencyP95) : dash} />
    </dl>
  );
}
