/** Test data and MSW helpers for the people pages, typed from the generated API types. */
import { apiError, on, type Ok } from "@/test/msw";

export { apiError, on };

export const ME_ID = "00000000-0000-7000-8000-0000000000a1";
export const BOB_ID = "00000000-0000-7000-8000-0000000000b2";
export const TEAM_ID = "00000000-0000-7000-8000-0000000000c3";
export const TENANT = { id: "00000000-0000-7000-8000-000000000001", name: "Acme", created_at: "2026-11-01T10:00:00Z" };

export const me: Ok<"/api/v1/me", "get"> = {
  user: { id: ME_ID, email: "alice@example.com", created_at: "2026-11-01T10:00:00Z" },
  tenant: TENANT,
  role: "owner",
  organizations: [{ id: TENANT.id, name: TENANT.name, role: "owner" }],
};

export const members: Ok<"/api/v1/members", "get"> = {
  data: [
    { user_id: ME_ID, email: "alice@example.com", role: "owner", created_at: "2026-11-01T10:00:00Z" },
    { user_id: BOB_ID, email: "bob@example.com", role: "member", created_at: "2026-11-20T09:30:00Z" },
  ],
};

export const team = {
  id: TEAM_ID,
  name: "search",
  created_at: "2026-11-05T08:00:00Z",
  allowed_regions: ["eu"],
  rpm_limit: 1000,
  tpm_limit: null,
} satisfies Ok<"/api/v1/teams/{id}", "get">;

