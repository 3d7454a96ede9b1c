/** Test data and MSW helpers for the governance pages, typed from the generated API types. */
import type { Schemas } from "@/api/client";
import { apiError, on, type Ok } from "@/test/msw";

export { apiError, on, type Ok };

export const TENANT_ID = "00000000-0000-7000-8000-000000000001";
export const TEAM_ID = "00000000-0000-7000-8000-0000000000c3";
export const KEY_ID = "00000000-0000-7000-8000-0000000000d4";
export const USER_ID = "00000000-0000-7000-8000-0000000000a1";

export const org: Schemas["OrganizationDetails"] = {
  id: TENANT_ID,
  name: "Acme",
  created_at: "2026-11-01T10:00:00Z",
  alert_webhook_secret_set: false,
  alert_webhook_url: null,
  store_payloads: false,
  rpm_limit: 5000,
  tpm_limit: null,
  suspension: null,
};

export const teams: Schemas["TeamList"] = {
  data: [{ id: TEAM_ID, name: "search", created_at: "2026-11-02T10:00:00Z", rpm_limit: null, tpm_limit: null }],
};

export const keys: Schemas["KeyList"] = {
  data: [
    {
      id: KEY_ID,
      name: "search backend",
      prefix: "sk-sy-AbCd…wxyz",
      created_at: "2026-11-03T10:00:00Z",
      created_by: USER_ID,
      metadata: {},
      team_id: TEAM_ID,
      rpm_limit: 100,
      tpm_limit: 20000,
    },
  ],
};

export function budget(over: Partial<Schemas["BudgetDto"]> = {}): Schemas["BudgetDto"] {
  return {
    id: "00000000-0000-7000-8000-0000000000e5",
    scope: "tenant",
    scope_id: TENANT_ID,
    limit_usd: "20",
    limit_micros: 20_000_000,
    period: "monthly",
    timezone: "UTC",
    hard: true,
    alert_thresholds: [50, 80, 100],
    spent_usd: "5",
    reserved_usd: "1",
    forecast_method: "linear_extrapolation",
    forecast_usd: "12.5",
    period_start: "2026-12-01T00:00:00Z",
    period_end: "2027-01-01T00:00:00Z",
    created_at: "2026-12-01T10:00:00Z",
    updated_at: "2026-12-01T10:00:00Z",
    ...over,
  };
}
