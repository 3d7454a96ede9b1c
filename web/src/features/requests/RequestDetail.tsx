import { useState, type ReactNode } from "react";
import { Link } from "@tanstack/react-router";
import { ArrowLeft } from "lucide-react";
import { $api, type Schemas } from "@/api/client";
import { ApiError } from "@/api/errors";
import { PageHeader } from "@/components/ui/page-header";
import { Card, CardBody, CardHeader } from "@/components/ui/card";
import { Badge } from "@/components/ui/badge";
import { Button, buttonVariants } from "@/components/ui/button";
import { CopyButton } from "@/components/ui/copy-button";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatDateTime, formatInt, formatUsd } from "@/lib/format";
import { useLookups, type Lookups } from "@/features/analytics/lookups";
import { wholeMs } from "./format";
import { statusTone, tagEntries } from "./search";

export type RequestDetailDto = Schemas["RequestDetail"];

/** Payload text longer than this is collapsed until the reader asks for all of it. */
export const PAYLOAD_PREVIEW_CHARS = 4_000;

export function RequestDetail({ requestId, backSearch }: { requestId: string; backSearch?: object }) {
  const lookups = useLookups();
  const q = $api.useQuery("get", "/api/v1/requests/{id}", { params: { path: { id: requestId } } }, { placeholderData: undefined });
  const back = (
    <Link to="/requests" search={(backSearch ?? {}) as never} className={buttonVariants({ variant: "ghost", size: "sm" })}>
      <ArrowLeft aria-hidden /> Request log
    </Link>
  );
  if (q.isPending) {
    return (
      <>
        <div className="mb-2">{back}</div>
        <PageHeader title="Request" />
        <Card>
          <Loading label="Loading the request" rows={6} />
        </Card>
      </>
    );
  }
  if (q.isError) {
    const notFound = q.error instanceof ApiError && (q.error.status === 404 || q.error.status === 400);
    return (
      <>
        <div className="mb-2">{back}</div>
        <PageHeader title="Request" />
        <Card>
          {notFound ? (
            <Empty title="Request not found" description="It may be outside the log's retention, or belong to another organization." />
          ) : (
            <ErrorState error={q.error} onRetry={() => void q.refetch()} title="Could not load this request" />
          )}
        </Card>
      </>
    );
  }
  const r = q.data;
  return (
    <>
      <div className="mb-2">{back}</div>
      <PageHeader
        title={
          <span className="flex flex-wrap items-center gap-2">
            Request <Badge tone={statusTone(r.status, r.outcome)}>{r.status}</Badge>
            {r.error_class ? <Badge tone="danger">{r.error_class}</Badge> : null}
          </span>
        }
        description={
          <span className="flex flex-wrap gap-x-2">
            <span className="break-all font-mono text-xs">{r.id}</span>
            <span className="text-xs">{formatDateTime(r.started_at)}</span>
          </span>
        }
        actions={<CopyButton value={r.id} label="Copy id" />}
      />
      <div className="grid gap-4 lg:grid-cols-3">
        <Card className="lg:col-span-2">
          <CardHeader title="Summary" />
          <CardBody>
            <Summary r={r} lookups={lookups} />
          </CardBody>
        </Card>
        <Card>
          <CardHeader title="Attempts" description={`${r.attempts.length} upstream attempt${r.attempts.length === 1 ? "" : "s"}, in order`} />
          <CardBody>
            <Attempts r={r} lookups={lookups} />
          </CardBody>
        </Card>
      </div>
      <Card className="mt-4">
        <CardHeader
          title="Payload"
          description={r.payload ? (r.payload.truncated ? "Stored payload (cut at 64 KiB)." : "Stored payload.") : undefined}
          actions={r.payload?.truncated ? <Badge tone="warning">truncated</Badge> : undefined}
        />
        {r.payload ? (
          <CardBody className="grid gap-4 lg:grid-cols-2">
            <PayloadText label="Request" text={r.payload.request} />
            <PayloadText label="Response" text={r.payload.response} />
          </CardBody>
        ) : (
          <Empty
            title="No payload stored"
            description="Prompts and answers are kept only while the organization stores payloads (Settings)."
            action={
              <Link to="/settings" className={buttonVariants({ variant: "secondary", size: "sm" })}>
                Open settings
              </Link>
            }
          />
        )}
      </Card>
    </>
  );
}

function Item({ label, children }: { label: string; children: ReactNode }) {
  return (
    <div className="min-w-0">
      <dt className="text-xs font-medium uppercase tracking-wide text-slate-500">{label}</dt>
      <dd className="mt-0.5 break-words text-sm text-slate-900">{children}</dd>
    </div>
  );
}

function Summary({ r, lookups }: { r: RequestDetailDto; lookups: Lookups }) {
  const tags = tagEntries(r.tags);
  return (
    <dl className="grid grid-cols-2 gap-x-6 gap-y-4 sm:grid-cols-3">
      <Item label="Status">
        {r.status} · {r.outcome}
      </Item>
      <Item label="Error">{r.error_class ? `${r.error_class}${r.error_code ? ` (${r.error_code})` : ""}` : "—"}</Item>
      <Item label="Started">
        <time dateTime={r.started_at} title={r.started_at}>
          {formatDateTime(r.started_at)}
        </time>
      </Item>
      <Item label="Model requested">{r.model}</Item>
      <Item label="Model served">{r.upstream_model ?? "—"}</Item>
      <Item label="Deployment">
        {r.deployment_id ? lookups.deploymentName(r.deployment_id) : "—"}
        {r.provider ? <span className="text-slate-500"> ({r.provider})</span> : null}
      </Item>
      <Item label="Route">{r.route ?? "—"}</Item>
      <Item label="Region">{r.region ?? "—"}</Item>
      <Item label="Endpoint">
        {r.endpoint}
        {r.stream ? " · stream" : ""}
      </Item>
      <Item label="API key">{lookups.keyName(r.key_id)}</Item>
      <Item label="Team">{r.team_id ? lookups.teamName(r.team_id) : "—"}</Item>
      <Item label="Tokens in / out">
        {formatInt(r.prompt_tokens)} / {formatInt(r.completion_tokens)}
        {r.tokens_estimated ? <span className="text-slate-500"> (estimated)</span> : null}
        {r.cache_read_tokens || r.cache_write_tokens ? (
          <span className="block text-xs text-slate-500">
            prompt cache: {formatInt(r.cache_read_tokens)} read, {formatInt(r.cache_write_tokens)} written
          </span>
        ) : null}
      </Item>
      <Item label="Cost">{formatUsd(r.cost_usd)}</Item>
      <Item label="Latency">{wholeMs(r.latency_ms)}</Item>
      <Item label="Time to first token">{wholeMs(r.ttft_ms)}</Item>
      <Item label="Cache hit">{r.cache_hit ? "Yes (gateway response cache)" : "No"}</Item>
      <div className="col-span-2 sm:col-span-3">
        <dt className="text-xs font-medium uppercase tracking-wide text-slate-500">Guardrails</dt>
        <dd className="mt-1 flex flex-wrap gap-1" aria-label="Guardrail decisions">
          {r.guardrails.length === 0 ? (
            <span className="text-sm text-slate-500">None</span>
          ) : (
            r.guardrails.map((d) => (
              <Badge key={`${d.rule}:${d.action}`} tone={d.action === "blocked" ? "danger" : "neutral"}>
                {d.rule} · {d.action}
                {d.count > 1 ? ` ×${d.count}` : ""}
              </Badge>
            ))
          )}
        </dd>
      </div>
      <div className="col-span-2 sm:col-span-3">
        <dt className="text-xs font-medium uppercase tracking-wide text-slate-500">Tags</dt>
        <dd className="mt-1 flex flex-wrap gap-1">
          {tags.length === 0 ? <span className="text-sm text-slate-500">None</span> : tags.map(([k, v]) => <Badge key={k}>{k}={v}</Badge>)}
        </dd>
      </div>
    </dl>
  );
}

function Attempts({ r, lookups }: { r: RequestDetailDto; lookups: Lookups }) {
  if (r.attempts.length === 0) return <p className="text-sm text-slate-500">No upstream attempt (refused before routing).</p>;
  return (
    <ol className="relative space-y-4 border-l border-slate-200 pl-5" aria-label="Attempts">
      {r.attempts.map((a, i) => {
        const last = i === r.attempts.length - 1;
        const ok = a.outcome === "success";
        return (
          <li key={a.number} className="relative">
            <span
              className={`absolute -left-[27px] top-1 size-3 rounded-full ring-4 ring-white ${ok ? "bg-emerald-500" : a.outcome === "failed" || a.outcome === "error" ? "bg-red-500" : "bg-amber-500"}`}
              aria-hidden
            />
            <p className="text-sm font-medium text-slate-900">
              Attempt {a.number}: {a.deployment_id ? lookups.deploymentName(a.deployment_id) : "no deployment"}
              {last && r.provider ? <span className="font-normal text-slate-500"> ({r.provider})</span> : null}
            </p>
            <p className="mt-0.5 flex flex-wrap items-center gap-1.5 text-xs text-slate-600">
              <Badge tone={ok ? "success" : a.outcome === "failed" || a.outcome === "error" ? "danger" : "warning"}>{a.outcome}</Badge>
              {a.status != null ? <span>HTTP {a.status}</span> : null}
              {a.region ? <span>· {a.region}</span> : null}
              <span>· {a.latency_ms != null ? wholeMs(a.latency_ms) : last ? `${wholeMs(r.latency_ms)} total` : "—"}</span>
            </p>
            {a.error_class || a.error_code ? (
              <p className="mt-0.5 text-xs text-red-700">
                {a.error_class}
                {a.error_code ? ` (${a.error_code})` : ""}
              </p>
            ) : null}
          </li>
        );
      })}
    </ol>
  );
}

/** JSON pretty-printed when it parses (a cut payload will not); always text, never HTML. */
export function prettyPayload(text: string): string {
  const t = text.trim();
  if (!(t.startsWith("{") || t.startsWith("["))) return text;
  try {
    return JSON.stringify(JSON.parse(t), null, 2);
  } catch {
    return text;
  }
}

function PayloadText({ label, text }: { label: string; text: string }) {
  const [all, setAll] = useState(false);
  const pretty = prettyPayload(text);
  const long = pretty.length > PAYLOAD_PREVIEW_CHARS;
  const shown = long && !all ? `${pretty.slice(0, PAYLOAD_PREVIEW_CHARS)}…` : pretty;
  return (
    <section aria-label={`${label} payload`} className="min-w-0">
      <div className="mb-1.5 flex items-center justify-between gap-2">
        <h3 className="text-sm font-semibold text-slate-800">{label}</h3>
        <span className="text-xs text-slate-500">{formatInt(text.length)} characters</span>
      </div>
      {text ? (
        <pre tabIndex={0} className="max-h-96 overflow-auto whitespace-pre-wrap break-all rounded-md border border-slate-200 bg-slate-50 p-3 font-mono text-xs text-slate-800">
          {shown}
        </pre>
      ) : (
        <p className="text-sm text-slate-500">Empty</p>
      )}
      {long ? (
        <Button variant="link" size="sm" onClick={() => setAll((v) => !v)}>
          {all ? "Collapse" : `Show all (${Math.ceil(pretty.length / 1024)} KB)`}
        </Button>
      ) : null}
    </section>
  );
}
