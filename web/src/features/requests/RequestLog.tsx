import { useEffect, useId, useRef, useState } from "react";
import { Link, useNavigate } from "@tanstack/react-router";
import { useVirtualizer } from "@tanstack/react-virtual";
import { Activity, MessageSquareText, RefreshCw, X } from "lucide-react";
import { useInfiniteQuery } from "@tanstack/react-query";
import { $api, api, type Schemas } from "@/api/client";
import { PageHeader } from "@/components/ui/page-header";
import { Button, buttonVariants } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { Badge } from "@/components/ui/badge";
import { NativeSelect } from "@/components/ui/input";
import { Switch } from "@/components/ui/switch";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatInt, formatUsd } from "@/lib/format";
import { wholeMs } from "./format";
import { resolveRange, viewerTimeZone, type RangeParams } from "@/features/analytics/range";
import { RangePicker } from "@/features/analytics/RangePicker";
import { TagFilter } from "@/features/analytics/UsageFilters";
import { compact } from "@/features/analytics/search";
import { useLookups, type Lookups } from "@/features/analytics/lookups";
import { hasRequestFilters, OUTCOME_LABEL, OUTCOMES, statusTone, tagEntries, type Outcome, type RequestsSearch } from "./search";

export type RequestSummary = Schemas["RequestSummary"];

export const PAGE_SIZE = 50;
const ROW_HEIGHT = 45;
/** How often the live view asks for newer rows (only while visible and scrolled to the top). */
export const LIVE_INTERVAL_MS = 5_000;
const STATUSES = [200, 400, 401, 403, 404, 408, 413, 422, 429, 499, 500, 502, 503, 504];

const timeFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });

interface Props {
  search: RequestsSearch;
  onSearch: (next: RequestsSearch) => void;
  /** How often live mode checks for newer rows. */
  liveIntervalMs?: number;
}

export function RequestLog({ search, onSearch, liveIntervalMs = LIVE_INTERVAL_MS }: Props) {
  const navigate = useNavigate();
  const lookups = useLookups();
  // A preset range is resolved once per anchor: the cursor pages of one anchor share the same
  // filters (the API requires that), and a refresh (or new rows in live mode) moves it.
  const [anchor, setAnchor] = useState(() => Date.now());
  const range = resolveRange(search, anchor);
  const filters = { model: search.model, key_id: search.key_id, status: search.status, outcome: search.outcome, tag: search.tag };
  // For a preset the end stays open ("now"), so newer rows never shift the pages already read.
  const query = { ...filters, from: range.from, to: range.fixed ? range.to : undefined, limit: PAGE_SIZE };

  const list = useInfiniteQuery({
    // The same key shape as `$api` ("get", path, init) plus a marker: pages, not one answer.
    queryKey: ["get", "/api/v1/requests", { params: { query } }, "pages"],
    queryFn: async ({ pageParam, signal }) => {
      const { data } = await api.GET("/api/v1/requests", { params: { query: { ...query, cursor: pageParam } }, signal });
      return data!;
    },
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const rows: RequestSummary[] = list.data?.pages.flatMap((p) => p.data) ?? [];

  const scrollRef = useRef<HTMLDivElement>(null);
  const [atTop, setAtTop] = useState(true);
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
    initialRect: { width: 1200, height: 640 },
  });
  const items = virtualizer.getVirtualItems();
  const lastIndex = items.length > 0 ? items[items.length - 1]!.index : -1;

  // Reading near the end of what is loaded asks for the next page (one at a time).
  useEffect(() => {
    if (lastIndex >= rows.length - 10 && list.hasNextPage && !list.isFetchingNextPage && !list.isFetching) {
      void list.fetchNextPage();
    }
  }, [lastIndex, rows.length, list]);

  // Live: a one-row probe while the tab is visible (TanStack Query pauses intervals in hidden
  // tabs) and the list is scrolled to the top; a newer first row re-anchors the list.
  const live = Boolean(search.live) && !range.fixed;
  const head = $api.useQuery(
    "get",
    "/api/v1/requests",
    { params: { query: { ...filters, from: range.from, limit: 1 } } },
    { enabled: live && atTop, refetchInterval: liveIntervalMs, refetchIntervalInBackground: false, placeholderData: undefined },
  );
  const newest = head.data?.data[0]?.id;
  const firstShown = rows[0]?.id;
  useEffect(() => {
    if (live && atTop && newest && newest !== firstShown && !list.isFetching) setAnchor(Date.now());
  }, [live, atTop, newest, firstShown, list.isFetching]);

  const set = (patch: Partial<RequestsSearch>) => {
    scrollRef.current?.scrollTo({ top: 0 });
    setAnchor(Date.now());
    onSearch(compact({ ...search, ...patch }));
  };
  const open = (r: RequestSummary) => void navigate({ to: "/requests/$requestId", params: { requestId: r.id }, search: (prev) => prev });

  const filtered = hasRequestFilters(search);
  const paddingTop = items[0]?.start ?? 0;
  const paddingBottom = items.length > 0 ? virtualizer.getTotalSize() - (items[items.length - 1]?.end ?? 0) : 0;

  return (
    <>
      <PageHeader
        title="Request log"
        description="Every request through the gateway, newest first. Open one to see its attempts."
        actions={
          <>
            <div className="flex items-center gap-2">
              <Switch
                id="live-toggle"
                checked={live}
                disabled={range.fixed}
                onCheckedChange={(v) => onSearch(compact({ ...search, live: v || undefined }))}
                aria-label="Live updates"
              />
              <label htmlFor="live-toggle" className="text-sm text-slate-700">
                Live
              </label>
            </div>
            <Button variant="secondary" onClick={() => setAnchor(Date.now())} loading={list.isFetching && !list.isFetchingNextPage && !list.isPending}>
              {list.isFetching && !list.isFetchingNextPage && !list.isPending ? null : <RefreshCw aria-hidden />} Refresh
            </Button>
          </>
        }
      />
      <Card className="mb-4">
        <div className="flex flex-wrap items-end gap-3 px-4 py-3 sm:px-5">
          <RangePicker value={search as RangeParams} maxDays={31} onChange={(r) => set(r)} />
          <Filters search={search} lookups={lookups} onChange={set} />
        </div>
        <p className="border-t border-slate-100 px-4 py-2 text-xs text-slate-500 sm:px-5">
          Times in {viewerTimeZone()}.{" "}
          {live ? (atTop ? `Live: checking for new requests every ${Math.round(liveIntervalMs / 1000)} s.` : "Live paused while you scroll; back at the top it resumes.") : null}
        </p>
      </Card>

      <Card>
        {list.isPending ? (
          <Loading label="Loading requests" rows={8} />
        ) : list.isError && rows.length === 0 ? (
          <ErrorState error={list.error} onRetry={() => void list.refetch()} title="Could not load the request log" />
        ) : rows.length === 0 ? (
          <Empty
            icon={<Activity className="size-8" />}
            title={filtered ? "No requests match these filters" : "No requests in this range"}
            description={filtered ? "Try removing a filter or picking a longer range." : "Requests appear here as soon as they go through the gateway."}
            action={
              filtered ? (
                <Button variant="secondary" onClick={() => set({ outcome: undefined, status: undefined, model: undefined, key_id: undefined, tag: undefined })}>
                  Clear filters
                </Button>
              ) : (
                <Link to="/playground" className={buttonVariants({ variant: "secondary" })}>
                  <MessageSquareText aria-hidden /> Open the Playground
                </Link>
              )
            }
          />
        ) : (
          <div
            ref={scrollRef}
            onScroll={(e) => setAtTop(e.currentTarget.scrollTop < 8)}
            className="max-h-[max(420px,calc(100dvh-22rem))] overflow-auto"
            tabIndex={0}
            role="region"
            aria-label="Requests"
          >
            <table className="w-full min-w-[1100px] border-collapse text-left text-sm" aria-rowcount={list.hasNextPage ? -1 : rows.length + 1}>
              <thead className="sticky top-0 z-10 border-b border-slate-200 bg-slate-50 text-xs uppercase tracking-wide text-slate-500">
                <tr>
                  {["Time", "Status", "Model", "Deployment", "Key", "Tokens in / out", "Cost", "Latency", "TTFT", "Tags"].map((h) => (
                    <th key={h} scope="col" className={`whitespace-nowrap px-3 py-2 font-medium ${["Tokens in / out", "Cost", "Latency", "TTFT"].includes(h) ? "text-right" : ""}`}>
                      {h}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody className="divide-y divide-slate-100">
                {paddingTop > 0 ? (
                  <tr aria-hidden>
                    <td colSpan={10} style={{ height: paddingTop, padding: 0 }} />
                  </tr>
                ) : null}
                {items.map((vi) => {
                  const r = rows[vi.index]!;
                  return <Row key={r.id} r={r} lookups={lookups} onOpen={open} index={vi.index} />;
                })}
                {paddingBottom > 0 ? (
                  <tr aria-hidden>
                    <td colSpan={10} style={{ height: paddingBottom, padding: 0 }} />
                  </tr>
                ) : null}
              </tbody>
            </table>
            <div className="sticky left-0 flex items-center justify-center gap-3 border-t border-slate-100 px-4 py-3 text-sm text-slate-500">
              <span>
                {formatInt(rows.length)} request{rows.length === 1 ? "" : "s"} loaded
              </span>
              {list.hasNextPage ? (
                <Button variant="secondary" size="sm" onClick={() => void list.fetchNextPage()} loading={list.isFetchingNextPage}>
                  Load more
                </Button>
              ) : (
                <span>· end of the range</span>
              )}
            </div>
            {list.isError ? <ErrorState error={list.error} onRetry={() => void list.fetchNextPage()} title="Could not load more requests" /> : null}
          </div>
        )}
      </Card>
    </>
  );
}

function Row({ r, lookups, onOpen, index }: { r: RequestSummary; lookups: Lookups; onOpen: (r: RequestSummary) => void; index: number }) {
  const tags = tagEntries(r.tags);
  return (
    <tr className="h-[45px] cursor-pointer hover:bg-slate-50" onClick={() => onOpen(r)} aria-rowindex={index + 2} data-index={index}>
      <td className="whitespace-nowrap px-3 py-2">
        <Link
          to="/requests/$requestId"
          params={{ requestId: r.id }}
          search={(prev) => prev}
          className="font-medium text-brand-700 hover:underline"
          onClick={(e) => e.stopPropagation()}
          aria-label={`Request ${r.id} at ${timeFormat.format(new Date(r.started_at))}`}
        >
          <time dateTime={r.started_at}>{timeFormat.format(new Date(r.started_at))}</time>
        </Link>
      </td>
      <td className="whitespace-nowrap px-3 py-2">
        <Badge tone={statusTone(r.status, r.outcome)}>{r.status}</Badge>
        {r.error_class ? <span className="ml-2 text-xs text-slate-600">{r.error_class}</span> : r.outcome !== "success" ? <span className="ml-2 text-xs text-slate-600">{r.outcome}</span> : null}
      </td>
      <td className="max-w-48 truncate whitespace-nowrap px-3 py-2" title={r.upstream_model ? `${r.model} → ${r.upstream_model}` : r.model}>
        <span className="font-medium text-slate-900">{r.model}</span>
        {r.cache_hit ? <Badge tone="brand" className="ml-1.5">cache</Badge> : null}
      </td>
      <td className="max-w-48 truncate whitespace-nowrap px-3 py-2 text-slate-700">
        {r.deployment_id ? lookups.deploymentName(r.deployment_id) : "—"}
        {r.provider ? <span className="ml-1 text-xs text-slate-500">({r.provider})</span> : null}
      </td>
      <td className="max-w-40 truncate whitespace-nowrap px-3 py-2 text-slate-700">{lookups.keyName(r.key_id)}</td>
      <td className="whitespace-nowrap px-3 py-2 text-right tabular-nums">
        {formatInt(r.prompt_tokens)} / {formatInt(r.completion_tokens)}
        {r.tokens_estimated ? <span className="text-slate-400" title="Estimated"> ~</span> : null}
      </td>
      <td className="whitespace-nowrap px-3 py-2 text-right tabular-nums">{formatUsd(r.cost_usd)}</td>
      <td className="whitespace-nowrap px-3 py-2 text-right tabular-nums">{wholeMs(r.latency_ms)}</td>
      <td className="whitespace-nowrap px-3 py-2 text-right tabular-nums">{wholeMs(r.ttft_ms)}</td>
      <td className="max-w-56 truncate whitespace-nowrap px-3 py-2">
        {tags.slice(0, 3).map(([k, v]) => (
          <Badge key={k} className="mr-1">
            {k}={v}
          </Badge>
        ))}
        {tags.length > 3 ? <span className="text-xs text-slate-500">+{tags.length - 3}</span> : null}
      </td>
    </tr>
  );
}

function Filters({ search, lookups, onChange }: { search: RequestsSearch; lookups: Lookups; onChange: (patch: Partial<RequestsSearch>) => void }) {
  const id = useId();
  const statuses = search.status && !STATUSES.includes(search.status) ? [...STATUSES, search.status] : STATUSES;
  const models = search.model && !lookups.modelNames.includes(search.model) ? [...lookups.modelNames, search.model] : lookups.modelNames;
  const keyKnown = !search.key_id || lookups.keys.some((k) => k.id === search.key_id);
  const any = hasRequestFilters(search);
  return (
    <>
      <div className="space-y-1.5">
        <label htmlFor={`${id}-o`} className="block text-xs font-medium text-slate-600">
          Outcome
        </label>
        <NativeSelect id={`${id}-o`} className="w-40" value={search.outcome ?? ""} onChange={(e) => onChange({ outcome: (e.target.value || undefined) as Outcome | undefined })}>
          <option value="">All</option>
          {OUTCOMES.map((o) => (
            <option key={o} value={o}>
              {OUTCOME_LABEL[o]}
            </option>
          ))}
        </NativeSelect>
      </div>
      <div className="space-y-1.5">
        <label htmlFor={`${id}-s`} className="block text-xs font-medium text-slate-600">
          Status
        </label>
        <NativeSelect id={`${id}-s`} className="w-28" value={search.status ?? ""} onChange={(e) => onChange({ status: e.target.value ? Number(e.target.value) : undefined })}>
          <option value="">All</option>
          {statuses.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </NativeSelect>
      </div>
      <div className="space-y-1.5">
        <label htmlFor={`${id}-m`} className="block text-xs font-medium text-slate-600">
          Model
        </label>
        <NativeSelect id={`${id}-m`} className="w-40" value={search.model ?? ""} onChange={(e) => onChange({ model: e.target.value || undefined })}>
          <option value="">All</option>
          {models.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </NativeSelect>
      </div>
      <div className="space-y-1.5">
        <label htmlFor={`${id}-k`} className="block text-xs font-medium text-slate-600">
          API key
        </label>
        <NativeSelect id={`${id}-k`} className="w-40" value={search.key_id ?? ""} onChange={(e) => onChange({ key_id: e.target.value || undefined })}>
          <option value="">All</option>
          {lookups.keys.map((k) => (
            <option key={k.id} value={k.id}>
              {k.name}
            </option>
          ))}
          {keyKnown ? null : <option value={search.key_id}>{search.key_id}</option>}
        </NativeSelect>
      </div>
      <TagFilter value={search.tag} onChange={(tag) => onChange({ tag })} />
      {any ? (
        <Button variant="ghost" size="sm" className="h-9 self-end" onClick={() => onChange({ outcome: undefined, status: undefined, model: undefined, key_id: undefined, tag: undefined })}>
          <X aria-hidden /> Clear filters
        </Button>
      ) : null}
    </>
  );
}
