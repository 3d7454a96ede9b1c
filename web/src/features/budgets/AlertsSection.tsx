import { useInfiniteQuery } from "@tanstack/react-query";
import { BellOff } from "lucide-react";
import { api, type Schemas } from "@/api/client";
import { Card, CardHeader } from "@/components/ui/card";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { Empty, ErrorState, Loading } from "@/components/states";
import { ResourceCard, ResourceCardList } from "@/components/ui/resource-card";
import { useNarrow } from "@/lib/useNarrow";
import { formatDateTime, formatRelative, formatUsd } from "@/lib/format";
import { scopeKind, scopeName, type ApiKey, type Team } from "./model";

type Alert = Schemas["AlertDto"];
const PAGE = 25;

export const ALERTS_KEY = ["get", "/api/v1/alerts"] as const;

function DeliveryBadge({ alert }: { alert: Alert }) {
  const d = alert.delivery;
  // No delivery: no webhook was configured when the threshold was crossed.
  if (!d) return <span className="text-slate-500">No webhook</span>;
  const tone = d.status === "delivered" ? "success" : d.status === "failed" ? "danger" : "warning";
  return (
    <span className="inline-flex flex-col gap-0.5">
      <span>
        <Badge tone={tone}>{d.status}</Badge>{" "}
        <span className="text-xs text-slate-500">
          {d.attempts} {d.attempts === 1 ? "attempt" : "attempts"}
        </span>
      </span>
      {d.last_error && d.status !== "delivered" ? (
        <span className="max-w-64 truncate text-xs text-red-700" title={d.last_error}>
          {d.last_error}
        </span>
      ) : null}
    </span>
  );
}

function BudgetName({ alert: a, teams, keys }: { alert: Alert; teams: readonly Team[]; keys: readonly ApiKey[] }) {
  return a.scope && a.scope_id ? (
    <>
      <span className="text-slate-500">{scopeKind(a.scope)} · </span>
      {scopeName({ scope: a.scope, scope_id: a.scope_id }, teams, keys)}
    </>
  ) : (
    <span className="text-slate-500">Deleted budget</span>
  );
}

/** Threshold crossings, newest first, with their webhook delivery (owners and admins). */
export function AlertsSection({ teams, keys }: { teams: readonly Team[]; keys: readonly ApiKey[] }) {
  const q = useInfiniteQuery({
    queryKey: [...ALERTS_KEY, { limit: PAGE }],
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam, signal }) => {
      const { data } = await api.GET("/api/v1/alerts", { params: { query: { limit: PAGE, ...(pageParam ? { before: pageParam } : {}) } }, signal });
      return data ?? { data: [] };
    },
    getNextPageParam: (last) => last.next_before ?? undefined,
  });
  const rows = q.data?.pages.flatMap((p) => p.data) ?? [];
  const narrow = useNarrow();
  return (
    <Card aria-labelledby="alerts-title">
      <CardHeader title={<span id="alerts-title">Alerts</span>} description="Each time a budget's spend crosses one of its thresholds in a period." />
      {q.isPending ? (
        <Loading label="Loading alerts" />
      ) : q.isError ? (
        <ErrorState error={q.error} onRetry={() => void q.refetch()} title="Could not load alerts" />
      ) : rows.length === 0 ? (
        <Empty
          icon={<BellOff className="size-8" />}
          title="No alerts yet"
          description="When a budget's spend reaches one of its alert thresholds, the crossing shows up here (and is POSTed to your webhook, when one is set)."
        />
      ) : (
        <>
          {narrow ? (
            <ResourceCardList label="Alerts">
              {rows.map((a) => (
                <ResourceCard
                  key={a.id}
                  title={<BudgetName alert={a} teams={teams} keys={keys} />}
                  badge={<Badge tone="warning">{a.threshold}%</Badge>}
                  fields={[
                    { label: "When", value: <span title={formatDateTime(a.created_at)}>{formatRelative(a.created_at)}</span> },
                    { label: "Spent / cap", value: `${formatUsd(a.spent_usd)} / ${formatUsd(a.limit_usd)}` },
                    { label: "Webhook", value: <DeliveryBadge alert={a} /> },
                  ]}
                />
              ))}
            </ResourceCardList>
          ) : (
          <Table>
            <THead>
              <tr>
                <TH>When</TH>
                <TH>Budget</TH>
                <TH className="text-right">Threshold</TH>
                <TH className="text-right">Spent / cap</TH>
                <TH>Webhook delivery</TH>
              </tr>
            </THead>
            <TBody>
              {rows.map((a) => (
                <TR key={a.id}>
                  <TD title={formatDateTime(a.created_at)}>{formatRelative(a.created_at)}</TD>
                  <TD>
                    <BudgetName alert={a} teams={teams} keys={keys} />
                  </TD>
                  <TD className="text-right tabular-nums">{a.threshold}%</TD>
                  <TD className="text-right tabular-nums">
                    {formatUsd(a.spent_usd)} / {formatUsd(a.limit_usd)}
                  </TD>
                  <TD>
                    <DeliveryBadge alert={a} />
                  </TD>
                </TR>
              ))}
            </TBody>
          </Table>
          )}
          {q.hasNextPage ? (
            <div className="flex justify-center border-t border-slate-100 p-3">
              <Button variant="secondary" size="sm" loading={q.isFetchingNextPage} onClick={() => void q.fetchNextPage()}>
                Load more
              </Button>
            </div>
          ) : null}
        </>
      )}
    </Card>
  );
}
