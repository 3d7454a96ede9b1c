import { useDeferredValue, useMemo, useState } from "react";
import { useForm, useWatch } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import { Check, Search } from "lucide-react";
import { toast } from "sonner";
import { focusServerError } from "@/features/providers/focus";
import { $api, type Schemas } from "@/api/client";
import { applyServerErrors } from "@/api/errors";
import { Dialog } from "@/components/ui/dialog";
import { Field, FormError } from "@/components/ui/field";
import { Input, NativeSelect } from "@/components/ui/input";
import { Button } from "@/components/ui/button";
import { Badge } from "@/components/ui/badge";
import { ErrorState, Loading } from "@/components/states";
import { cn } from "@/lib/cn";
import { formatCompact } from "@/lib/format";
import { KINDS, kindLabel } from "@/features/providers/kinds";
import { deploymentSchema, emptyDeployment, toModelRequest, type DeploymentForm } from "./schema";
import { formatPerMtok, microsToDecimal } from "./price";

export const MODELS_KEY = ["get", "/api/v1/models"] as const;

type Entry = Schemas["CatalogEntryDto"];
type Provider = Schemas["ProviderDto"];

/** Which catalog kinds a provider credential can serve (Azure OpenAI also serves OpenAI entries). */
function serves(provider: Provider | undefined, entry: Entry): boolean {
  if (!provider) return true;
  return provider.kind === entry.provider || (provider.kind === "azure_openai" && entry.provider === "openai");
}

/** "Add deployment": pick a catalog entry (fills the upstream model and prices) or go custom. */
export function AddDeploymentDialog({ open, onOpenChange, providers }: { open: boolean; onOpenChange: (o: boolean) => void; providers: Provider[] }) {
  const queryClient = useQueryClient();
  const [formError, setFormError] = useState<string | null>(null);
  const [kindFilter, setKindFilter] = useState<string | null>(null);
  const [search, setSearch] = useState("");
  const deferredSearch = useDeferredValue(search);
  const form = useForm<DeploymentForm>({
    resolver: zodResolver(deploymentSchema),
    defaultValues: { ...emptyDeployment, provider_id: providers[0]?.id ?? "" },
  });
  const providerId = useWatch({ control: form.control, name: "provider_id" });
  const catalogId = useWatch({ control: form.control, name: "catalog_id" });
  const provider = providers.find((p) => p.id === providerId);
  // The filter follows the chosen credential until the user picks one himself.
  const filter = kindFilter ?? (provider && provider.kind !== "azure_openai" ? provider.kind : "");
  const catalog = $api.useQuery("get", "/api/v1/catalog", { params: { query: filter ? { provider: filter } : {} } }, { enabled: open });
  const entries = useMemo(() => {
    const q = deferredSearch.trim().toLowerCase();
    const all = catalog.data?.data ?? [];
    return q ? all.filter((e) => `${e.display_name} ${e.id} ${e.upstream_model}`.toLowerCase().includes(q)) : all;
  }, [catalog.data, deferredSearch]);
  const create = $api.useMutation("post", "/api/v1/models");
  const errors = form.formState.errors;

  const close = (o: boolean) => {
    if (!o) {
      form.reset({ ...emptyDeployment, provider_id: providers[0]?.id ?? "" });
      setFormError(null);
      setKindFilter(null);
      setSearch("");
    }
    onOpenChange(o);
  };

  const pick = (e: Entry) => {
    const opts = { shouldValidate: form.formState.isSubmitted, shouldDirty: true };
    form.setValue("catalog_id", e.id, opts);
    form.setValue("upstream_model", e.upstream_model, opts);
    form.setValue("input_price", microsToDecimal(e.input_price_micros_per_mtok), opts);
    form.setValue("output_price", microsToDecimal(e.output_price_micros_per_mtok), opts);
    form.setValue("cached_input_price", e.cached_input_price_micros_per_mtok == null ? "" : microsToDecimal(e.cached_input_price_micros_per_mtok), opts);
    form.setValue("mode", e.mode, opts);
    form.setValue("context_window", e.context_window ? String(e.context_window) : "", opts);
    if (!form.getValues("name")) form.setValue("name", e.upstream_model, opts);
    if (!serves(provider, e)) {
      const match = providers.find((p) => serves(p, e));
      if (match) form.setValue("provider_id", match.id, opts);
    }
  };

  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    try {
      const created = await create.mutateAsync({ body: toModelRequest(v) });
      await queryClient.invalidateQueries({ queryKey: MODELS_KEY });
      toast.success(`Deployment ${created.name} added`);
      close(false);
    } catch (err) {
      setFormError(applyServerErrors(form, err));
      focusServerError(form, err);
    }
  });

  return (
    <Dialog
      open={open}
      onOpenChange={close}
      size="lg"
      title="Add a deployment"
      description="A model name clients can call, served by one provider credential. Start from the priced catalog or describe a custom model."
      footer={
        <>
          <Button variant="secondary" onClick={() => close(false)}>
            Cancel
          </Button>
          <Button type="submit" form="add-deployment" loading={form.formState.isSubmitting}>
            Add deployment
          </Button>
        </>
      }
    >
      <div className="space-y-5">
        <section aria-labelledby="catalog-heading" className="space-y-3">
          <div className="flex flex-wrap items-baseline justify-between gap-2">
            <h3 id="catalog-heading" className="text-sm font-semibold text-slate-900">
              From the catalog
            </h3>
            {catalog.data ? <span className="text-xs text-slate-500">List prices as of {catalog.data.as_of}; check them against your contract.</span> : null}
          </div>
          <div className="grid gap-2 sm:grid-cols-[12rem_1fr]">
            <NativeSelect aria-label="Catalog provider" value={filter} onChange={(e) => setKindFilter(e.target.value)}>
              <option value="">All providers</option>
              {KINDS.map((k) => (
                <option key={k.kind} value={k.kind}>
                  {k.label}
                </option>
              ))}
            </NativeSelect>
            <div className="relative">
              <Search className="pointer-events-none absolute left-2.5 top-2.5 size-4 text-slate-500" aria-hidden />
              <Input type="search" aria-label="Search the catalog" placeholder="Search models…" className="pl-8" value={search} onChange={(e) => setSearch(e.target.value)} />
            </div>
          </div>
          <div className="max-h-56 overflow-y-auto rounded-md border border-slate-200">
            {catalog.isPending ? (
              <Loading label="Loading the catalog" rows={3} />
            ) : catalog.isError ? (
              <ErrorState error={catalog.error} onRetry={() => void catalog.refetch()} title="Could not load the catalog" />
            ) : entries.length === 0 ? (
              <p className="px-3 py-6 text-center text-sm text-slate-500">
                No catalog entry {filter ? `for ${kindLabel(filter)}` : ""}
                {deferredSearch ? ` matching “${deferredSearch}”` : ""}. Fill in a custom deployment below.
              </p>
            ) : (
              <ul aria-label="Catalog entries" className="divide-y divide-slate-100">
                {entries.map((e) => {
                  const selected = e.id === catalogId;
                  return (
                    <li key={e.id}>
                      <button
                        type="button"
                        aria-pressed={selected}
                        onClick={() => pick(e)}
                        className={cn("flex w-full items-center gap-3 px-3 py-2 text-left text-sm hover:bg-slate-50 focus-visible:bg-slate-50 focus-visible:outline-none", selected && "bg-brand-50 hover:bg-brand-50")}
                      >
                        <Check className={cn("size-4 shrink-0 text-brand-700", selected ? "opacity-100" : "opacity-0")} aria-hidden />
                        <span className="min-w-0 flex-1">
                          <span className="block truncate font-medium text-slate-900">{e.display_name}</span>
                          <span className="block truncate font-mono text-xs text-slate-600">{e.id}</span>
                        </span>
                        <span className="hidden shrink-0 text-right text-xs text-slate-600 sm:block">
                          {formatPerMtok(e.input_price_micros_per_mtok)} in · {formatPerMtok(e.output_price_micros_per_mtok)} out
                          <span className="block text-slate-600">
                            {e.mode === "embedding" ? "embedding" : `${formatCompact(e.context_window)} context`}
                          </span>
                        </span>
                      </button>
                    </li>
                  );
                })}
              </ul>
            )}
          </div>
          {errors.catalog_id?.message ? (
            <p role="alert" className="text-xs font-medium text-red-600">
              {errors.catalog_id.message}
            </p>
          ) : null}
          {catalogId ? (
            <p className="text-sm text-slate-600">
              Filled in from <Badge tone="brand">{catalogId}</Badge>; every field below stays editable.{" "}
              <Button variant="link" size="sm" className="h-auto px-0" onClick={() => form.reset({ ...emptyDeployment, provider_id: providerId, name: form.getValues("name") })}>
                Start over as a custom deployment
              </Button>
            </p>
          ) : null}
        </section>

        <form id="add-deployment" onSubmit={onSubmit} noValidate className="grid gap-4 sm:grid-cols-2" autoComplete="off">
          <div className="sm:col-span-2">
            <FormError message={formError} />
          </div>
          <Field label="Provider" error={errors.provider_id?.message}>
            <NativeSelect {...form.register("provider_id")}>
              {providers.length === 0 ? <option value="">Add a provider first</option> : null}
              {providers.map((p) => (
                <option key={p.id} value={p.id}>
                  {p.name} · {kindLabel(p.kind)}
                </option>
              ))}
            </NativeSelect>
          </Field>
          <Field label="Name" error={errors.name?.message} description="What clients send as model. Deployments may share a name.">
            <Input autoComplete="off" spellCheck={false} {...form.register("name")} />
          </Field>
          <Field label="Upstream model" error={errors.upstream_model?.message} description={provider?.kind === "azure_openai" ? "The Azure deployment name." : "The model id sent to the provider."}>
            <Input autoComplete="off" spellCheck={false} {...form.register("upstream_model")} />
          </Field>
          <Field label="Region (optional)" error={errors.region?.message} description="Where it runs, e.g. eu-west-1. Region policies match it.">
            <Input autoComplete="off" spellCheck={false} placeholder="eu-west-1" {...form.register("region")} />
          </Field>
          <Field label="Input price, USD per 1M tokens" error={errors.input_price?.message}>
            <Input inputMode="decimal" autoComplete="off" placeholder="0.15" {...form.register("input_price")} />
          </Field>
          <Field label="Output price, USD per 1M tokens" error={errors.output_price?.message}>
            <Input inputMode="decimal" autoComplete="off" placeholder="0.6" {...form.register("output_price")} />
          </Field>
          <Field label="Cached input price (optional)" error={errors.cached_input_price?.message} description="USD per 1M prompt tokens read from the provider's cache.">
            <Input inputMode="decimal" autoComplete="off" {...form.register("cached_input_price")} />
          </Field>
          <Field label="Mode" error={errors.mode?.message}>
            <NativeSelect {...form.register("mode")}>
              <option value="chat">Chat</option>
              <option value="embedding">Embedding</option>
            </NativeSelect>
          </Field>
          <Field label="Context window (optional)" error={errors.context_window?.message} description="Tokens of prompt plus output; larger requests go elsewhere.">
            <Input inputMode="numeric" autoComplete="off" {...form.register("context_window")} />
          </Field>
        </form>
      </div>
    </Dialog>
  );
}
