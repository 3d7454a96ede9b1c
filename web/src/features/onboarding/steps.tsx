import { useState } from "react";
import { Link } from "@tanstack/react-router";
import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import { toast } from "sonner";
import { z } from "zod";
import { Radio } from "lucide-react";
import { $api, api, type Schemas } from "@/api/client";
import { applyServerErrors, errorMessage } from "@/api/errors";
import { useGatewayBaseUrl } from "@/lib/gateway";
import { formatInt, formatMs, formatUsd, formatRelative } from "@/lib/format";
import { Button, buttonVariants } from "@/components/ui/button";
import { Field, FormError } from "@/components/ui/field";
import { Input, NativeSelect } from "@/components/ui/input";
import { Tabs, TabsContent, TabsList, TabsTrigger } from "@/components/ui/tabs";
import { CopyButton } from "@/components/ui/copy-button";
import { Badge } from "@/components/ui/badge";
import { SecretReveal } from "@/features/keys/SecretReveal";
import { rememberCreatedKey, useCreatedKey } from "./createdKey";
import { KEY_PLACEHOLDER, snippet, type SnippetLang } from "./snippets";
import { RequestLink } from "./RequestLink";
import { TeamOptions } from "@/features/teams/TeamOptions";

/** (a) The built-in mock provider and its "echo" model, in one click (README "Your first request"). */
export function ProviderStep({ canManage, providers }: { canManage: boolean; providers: Schemas["ProviderDto"][] }) {
  const queryClient = useQueryClient();
  const [busy, setBusy] = useState(false);
  const useMock = async () => {
    setBusy(true);
    try {
      // Reuse a "local-mock" provider from an earlier, half-finished attempt (its name is unique).
      const existing = providers.find((p) => p.name === "local-mock" && p.kind === "mock");
      const providerId =
        existing?.id ?? (await api.POST("/api/v1/providers", { body: { name: "local-mock", kind: "mock" } })).data?.id;
      if (!providerId) throw new Error("The provider was not created");
      await api.POST("/api/v1/models", {
        body: { name: "echo", provider_id: providerId, upstream_model: "mock-1", input_price_per_mtok: 1, output_price_per_mtok: 2 },
      });
      toast.success("Added the mock provider and the “echo” model");
    } catch (err) {
      toast.error(errorMessage(err));
    } finally {
      await Promise.all([
        queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/providers"] }),
        queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/models"] }),
      ]);
      setBusy(false);
    }
  };
  if (!canManage) {
    return <p className="text-sm text-slate-600">Owners and admins add providers. Ask one to connect a provider (or the built-in mock) and a model.</p>;
  }
  return (
    <div className="space-y-3">
      <p className="text-sm text-slate-600">
        Try everything offline with the built-in mock: it answers with your last message, streams word by word and reports
        tokens, so cost and metering work end to end. Or connect OpenAI, Anthropic, Bedrock and others.
      </p>
      <div className="flex flex-wrap gap-2">
        <Button onClick={useMock} loading={busy}>
          Use the built-in mock
        </Button>
        <Link to="/providers" className={buttonVariants({ variant: "secondary" })}>
          Connect a provider
        </Link>
      </div>
      {providers.length > 0 ? (
        <p className="text-sm text-slate-600">
          You have {providers.length === 1 ? "a provider" : `${providers.length} providers`} but no model yet:{" "}
          <Link to="/models" className="font-medium text-brand-700 hover:underline">
            add a model
          </Link>
          .
        </p>
      ) : null}
    </div>
  );
}

const keySchema = z.object({
  name: z.string().trim().min(1, "Name the key").max(200, "At most 200 characters"),
  team_id: z.string(),
});
type KeyForm = z.infer<typeof keySchema>;

/** (b) A key, created inline; its secret is shown once (and kept in memory for the snippets). */
export function KeyStep({ canWrite, isMember, done }: { canWrite: boolean; isMember: boolean; done: boolean }) {
  const created = useCreatedKey();
  const queryClient = useQueryClient();
  const teams = $api.useQuery("get", "/api/v1/teams", {}, { enabled: isMember });
  const create = $api.useMutation("post", "/api/v1/keys");
  const form = useForm<KeyForm>({ resolver: zodResolver(keySchema), defaultValues: { name: "my-first-key", team_id: "" } });
  const [formError, setFormError] = useState<string | null>(null);
  if (!canWrite) return <p className="text-sm text-slate-600">Viewers cannot create keys. Ask a member or an admin for one.</p>;
  if (created) return <SecretReveal secret={created.secret} label={`Secret of “${created.name}”`} />;
  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    if (isMember && !v.team_id) {
      form.setError("team_id", { message: "Members create keys for one of their teams" });
      return;
    }
    try {
      const k = await create.mutateAsync({ body: { name: v.name.trim(), ...(v.team_id ? { team_id: v.team_id } : {}) } });
      rememberCreatedKey({ id: k.id, name: k.name, secret: k.key });
      toast.success(`Created “${k.name}”`);
      await queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/keys"] });
    } catch (err) {
      setFormError(applyServerErrors(form, err));
    }
  });
  return (
    <form onSubmit={onSubmit} noValidate className="space-y-3" aria-label="Create an API key">
      {done ? (
        <p className="text-sm text-slate-600">
          You already have a key. Its secret was shown once; create another here to fill it into the snippets, or manage keys on
          the{" "}
          <Link to="/keys" className="font-medium text-brand-700 hover:underline">
            API keys
          </Link>{" "}
          page.
        </p>
      ) : (
        <p className="text-sm text-slate-600">Clients send an API key to the gateway as a bearer token.</p>
      )}
      <FormError message={formError} />
      <div className="flex flex-col gap-3 sm:flex-row sm:items-start">
        <Field label="Key name" error={form.formState.errors.name?.message} className="sm:w-64">
          <Input {...form.register("name")} />
        </Field>
        {isMember ? (
          <Field label="Team" error={form.formState.errors.team_id?.message} className="sm:w-56">
            <NativeSelect {...form.register("team_id")}>
              <option value="">Choose a team…</option>
              <TeamOptions teams={teams.data?.data} />
            </NativeSelect>
          </Field>
        ) : null}
        <Button type="submit" className="sm:mt-6" loading={form.formState.isSubmitting}>
          Create key
        </Button>
      </div>
    </form>
  );
}

const LANGS: { value: SnippetLang; label: string }[] = [
  { value: "curl", label: "curl" },
  { value: "python", label: "Python" },
  { value: "typescript", label: "TypeScript" },
];

/** (c) A ready-to-run request with the real base URL, the new key and the first model. */
export function SnippetStep({ model, onCopied }: { model: string | null; onCopied: () => void }) {
  const baseUrl = useGatewayBaseUrl();
  const created = useCreatedKey();
  const apiKey = created?.secret ?? null;
  return (
    <div className="space-y-3">
      {apiKey ? null : (
        <p className="text-sm text-slate-600">
          The key's secret is not shown again, so the snippets read it from <code className="font-mono text-xs">{KEY_PLACEHOLDER}</code>:
          run <code className="font-mono text-xs">export SWITCHYARD_API_KEY=sk-sy-…</code> first (or create a key above to fill it in).
        </p>
      )}
      <Tabs defaultValue="curl">
        <TabsList aria-label="Snippet language">
          {LANGS.map((l) => (
            <TabsTrigger key={l.value} value={l.value}>
              {l.label}
            </TabsTrigger>
          ))}
        </TabsList>
        {LANGS.map((l) => {
          const code = snippet(l.value, { baseUrl, apiKey, model: model ?? "echo" });
          return (
            <TabsContent key={l.value} value={l.value} className="mt-2">
              <div className="relative rounded-md border border-slate-800 bg-slate-900">
                <div className="flex items-center justify-between border-b border-slate-700 px-3 py-1.5">
                  <span className="text-xs text-slate-300">{l.label}</span>
                  <span onClickCapture={onCopied}>
                    <CopyButton value={code} label={`Copy ${l.label}`} />
                  </span>
                </div>
                <pre role="region" tabIndex={0} aria-label={`${l.label} snippet`} className="overflow-x-auto p-3 text-xs leading-relaxed text-slate-100">
                  <code>{code}</code>
                </pre>
              </div>
            </TabsContent>
          );
        })}
      </Tabs>
    </div>
  );
}

type RequestSummary = Schemas["RequestSummary"];

/** (d) The first request, live: polled every 2 s while the tab is visible, until one exists. */
export function FirstRequestStep({ request, waiting }: { request: RequestSummary | undefined; waiting: boolean }) {
  if (!request) {
    return (
      <div className="flex items-center gap-3 rounded-md border border-dashed border-slate-300 px-4 py-4 text-sm text-slate-600" role="status">
        <Radio className={waiting ? "size-5 animate-pulse text-brand-600" : "size-5 text-slate-500"} aria-hidden />
        <span>{waiting ? "Listening for your first request… run the snippet and it shows up here." : "Waiting for this tab to be visible to listen again."}</span>
      </div>
    );
  }
  return <RequestCard request={request} />;
}

export function RequestCard({ request: r }: { request: RequestSummary }) {
  const ok = r.status < 400;
  return (
    <div className="rounded-md border border-slate-200 bg-slate-50 px-4 py-3" aria-label="Latest request">
      <div className="flex flex-wrap items-center gap-2">
        <Badge tone={ok ? "success" : "danger"}>{r.status}</Badge>
        <span className="font-mono text-sm font-medium text-slate-900">{r.model}</span>
        <span className="text-xs text-slate-500">{formatRelative(r.started_at)}</span>
        <RequestLink id={r.id} className="ml-auto text-sm font-medium text-brand-700 hover:underline">
          View request
        </RequestLink>
      </div>
      <dl className="mt-3 grid grid-cols-2 gap-3 text-sm sm:grid-cols-4">
        <div>
          <dt className="text-xs text-slate-500">Tokens</dt>
          <dd className="font-medium text-slate-900">
            {formatInt(r.prompt_tokens)} in · {formatInt(r.completion_tokens)} out
          </dd>
        </div>
        <div>
          <dt className="text-xs text-slate-500">Cost</dt>
          <dd className="font-medium text-slate-900">{formatUsd(r.cost_usd)}</dd>
        </div>
        <div>
          <dt className="text-xs text-slate-500">Latency</dt>
          <dd className="font-medium text-slate-900">{formatMs(r.latency_ms)}</dd>
        </div>
        <div>
          <dt className="text-xs text-slate-500">Served by</dt>
          <dd className="truncate font-medium text-slate-900">{r.provider ?? "—"}</dd>
        </div>
      </dl>
    </div>
  );
}
