import { CreditCard, ExternalLink, Receipt, TriangleAlert } from "lucide-react";
import { useState } from "react";
import { Link, useSearch } from "@tanstack/react-router";
import { toast } from "sonner";
import { $api, type Schemas } from "@/api/client";
import { errorMessage } from "@/api/errors";
import { useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card, CardBody, CardHeader } from "@/components/ui/card";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { Empty, ErrorState, Loading } from "@/components/states";
import { ResourceCard, ResourceCardList } from "@/components/ui/resource-card";
import { useNarrow } from "@/lib/useNarrow";
import { formatDate, formatDateTime, formatMicros, formatUsd } from "@/lib/format";

type Billing = Schemas["BillingDto"];
type Invoice = Schemas["InvoiceDto"];

const STATUS: Record<string, { label: string; tone: "success" | "warning" | "danger" | "neutral" | "brand"; help: string }> = {
  active: { label: "Active", tone: "success", help: "Your subscription is in good standing." },
  past_due: { label: "Past due", tone: "warning", help: "A payment failed. Update the payment method before the grace period ends." },
  suspended: { label: "Suspended", tone: "danger", help: "API requests are refused until this is resolved." },
  free: { label: "Free plan", tone: "neutral", help: "No subscription: the plan's included credit applies." },
  disabled: { label: "Billing off", tone: "neutral", help: "This server does not bill usage." },
};

function statusOf(s: string) {
  return STATUS[s] ?? { label: s, tone: "neutral" as const, help: "" };
}

/** Invoice amounts are in the currency's smallest unit (cents for USD). */
function money(amountMinor: number, currency: string): string {
  const code = currency.toUpperCase();
  try {
    const digits = new Intl.NumberFormat("en-US", { style: "currency", currency: code }).resolvedOptions().maximumFractionDigits ?? 2;
    return new Intl.NumberFormat("en-US", { style: "currency", currency: code }).format(amountMinor / 10 ** digits);
  } catch {
    return `${(amountMinor / 100).toFixed(2)} ${code}`;
  }
}

const fromUnix = (s: number) => new Date(s * 1000).toISOString();

function invoiceTone(status: string | null | undefined) {
  if (status === "paid") return "success" as const;
  if (status === "open") return "warning" as const;
  if (status === "uncollectible") return "danger" as const;
  return "neutral" as const;
}

function InvoiceLink({ invoice: i }: { invoice: Invoice }) {
  return i.hosted_invoice_url ? (
    <a href={i.hosted_invoice_url} target="_blank" rel="noreferrer noopener" className="inline-flex items-center gap-1 px-2 py-1 text-sm font-medium text-brand-700 hover:underline">
      View <ExternalLink className="size-3.5" aria-hidden />
      <span className="sr-only"> invoice {i.id} (opens Stripe in a new tab)</span>
    </a>
  ) : null;
}

function Invoices({ invoices }: { invoices: Invoice[] }) {
  const narrow = useNarrow();
  if (invoices.length === 0) {
    return <Empty icon={<Receipt className="size-8" />} title="No invoices yet" description="Invoices appear here once Stripe issues the first one, at the end of a billing period." />;
  }
  if (narrow) {
    return (
      <ResourceCardList label="Invoices">
        {invoices.map((i) => (
          <ResourceCard
            key={i.id}
            title={<span className="font-mono text-xs">{i.id}</span>}
            badge={<Badge tone={invoiceTone(i.status)}>{i.status ?? "unknown"}</Badge>}
            actions={<InvoiceLink invoice={i} />}
            fields={[
              { label: "Date", value: formatDate(fromUnix(i.created)) },
              { label: "Amount", value: money(i.amount_due, i.currency) },
              { label: "Period", value: `${formatDate(fromUnix(i.period_start))} – ${formatDate(fromUnix(i.period_end))}` },
            ]}
          />
        ))}
      </ResourceCardList>
    );
  }
  return (
    <Table>
      <THead>
        <tr>
          <TH>Invoice</TH>
          <TH>Date</TH>
          <TH>Period</TH>
          <TH className="text-right">Amount</TH>
          <TH>Status</TH>
          <TH>
            <span className="sr-only">Link</span>
          </TH>
        </tr>
      </THead>
      <TBody>
        {invoices.map((i) => (
          <TR key={i.id}>
            <TD className="font-mono text-xs">{i.id}</TD>
            <TD>{formatDate(fromUnix(i.created))}</TD>
            <TD className="text-slate-500">
              {formatDate(fromUnix(i.period_start))} – {formatDate(fromUnix(i.period_end))}
            </TD>
            <TD className="text-right tabular-nums">{money(i.amount_due, i.currency)}</TD>
            <TD>
              <Badge tone={invoiceTone(i.status)}>{i.status ?? "unknown"}</Badge>
            </TD>
            <TD>
              <InvoiceLink invoice={i} />
            </TD>
          </TR>
        ))}
      </TBody>
    </Table>
  );
}

function Reconciliation({ r }: { r: NonNullable<Billing["reconciliation"]> }) {
  return (
    <Card>
      <CardHeader
        title="Usage reporting"
        description={`Metered usage vs. what Stripe accepted, per closed hour, ${formatDateTime(fromUnix(r.from))} – ${formatDateTime(fromUnix(r.to))}.`}
        actions={r.reconciled ? <Badge tone="success">Reconciled</Badge> : <Badge tone="warning">{r.mismatched.length} pending</Badge>}
      />
      <CardBody>
        <dl className="grid grid-cols-2 gap-4 text-sm sm:grid-cols-4">
          <Stat label="Closed hours" value={String(r.closed_windows)} />
          <Stat label="Matched" value={String(r.matched_windows)} />
          <Stat label="Metered" value={formatMicros(r.metered_micros)} />
          <Stat label="Reported" value={formatMicros(r.reported_micros)} />
        </dl>
      </CardBody>
      {r.mismatched.length > 0 ? (
        <Table>
          <THead>
            <tr>
              <TH>Hour</TH>
              <TH className="text-right">Metered</TH>
              <TH className="text-right">Reported</TH>
            </tr>
          </THead>
          <TBody>
            {r.mismatched.slice(0, 24).map((m) => (
              <TR key={m.window_start}>
                <TD>{formatDateTime(fromUnix(m.window_start))}</TD>
                <TD className="text-right tabular-nums">{formatMicros(m.metered_micros)}</TD>
                <TD className="text-right tabular-nums">{formatMicros(m.reported_micros)}</TD>
              </TR>
            ))}
          </TBody>
        </Table>
      ) : null}
    </Card>
  );
}

function Stat({ label, value, hint }: { label: string; value: string; hint?: string | undefined }) {
  return (
    <div>
      <dt className="text-slate-500">{label}</dt>
      <dd className="mt-0.5 text-lg font-semibold tabular-nums text-slate-900">{value}</dd>
      {hint ? <dd className="text-xs text-slate-500">{hint}</dd> : null}
    </div>
  );
}

/** Checkout / portal: ask the API for a Stripe-hosted page, then send the browser there. */
function useStripeRedirect() {
  const checkout = $api.useMutation("post", "/api/v1/billing/checkout");
  const portal = $api.useMutation("post", "/api/v1/billing/portal");
  const [going, setGoing] = useState<"checkout" | "portal" | null>(null);
  const here = `${window.location.origin}/billing`;
  const go = async (which: "checkout" | "portal") => {
    setGoing(which);
    try {
      const session =
        which === "checkout"
          ? await checkout.mutateAsync({ body: { success_url: `${here}?checkout=success`, cancel_url: here } })
          : await portal.mutateAsync({ body: { return_url: here } });
      window.location.assign(session.url);
    } catch (err) {
      toast.error(errorMessage(err));
      setGoing(null);
    }
  };
  return { going, go };
}

function Actions({ billing, owner }: { billing: Billing; owner: boolean }) {
  const { going, go } = useStripeRedirect();
  if (!owner) return <p className="text-sm text-slate-500">Only owners change the plan or the payment method.</p>;
  const subscribed = billing.plan.kind === "payg" && !!billing.subscription_status && billing.subscription_status !== "canceled";
  return (
    <div className="flex flex-wrap gap-2">
      {billing.plan.kind !== "enterprise" && !subscribed ? (
        <Button loading={going === "checkout"} disabled={going !== null} onClick={() => void go("checkout")}>
          <CreditCard aria-hidden /> Add payment method / upgrade
        </Button>
      ) : null}
      {billing.stripe_customer_id ? (
        <Button variant="secondary" loading={going === "portal"} disabled={going !== null} onClick={() => void go("portal")}>
          Manage billing <ExternalLink aria-hidden />
        </Button>
      ) : null}
    </div>
  );
}

export function BillingView({ billing, owner }: { billing: Billing; owner: boolean }) {
  if (!billing.enabled) {
    return (
      <Card>
        <Empty
          icon={<CreditCard className="size-8" />}
          title="Billing is not enabled on this server"
          description={billing.message ?? "Usage is not billed and no organization is suspended by billing."}
          action={
            <p className="text-xs text-slate-500">
              Plan: <span className="font-medium text-slate-700">{billing.plan.name}</span>. Spend caps still apply:{" "}
              <Link to="/budgets" className="font-medium text-brand-700 hover:underline">
                Budgets &amp; limits
              </Link>
              .
            </p>
          }
        />
      </Card>
    );
  }
  const st = statusOf(billing.status);
  const p = billing.current_period;
  return (
    <div className="space-y-6">
      {billing.invoices_error ? (
        <div role="status" className="flex items-start gap-2 rounded-md border border-amber-200 bg-amber-50 px-3 py-2 text-sm text-amber-800">
          <TriangleAlert className="mt-0.5 size-4 shrink-0" aria-hidden /> {billing.invoices_error}
        </div>
      ) : null}
      <Card>
        <CardHeader
          title={
            <span className="flex flex-wrap items-center gap-2">
              Plan: {billing.plan.name}
              <Badge tone={st.tone}>{st.label}</Badge>
            </span>
          }
          description={
            billing.plan.kind === "payg"
              ? `Pay as you go: provider cost + ${((billing.plan.margin_bps ?? 0) / 100).toFixed(0)} %, billed monthly by Stripe.`
              : billing.plan.kind === "free"
                ? `Free: ${formatMicros(billing.plan.included_credit_micros ?? 0)} of usage included each month.`
                : "Enterprise: invoiced separately."
          }
          actions={<Actions billing={billing} owner={owner} />}
        />
        <CardBody className="space-y-4">
          {st.help ? <p className="text-sm text-slate-600">{st.help}</p> : null}
          {billing.suspension ? (
            <p className="rounded-md bg-red-50 px-3 py-2 text-sm text-red-700">{billing.suspension.message}</p>
          ) : null}
          {billing.status === "past_due" && billing.grace_ends_at ? (
            <p className="rounded-md bg-amber-50 px-3 py-2 text-sm text-amber-800">
              Payment failed {formatDateTime(billing.payment_failed_at)}. Requests will be refused from {formatDateTime(billing.grace_ends_at)} unless the invoice is paid.
            </p>
          ) : null}
          {p ? (
            <div>
              <h3 className="text-sm font-medium text-slate-800">
                This period <span className="font-normal text-slate-500">({formatDate(p.start)} – {formatDate(p.end)})</span>
              </h3>
              <dl className="mt-2 grid grid-cols-2 gap-4 text-sm sm:grid-cols-4">
                <Stat label="Provider cost" value={formatUsd(p.cost_usd)} />
                <Stat label="Billed" value={formatUsd(p.billed_usd)} />
                {p.included_credit_usd != null ? <Stat label="Included credit" value={formatUsd(p.included_credit_usd)} /> : null}
                {p.credit_remaining_usd != null ? <Stat label="Credit left" value={formatUsd(p.credit_remaining_usd)} /> : null}
              </dl>
            </div>
          ) : null}
        </CardBody>
      </Card>
      <Card>
        <CardHeader title="Invoices" description="The latest invoices from Stripe." />
        <Invoices invoices={billing.invoices} />
      </Card>
      {billing.reconciliation ? <Reconciliation r={billing.reconciliation} /> : null}
    </div>
  );
}

export function BillingPage() {
  const { role } = useSession();
  // Stripe Checkout sends the user back with `?checkout=success`.
  const returned = (useSearch({ strict: false }) as { checkout?: string }).checkout === "success";
  const allowed = role === "owner" || role === "admin";
  const billing = $api.useQuery("get", "/api/v1/billing", undefined, { enabled: allowed });
  return (
    <>
      <PageHeader title="Billing" description="Your plan, this period's usage, invoices and payment settings." />
      {returned && allowed ? (
        <div role="status" className="mb-4 rounded-md border border-emerald-200 bg-emerald-50 px-3 py-2 text-sm text-emerald-800">
          Thanks! Your subscription starts as soon as Stripe confirms the payment method (usually within seconds); refresh to see it.
        </div>
      ) : null}
      {!allowed ? (
        <Card>
          <Empty title="Billing is for owners and admins" description="Ask an owner of the organization about its plan and invoices." />
        </Card>
      ) : billing.isPending ? (
        <Card>
          <Loading label="Loading billing" rows={4} />
        </Card>
      ) : billing.isError ? (
        <Card>
          <ErrorState error={billing.error} onRetry={() => void billing.refetch()} title="Could not load billing" />
        </Card>
      ) : (
        <BillingView billing={billing.data} owner={role === "owner"} />
      )}
    </>
  );
}
