import { useForm, useWatch } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import { useId, useMemo, useState } from "react";
import { toast } from "sonner";
import { $api } from "@/api/client";
import { applyServerErrors } from "@/api/errors";
import { Dialog } from "@/components/ui/dialog";
import { Field, FormError } from "@/components/ui/field";
import { Input, NativeSelect } from "@/components/ui/input";
import { Button } from "@/components/ui/button";
import {
  budgetSchema, emptyBudgetForm, formFromBudget, parseThresholds, PERIOD_LABEL, PERIODS, scopeKind, scopeName, timeZones,
  type ApiKey, type Budget, type BudgetForm, type Team,
} from "./model";

export const BUDGETS_KEY = ["get", "/api/v1/budgets"] as const;

interface BudgetDialogProps {
  open: boolean;
  onOpenChange: (open: boolean) => void;
  /** The budget to edit; absent to create one. */
  budget?: Budget | undefined;
  teams: readonly Team[];
  keys: readonly ApiKey[];
}

/** Creates a budget (scope, period, cap, hard/soft, alert thresholds) or edits one (scope fixed). */
export function BudgetDialog({ open, onOpenChange, budget, teams, keys }: BudgetDialogProps) {
  return (
    <Dialog
      open={open}
      onOpenChange={onOpenChange}
      title={budget ? "Edit budget" : "New budget"}
      description={
        budget
          ? `${scopeName(budget, teams, keys)}: the scope of a budget cannot change.`
          : "Cap what the organization, a team or one API key spends per period."
      }
    >
      {/* Remounted per open so the form starts from the budget's current values. */}
      {open ? <BudgetFormBody budget={budget} teams={teams} keys={keys} onDone={() => onOpenChange(false)} /> : null}
    </Dialog>
  );
}

function BudgetFormBody({ budget, teams, keys, onDone }: { budget?: Budget | undefined; teams: readonly Team[]; keys: readonly ApiKey[]; onDone: () => void }) {
  const queryClient = useQueryClient();
  const [formError, setFormError] = useState<string | null>(null);
  const zonesId = useId();
  const zones = useMemo(timeZones, []);
  const form = useForm<BudgetForm>({
    resolver: zodResolver(budgetSchema),
    defaultValues: budget ? formFromBudget(budget) : emptyBudgetForm(),
  });
  const scope = useWatch({ control: form.control, name: "scope" });
  const create = $api.useMutation("post", "/api/v1/budgets");
  const update = $api.useMutation("patch", "/api/v1/budgets/{id}");
  const liveKeys = keys.filter((k) => !k.revoked_at);
  const errors = form.formState.errors;

  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    const thresholds = parseThresholds(v.alert_thresholds) ?? [];
    try {
      if (budget) {
        await update.mutateAsync({
          params: { path: { id: budget.id } },
          body: { limit_usd: v.limit_usd, period: v.period, hard: v.hard === "hard", alert_thresholds: thresholds, timezone: v.timezone },
        });
        toast.success("Budget updated");
      } else {
        await create.mutateAsync({
          body: {
            scope: v.scope,
            scope_id: v.scope === "tenant" ? null : v.scope_id,
            limit_usd: v.limit_usd,
            period: v.period,
            hard: v.hard === "hard",
            alert_thresholds: thresholds,
            timezone: v.timezone,
          },
        });
        toast.success("Budget created");
      }
      await queryClient.invalidateQueries({ queryKey: BUDGETS_KEY });
      onDone();
    } catch (err) {
      setFormError(applyServerErrors(form, err));
    }
  });

  return (
    <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label={budget ? "Edit budget" : "New budget"}>
      <FormError message={formError} />
      <div className="grid gap-4 sm:grid-cols-2">
        {budget ? (
          <Field label="Applies to" className="sm:col-span-2">
            <Input readOnly value={`${scopeKind(budget.scope)} · ${scopeName(budget, teams, keys)}`} />
          </Field>
        ) : (
          <>
            <Field label="Applies to" error={errors.scope?.message}>
              <NativeSelect {...form.register("scope", { onChange: () => form.setValue("scope_id", "") })}>
                <option value="tenant">Whole organization</option>
                <option value="team">A team</option>
                <option value="key">An API key</option>
              </NativeSelect>
            </Field>
            {scope === "team" ? (
              <Field label="Team" error={errors.scope_id?.message} description={teams.length === 0 ? "No teams yet: create one on the Teams page." : undefined}>
                <NativeSelect {...form.register("scope_id")}>
                  <option value="">Choose a team…</option>
                  {teams.map((t) => (
                    <option key={t.id} value={t.id}>
                      {t.name}
                    </option>
                  ))}
                </NativeSelect>
              </Field>
            ) : scope === "key" ? (
              <Field label="API key" error={errors.scope_id?.message} description={liveKeys.length === 0 ? "No API keys yet: create one on the API keys page." : undefined}>
                <NativeSelect {...form.register("scope_id")}>
                  <option value="">Choose a key…</option>
                  {liveKeys.map((k) => (
                    <option key={k.id} value={k.id}>
                      {k.name} ({k.prefix})
                    </option>
                  ))}
                </NativeSelect>
              </Field>
            ) : (
              <div className="hidden sm:block" aria-hidden />
            )}
          </>
        )}
        <Field label="Amount (USD)" error={errors.limit_usd?.message}>
          <Input inputMode="decimal" placeholder="25.00" autoComplete="off" {...form.register("limit_usd")} />
        </Field>
        <Field label="Period" error={errors.period?.message}>
          <NativeSelect {...form.register("period")}>
            {PERIODS.map((p) => (
              <option key={p} value={p}>
                {PERIOD_LABEL[p]}
              </option>
            ))}
          </NativeSelect>
        </Field>
        <Field label="Time zone" error={errors.timezone?.message} description="Periods roll over at local midnight, on Monday, on the 1st.">
          <Input list={zonesId} autoComplete="off" spellCheck={false} {...form.register("timezone")} />
        </Field>
        <Field label="Alert thresholds (%)" error={errors.alert_thresholds?.message} description="Percent of the cap, e.g. 50, 80, 100.">
          <Input inputMode="numeric" autoComplete="off" {...form.register("alert_thresholds")} />
        </Field>
      </div>
      <datalist id={zonesId}>
        {zones.map((z) => (
          <option key={z} value={z} />
        ))}
      </datalist>
      <fieldset className="space-y-2">
        <legend className="text-sm font-medium text-slate-800">When the cap is reached</legend>
        <label className="flex items-start gap-2 rounded-md border border-slate-200 p-3 text-sm has-[:checked]:border-brand-500 has-[:checked]:bg-brand-50/50">
          <input type="radio" value="hard" className="mt-0.5" {...form.register("hard")} />
          <span>
            <span className="font-medium text-slate-900">Hard cap</span>
            <span className="block text-slate-500">Refuse requests that could exceed it (429 budget_exceeded).</span>
          </span>
        </label>
        <label className="flex items-start gap-2 rounded-md border border-slate-200 p-3 text-sm has-[:checked]:border-brand-500 has-[:checked]:bg-brand-50/50">
          <input type="radio" value="soft" className="mt-0.5" {...form.register("hard")} />
          <span>
            <span className="font-medium text-slate-900">Soft cap</span>
            <span className="block text-slate-500">Only send alerts; requests keep flowing.</span>
          </span>
        </label>
      </fieldset>
      <div className="flex justify-end gap-2 border-t border-slate-100 pt-4">
        <Button variant="secondary" onClick={onDone}>
          Cancel
        </Button>
        <Button type="submit" loading={form.formState.isSubmitting}>
          {budget ? "Save changes" : "Create budget"}
        </Button>
      </div>
    </form>
  );
}
