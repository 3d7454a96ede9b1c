import { useQueryClient } from "@tanstack/react-query";
import { Pencil, Trash2 } from "lucide-react";
import { toast } from "sonner";
import { $api } from "@/api/client";
import { errorMessage } from "@/api/errors";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { CapBar } from "@/components/ui/progress-bar";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { formatDateTime, formatRelative, formatUsd } from "@/lib/format";
import { periodLabel, scopeKind, scopeName, usdToMicros, type ApiKey, type Budget, type Team } from "./model";
import { BUDGETS_KEY } from "./BudgetDialog";

interface BudgetCardProps {
  budget: Budget;
  teams: readonly Team[];
  keys: readonly ApiKey[];
  canManage: boolean;
  onEdit: (b: Budget) => void;
}

/** One budget: what it caps, spent (solid) and reserved (striped) against the cap, reset and forecast. */
export function BudgetCard({ budget: b, teams, keys, canManage, onEdit }: BudgetCardProps) {
  const queryClient = useQueryClient();
  const remove = $api.useMutation("delete", "/api/v1/budgets/{id}");
  const name = scopeName(b, teams, keys);
  const spent = usdToMicros(b.spent_usd);
  const reserved = usdToMicros(b.reserved_usd);
  const limit = b.limit_micros;
  const pct = limit > 0 ? Math.round((spent / limit) * 100) : 0;
  const forecast = b.forecast_usd != null ? usdToMicros(b.forecast_usd) : null;
  const overForecast = forecast != null && forecast > limit;
  const reached = spent + reserved >= limit;

  return (
    <li className="flex flex-col rounded-lg border border-slate-200 bg-white p-4 shadow-sm">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <p className="text-xs font-medium uppercase tracking-wide text-slate-500">{scopeKind(b.scope)}</p>
        <div className="flex flex-wrap justify-end gap-1">
          <Badge tone="neutral">{periodLabel(b.period)}</Badge>
          {b.hard ? <Badge tone="brand">Hard cap</Badge> : <Badge tone="warning">Soft · alerts only</Badge>}
        </div>
      </div>
      <h3 className="mt-1 truncate text-base font-semibold text-slate-900" title={name}>
        {name}
      </h3>

      <div className="mt-4 flex items-baseline justify-between gap-2">
        <p className="text-2xl font-semibold tabular-nums text-slate-900">{formatUsd(b.spent_usd)}</p>
        <p className="text-sm tabular-nums text-slate-500">
          of {formatUsd(b.limit_usd)} · {pct}%
        </p>
      </div>
      <div className="mt-2">
        <CapBar spent={spent} reserved={reserved} limit={limit} label={`${name}: ${formatUsd(b.spent_usd)} spent and ${formatUsd(b.reserved_usd)} reserved of ${formatUsd(b.limit_usd)}`} />
      </div>
      <dl className="mt-3 grid grid-cols-2 gap-x-4 gap-y-2 text-sm">
        <div>
          <dt className="text-slate-500">Reserved in flight</dt>
          <dd className="tabular-nums text-slate-800">{formatUsd(b.reserved_usd)}</dd>
        </div>
        <div>
          <dt className="text-slate-500">Forecast</dt>
          <dd className={overForecast ? "font-medium tabular-nums text-amber-700" : "tabular-nums text-slate-800"}>
            {b.forecast_usd == null ? "—" : formatUsd(b.forecast_usd)}
            {overForecast ? <span className="sr-only"> (over the cap)</span> : null}
          </dd>
        </div>
        <div>
          <dt className="text-slate-500">{b.period_end ? "Resets" : "Period"}</dt>
          <dd className="text-slate-800" title={b.period_end ? formatDateTime(b.period_end) : undefined}>
            {b.period_end ? formatRelative(b.period_end) : "Never resets"}
          </dd>
        </div>
        <div>
          <dt className="text-slate-500">Alerts at</dt>
          <dd className="text-slate-800">{b.alert_thresholds.length ? b.alert_thresholds.map((t) => `${t}%`).join(", ") : "none"}</dd>
        </div>
      </dl>
      {reached ? (
        <p className="mt-3 rounded-md bg-red-50 px-2 py-1.5 text-xs font-medium text-red-700">
          {b.hard ? "Cap reached: requests under this budget are refused until the period resets." : "Cap reached (alerts only: requests still flow)."}
        </p>
      ) : overForecast ? (
        <p className="mt-3 rounded-md bg-amber-50 px-2 py-1.5 text-xs font-medium text-amber-800">On track to exceed the cap this period.</p>
      ) : null}
      <p className="mt-3 text-xs text-slate-500">
        {b.timezone} · period since {formatDateTime(b.period_start)}
      </p>
      {canManage ? (
        <div className="mt-3 flex justify-end gap-2 border-t border-slate-100 pt-3">
          <Button variant="ghost" size="sm" onClick={() => onEdit(b)} aria-label={`Edit budget for ${name}`}>
            <Pencil aria-hidden /> Edit
          </Button>
          <ConfirmDialog
            trigger={
              <Button variant="ghost" size="sm" className="text-red-700 hover:bg-red-50" aria-label={`Delete budget for ${name}`}>
                <Trash2 aria-hidden /> Delete
              </Button>
            }
            title="Delete this budget?"
            description={`The ${periodLabel(b.period).toLowerCase()} ${formatUsd(b.limit_usd)} cap on ${name} stops applying at once. Spend already recorded is kept.`}
            confirmLabel="Delete budget"
            onConfirm={async () => {
              try {
                await remove.mutateAsync({ params: { path: { id: b.id } } });
                toast.success("Budget deleted");
                await queryClient.invalidateQueries({ queryKey: BUDGETS_KEY });
              } catch (err) {
                toast.error(errorMessage(err));
              }
            }}
          />
        </div>
      ) : null}
    </li>
  );
}
