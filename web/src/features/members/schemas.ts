import { z } from "zod";
import type { Role } from "@/auth/session";

export const ROLES: { value: Role; label: string; help: string }[] = [
  { value: "owner", label: "Owner", help: "Everything, including billing and other owners." },
  { value: "admin", label: "Admin", help: "Manages providers, models, routes, teams, people and settings." },
  { value: "member", label: "Member", help: "Uses the gateway: creates keys for their teams." },
  { value: "viewer", label: "Viewer", help: "Reads everything, changes nothing." },
];

/** Roles the caller may hand out: only an owner grants the owner role. */
export function assignableRoles(myRole: Role | null) {
  return ROLES.filter((r) => r.value !== "owner" || myRole === "owner");
}

export const inviteSchema = z.object({
  email: z.email("Enter a valid email address"),
  role: z.enum(["owner", "admin", "member", "viewer"], "Choose a role"),
  team_id: z.string(),
});
export type InviteForm = z.infer<typeof inviteSchema>;

/** The console page where the invitee accepts (the API returns the token once). */
export function acceptLink(token: string, origin = window.location.origin): string {
  return `${origin}/invitations/${encodeURIComponent(token)}`;
}
