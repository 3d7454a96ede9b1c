import { Plus, Wallet } from "lucide-react";
import { useState } from "react";
import { $api } from "@/api/client";
import { canManage as canManageRole, canWrite as canWriteRole, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { Empty, ErrorState, Loading } from "@/components/states";
import { BudgetCard } from "./BudgetCard";
import { BudgetDialog } from "./BudgetDialog";
import { AlertsSection } from "./AlertsSection";
import { LimitsSection, limitRows } from "./LimitsSection";
import { WebhookStatus } from "./WebhookStatus";
import type { Budget } from "./model";

/** Sort order of budget scopes on the page: the organization first, then teams, then keys. */
const SCOPE_ORDER: Record<string, number> = { tenant: 0, team: 1, key: 2 };

export function BudgetsPage() {
  const { role } = useSession();
  const manage = canManageRole(role);
  const write = canWriteRole(role);
  const budgets = $api.useQuery("get", "/api/v1/budgets");
  const teams = $api.useQuery("get", "/api/v1/teams");
  const keys = $api.useQuery("get", "/api/v1/keys");
  const org = $api.useQuery("get", "/api/v1/organization");
  const [dialog, setDialog] = useState<{ open: boolean; budget?: Budget | undefined }>({ open: false });

  const teamList = teams.data?.data ?? [];
  const keyList = keys.data?.data ?? [];
  const list = [...(budgets.data?.data ?? [])].sort(
    (a, b) => (SCOPE_ORDER[a.scope] ?? 9) - (SCOPE_ORDER[b.scope] ?? 9) || a.created_at.localeCompare(b.created_at),
  );
  const newButton = manage ? (
    <Button onClick={() => setDialog({ open: true })}>
      <Plus aria-hidden /> New budget
    </Button>
  ) : null;

  return (
    <>
      <PageHeader
        title="Budgets & limits"
        description="Spend caps per period and rate limits for the organization, its teams and its API keys. The gateway enforces them on every request."
        actions={newButton}
      />
      <div className="space-y-8">
        <section aria-labelledby="budgets-title" className="space-y-3">
          <div className="flex flex-wrap items-end justify-between gap-2">
            <h2 id="budgets-title" className="text-base font-semibold text-slate-900">
              Budgets
            </h2>
            <p className="flex items-center gap-3 text-xs text-slate-500">
              <span className="inline-flex items-center gap-1.5">
                <span className="inline-block h-2 w-4 rounded-sm bg-brand-600" aria-hidden /> spent
              </span>
              <span className="inline-flex items-center gap-1.5">
                <span className="inline-block h-2 w-4 rounded-sm bg-[repeating-linear-gradient(45deg,#94a3b8_0,#94a3b8_4px,#cbd5e1_4px,#cbd5e1_8px)]" aria-hidden />{" "}
                reserved by requests in flight
              </span>
            </p>
          </div>
          {budgets.isPending ? (
            <Card>
              <Loading label="Loading budgets" />
            </Card>
          ) : budgets.isError ? (
            <Card>
              <ErrorState error={budgets.error} onRetry={() => void budgets.refetch()} title="Could not load budgets" />
            </Card>
          ) : list.length === 0 ? (
            <Card>
              <Empty
                icon={<Wallet className="size-8" />}
                title="No budgets yet"
                description={
                  manage
                    ? "Cap what the organization, a team or an API key can spend per day, week, month or in total. Hard caps refuse requests that could go over; soft caps only alert."
                    : "Owners and admins set budgets; none are set for this organization."
                }
                action={newButton}
              />
            </Card>
          ) : (
            <ul className="grid gap-4 md:grid-cols-2 xl:grid-cols-3" aria-label="Budgets">
              {list.map((b) => (
                <BudgetCard key={b.id} budget={b} teams={teamList} keys={keyList} canManage={manage} onEdit={(budget) => setDialog({ open: true, budget })} />
              ))}
            </ul>
          )}
          <WebhookStatus org={org.data} />
        </section>

        {manage ? <AlertsSection teams={teamList} keys={keyList} /> : null}

        <section aria-label="Rate limits">
          {org.isPending || teams.isPending || keys.isPending ? (
            <Card>
              <Loading label="Loading rate limits" />
            </Card>
          ) : org.isError || teams.isError || keys.isError ? (
            <Card>
              <ErrorState
                error={org.error ?? teams.error ?? keys.error}
                onRetry={() => {
                  void org.refetch();
                  void teams.refetch();
                  void keys.refetch();
                }}
                title="Could not load rate limits"
              />
            </Card>
          ) : (
            <LimitsSection rows={limitRows(org.data, teamList, keyList, { manage, write })} />
          )}
        </section>
      </div>
      <BudgetDialog
        open={dialog.open}
        budget={dialog.budget}
        onOpenChange={(open) => setDialog((d) => ({ ...d, open }))}
        teams={teamList}
        keys={keyList}
      />
    </>
  );
}
