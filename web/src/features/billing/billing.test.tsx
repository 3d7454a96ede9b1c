import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import type { Schemas } from "@/api/client";
import { server } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { on, org } from "../budgets/fixtures";
import { BillingPage } from "./BillingPage";
import { SuspensionBanner } from "./SuspensionBanner";

const disabled: Schemas["BillingDto"] = {
  enabled: false,
  message: "Billing is off on this server: no STRIPE_SECRET_KEY is configured, so usage is not billed and no organization is suspended by billing.",
  plan: { name: "free", kind: "free", included_credit_micros: 5_000_000, margin_bps: 2000 },
  status: "disabled",
  invoices: [],
};

const enabled: Schemas["BillingDto"] = {
  enabled: true,
  plan: { name: "payg", kind: "payg", margin_bps: 2000 },
  status: "past_due",
  subscription_status: "past_due",
  stripe_customer_id: "cus_123",
  payment_failed_at: "2026-12-01T10:00:00Z",
  grace_ends_at: "2026-12-04T10:00:00Z",
  current_period: { start: "2026-12-01T00:00:00Z", end: "2027-01-01T00:00:00Z", cost_usd: "1.25", billed_usd: "1.5" },
  invoices: [
    {
      id: "in_1",
      status: "open",
      currency: "usd",
      amount_due: 212,
      amount_paid: 0,
      created: 1_764_547_200,
      period_start: 1_761_955_200,
      period_end: 1_764_547_200,
      hosted_invoice_url: "https://invoice.stripe.com/i/in_1",
    },
  ],
  invoices_error: null,
  reconciliation: { from: 1_764_547_200, to: 1_764_633_600, closed_windows: 3, matched_windows: 3, mismatched: [], metered_micros: 1_500_000, reported_micros: 1_500_000, reconciled: true },
};

describe("BillingPage", () => {
  it("shows the zero-setup 'billing off' answer as an informative empty state, not an error", async () => {
    server.use(on("get", "/api/v1/billing", () => disabled));
    renderWithApp(<BillingPage />);
    expect(await screen.findByText("Billing is not enabled on this server")).toBeInTheDocument();
    expect(screen.getByText(/no STRIPE_SECRET_KEY is configured/)).toBeInTheDocument();
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /upgrade/ })).not.toBeInTheDocument();
  });

  it("shows plan, status, invoices and the invoices warning; owners get the Stripe actions", async () => {
    server.use(on("get", "/api/v1/billing", () => ({ ...enabled, invoices_error: "Stripe could not be reached; try again shortly" })));
    renderWithApp(<BillingPage />);
    expect(await screen.findByText("Past due")).toBeInTheDocument();
    expect(screen.getByText("Stripe could not be reached; try again shortly")).toBeInTheDocument();
    const table = screen.getByText("in_1").closest("table")!;
    expect(within(table).getByText("$2.12")).toBeInTheDocument();
    expect(within(table).getByRole("link", { name: /View/ })).toHaveAttribute("href", "https://invoice.stripe.com/i/in_1");
    expect(screen.getByRole("button", { name: /Manage billing/ })).toBeInTheDocument();
    expect(screen.getByText("Reconciled")).toBeInTheDocument();
  });

  it("admins read billing but do not get the owner-only Stripe actions", async () => {
    server.use(on("get", "/api/v1/billing", () => enabled));
    renderWithApp(<BillingPage />, { role: "admin" });
    expect(await screen.findByText("Only owners change the plan or the payment method.")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Manage billing/ })).not.toBeInTheDocument();
  });
});

describe("SuspensionBanner", () => {
  const suspended = {
    ...org,
    suspension: {
      reason: "credit_exhausted",
      message: "This organization has used the $5 of usage its free plan includes this month.",
      since: "2026-12-05T10:00:00Z",
    },
  };

  it("warns every member of a suspended organization (viewers get no billing link)", async () => {
    server.use(on("get", "/api/v1/organization", () => suspended));
    renderWithApp(<SuspensionBanner />, { role: "viewer" });
    const banner = await screen.findByRole("alert");
    expect(banner).toHaveTextContent("this organization is suspended");
    expect(banner).toHaveTextContent("its free plan includes this month");
    expect(within(banner).queryByRole("link")).not.toBeInTheDocument();
    expect(banner).toHaveTextContent("Ask an owner or admin");
  });

  it("links admins to the billing page", async () => {
    server.use(on("get", "/api/v1/organization", () => suspended));
    renderWithApp(<SuspensionBanner />, { role: "admin" });
    const banner = await screen.findByRole("alert");
    expect(within(banner).getByRole("link", { name: "Go to billing" })).toHaveAttribute("href", "/billing");
  });

  it("shows nothing when the organization is in good standing", async () => {
    let asked = false;
    server.use(
      on("get", "/api/v1/organization", () => {
        asked = true;
        return org;
      }),
    );
    const { container } = renderWithApp(<SuspensionBanner />);
    await waitFor(() => expect(asked).toBe(true));
    expect(container).toBeEmptyDOMElement();
  });
});
