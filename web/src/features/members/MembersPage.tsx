import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { toast } from "sonner";
import { MailPlus, Trash2, UserPlus, X } from "lucide-react";
import { $api, type Schemas } from "@/api/client";
import { errorMessage } from "@/api/errors";
import type { Role } from "@/auth/session";
import { canManage, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card, CardHeader } from "@/components/ui/card";
import { Button } from "@/components/ui/button";
import { Badge } from "@/components/ui/badge";
import { NativeSelect } from "@/components/ui/input";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatDate, formatRelative } from "@/lib/format";
import { INVITATIONS_KEY, InviteDialog } from "./InviteDialog";
import { ROLES } from "./schemas";

export const MEMBERS_KEY = ["get", "/api/v1/members"] as const;

type Member = Schemas["MemberDto"];

function RoleBadge({ role }: { role: Role }) {
  return <Badge tone={role === "owner" ? "brand" : role === "viewer" ? "neutral" : "success"}>{role}</Badge>;
}

/** What the caller may do to a member (the server enforces the same rules). */
function permissions(myRole: Role | null, me: string | undefined, m: Member) {
  const manage = canManage(myRole);
  const touchesOwner = m.role === "owner";
  const allowed = manage && (myRole === "owner" || !touchesOwner);
  return { changeRole: allowed, remove: allowed && m.user_id !== me };
}

function RoleSelect({ member, myRole }: { member: Member; myRole: Role | null }) {
  const queryClient = useQueryClient();
  const update = $api.useMutation("patch", "/api/v1/members/{user_id}");
  const options = ROLES.filter((r) => r.value !== "owner" || myRole === "owner");
  return (
    <NativeSelect
      aria-label={`Role of ${member.email}`}
      className="h-8 w-32"
      value={member.role}
      disabled={update.isPending}
      onChange={async (e) => {
        const role = e.target.value as Role;
        try {
          await update.mutateAsync({ params: { path: { user_id: member.user_id } }, body: { role } });
          await queryClient.invalidateQueries({ queryKey: MEMBERS_KEY });
          toast.success(`${member.email} is now ${role === "admin" ? "an" : "a"} ${role}`);
        } catch (err) {
          toast.error(errorMessage(err));
        }
      }}
    >
      {options.map((r) => (
        <option key={r.value} value={r.value}>
          {r.label}
        </option>
      ))}
    </NativeSelect>
  );
}

function MembersTable({ members, myRole, me }: { members: Member[]; myRole: Role | null; me: string | undefined }) {
  const queryClient = useQueryClient();
  const remove = $api.useMutation("delete", "/api/v1/members/{user_id}");
  const manage = canManage(myRole);
  const removeMember = async (m: Member) => {
    try {
      await remove.mutateAsync({ params: { path: { user_id: m.user_id } } });
      await queryClient.invalidateQueries({ queryKey: MEMBERS_KEY });
      toast.success(`${m.email} removed from the organization`);
    } catch (err) {
      toast.error(errorMessage(err));
      throw err;
    }
  };
  return (
    <Table>
      <THead>
        <tr>
          <TH>Email</TH>
          <TH>Role</TH>
          <TH>Joined</TH>
          {manage ? <TH className="relative"><span className="sr-only">Actions</span></TH> : null}
        </tr>
      </THead>
      <TBody>
        {members.map((m) => {
          const can = permissions(myRole, me, m);
          return (
            <TR key={m.user_id}>
              <TD className="font-medium">
                {m.email}{" "}
                {m.user_id === me ? <span className="ml-1 text-xs font-normal text-slate-500">(you)</span> : null}
              </TD>
              <TD>{can.changeRole ? <RoleSelect member={m} myRole={myRole} /> : <RoleBadge role={m.role} />}</TD>
              <TD className="text-slate-600">{formatDate(m.created_at)}</TD>
              {manage ? (
                <TD className="text-right">
                  {can.remove ? (
                    <ConfirmDialog
                      trigger={
                        <Button variant="ghost" size="icon" aria-label={`Remove ${m.email}`}>
                          <Trash2 aria-hidden />
                        </Button>
                      }
                      title={`Remove ${m.email}?`}
                      description="They lose access to this organization at once. You can invite them again later."
                      confirmLabel="Remove member"
                      onConfirm={() => removeMember(m)}
                    />
                  ) : null}
                </TD>
              ) : null}
            </TR>
          );
        })}
      </TBody>
    </Table>
  );
}

function PendingInvitations({ myRole, onInvite }: { myRole: Role | null; onInvite: () => void }) {
  const queryClient = useQueryClient();
  const invitations = $api.useQuery("get", "/api/v1/invitations", {}, { staleTime: 0 });
  const teams = $api.useQuery("get", "/api/v1/teams");
  const revoke = $api.useMutation("delete", "/api/v1/invitations/{id}");
  const teamName = (id: string | null | undefined) => (id ? (teams.data?.data.find((t) => t.id === id)?.name ?? "—") : "—");
  const revokeOne = async (inv: Schemas["InvitationDto"]) => {
    try {
      await revoke.mutateAsync({ params: { path: { id: inv.id } } });
      await queryClient.invalidateQueries({ queryKey: INVITATIONS_KEY });
      toast.success(`Invitation for ${inv.email} revoked`);
    } catch (err) {
      toast.error(errorMessage(err));
      throw err;
    }
  };
  let body;
  if (invitations.isPending) body = <Loading label="Loading invitations" rows={2} />;
  else if (invitations.isError)
    body = <ErrorState error={invitations.error} onRetry={() => void invitations.refetch()} title="Could not load the invitations" />;
  else if (invitations.data.data.length === 0)
    body = (
      <Empty
        icon={<MailPlus className="size-8" />}
        title="No pending invitations"
        description="Invite a teammate: you get a link to send them."
        action={
          <Button variant="secondary" onClick={onInvite}>
            <UserPlus aria-hidden /> Invite a teammate
          </Button>
        }
      />
    );
  else
    body = (
      <Table>
        <THead>
          <tr>
            <TH>Email</TH>
            <TH>Role</TH>
            <TH>Team</TH>
            <TH>Invited</TH>
            <TH>Expires</TH>
            <TH className="relative"><span className="sr-only">Actions</span></TH>
          </tr>
        </THead>
        <TBody>
          {invitations.data.data.map((inv) => (
            <TR key={inv.id}>
              <TD className="font-medium">{inv.email}</TD>
              <TD>
                <RoleBadge role={inv.role} />
              </TD>
              <TD className="text-slate-600">{teamName(inv.team_id)}</TD>
              <TD className="text-slate-600">{formatRelative(inv.created_at)}</TD>
              <TD className="text-slate-600">{formatRelative(inv.expires_at)}</TD>
              <TD className="text-right">
                {inv.role !== "owner" || myRole === "owner" ? (
                  <ConfirmDialog
                    trigger={
                      <Button variant="ghost" size="sm" aria-label={`Revoke the invitation for ${inv.email}`}>
                        <X aria-hidden /> <span className="hidden sm:inline">Revoke</span>
                      </Button>
                    }
                    title={`Revoke the invitation for ${inv.email}?`}
                    description="Its link stops working at once. You can invite them again later."
                    confirmLabel="Revoke invitation"
                    onConfirm={() => revokeOne(inv)}
                  />
                ) : null}
              </TD>
            </TR>
          ))}
        </TBody>
      </Table>
    );
  return (
    <Card>
      <CardHeader title="Pending invitations" description="Links that have not been accepted yet." />
      {body}
    </Card>
  );
}

export function MembersPage() {
  const { role } = useSession();
  const manage = canManage(role);
  const [inviting, setInviting] = useState(false);
  // People join from elsewhere (an accepted link): refetch whenever the page opens.
  const members = $api.useQuery("get", "/api/v1/members", {}, { staleTime: 0 });
  const me = $api.useQuery("get", "/api/v1/me");
  const myId = me.data?.user.id;

  let body;
  if (members.isPending) body = <Loading label="Loading members" />;
  else if (members.isError) body = <ErrorState error={members.error} onRetry={() => void members.refetch()} title="Could not load the members" />;
  else if (members.data.data.length === 0) body = <Empty title="No members" description="Nobody belongs to this organization yet." />;
  else body = <MembersTable members={members.data.data} myRole={role} me={myId} />;

  return (
    <>
      <PageHeader
        title="Members"
        description={
          manage
            ? "People in this organization and their roles. Only owners grant or change the owner role."
            : "People in this organization and their roles. Only owners and admins change them."
        }
        actions={
          manage ? (
            <Button onClick={() => setInviting(true)}>
              <UserPlus aria-hidden /> Invite
            </Button>
          ) : null
        }
      />
      <div className="space-y-6">
        <Card>
          <CardHeader title="People" description={members.data ? `${members.data.data.length} in this organization` : undefined} />
          {body}
        </Card>
        {manage ? <PendingInvitations myRole={role} onInvite={() => setInviting(true)} /> : null}
      </div>
      {manage ? <InviteDialog open={inviting} onOpenChange={setInviting} /> : null}
    </>
  );
}
