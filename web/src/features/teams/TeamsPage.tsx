import { Link, useNavigate } from "@tanstack/react-router";
import { useQueryClient } from "@tanstack/react-query";
import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useState } from "react";
import { toast } from "sonner";
import { Plus, Trash2, Users } from "lucide-react";
import { $api, type Schemas } from "@/api/client";
import { applyServerErrors, errorMessage } from "@/api/errors";
import { canManage, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card } from "@/components/ui/card";
import { Button } from "@/components/ui/button";
import { Badge } from "@/components/ui/badge";
import { Dialog } from "@/components/ui/dialog";
import { FormError } from "@/components/ui/field";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatDate, formatInt } from "@/lib/format";
import { TeamFields } from "./TeamFields";
import { limitToApi, teamSchema, type TeamForm } from "./schemas";

export const TEAMS_KEY = ["get", "/api/v1/teams"] as const;

export function RegionBadges({ regions }: { regions: string[] | null | undefined }) {
  if (!regions || regions.length === 0) return <span className="text-slate-500">Any</span>;
  return (
    <span className="flex flex-wrap gap-1">
      {regions.map((r) => (
        <Badge key={r} tone="brand" className="font-mono">
          {r}
        </Badge>
      ))}
    </span>
  );
}

export function CreateTeamDialog({ open, onOpenChange }: { open: boolean; onOpenChange: (o: boolean) => void }) {
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [formError, setFormError] = useState<string | null>(null);
  const form = useForm<TeamForm>({
    resolver: zodResolver(teamSchema),
    defaultValues: { name: "", rpm_limit: "", tpm_limit: "", allowed_regions: [] },
  });
  const create = $api.useMutation("post", "/api/v1/teams");
  const close = (o: boolean) => {
    if (!o) {
      form.reset();
      setFormError(null);
    }
    onOpenChange(o);
  };
  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    try {
      const body: Schemas["CreateTeamRequest"] = { name: v.name.trim() };
      const rpm = limitToApi(v.rpm_limit);
      const tpm = limitToApi(v.tpm_limit);
      if (rpm != null) body.rpm_limit = rpm;
      if (tpm != null) body.tpm_limit = tpm;
      if (v.allowed_regions.length > 0) body.allowed_regions = v.allowed_regions;
      const team = await create.mutateAsync({ body });
      await queryClient.invalidateQueries({ queryKey: TEAMS_KEY });
      toast.success(`Team ${team.name} created`);
      close(false);
      await navigate({ to: "/teams/$teamId", params: { teamId: team.id } });
    } catch (err) {
      setFormError(applyServerErrors(form, err));
    }
  });
  return (
    <Dialog
      open={open}
      onOpenChange={close}
      title="Create a team"
      description="Teams group people and keys under shared limits, budgets and a region policy."
      size="lg"
      footer={
        <>
          <Button variant="secondary" onClick={() => close(false)}>
            Cancel
          </Button>
          <Button type="submit" form="create-team" loading={form.formState.isSubmitting}>
            Create team
          </Button>
        </>
      }
    >
      <form id="create-team" onSubmit={onSubmit} noValidate className="space-y-4">
        <FormError message={formError} />
        <TeamFields form={form} />
      </form>
    </Dialog>
  );
}

export function TeamsPage() {
  const { role } = useSession();
  const manage = canManage(role);
  const queryClient = useQueryClient();
  const [creating, setCreating] = useState(false);
  const teams = $api.useQuery("get", "/api/v1/teams");
  const remove = $api.useMutation("delete", "/api/v1/teams/{id}");

  const createButton = manage ? (
    <Button onClick={() => setCreating(true)}>
      <Plus aria-hidden /> Create team
    </Button>
  ) : null;

  const deleteTeam = async (t: Schemas["TeamDto"]) => {
    try {
      await remove.mutateAsync({ params: { path: { id: t.id } } });
      await queryClient.invalidateQueries({ queryKey: TEAMS_KEY });
      toast.success(`Team ${t.name} deleted`);
    } catch (err) {
      toast.error(errorMessage(err));
      throw err;
    }
  };

  let body;
  if (teams.isPending) body = <Loading label="Loading teams" />;
  else if (teams.isError) body = <ErrorState error={teams.error} onRetry={() => void teams.refetch()} title="Could not load the teams" />;
  else if (teams.data.data.length === 0)
    body = (
      <Empty
        icon={<Users className="size-8" />}
        title="No teams yet"
        description={
          manage
            ? "Create a team to give a group of people shared keys, rate limits, budgets and a region policy."
            : "An owner or admin can create teams."
        }
        action={createButton}
      />
    );
  else
    body = (
      <Table>
        <THead>
          <tr>
            <TH>Team</TH>
            <TH>Allowed regions</TH>
            <TH className="text-right">Requests / min</TH>
            <TH className="text-right">Tokens / min</TH>
            <TH>Created</TH>
            {manage ? <TH className="relative"><span className="sr-only">Actions</span></TH> : null}
          </tr>
        </THead>
        <TBody>
          {teams.data.data.map((t) => (
            <TR key={t.id}>
              <TD className="font-medium">
                <Link to="/teams/$teamId" params={{ teamId: t.id }} className="text-brand-700 hover:underline">
                  {t.name}
                </Link>
              </TD>
              <TD>
                <RegionBadges regions={t.allowed_regions} />
              </TD>
              <TD className="text-right tabular-nums">{t.rpm_limit == null ? <span className="text-slate-500">No limit</span> : formatInt(t.rpm_limit)}</TD>
              <TD className="text-right tabular-nums">{t.tpm_limit == null ? <span className="text-slate-500">No limit</span> : formatInt(t.tpm_limit)}</TD>
              <TD className="text-slate-600">{formatDate(t.created_at)}</TD>
              {manage ? (
                <TD className="text-right">
                  <ConfirmDialog
                    trigger={
                      <Button variant="ghost" size="icon" aria-label={`Delete team ${t.name}`}>
                        <Trash2 aria-hidden />
                      </Button>
                    }
                    title={`Delete team ${t.name}?`}
                    description="This cannot be undone. Its members stay in the organization."
                    confirmLabel="Delete team"
                    onConfirm={() => deleteTeam(t)}
                  />
                </TD>
              ) : null}
            </TR>
          ))}
        </TBody>
      </Table>
    );

  return (
    <>
      <PageHeader
        title="Teams"
        description="Teams share rate limits, budgets and a region policy across their keys."
        actions={teams.data && teams.data.data.length > 0 ? createButton : null}
      />
      <Card>{body}</Card>
      {manage ? <CreateTeamDialog open={creating} onOpenChange={setCreating} /> : null}
    </>
  );
}
