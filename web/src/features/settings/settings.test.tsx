import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { server } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { apiError, on, TENANT } from "@/features/members/fixtures";
import type { Schemas } from "@/api/client";
import { SettingsPage } from "./SettingsPage";

const org: Schemas["OrganizationDetails"] = {
  id: TENANT.id,
  name: "Acme",
  created_at: TENANT.created_at,
  alert_webhook_secret_set: false,
  alert_webhook_url: null,
  allowed_regions: null,
  rpm_limit: null,
  tpm_limit: 50000,
  store_payloads: false,
  usage_retention_days: null,
};

const models = on("get", "/api/v1/models", () => ({ data: [] }));

describe("SettingsPage", () => {
  it("renames the organization (trimmed) and refreshes the switcher's name", async () => {
    const user = userEvent.setup();
    let body: unknown = null;
    server.use(
      models,
      on("get", "/api/v1/organization", () => org),
      on("patch", "/api/v1/organization", async ({ request }) => {
        body = await request.json();
        return { ...org, name: "Acme Labs" };
      }),
    );
    renderWithApp(<SettingsPage />);
    const name = await screen.findByLabelText("Organization name");
    await user.clear(name);
    await user.click(screen.getByRole("button", { name: "Save changes" }));
    expect(await screen.findByText("Name your organization")).toBeInTheDocument();
    await user.type(name, "  Acme Labs ");
    await user.click(screen.getByRole("button", { name: "Save changes" }));
    await waitFor(() => expect(body).toEqual({ name: "Acme Labs" }));
  });

  it("saves only what changed, and shows the webhook secret once", async () => {
    const user = userEvent.setup();
    let body: unknown = null;
    server.use(
      models,
      on("get", "/api/v1/organization", () => org),
      on("patch", "/api/v1/organization", async ({ request }) => {
        body = await request.json();
        return {
          ...org,
          alert_webhook_url: "https://hooks.example.com/sy",
          alert_webhook_secret_set: true,
          alert_webhook_secret: "whsec_abc123",
          store_payloads: true,
          usage_retention_days: 90,
        };
      }),
    );
    renderWithApp(<SettingsPage />);
    expect(await screen.findByText(TENANT.id)).toBeInTheDocument();
    await user.type(screen.getByLabelText("Alert webhook URL"), "https://hooks.example.com/sy");
    await user.click(screen.getByRole("switch", { name: "Store prompts and answers" }));
    expect(screen.getByText(/data agreements allow storing/)).toBeInTheDocument();
    await user.type(screen.getByLabelText("Usage retention (days)"), "90");
    await user.click(screen.getByRole("button", { name: "Save changes" }));
    await waitFor(() =>
      expect(body).toEqual({ alert_webhook_url: "https://hooks.example.com/sy", store_payloads: true, usage_retention_days: 90 }),
    );
    expect(await screen.findByLabelText("Webhook signing secret")).toHaveValue("whsec_abc123");
  });

  it("validates fields and shows the server's field error", async () => {
    const user = userEvent.setup();
    let calls = 0;
    server.use(
      models,
      on("get", "/api/v1/organization", () => org),
      on("patch", "/api/v1/organization", () => {
        calls += 1;
        return apiError(400, "validation_failed", "alert_webhook_url: private addresses are not allowed");
      }),
    );
    renderWithApp(<SettingsPage />);
    await user.type(await screen.findByLabelText("Alert webhook URL"), "ftp://nope");
    await user.type(screen.getByLabelText("Usage retention (days)"), "9999");
    await user.click(screen.getByRole("button", { name: "Save changes" }));
    expect(await screen.findByText("Use an http:// or https:// URL, or leave empty for none")).toBeInTheDocument();
    expect(screen.getByText("Between 1 and 3650 days")).toBeInTheDocument();
    expect(calls).toBe(0);
    await user.clear(screen.getByLabelText("Alert webhook URL"));
    await user.type(screen.getByLabelText("Alert webhook URL"), "http://10.0.0.1/hook");
    await user.clear(screen.getByLabelText("Usage retention (days)"));
    await user.click(screen.getByRole("button", { name: "Save changes" }));
    expect(await screen.findByText("private addresses are not allowed")).toBeInTheDocument();
    expect(calls).toBe(1);
  });

  it("rotating the webhook secret asks for confirmation", async () => {
    const user = userEvent.setup();
    let rotated = false;
    server.use(
      models,
      on("get", "/api/v1/organization", () => ({ ...org, alert_webhook_url: "https://hooks.example.com/sy", alert_webhook_secret_set: true })),
      on("post", "/api/v1/organization/webhook-secret", () => {
        rotated = true;
        return { alert_webhook_secret: "whsec_new" };
      }),
    );
    renderWithApp(<SettingsPage />);
    await user.click(await screen.findByRole("button", { name: "Rotate secret" }));
    const dialog = await screen.findByRole("alertdialog", { name: "Rotate the webhook signing secret?" });
    expect(rotated).toBe(false);
    await user.click(within(dialog).getByRole("button", { name: "Rotate secret" }));
    expect(await screen.findByLabelText("Webhook signing secret")).toHaveValue("whsec_new");
    expect(rotated).toBe(true);
  });

  it("is read-only for members and viewers", async () => {
    server.use(models, on("get", "/api/v1/organization", () => org));
    renderWithApp(<SettingsPage />, { role: "member" as const });
    expect(await screen.findByLabelText("Tokens per minute")).toBeDisabled();
    expect(screen.getByLabelText("Tokens per minute")).toHaveValue("50000");
    expect(screen.getByRole("switch", { name: "Store prompts and answers" })).toBeDisabled();
    expect(screen.queryByRole("button", { name: "Save changes" })).not.toBeInTheDocument();
  });
});
