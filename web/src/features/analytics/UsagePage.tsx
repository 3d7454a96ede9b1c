import { useMemo, useState, useId } from "react";
import { Link } from "@tanstack/react-router";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { Download, MessageSquareText, RefreshCw } from "lucide-react";
import { toast } from "sonner";
import { $api, api } from "@/api/client";
import { errorMessage } from "@/api/errors";
import { PageHeader } from "@/components/ui/page-header";
import { Button, buttonVariants } from "@/components/ui/button";
import { Card, CardHeader } from "@/components/ui/card";
import { Input, NativeSelect } from "@/components/ui/input";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatCompact, formatDateTime, formatInt, formatMs, formatUsd } from "@/lib/format";
import { chooseInterval, resolveRange, viewerTimeZone, type RangeParams } from "./range";
import { analyticsFilters, apiGroupBy, compact, GROUP_BYS, GROUP_LABEL, hasFilters, type GroupBy, type UsageSearch } from "./search";
import { breakdownRows, errorClassLabel, errorClassRows, fillBuckets, groupedRows, kpis, toChartRows, type BreakdownRow } from "./prepare";
import { useLookups } from "./lookups";
import { RangePicker } from "./RangePicker";
import { UsageFilters, type FilterValues } from "./UsageFilters";
import { KpiTiles } from "./KpiTiles";
import { BreakdownTable } from "./BreakdownTable";
import { PALETTE, TimeChart } from "./Charts";

const usd = (v: number) => formatUsd(v);
/** Series in the "by group" charts (the API's `limit`; its `total` still covers every group). */
const GROUP_SERIES = 8;
/** Axis ticks in ms keep a decimal below 10 ms so neighbouring ticks never read the same. */
const msTick = (v: number) => (v === 0 ? "0 ms" : v > 0 && v < 10 ? `${v.toFixed(1)} ms` : formatMs(v));

interface Props {
  search: UsageSearch;
  /** Replaces the search params (the route navigates). */
  onSearch: (next: UsageSearch) => void;
}

export function UsagePage({ search, onSearch }: Props) {
  const queryClient = useQueryClient();
  // Presets are resolved once per anchor so the query keys stay stable; Refresh moves it.
  const [anchor, setAnchor] = useState(() => Date.now());
  const range = resolveRange(search, anchor);
  const interval = chooseInterval(range.from, range.to, anchor);
  const filters = analyticsFilters(search);
  const groupBy: GroupBy = search.group_by ?? "model";
  const lookups = useLookups();
  // Grouping by tag needs the tag's key first.
  const tagKeyMissing = groupBy === "tag" && !search.group_tag;

  const set = (patch: Partial<UsageSearch>) => onSearch(compact({ ...search, ...patch, page: patch.page }));

  const lifetime = $api.useQuery("get", "/api/v1/usage", { params: { query: { limit: 1 } } });
  const inRange = $api.useQuery("get", "/api/v1/usage", { params: { query: { limit: 1, since: range.from, until: range.to } } });
  const ts = $api.useQuery("get", "/api/v1/analytics/timeseries", { params: { query: { from: range.from, to: range.to, interval, ...filters } } });
  const bd = $api.useQuery(
    "get",
    "/api/v1/analytics/breakdown",
    { params: { query: { from: range.from, to: range.to, group_by: apiGroupBy(search), limit: 100, ...filters } } },
    { enabled: !tagKeyMissing },
  );

  // The same range per group (top 8), for the "by group" charts.
  const grouped = $api.useQuery(
    "get",
    "/api/v1/analytics/timeseries",
    { params: { query: { from: range.from, to: range.to, interval, group_by: apiGroupBy(search), limit: GROUP_SERIES, ...filters } } },
    { enabled: !tagKeyMissing },
  );

  const prepared = useMemo(() => {
    if (!ts.data) return null;
    const points = fillBuckets(ts.data.series[0]?.points ?? [], ts.data.from, ts.data.to, interval);
    return { rows: toChartRows(points), errors: errorClassRows(points), kpis: kpis(ts.data.total) };
  }, [ts.data, interval]);

  const labelOf = (g: string | null) => {
    if (g == null) return "Not set";
    if (groupBy === "team") return lookups.teamName(g);
    if (groupBy === "key") return lookups.keyName(g);
    return g;
  };
  const byGroup = {
    requests: grouped.data ? groupedRows(grouped.data.series, grouped.data.from, grouped.data.to, interval, "requests", labelOf) : null,
    cost: grouped.data ? groupedRows(grouped.data.series, grouped.data.from, grouped.data.to, interval, "cost", labelOf) : null,
  };
  const groupName = groupBy === "tag" ? `tag ${search.group_tag ?? ""}`.trim() : GROUP_LABEL[groupBy].toLowerCase();
  const groupSeries = (g: typeof byGroup.requests) =>
    (g?.keys ?? []).map((k, i) => ({ key: k, label: g?.labels[k] ?? k, color: PALETTE[i % PALETTE.length]!, stack: "g" }));
  const rows = bd.data ? breakdownRows(bd.data.data, bd.data.total, labelOf) : [];

  const exportCsv = useMutation({
    mutationFn: async () => {
      const { data } = await api.GET("/api/v1/usage/export", { params: { query: { from: range.from, to: range.to } }, parseAs: "blob" });
      if (!data) throw new Error("The export was empty");
      const url = URL.createObjectURL(data);
      const a = document.createElement("a");
      a.href = url;
      a.download = `usage-${range.from.slice(0, 10)}-${range.to.slice(0, 10)}.csv`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    },
    onSuccess: () => toast.success("Export downloaded"),
    onError: (err) => toast.error(errorMessage(err)),
  });

  const refresh = () => {
    setAnchor(Date.now());
    void queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/usage"] });
  };

  const onFilter = (patch: FilterValues) => set(patch);
  const drillDown =
    tagKeyMissing
      ? undefined
      : (r: BreakdownRow) => {
          if (!r.group) return;
          if (groupBy === "model") set({ model: r.group });
          else if (groupBy === "provider") set({ provider: r.group });
          else if (groupBy === "team") set({ team_id: r.group });
          else if (groupBy === "key") set({ key_id: r.group });
          else set({ tag: `${search.group_tag}:${r.group}` });
        };

  const header = (
    <PageHeader
      title="Usage"
      description="Requests, spend, tokens and latency across your organization."
      actions={
        <>
          <Button variant="secondary" onClick={refresh} aria-label="Refresh" loading={ts.isFetching && !ts.isPending}>
            {ts.isFetching && !ts.isPending ? null : <RefreshCw aria-hidden />}
            <span className="hidden sm:inline">Refresh</span>
          </Button>
          <Button
            variant="secondary"
            onClick={() => exportCsv.mutate()}
            loading={exportCsv.isPending}
            title="Every request of the range as CSV (the export does not take filters)"
          >
            {exportCsv.isPending ? null : <Download aria-hidden />} Export CSV
          </Button>
        </>
      }
    />
  );

  if (lifetime.data && lifetime.data.totals.requests === 0) {
    return (
      <>
        {header}
        <Card>
          <Empty
            icon={<MessageSquareText className="size-8" />}
            title="No traffic yet"
            description="Usage appears here once requests go through the gateway. Send your first one from the Playground, or call the API with a key."
            action={
              <Link to="/playground" className={buttonVariants({ variant: "primary" })}>
                Open the Playground
              </Link>
            }
          />
        </Card>
      </>
    );
  }

  const chartEmpty = prepared && prepared.kpis.requests === 0 ? "No requests in this range" : undefined;
  const chartLoading = <Loading label="Loading chart" rows={4} />;
  const chart = (node: React.ReactNode, pending = ts.isPending) =>
    pending ? <div className="h-[258px] rounded-lg border border-slate-200 bg-white">{chartLoading}</div> : node;

  return (
    <>
      {header}
      <Card className="mb-4">
        <div className="flex flex-wrap items-end gap-3 px-4 py-3 sm:px-5">
          <RangePicker value={search as RangeParams} maxDays={400} onChange={(r) => { setAnchor(Date.now()); set(r); }} />
          <UsageFilters values={filters} lookups={lookups} onChange={onFilter} />
        </div>
        <p className="border-t border-slate-100 px-4 py-2 text-xs text-slate-500 sm:px-5">
          {formatDateTime(ts.data?.from ?? range.from)} – {formatDateTime(ts.data?.to ?? range.to)} · times in {viewerTimeZone()}, buckets per{" "}
          {interval} (UTC-aligned)
        </p>
      </Card>

      {ts.isError ? (
        <Card className="mb-4">
          <ErrorState error={ts.error} onRetry={() => void ts.refetch()} title="Could not load usage" />
        </Card>
      ) : (
        <>
          <div className="mb-4">
            <KpiTiles kpis={prepared?.kpis ?? null} cachedTokens={hasFilters(search) ? undefined : inRange.data?.totals.cache_read_tokens} loading={ts.isPending} />
          </div>
          <div className="mb-4 grid gap-4 lg:grid-cols-2">
            {chart(
              <TimeChart
                title="Requests"
                description="Successful and failed, per bucket"
                kind="bar"
                interval={interval}
                rows={(prepared?.rows ?? []).map((r) => ({ t: r.t, ok: r.requests - r.errors, errors: r.errors }))}
                series={[
                  { key: "ok", label: "Succeeded", color: PALETTE[0]!, stack: "r" },
                  { key: "errors", label: "Failed", color: PALETTE[3]!, stack: "r" },
                ]}
                yFormat={(v) => formatCompact(v)}
                empty={chartEmpty}
              />,
            )}
            {chart(
              <TimeChart title="Cost" description="USD per bucket" kind="area" interval={interval} rows={(prepared?.rows ?? []).map((r) => ({ t: r.t, cost: r.cost }))} series={[{ key: "cost", label: "Cost", color: PALETTE[4]! }]} yFormat={usd} empty={chartEmpty} />,
            )}
            {chart(
              <TimeChart
                title="Tokens"
                description="Input and output"
                kind="area"
                interval={interval}
                rows={(prepared?.rows ?? []).map((r) => ({ t: r.t, input: r.prompt_tokens, output: r.completion_tokens }))}
                series={[
                  { key: "input", label: "Input", color: PALETTE[1]!, stack: "t" },
                  { key: "output", label: "Output", color: PALETTE[5]!, stack: "t" },
                ]}
                yFormat={(v) => formatCompact(v)}
                empty={chartEmpty}
              />,
            )}
            {chart(
              <TimeChart
                title="Latency"
                description="p50 and p95 of the whole request, and time to first token (streams)"
                kind="line"
                interval={interval}
                rows={(prepared?.rows ?? []).map((r) => ({ t: r.t, p50: r.latency_p50, p95: r.latency_p95, ttft50: r.ttft_p50, ttft95: r.ttft_p95 }))}
                series={[
                  { key: "p50", label: "Latency p50", color: PALETTE[0]! },
                  { key: "p95", label: "Latency p95", color: PALETTE[3]! },
                  { key: "ttft50", label: "TTFT p50", color: PALETTE[1]!, dashed: true },
                  { key: "ttft95", label: "TTFT p95", color: PALETTE[2]!, dashed: true },
                ]}
                yFormat={msTick}
                empty={chartEmpty}
              />,
            )}
            <div className="lg:col-span-2">
              {chart(
                <TimeChart
                  title="Errors by class"
                  description="Failed requests per bucket, stacked by error class"
                  kind="bar"
                  interval={interval}
                  rows={prepared?.errors.rows ?? []}
                  series={(prepared?.errors.keys ?? []).map((k, i) => ({ key: k, label: errorClassLabel(k), color: PALETTE[(i + 3) % PALETTE.length]!, stack: "e" }))}
                  yFormat={(v) => formatInt(v)}
                  empty={chartEmpty ?? (prepared && prepared.errors.keys.length === 0 ? "No errors in this range" : undefined)}
                />,
              )}
            </div>
          </div>
        </>
      )}

      <Card>
        <CardHeader
          title="Breakdown"
          description={bd.data?.truncated ? "The 100 groups with the most requests; totals above cover every group." : "Per group over the range."}
          actions={<GroupByPicker search={search} onChange={(patch) => set(patch)} />}
        />
        {tagKeyMissing ? null : grouped.isError ? (
          <ErrorState error={grouped.error} onRetry={() => void grouped.refetch()} title={`Could not load the series by ${groupName}`} />
        ) : (
          <div className="grid gap-4 border-b border-slate-100 p-4 sm:px-5 lg:grid-cols-2">
            {chart(
              <TimeChart
                title={`Requests by ${groupName}`}
                description={grouped.data?.truncated ? `The ${GROUP_SERIES} ${groupName} values with the most requests` : "Stacked per group"}
                kind="bar"
                interval={interval}
                rows={byGroup.requests?.rows ?? []}
                series={groupSeries(byGroup.requests)}
                yFormat={(v) => formatCompact(v)}
                empty={chartEmpty ?? (byGroup.requests && byGroup.requests.keys.length === 0 ? "No requests in these groups" : undefined)}
              />,
              grouped.isPending,
            )}
            {chart(
              <TimeChart
                title={`Cost by ${groupName}`}
                description={grouped.data?.truncated ? `The ${GROUP_SERIES} ${groupName} values with the most requests` : "USD, stacked per group"}
                kind="area"
                interval={interval}
                rows={byGroup.cost?.rows ?? []}
                series={groupSeries(byGroup.cost)}
                yFormat={usd}
                empty={chartEmpty ?? (byGroup.cost && byGroup.cost.keys.length === 0 ? "No requests in these groups" : undefined)}
              />,
              grouped.isPending,
            )}
          </div>
        )}
        {tagKeyMissing ? (
          <Empty title="Enter a tag key to group by" description="For example feature, to see requests and spend per value of the feature tag." />
        ) : bd.isPending ? (
          <Loading label="Loading breakdown" rows={5} />
        ) : bd.isError ? (
          <ErrorState error={bd.error} onRetry={() => void bd.refetch()} title="Could not load the breakdown" />
        ) : rows.length === 0 ? (
          <Empty
            title={groupBy === "tag" ? `No requests tagged ${search.group_tag} in this range` : "No requests in this range"}
            description={hasFilters(search) ? "Try removing a filter or picking a longer range." : "Try a longer range, or send requests from the Playground."}
            action={
              hasFilters(search) ? (
                <Button variant="secondary" onClick={() => set({ model: undefined, provider: undefined, team_id: undefined, key_id: undefined, tag: undefined })}>
                  Clear filters
                </Button>
              ) : (
                <Link to="/playground" className={buttonVariants({ variant: "secondary" })}>
                  Open the Playground
                </Link>
              )
            }
          />
        ) : (
          <BreakdownTable rows={rows} groupLabel={groupBy === "tag" ? `Tag ${search.group_tag ?? ""}`.trim() : GROUP_LABEL[groupBy]} page={search.page ?? 1} onPage={(page) => set({ page })} onFilter={drillDown} />
        )}
      </Card>
    </>
  );
}

function GroupByPicker({ search, onChange }: { search: UsageSearch; onChange: (patch: Partial<UsageSearch>) => void }) {
  const id = useId();
  const [tagKey, setTagKey] = useState(search.group_tag ?? "");
  return (
    <div className="flex flex-wrap items-center gap-2">
      <label htmlFor={`${id}-g`} className="text-sm text-slate-600">
        Group by
      </label>
      <NativeSelect id={`${id}-g`} className="w-36" value={search.group_by ?? "model"} onChange={(e) => onChange({ group_by: e.target.value === "model" ? undefined : (e.target.value as GroupBy) })}>
        {GROUP_BYS.map((g) => (
          <option key={g} value={g}>
            {GROUP_LABEL[g]}
          </option>
        ))}
      </NativeSelect>
      {search.group_by === "tag" ? (
        <form
          className="flex gap-1"
          onSubmit={(e) => {
            e.preventDefault();
            onChange({ group_tag: tagKey.trim() || undefined });
          }}
        >
          <Input aria-label="Tag key" placeholder="feature" className="w-32" value={tagKey} onChange={(e) => setTagKey(e.target.value)} />
          <Button type="submit" variant="secondary" size="sm" className="h-9">
            Group
          </Button>
        </form>
      ) : null}
    </div>
  );
}
