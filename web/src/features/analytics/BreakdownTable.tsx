import { ChevronLeft, ChevronRight, Filter } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { formatInt, formatMs, formatPercent, formatUsd } from "@/lib/format";
import type { BreakdownRow } from "./prepare";

export const BREAKDOWN_PAGE_SIZE = 20;

const unitPrice = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 6 });
/** A price per 1K tokens keeps its µ$ digits ("$0.0025"): rounding to cents would read $0.00. */
export function formatUnitPrice(value: string | null): string {
  if (value == null) return "—";
  const n = Number(value);
  return Number.isFinite(n) ? unitPrice.format(n) : value;
}

interface Props {
  rows: BreakdownRow[];
  groupLabel: string;
  page: number;
  onPage: (page: number) => void;
  /** Narrows the page to one group (absent when the grouping cannot be a filter). */
  onFilter?: ((row: BreakdownRow) => void) | undefined;
}

/** Per-group requests, cost, tokens, latency and error rate; pages through the (bounded) groups. */
export function BreakdownTable({ rows, groupLabel, page, onPage, onFilter }: Props) {
  const pages = Math.max(1, Math.ceil(rows.length / BREAKDOWN_PAGE_SIZE));
  const current = Math.min(page, pages);
  const shown = rows.slice((current - 1) * BREAKDOWN_PAGE_SIZE, current * BREAKDOWN_PAGE_SIZE);
  return (
    <div>
      <Table aria-label={`Breakdown by ${groupLabel.toLowerCase()}`}>
        <THead>
          <tr>
            <TH>{groupLabel}</TH>
            <TH className="text-right">Requests</TH>
            <TH className="text-right">Cost</TH>
            <TH className="text-right">Tokens in / out</TH>
            <TH className="text-right">Cost / 1K tokens</TH>
            <TH className="text-right">p50</TH>
            <TH className="text-right">p95</TH>
            <TH className="text-right">Error rate</TH>
          </tr>
        </THead>
        <TBody>
          {shown.map((r) => (
            <TR key={r.group ?? "__none"}>
              <TD className="max-w-64">
                <div className="flex items-center gap-2">
                  <span className="truncate font-medium text-slate-900" title={r.group ?? undefined}>
                    {r.label}
                  </span>
                  {onFilter && r.group ? (
                    <Button variant="ghost" size="icon" className="size-7 shrink-0" aria-label={`Filter by ${r.label}`} onClick={() => onFilter(r)}>
                      <Filter aria-hidden />
                    </Button>
                  ) : null}
                </div>
                <div className="mt-1 h-1 w-full max-w-40 rounded bg-slate-100" aria-hidden>
                  <div className="h-1 rounded bg-brand-500" style={{ width: `${Math.round(r.share * 100)}%` }} />
                </div>
              </TD>
              <TD className="text-right tabular-nums">{formatInt(r.requests)}</TD>
              <TD className="text-right tabular-nums">{formatUsd(r.costUsd)}</TD>
              <TD className="text-right tabular-nums">
                {formatInt(r.promptTokens)} / {formatInt(r.completionTokens)}
              </TD>
              <TD className="text-right tabular-nums">{formatUnitPrice(r.costPer1k)}</TD>
              <TD className="text-right tabular-nums">{formatMs(r.latencyP50)}</TD>
              <TD className="text-right tabular-nums">{formatMs(r.latencyP95)}</TD>
              <TD className={`text-right tabular-nums ${(r.errorRate ?? 0) >= 0.05 ? "text-red-700" : ""}`}>{formatPercent(r.errorRate)}</TD>
            </TR>
          ))}
        </TBody>
      </Table>
      {pages > 1 ? (
        <nav aria-label="Breakdown pages" className="flex items-center justify-end gap-2 border-t border-slate-100 px-4 py-2 text-sm text-slate-600">
          <span>
            Page {current} of {pages}
          </span>
          <Button variant="secondary" size="icon" className="size-8" aria-label="Previous page" disabled={current <= 1} onClick={() => onPage(current - 1)}>
            <ChevronLeft aria-hidden />
          </Button>
          <Button variant="secondary" size="icon" className="size-8" aria-label="Next page" disabled={current >= pages} onClick={() => onPage(current + 1)}>
            <ChevronRight aria-hidden />
          </Button>
        </nav>
      ) : null}
    </div>
  );
}
