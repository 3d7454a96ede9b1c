import { useQueryClient } from "@tanstack/react-query";
import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useState } from "react";
import { toast } from "sonner";
import { Info } from "lucide-react";
import { $api, type Schemas } from "@/api/client";
import { applyServerErrors } from "@/api/errors";
import { useSession } from "@/auth/useSession";
import { Dialog } from "@/components/ui/dialog";
import { Button } from "@/components/ui/button";
import { CopyButton } from "@/components/ui/copy-button";
import { Field, FormError } from "@/components/ui/field";
import { Input, NativeSelect } from "@/components/ui/input";
import { formatDateTime } from "@/lib/format";
import { acceptLink, assignableRoles, inviteSchema, ROLES, type InviteForm } from "./schemas";
import { TeamOptions } from "@/features/teams/TeamOptions";

export const INVITATIONS_KEY = ["get", "/api/v1/invitations"] as const;

function InvitationLink({ invitation }: { invitation: Schemas["CreatedInvitation"] }) {
  const link = acceptLink(invitation.token);
  return (
    <div className="space-y-4">
      <p className="text-sm text-slate-700">
        <span className="font-medium">{invitation.email}</span> is invited as <span className="font-medium">{invitation.role}</span>.
      </p>
      <div className="space-y-1.5">
        <label htmlFor="invitation-link" className="block text-sm font-medium text-slate-800">
          Invitation link
        </label>
        <div className="flex flex-col gap-2 sm:flex-row">
          <Input id="invitation-link" readOnly value={link} className="font-mono text-xs" onFocus={(e) => e.currentTarget.select()} />
          <CopyButton value={link} label="Copy link" className="shrink-0" />
        </div>
      </div>
      <div className="flex gap-2 rounded-md border border-amber-200 bg-amber-50 px-3 py-2 text-sm text-amber-900">
        <Info className="mt-0.5 size-4 shrink-0" aria-hidden />
        <p>
          Switchyard sends no email: send this link to {invitation.email} yourself. It is shown only now, works once, and
          expires {formatDateTime(invitation.expires_at)}. They sign in or sign up with that email to accept.
        </p>
      </div>
    </div>
  );
}

export function InviteDialog({ open, onOpenChange }: { open: boolean; onOpenChange: (o: boolean) => void }) {
  const { role } = useSession();
  const queryClient = useQueryClient();
  const [created, setCreated] = useState<Schemas["CreatedInvitation"] | null>(null);
  const [formError, setFormError] = useState<string | null>(null);
  const teams = $api.useQuery("get", "/api/v1/teams", {}, { enabled: open });
  const invite = $api.useMutation("post", "/api/v1/invitations");
  const form = useForm<InviteForm>({
    resolver: zodResolver(inviteSchema),
    defaultValues: { email: "", role: "member", team_id: "" },
  });
  const roles = assignableRoles(role);
  const chosen = ROLES.find((r) => r.value === form.watch("role"));

  const close = (o: boolean) => {
    if (!o) {
      form.reset();
      setCreated(null);
      setFormError(null);
    }
    onOpenChange(o);
  };

  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    try {
      const body: Schemas["CreateInvitationRequest"] = { email: v.email.trim(), role: v.role };
      if (v.team_id) body.team_id = v.team_id;
      const inv = await invite.mutateAsync({ body });
      setCreated(inv);
      await queryClient.invalidateQueries({ queryKey: INVITATIONS_KEY });
      toast.success(`Invitation for ${inv.email} created`);
    } catch (err) {
      setFormError(applyServerErrors(form, err));
    }
  });

  return (
    <Dialog
      open={open}
      onOpenChange={close}
      title={created ? "Share the invitation link" : "Invite a teammate"}
      description={created ? undefined : "They join this organization when they accept, signed in with this email."}
      footer={
        created ? (
          <Button onClick={() => close(false)}>Done</Button>
        ) : (
          <>
            <Button variant="secondary" onClick={() => close(false)}>
              Cancel
            </Button>
            <Button type="submit" form="invite-form" loading={form.formState.isSubmitting}>
              Create invitation
            </Button>
          </>
        )
      }
    >
      {created ? (
        <InvitationLink invitation={created} />
      ) : (
        <form id="invite-form" onSubmit={onSubmit} noValidate className="space-y-4">
          <FormError message={formError} />
          <Field label="Email" error={form.formState.errors.email?.message}>
            <Input type="email" autoComplete="off" placeholder="teammate@example.com" {...form.register("email")} />
          </Field>
          <Field label="Role" error={form.formState.errors.role?.message} description={chosen?.help}>
            <NativeSelect {...form.register("role")}>
              {roles.map((r) => (
                <option key={r.value} value={r.value}>
                  {r.label}
                </option>
              ))}
            </NativeSelect>
          </Field>
          <Field
            label="Team (optional)"
            error={form.formState.errors.team_id?.message}
            description="They are added to this team when they accept."
          >
            <NativeSelect {...form.register("team_id")} disabled={teams.isPending}>
              <option value="">No team</option>
              <TeamOptions teams={teams.data?.data} />
            </NativeSelect>
          </Field>
        </form>
      )}
    </Dialog>
  );
}
