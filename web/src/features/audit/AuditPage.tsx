import { useInfiniteQuery } from "@tanstack/react-query";
import { ChevronRight, FileClock, FilterX } from "lucide-react";
import { useId, useState } from "react";
import { api, $api, type Schemas } from "@/api/client";
import { canManage, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card } from "@/components/ui/card";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Input, NativeSelect } from "@/components/ui/input";
import { Empty, ErrorState, Loading } from "@/components/states";
import { cn } from "@/lib/cn";
import { formatDateTime, formatRelative } from "@/lib/format";
import {
  ACTIONS, OBJECT_KINDS, auditQuery, changedFields, fromLocalInput, kindLabel, toLocalInput, type AuditSearch,
} from "./search";

type AuditEvent = Schemas["AuditEventDto"];
type Member = Schemas["MemberDto"];
const PAGE = 50;

const ACTION_TONE: Record<string, "success" | "brand" | "danger" | "warning" | "neutral"> = {
  create: "success",
  update: "brand",
  delete: "danger",
  revoke: "danger",
  rotate: "warning",
};

function objectName(e: AuditEvent): string | null {
  const obj = (e.after ?? e.before ?? null) as Record<string, unknown> | null;
  if (!obj) return null;
  for (const k of ["name", "email", "prefix"]) {
    const v = obj[k];
    if (typeof v === "string" && v) return v;
  }
  if (e.object_kind === "budget" && typeof obj.scope === "string") {
    const limit = typeof obj.limit_usd === "string" ? ` $${obj.limit_usd}` : "";
    const period = typeof obj.period === "string" ? ` ${obj.period}` : "";
    return `${obj.scope === "tenant" ? "organization" : obj.scope}${period}${limit}`;
  }
  return null;
}

function Json({ label, value }: { label: string; value: unknown }) {
  return (
    <div className="min-w-0">
      <p className="mb-1 text-xs font-medium uppercase tracking-wide text-slate-500">{label}</p>
      {value == null ? (
        <p className="text-sm text-slate-500">—</p>
      ) : (
        <pre className="max-h-80 overflow-auto rounded-md bg-slate-950 p-3 text-xs leading-relaxed text-slate-100">{JSON.stringify(value, null, 2)}</pre>
      )}
    </div>
  );
}

function short(v: unknown): string {
  if (v === undefined) return "—";
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 79)}…` : s;
}

function EventDetails({ e }: { e: AuditEvent }) {
  const before = (e.before ?? null) as Record<string, unknown> | null;
  const after = (e.after ?? null) as Record<string, unknown> | null;
  const changed = changedFields(before, after);
  return (
    <div className="space-y-4 border-t border-slate-100 bg-slate-50/60 px-4 py-4">
      <dl className="grid gap-x-6 gap-y-1 text-xs text-slate-600 sm:grid-cols-2">
        <div>
          <dt className="inline font-medium">Object id: </dt>
          <dd className="inline break-all font-mono">{e.object_id}</dd>
        </div>
        <div>
          <dt className="inline font-medium">Session: </dt>
          <dd className="inline break-all font-mono">{e.actor_session_id}</dd>
        </div>
        <div>
          <dt className="inline font-medium">At: </dt>
          <dd className="inline">{new Date(e.created_at).toISOString()}</dd>
        </div>
        <div>
          <dt className="inline font-medium">Event: </dt>
          <dd className="inline font-mono">#{e.id}</dd>
        </div>
      </dl>
      {changed.length > 0 ? (
        <div>
          <p className="mb-1 text-xs font-medium uppercase tracking-wide text-slate-500">Changed</p>
          <ul className="space-y-1 text-sm">
            {changed.map((k) => (
              <li key={k} className="break-all">
                <span className="font-mono font-medium text-slate-800">{k}</span>:{" "}
                <span className="font-mono text-red-700 line-through decoration-red-300">{short(before?.[k])}</span>{" → "}
                <span className="font-mono text-emerald-800">{short(after?.[k])}</span>
              </li>
            ))}
          </ul>
        </div>
      ) : null}
      {before || after ? (
        <div className="grid gap-4 lg:grid-cols-2">
          <Json label="Before" value={before} />
          <Json label="After" value={after} />
        </div>
      ) : (
        <p className="text-sm text-slate-500">No details were recorded for this event.</p>
      )}
    </div>
  );
}

function EventRow({ e, actor }: { e: AuditEvent; actor: string }) {
  const [open, setOpen] = useState(false);
  const detailsId = useId();
  const name = objectName(e);
  return (
    <li>
      <button
        type="button"
        aria-expanded={open}
        aria-controls={detailsId}
        onClick={() => setOpen((o) => !o)}
        className="flex w-full flex-wrap items-center gap-x-3 gap-y-1 px-4 py-3 text-left text-sm hover:bg-slate-50 focus-visible:outline-2 focus-visible:-outline-offset-2 focus-visible:outline-brand-600"
      >
        <ChevronRight className={cn("size-4 shrink-0 text-slate-400 transition-transform", open && "rotate-90")} aria-hidden />
        <Badge tone={ACTION_TONE[e.action] ?? "neutral"} className="w-16 justify-center">
          {e.action}
        </Badge>
        <span className="min-w-0 flex-1">
          <span className="font-medium text-slate-900">{kindLabel(e.object_kind)}</span>
          {name ? <span className="text-slate-700"> · {name}</span> : null}
          <span className="block truncate text-xs text-slate-500">
            by {actor} <span className="text-slate-500">({e.actor_role})</span>
          </span>
        </span>
        <time dateTime={e.created_at} title={formatDateTime(e.created_at)} className="ml-7 shrink-0 text-xs text-slate-500 sm:ml-0">
          {formatRelative(e.created_at)}
        </time>
      </button>
      <div id={detailsId} hidden={!open}>
        {open ? <EventDetails e={e} /> : null}
      </div>
    </li>
  );
}

function Filters({ search, onSearch, members }: { search: AuditSearch; onSearch: (next: AuditSearch) => void; members: Member[] }) {
  const set = (patch: Partial<AuditSearch>) => onSearch({ ...search, ...patch });
  const active = Object.values(search).some((v) => v !== undefined);
  const kinds = search.object_kind && !(search.object_kind in OBJECT_KINDS) ? { ...OBJECT_KINDS, [search.object_kind]: search.object_kind } : OBJECT_KINDS;
  return (
    <form role="search" aria-label="Filter the audit log" className="grid gap-3 border-b border-slate-100 p-4 sm:grid-cols-2 lg:grid-cols-5" onSubmit={(ev) => ev.preventDefault()}>
      <label className="space-y-1 text-sm">
        <span className="block font-medium text-slate-700">Actor</span>
        <NativeSelect value={search.actor_user_id ?? ""} onChange={(ev) => set({ actor_user_id: ev.target.value || undefined })}>
          <option value="">Anyone</option>
          {members.map((m) => (
            <option key={m.user_id} value={m.user_id}>
              {m.email}
            </option>
          ))}
          {search.actor_user_id && !members.some((m) => m.user_id === search.actor_user_id) ? (
            <option value={search.actor_user_id}>{search.actor_user_id}</option>
          ) : null}
        </NativeSelect>
      </label>
      <label className="space-y-1 text-sm">
        <span className="block font-medium text-slate-700">Action</span>
        <NativeSelect value={search.action ?? ""} onChange={(ev) => set({ action: (ev.target.value || undefined) as AuditSearch["action"] })}>
          <option value="">Any action</option>
          {ACTIONS.map((a) => (
            <option key={a} value={a}>
              {a}
            </option>
          ))}
        </NativeSelect>
      </label>
      <label className="space-y-1 text-sm">
        <span className="block font-medium text-slate-700">Resource</span>
        <NativeSelect value={search.object_kind ?? ""} onChange={(ev) => set({ object_kind: ev.target.value || undefined, object_id: undefined })}>
          <option value="">Any resource</option>
          {Object.entries(kinds).map(([k, label]) => (
            <option key={k} value={k}>
              {label}
            </option>
          ))}
        </NativeSelect>
      </label>
      <label className="space-y-1 text-sm">
        <span className="block font-medium text-slate-700">From</span>
        <Input type="datetime-local" value={toLocalInput(search.since)} onChange={(ev) => set({ since: fromLocalInput(ev.target.value) })} />
      </label>
      <label className="space-y-1 text-sm">
        <span className="block font-medium text-slate-700">To</span>
        <Input type="datetime-local" value={toLocalInput(search.until)} onChange={(ev) => set({ until: fromLocalInput(ev.target.value) })} />
      </label>
      {search.object_id || active ? (
        <div className="flex flex-wrap items-center gap-2 sm:col-span-2 lg:col-span-5">
          {search.object_id ? (
            <Badge tone="brand">
              Object <span className="font-mono">{search.object_id}</span>
            </Badge>
          ) : null}
          <Button variant="ghost" size="sm" onClick={() => onSearch({})}>
            <FilterX aria-hidden /> Clear filters
          </Button>
        </div>
      ) : null}
    </form>
  );
}

/** The audit log: who changed what and when, filtered through the API, newest first. */
export function AuditView({ search, onSearch }: { search: AuditSearch; onSearch: (next: AuditSearch) => void }) {
  const { role } = useSession();
  const allowed = canManage(role);
  const members = $api.useQuery("get", "/api/v1/members", undefined, { enabled: allowed });
  const query = auditQuery(search);
  const events = useInfiniteQuery({
    queryKey: ["get", "/api/v1/audit", { params: { query } }],
    enabled: allowed,
    initialPageParam: undefined as string | undefined,
    queryFn: async ({ pageParam, signal }) => {
      const { data } = await api.GET("/api/v1/audit", { params: { query: { ...query, limit: PAGE, ...(pageParam ? { cursor: pageParam } : {}) } }, signal });
      return data ?? { data: [] };
    },
    getNextPageParam: (last) => last.next_cursor ?? undefined,
    // A filter change is a new list: never show the previous filter's rows as this one's.
    placeholderData: undefined,
  });
  const memberList = members.data?.data ?? [];
  const emailOf = (id: string) => memberList.find((m) => m.user_id === id)?.email ?? `user ${id.slice(0, 8)}`;
  const rows = events.data?.pages.flatMap((p) => p.data) ?? [];
  const filtered = Object.values(search).some((v) => v !== undefined);

  return (
    <>
      <PageHeader title="Audit log" description="Every change made through the console or the control API: who, what, when, and the object before and after." />
      {!allowed ? (
        <Card>
          <Empty title="The audit log is for owners and admins" description="Ask an owner or admin of the organization for access." />
        </Card>
      ) : (
        <Card>
          <Filters search={search} onSearch={onSearch} members={memberList} />
          {events.isPending ? (
            <Loading label="Loading audit events" rows={5} />
          ) : events.isError ? (
            <ErrorState error={events.error} onRetry={() => void events.refetch()} title="Could not load the audit log" />
          ) : rows.length === 0 ? (
            <Empty
              icon={<FileClock className="size-8" />}
              title={filtered ? "No events match these filters" : "No events yet"}
              description={filtered ? "Try a wider time range or another actor, action or resource." : "Changes to keys, teams, budgets, providers and settings are recorded here."}
              action={
                filtered ? (
                  <Button variant="secondary" size="sm" onClick={() => onSearch({})}>
                    Clear filters
                  </Button>
                ) : undefined
              }
            />
          ) : (
            <>
              <ul className="divide-y divide-slate-100" aria-label="Audit events">
                {rows.map((e) => (
                  <EventRow key={e.id} e={e} actor={emailOf(e.actor_user_id)} />
                ))}
              </ul>
              <div className="flex items-center justify-between gap-2 border-t border-slate-100 px-4 py-3 text-xs text-slate-500">
                <span aria-live="polite">
                  {rows.length} {rows.length === 1 ? "event" : "events"}
                  {events.hasNextPage ? " shown" : ""}
                </span>
                {events.hasNextPage ? (
                  <Button variant="secondary" size="sm" loading={events.isFetchingNextPage} onClick={() => void events.fetchNextPage()}>
                    Load more
                  </Button>
                ) : null}
              </div>
            </>
          )}
        </Card>
      )}
    </>
  );
}
