import { useState } from "react";
import { useFieldArray, useForm, useWatch } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import { ArrowDown, ArrowUp, Plus, X } from "lucide-react";
import { toast } from "sonner";
import { focusServerError } from "@/features/providers/focus";
import { $api, type Schemas } from "@/api/client";
import { Dialog } from "@/components/ui/dialog";
import { Field, FormError } from "@/components/ui/field";
import { Input, NativeSelect } from "@/components/ui/input";
import { Button } from "@/components/ui/button";
import { cn } from "@/lib/cn";
import { DEFAULT_RETRY, RETRY_CLASSES, STRATEGIES } from "./strategies";
import { applyRouteErrors, emptyRoute, fromRoute, LIMITS, routeSchema, toRouteRequest, type RouteForm } from "./schema";

export const ROUTES_KEY = ["get", "/api/v1/routes"] as const;

type Model = Schemas["ModelDto"];
type Route = Schemas["RouteDto"];

function modelLabel(m: Model): string {
  return `${m.name} — ${m.upstream_model}${m.region ? ` (${m.region})` : ""}${m.mode === "embedding" ? " · embedding" : ""}`;
}

/** Create or edit a route: strategy, candidates (ordered, weighted or prioritised), fallback, timeouts, regions. */
export function RouteFormDialog({ route, models, onClose }: { route?: Route; models: Model[]; onClose: () => void }) {
  const queryClient = useQueryClient();
  const [formError, setFormError] = useState<string | null>(null);
  const form = useForm<RouteForm>({
    resolver: zodResolver(routeSchema),
    defaultValues: route ? fromRoute(route) : emptyRoute(models[0]?.id),
  });
  const candidates = useFieldArray({ control: form.control, name: "candidates" });
  const strategy = useWatch({ control: form.control, name: "strategy" });
  const retryCustom = useWatch({ control: form.control, name: "retry_custom" });
  const create = $api.useMutation("post", "/api/v1/routes");
  const update = $api.useMutation("patch", "/api/v1/routes/{id}");
  const errors = form.formState.errors;
  const listError = errors.candidates?.root?.message ?? errors.candidates?.message;
  const explain = STRATEGIES.find((s) => s.value === strategy)?.explain;

  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    try {
      const body = toRouteRequest(v);
      const saved = route
        ? await update.mutateAsync({ params: { path: { id: route.id } }, body })
        : await create.mutateAsync({ body });
      await queryClient.invalidateQueries({ queryKey: ROUTES_KEY });
      await queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/routes/{id}"] });
      toast.success(route ? `Route ${saved.name} saved` : `Route ${saved.name} created`);
      onClose();
    } catch (err) {
      setFormError(applyRouteErrors(form, err));
      focusServerError(form, err);
    }
  });

  return (
    <Dialog
      open
      onOpenChange={(o) => (o ? undefined : onClose())}
      size="lg"
      title={route ? `Edit route ${route.name}` : "Create a route"}
      description="A name clients call like a model; the strategy picks the first candidate, the others are the fallback order."
      footer={
        <>
          <Button variant="secondary" onClick={onClose}>
            Cancel
          </Button>
          <Button type="submit" form="route-form" loading={form.formState.isSubmitting}>
            {route ? "Save route" : "Create route"}
          </Button>
        </>
      }
    >
      <form id="route-form" onSubmit={onSubmit} noValidate className="space-y-6" autoComplete="off">
        <FormError message={formError} />
        <div className="grid gap-4 sm:grid-cols-2">
          <Field label="Name" error={errors.name?.message} description="What clients send as model; it shadows a deployment of the same name.">
            <Input autoComplete="off" spellCheck={false} placeholder="support-chat" {...form.register("name")} />
          </Field>
          <Field label="Strategy" error={errors.strategy?.message} description={explain}>
            <NativeSelect {...form.register("strategy")}>
              {STRATEGIES.map((s) => (
                <option key={s.value} value={s.value}>
                  {s.label}
                </option>
              ))}
            </NativeSelect>
          </Field>
        </div>

        <fieldset className="space-y-3">
          <legend className="text-sm font-semibold text-slate-900">Candidates</legend>
          <p className="text-xs text-slate-500">
            {strategy === "priority"
              ? "Tried top to bottom unless a priority says otherwise (lower goes first)."
              : strategy === "weighted"
                ? "Traffic is split by weight (empty = 1; 0 = fallback only). The list order is the fallback order."
                : "The strategy picks the first; the list order is the fallback order."}
          </p>
          {listError ? (
            <p role="alert" className="text-xs font-medium text-red-600">
              {listError}
            </p>
          ) : null}
          <ol className="space-y-2">
            {candidates.fields.map((f, i) => {
              const ce = errors.candidates?.[i];
              return (
                <li key={f.id} className="rounded-md border border-slate-200 p-3">
                  <div className="flex flex-wrap items-start gap-3">
                    <span className="mt-8 grid size-6 shrink-0 place-items-center rounded-full bg-slate-100 text-xs font-semibold text-slate-600" aria-hidden>
                      {i + 1}
                    </span>
                    <Field className="min-w-0 flex-1 basis-56" label={`Candidate ${i + 1}`} error={ce?.model_id?.message}>
                      <NativeSelect {...form.register(`candidates.${i}.model_id`)}>
                        <option value="">Choose a deployment…</option>
                        {models.map((m) => (
                          <option key={m.id} value={m.id}>
                            {modelLabel(m)}
                          </option>
                        ))}
                      </NativeSelect>
                    </Field>
                    {strategy === "weighted" ? (
                      <Field className="w-28" label={<>Weight<span className="sr-only"> of candidate {i + 1}</span></>} error={ce?.weight?.message}>
                        <Input inputMode="numeric" placeholder="1" {...form.register(`candidates.${i}.weight`)} />
                      </Field>
                    ) : null}
                    {strategy === "priority" ? (
                      <Field className="w-28" label={<>Priority<span className="sr-only"> of candidate {i + 1}</span></>} error={ce?.priority?.message}>
                        <Input inputMode="numeric" placeholder={String(i)} {...form.register(`candidates.${i}.priority`)} />
                      </Field>
                    ) : null}
                    <div className="mt-6 flex items-center gap-1">
                      <Button variant="ghost" size="icon" aria-label={`Move candidate ${i + 1} up`} disabled={i === 0} onClick={() => candidates.move(i, i - 1)}>
                        <ArrowUp aria-hidden />
                      </Button>
                      <Button variant="ghost" size="icon" aria-label={`Move candidate ${i + 1} down`} disabled={i === candidates.fields.length - 1} onClick={() => candidates.move(i, i + 1)}>
                        <ArrowDown aria-hidden />
                      </Button>
                      <Button variant="ghost" size="icon" aria-label={`Remove candidate ${i + 1}`} disabled={candidates.fields.length === 1} onClick={() => candidates.remove(i)}>
                        <X aria-hidden />
                      </Button>
                    </div>
                  </div>
                </li>
              );
            })}
          </ol>
          <Button
            variant="secondary"
            size="sm"
            disabled={candidates.fields.length >= LIMITS.candidates}
            onClick={() => {
              const used = new Set(form.getValues("candidates").map((c) => c.model_id));
              candidates.append({ model_id: models.find((m) => !used.has(m.id))?.id ?? "", weight: "", priority: "" });
            }}
          >
            <Plus aria-hidden /> Add candidate
          </Button>
          {strategy === "weighted" ? (
            <label className="flex items-start gap-2 text-sm text-slate-700">
              <input type="checkbox" className="mt-0.5 size-4 rounded border-slate-300 accent-brand-600" {...form.register("sticky")} />
              <span>
                Sticky: keep one user on one deployment (the <code className="text-xs">x-switchyard-sticky-key</code> header, else the request's <code className="text-xs">user</code>).
                {errors.sticky?.message ? <span role="alert" className="block text-xs font-medium text-red-600">{errors.sticky.message}</span> : null}
              </span>
            </label>
          ) : null}
        </fieldset>

        <fieldset className="space-y-3">
          <legend className="text-sm font-semibold text-slate-900">Fallback</legend>
          <div className="grid gap-4 sm:grid-cols-2">
            <Field label="Max attempts (optional)" error={errors.max_attempts?.message} description="Across candidates, the first try included (1–10). Default: one per candidate.">
              <Input inputMode="numeric" {...form.register("max_attempts")} />
            </Field>
            <Field label="Hedge after, ms (optional)" error={errors.hedge_after_ms?.message} description="Still waiting after this long? Also try the next candidate and keep the first answer.">
              <Input inputMode="numeric" {...form.register("hedge_after_ms")} />
            </Field>
          </div>
          <div className="space-y-2">
            <label className="flex items-center gap-2 text-sm text-slate-700">
              <input type="checkbox" className="size-4 rounded border-slate-300 accent-brand-600" {...form.register("retry_custom")} />
              Choose which errors fall back (default: {DEFAULT_RETRY.join(", ").replaceAll("_", " ")})
            </label>
            {retryCustom ? (
              <div role="group" aria-label="Errors that fall back" className="grid gap-1.5 pl-6 sm:grid-cols-2">
                {RETRY_CLASSES.map((c) => (
                  <label key={c.value} className="flex items-center gap-2 text-sm text-slate-700">
                    <input type="checkbox" value={c.value} className="size-4 rounded border-slate-300 accent-brand-600" {...form.register("retry_on")} />
                    {c.label}
                  </label>
                ))}
                {errors.retry_on?.message ? <p role="alert" className="text-xs font-medium text-red-600">{errors.retry_on.message}</p> : null}
              </div>
            ) : null}
            <p className="text-xs text-slate-500">Client errors (a request the client must fix, auth failures) never fall back; a stream is only retried before its first byte.</p>
          </div>
        </fieldset>

        <fieldset className="space-y-3">
          <legend className="text-sm font-semibold text-slate-900">Timeouts (ms, optional)</legend>
          <div className={cn("grid gap-4 sm:grid-cols-3")}>
            <Field label="Connect" error={errors.timeouts?.connect_ms?.message}>
              <Input inputMode="numeric" placeholder="default" {...form.register("timeouts.connect_ms")} />
            </Field>
            <Field label="First token" error={errors.timeouts?.first_token_ms?.message}>
              <Input inputMode="numeric" placeholder="default" {...form.register("timeouts.first_token_ms")} />
            </Field>
            <Field label="Total" error={errors.timeouts?.total_ms?.message}>
              <Input inputMode="numeric" placeholder="default" {...form.register("timeouts.total_ms")} />
            </Field>
          </div>
          <p className="text-xs text-slate-500">Empty: the gateway node's defaults. Connect and first token must not exceed the total.</p>
        </fieldset>

        <Field
          label="Allowed regions (optional)"
          error={errors.allowed_regions?.message}
          description="Comma-separated regions or prefixes (eu allows eu-west-1). Every candidate must be in one; a deployment without a region never is."
        >
          <Input autoComplete="off" spellCheck={false} placeholder="eu, us-east-1" {...form.register("allowed_regions")} />
        </Field>
      </form>
    </Dialog>
  );
}
