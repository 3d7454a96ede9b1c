import { useEffect, useRef, useState } from "react";
import { Link } from "@tanstack/react-router";
import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import { z } from "zod";
import { AlertTriangle, KeyRound, Send, Square } from "lucide-react";
import { $api, type Schemas } from "@/api/client";
import { ApiError, errorMessage } from "@/api/errors";
import { canWrite, useSession } from "@/auth/useSession";
import { useGatewayBaseUrl } from "@/lib/gateway";
import { formatDateTime, formatInt, formatMs, formatUsd } from "@/lib/format";
import { PageHeader } from "@/components/ui/page-header";
import { Card, CardBody, CardHeader } from "@/components/ui/card";
import { Field, FormError } from "@/components/ui/field";
import { Input, NativeSelect, Textarea } from "@/components/ui/input";
import { Button, buttonVariants } from "@/components/ui/button";
import { Empty, ErrorState, Loading } from "@/components/states";
import { RequestLink } from "@/features/onboarding/RequestLink";
import { describeGatewayError, GatewayError, streamChat, type ServedBy, type Usage } from "./gateway";
import { currentPlaygroundKey, forgetPlaygroundKey, playgroundKey, PLAYGROUND_KEY_NAME } from "./playgroundKey";
import { TeamOptions } from "@/features/teams/TeamOptions";

const optionalNumber = (max: number, label: string, integer: boolean) =>
  z
    .string()
    .trim()
    .refine((v) => v === "" || (integer ? /^\d+$/.test(v) : /^\d*\.?\d+$/.test(v)), integer ? "Enter a whole number" : "Enter a number")
    .refine((v) => v === "" || (Number(v) <= max && (!integer || Number(v) >= 1)), `${label}: ${integer ? 1 : 0} to ${max}`);

const schema = z.object({
  model: z.string().min(1, "Pick a model or a route"),
  team_id: z.string(),
  system: z.string().max(100_000, "At most 100 000 characters"),
  prompt: z.string().trim().min(1, "Write a message to send").max(100_000, "At most 100 000 characters"),
  temperature: optionalNumber(2, "Temperature", false),
  max_tokens: optionalNumber(1_000_000, "Max tokens", true),
});
type PlaygroundForm = z.infer<typeof schema>;

type Phase = "idle" | "starting" | "streaming" | "done" | "stopped" | "error";

interface Run {
  phase: Phase;
  text: string;
  servedBy: ServedBy | null;
  usage: Usage | null;
  ttftMs: number | null;
  totalMs: number | null;
  error: { title: string; detail: string; requestId: string | null } | null;
}

const IDLE: Run = { phase: "idle", text: "", servedBy: null, usage: null, ttftMs: null, totalMs: null, error: null };

function Stat({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <div className="min-w-0">
      <dt className="text-xs text-slate-500">{label}</dt>
      <dd className="truncate text-sm font-medium text-slate-900">{children}</dd>
    </div>
  );
}

type ModelDto = Schemas["ModelDto"];

export function PlaygroundPage() {
  const models = $api.useQuery("get", "/api/v1/models");
  const routes = $api.useQuery("get", "/api/v1/routes");
  const modelNames = [...new Set((models.data?.data ?? []).filter((m) => m.mode !== "embedding").map((m) => m.name))];
  const routeNames = (routes.data?.data ?? []).map((r) => r.name).filter((n) => !modelNames.includes(n));
  return (
    <>
      <PageHeader
        title="Playground"
        description="Send a chat request through the gateway and see what served it, how fast, and what it cost."
      />
      {models.isLoading || routes.isLoading ? (
        <Card>
          <Loading label="Loading models" />
        </Card>
      ) : models.isError || routes.isError ? (
        <Card>
          <ErrorState error={models.error ?? routes.error} onRetry={() => void Promise.all([models.refetch(), routes.refetch()])} />
        </Card>
      ) : modelNames.length === 0 && routeNames.length === 0 ? (
        <Card>
          <Empty
            title="No models to try yet"
            description="Add a provider and a model first (the built-in mock works offline)."
            action={
              <Link to="/" className={buttonVariants()}>
                Go to the setup checklist
              </Link>
            }
          />
        </Card>
      ) : (
        <Playground modelNames={modelNames} routeNames={routeNames} deployments={models.data?.data ?? []} />
      )}
    </>
  );
}

function Playground({ modelNames, routeNames, deployments }: { modelNames: string[]; routeNames: string[]; deployments: ModelDto[] }) {
  const { role } = useSession();
  const writable = canWrite(role);
  const isMember = role === "member";
  const baseUrl = useGatewayBaseUrl();
  const queryClient = useQueryClient();
  const teams = $api.useQuery("get", "/api/v1/teams", {}, { enabled: isMember });
  const [run, setRun] = useState<Run>(IDLE);
  const [formError, setFormError] = useState<string | null>(null);
  const [keyInfo, setKeyInfo] = useState(currentPlaygroundKey);
  const abort = useRef<AbortController | null>(null);
  // Leaving the page stops a running stream (the gateway sees the client go away).
  useEffect(() => () => abort.current?.abort(), []);

  const form = useForm<PlaygroundForm>({
    resolver: zodResolver(schema),
    defaultValues: { model: modelNames[0] ?? routeNames[0] ?? "", team_id: "", system: "", prompt: "", temperature: "", max_tokens: "" },
  });

  const requestId = run.servedBy?.requestId ?? null;
  const finished = run.phase === "done" || run.phase === "stopped";
  // Usage is ingested asynchronously (within a second or two): retry while the request is unknown.
  const detail = $api.useQuery(
    "get",
    "/api/v1/requests/{id}",
    { params: { path: { id: requestId ?? "" } } },
    {
      enabled: requestId !== null && finished,
      retry: (count, err) => err instanceof ApiError && err.status === 404 && count < 20,
      retryDelay: 500,
      placeholderData: undefined,
      staleTime: Infinity,
    },
  );
  const cost = detail.data && detail.data.id === requestId ? detail.data : null;

  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    if (isMember && !v.team_id && !currentPlaygroundKey()) {
      form.setError("team_id", { message: "Members create keys for one of their teams" });
      return;
    }
    const controller = new AbortController();
    abort.current = controller;
    setRun({ ...IDLE, phase: "starting" });
    let key;
    try {
      const hadKey = currentPlaygroundKey() !== null;
      key = await playgroundKey(v.team_id || undefined);
      setKeyInfo(key);
      if (!hadKey) await queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/keys"] });
    } catch (err) {
      setRun(IDLE);
      setFormError(`Could not create the playground key: ${errorMessage(err)}`);
      return;
    }
    const messages = [
      ...(v.system.trim() ? [{ role: "system" as const, content: v.system }] : []),
      { role: "user" as const, content: v.prompt },
    ];
    try {
      const res = await streamChat(
        baseUrl,
        key.secret,
        {
          model: v.model,
          messages,
          ...(v.temperature !== "" ? { temperature: Number(v.temperature) } : {}),
          ...(v.max_tokens !== "" ? { max_tokens: Number(v.max_tokens) } : {}),
        },
        {
          signal: controller.signal,
          onStart: (servedBy) => setRun((r) => ({ ...r, phase: "streaming", servedBy })),
          onDelta: (_d, text) => setRun((r) => ({ ...r, text })),
          onUsage: (usage) => setRun((r) => ({ ...r, usage })),
        },
      );
      setRun({
        phase: res.aborted ? "stopped" : "done",
        text: res.text,
        servedBy: res.servedBy,
        usage: res.usage,
        ttftMs: res.ttftMs,
        totalMs: res.totalMs,
        error: null,
      });
    } catch (err) {
      if (err instanceof GatewayError && err.status === 401) {
        forgetPlaygroundKey();
        setKeyInfo(null);
      }
      if (controller.signal.aborted) {
        setRun((r) => ({ ...r, phase: "stopped" }));
      } else {
        const d = describeGatewayError(err);
        setRun((r) => ({ ...r, phase: "error", error: { ...d, requestId: err instanceof GatewayError ? err.requestId : null } }));
      }
    } finally {
      abort.current = null;
    }
  });

  const busy = run.phase === "starting" || run.phase === "streaming";
  const deploymentName = (id: string | null | undefined) => {
    if (!id) return "—";
    const m = deployments.find((d) => d.id === id);
    return m ? `${m.name} (${m.upstream_model})` : id;
  };

  return (
    <div className="grid grid-cols-1 gap-6 lg:grid-cols-[minmax(0,24rem)_minmax(0,1fr)]">
      <Card>
        <CardHeader title="Request" />
        <CardBody>
          <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label="Playground request">
            <FormError message={formError} />
            <Field
              label="Model or route"
              error={form.formState.errors.model?.message}
              description="A route is called by its name, like a model."
            >
              <NativeSelect {...form.register("model")}>
                {modelNames.length ? (
                  <optgroup label="Models">
                    {modelNames.map((n) => (
                      <option key={`m-${n}`} value={n}>
                        {n}
                      </option>
                    ))}
                  </optgroup>
                ) : null}
                {routeNames.length ? (
                  <optgroup label="Routes">
                    {routeNames.map((n) => (
                      <option key={`r-${n}`} value={n}>
                        {n}
                      </option>
                    ))}
                  </optgroup>
                ) : null}
              </NativeSelect>
            </Field>
            <Field label="System prompt" error={form.formState.errors.system?.message}>
              <Textarea rows={2} placeholder="You are a helpful assistant." {...form.register("system")} />
            </Field>
            <Field label="Message" error={form.formState.errors.prompt?.message}>
              <Textarea
                rows={4}
                placeholder="Hello, Switchyard!"
                {...form.register("prompt")}
                onKeyDown={(e) => {
                  if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) {
                    e.preventDefault();
                    if (!busy) void onSubmit();
                  }
                }}
              />
            </Field>
            <div className="grid grid-cols-2 gap-3">
              <Field label="Temperature" error={form.formState.errors.temperature?.message}>
                <Input inputMode="decimal" placeholder="Default" {...form.register("temperature")} />
              </Field>
              <Field label="Max tokens" error={form.formState.errors.max_tokens?.message}>
                <Input inputMode="numeric" placeholder="Default" {...form.register("max_tokens")} />
              </Field>
            </div>
            {isMember && !keyInfo ? (
              <Field label="Team for the playground key" error={form.formState.errors.team_id?.message}>
                <NativeSelect {...form.register("team_id")}>
                  <option value="">Choose a team…</option>
                  <TeamOptions teams={teams.data?.data} />
                </NativeSelect>
              </Field>
            ) : null}
            <div className="flex flex-wrap items-center gap-2">
              {busy ? (
                <Button variant="secondary" onClick={() => abort.current?.abort()}>
                  <Square aria-hidden /> Stop
                </Button>
              ) : (
                <Button type="submit" disabled={!writable}>
                  <Send aria-hidden /> Send
                </Button>
              )}
              <span className="text-xs text-slate-500">Ctrl/⌘ + Enter</span>
            </div>
            <p className="flex gap-2 rounded-md bg-slate-50 px-3 py-2 text-xs text-slate-600">
              <KeyRound className="mt-0.5 size-3.5 shrink-0" aria-hidden />
              {!writable ? (
                <span>Viewers cannot send from the playground: it needs a temporary API key, and viewers cannot create keys.</span>
              ) : keyInfo ? (
                <span>
                  Sending with the temporary key “{PLAYGROUND_KEY_NAME}” (<span className="font-mono">{keyInfo.prefix}</span>, chat only),
                  kept in this tab's memory only; it expires {formatDateTime(new Date(keyInfo.expiresAt).toISOString())}.
                </span>
              ) : (
                <span>
                  The first send creates a temporary key “{PLAYGROUND_KEY_NAME}” (chat only, expires in 1 hour). It is kept in this tab's
                  memory only (never stored) and reused until you leave or reload.
                </span>
              )}
            </p>
          </form>
        </CardBody>
      </Card>
      <Card aria-labelledby="playground-answer">
        <CardHeader
          title={<span id="playground-answer">Answer</span>}
          actions={
            <span role="status" aria-live="polite" className="text-sm text-slate-500">
              {run.phase === "starting"
                ? "Sending…"
                : run.phase === "streaming"
                  ? "Streaming…"
                  : run.phase === "done"
                    ? "Done"
                    : run.phase === "stopped"
                      ? "Stopped"
                      : run.phase === "error"
                        ? "Failed"
                        : ""}
            </span>
          }
        />
        <CardBody className="space-y-4">
          {run.error ? (
            <div role="alert" className="flex gap-2 rounded-md border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800">
              <AlertTriangle className="mt-0.5 size-4 shrink-0" aria-hidden />
              <div>
                <p className="font-medium">{run.error.title}</p>
                <p>{run.error.detail}</p>
                {run.error.requestId ? <p className="mt-1 font-mono text-xs text-red-700">request {run.error.requestId}</p> : null}
              </div>
            </div>
          ) : null}
          <div
            aria-label="Streamed answer"
            aria-busy={busy}
            tabIndex={0}
            className="min-h-40 whitespace-pre-wrap break-words rounded-md border border-slate-200 bg-slate-50 px-3 py-2 text-sm text-slate-900"
            data-testid="playground-output"
          >
            {run.text || (run.phase === "idle" ? <span className="text-slate-500">The answer streams here.</span> : null)}
            {run.phase === "streaming" ? (
              <span className="ml-0.5 inline-block h-4 w-1.5 animate-pulse bg-slate-500 align-text-bottom" aria-hidden />
            ) : null}
          </div>
          {run.phase !== "idle" && run.phase !== "starting" && run.servedBy ? (
            <dl className="grid grid-cols-2 gap-x-4 gap-y-3 sm:grid-cols-3" aria-label="Request details">
              <Stat label="Time to first token">{formatMs(run.ttftMs)}</Stat>
              <Stat label="Total time">{run.totalMs == null ? "…" : formatMs(run.totalMs)}</Stat>
              <Stat label="Tokens">
                {run.usage
                  ? `${formatInt(run.usage.prompt_tokens)} in · ${formatInt(run.usage.completion_tokens)} out`
                  : run.phase === "streaming"
                    ? "…"
                    : "—"}
              </Stat>
              <Stat label="Deployment">
                <span title={run.servedBy.deployment ?? undefined}>{deploymentName(run.servedBy.deployment)}</span>
              </Stat>
              <Stat label="Provider">{run.servedBy.provider ?? "—"}</Stat>
              <Stat label="Region">{run.servedBy.region ?? "—"}</Stat>
              <Stat label="Route">{run.servedBy.route ?? "—"}</Stat>
              <Stat label="Cost">
                {cost ? formatUsd(cost.cost_usd) : detail.isError ? "Not recorded yet" : finished && requestId ? "Metering…" : "—"}
              </Stat>
              <Stat label="Request">
                {requestId ? (
                  <RequestLink id={requestId} className="font-mono text-brand-700 hover:underline">
                    {requestId.slice(0, 8)}…
                  </RequestLink>
                ) : (
                  "—"
                )}
              </Stat>
            </dl>
          ) : null}
        </CardBody>
      </Card>
    </div>
  );
}
