import { Link, useNavigate } from "@tanstack/react-router";
import { useQueryClient } from "@tanstack/react-query";
import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useState } from "react";
import { toast } from "sonner";
import { ArrowLeft, Trash2, UserMinus, UserPlus } from "lucide-react";
import { $api, type Schemas } from "@/api/client";
import { ApiError, applyServerErrors, errorMessage } from "@/api/errors";
import { canManage, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card, CardBody, CardHeader } from "@/components/ui/card";
import { Button } from "@/components/ui/button";
import { Badge } from "@/components/ui/badge";
import { FormError } from "@/components/ui/field";
import { NativeSelect } from "@/components/ui/input";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatDate } from "@/lib/format";
import { TeamFields } from "./TeamFields";
import { limitToApi, limitToForm, teamSchema, type TeamForm } from "./schemas";
import { TEAMS_KEY } from "./TeamsPage";
import { TeamKeys } from "./TeamKeys";

type Team = Schemas["TeamDto"];

function toForm(t: Team): TeamForm {
  return {
    name: t.name,
    rpm_limit: limitToForm(t.rpm_limit),
    tpm_limit: limitToForm(t.tpm_limit),
    allowed_regions: t.allowed_regions ?? [],
  };
}

function sameRegions(a: string[], b: string[] | null | undefined) {
  const bb = b ?? [];
  return a.length === bb.length && a.every((r, i) => r === bb[i]);
}

/** Only what changed: fields left out stay as they are on the server. */
export function teamPatch(team: Team, v: TeamForm): Schemas["UpdateTeamRequest"] {
  const patch: Schemas["UpdateTeamRequest"] = {};
  if (v.name.trim() !== team.name) patch.name = v.name.trim();
  const rpm = limitToApi(v.rpm_limit);
  if (rpm !== (team.rpm_limit ?? null)) patch.rpm_limit = rpm;
  const tpm = limitToApi(v.tpm_limit);
  if (tpm !== (team.tpm_limit ?? null)) patch.tpm_limit = tpm;
  if (!sameRegions(v.allowed_regions, team.allowed_regions)) {
    patch.allowed_regions = v.allowed_regions.length > 0 ? v.allowed_regions : null;
  }
  return patch;
}

function TeamSettings({ team, manage }: { team: Team; manage: boolean }) {
  const queryClient = useQueryClient();
  const [formError, setFormError] = useState<string | null>(null);
  const form = useForm<TeamForm>({ resolver: zodResolver(teamSchema), values: toForm(team) });
  const update = $api.useMutation("patch", "/api/v1/teams/{id}");
  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    const body = teamPatch(team, v);
    if (Object.keys(body).length === 0) {
      toast.info("Nothing to save");
      return;
    }
    try {
      const next = await update.mutateAsync({ params: { path: { id: team.id } }, body });
      queryClient.setQueryData(["get", "/api/v1/teams/{id}", { params: { path: { id: team.id } } }], next);
      await queryClient.invalidateQueries({ queryKey: TEAMS_KEY });
      form.reset(toForm(next));
      toast.success("Team settings saved");
    } catch (err) {
      setFormError(applyServerErrors(form, err));
    }
  });
  return (
    <Card>
      <CardHeader
        title="Settings"
        description={manage ? "Limits apply to all the team's keys together, on top of each key's own." : "Only owners and admins can change a team."}
      />
      <CardBody>
        <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label="Team settings">
          <FormError message={formError} />
          <TeamFields form={form} disabled={!manage} />
          {manage ? (
            <div className="flex justify-end gap-2">
              <Button variant="secondary" disabled={!form.formState.isDirty || form.formState.isSubmitting} onClick={() => form.reset(toForm(team))}>
                Discard
              </Button>
              <Button type="submit" loading={form.formState.isSubmitting} disabled={!form.formState.isDirty}>
                Save changes
              </Button>
            </div>
          ) : null}
        </form>
      </CardBody>
    </Card>
  );
}

function TeamMembers({ team, manage }: { team: Team; manage: boolean }) {
  const queryClient = useQueryClient();
  const path = { params: { path: { id: team.id } } };
  const members = $api.useQuery("get", "/api/v1/teams/{id}/members", path, { placeholderData: undefined });
  const orgMembers = $api.useQuery("get", "/api/v1/members", {}, { enabled: manage });
  const add = $api.useMutation("post", "/api/v1/teams/{id}/members");
  const remove = $api.useMutation("delete", "/api/v1/teams/{id}/members/{user_id}");
  const [picked, setPicked] = useState("");
  const [addError, setAddError] = useState<string | null>(null);
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/teams/{id}/members"] });

  const inTeam = new Set((members.data?.data ?? []).map((m) => m.user_id));
  const candidates = (orgMembers.data?.data ?? []).filter((m) => !inTeam.has(m.user_id));

  const onAdd = async () => {
    setAddError(null);
    if (!picked) {
      setAddError("Choose a member of the organization");
      return;
    }
    try {
      const m = await add.mutateAsync({ ...path, body: { user_id: picked } });
      setPicked("");
      await refresh();
      toast.success(`${m.email} added to ${team.name}`);
    } catch (err) {
      setAddError(errorMessage(err));
    }
  };

  const removeMember = async (m: Schemas["TeamMemberDto"]) => {
    try {
      await remove.mutateAsync({ params: { path: { id: team.id, user_id: m.user_id } } });
      await refresh();
      toast.success(`${m.email} removed from ${team.name}`);
    } catch (err) {
      toast.error(errorMessage(err));
      throw err;
    }
  };

  let body;
  if (members.isPending) body = <Loading label="Loading team members" />;
  else if (members.isError) body = <ErrorState error={members.error} onRetry={() => void members.refetch()} title="Could not load the team's members" />;
  else if (members.data.data.length === 0)
    body = (
      <Empty
        title="Nobody in this team yet"
        description={
          manage
            ? "Add members of the organization below. Members with the member role can create keys only for their teams."
            : "An owner or admin can add people to this team."
        }
      />
    );
  else
    body = (
      <Table>
        <THead>
          <tr>
            <TH>Email</TH>
            <TH>Organization role</TH>
            <TH>Added</TH>
            {manage ? <TH className="relative"><span className="sr-only">Actions</span></TH> : null}
          </tr>
        </THead>
        <TBody>
          {members.data.data.map((m) => (
            <TR key={m.user_id}>
              <TD className="font-medium">{m.email}</TD>
              <TD>
                <Badge tone={m.role === "owner" ? "brand" : "neutral"}>{m.role}</Badge>
              </TD>
              <TD className="text-slate-600">{formatDate(m.created_at)}</TD>
              {manage ? (
                <TD className="text-right">
                  <ConfirmDialog
                    trigger={
                      <Button variant="ghost" size="sm" aria-label={`Remove ${m.email} from the team`}>
                        <UserMinus aria-hidden /> <span className="hidden sm:inline">Remove</span>
                      </Button>
                    }
                    title={`Remove ${m.email} from ${team.name}?`}
                    description="They stay in the organization and keep their role there."
                    confirmLabel="Remove from team"
                    onConfirm={() => removeMember(m)}
                  />
                </TD>
              ) : null}
            </TR>
          ))}
        </TBody>
      </Table>
    );

  return (
    <Card>
      <CardHeader title="Members" description="People in this team. Their role comes from the organization." />
      {body}
      {manage ? (
        <div className="border-t border-slate-100 px-4 py-3 sm:px-5">
          <div className="flex flex-wrap items-end gap-2">
            <div className="min-w-0 flex-1 basis-full space-y-1.5 sm:max-w-sm sm:basis-auto">
              <label htmlFor="team-add-member" className="block text-sm font-medium text-slate-800">
                Add a member of the organization
              </label>
              <NativeSelect
                id="team-add-member"
                value={picked}
                onChange={(e) => {
                  setPicked(e.target.value);
                  setAddError(null);
                }}
                aria-invalid={addError ? true : undefined}
                aria-describedby={addError ? "team-add-member-err" : undefined}
                disabled={orgMembers.isPending || candidates.length === 0}
              >
                <option value="">
                  {orgMembers.isPending ? "Loading…" : candidates.length === 0 ? "Everyone is already in this team" : "Choose a member…"}
                </option>
                {candidates.map((m) => (
                  <option key={m.user_id} value={m.user_id}>
                    {m.email} ({m.role})
                  </option>
                ))}
              </NativeSelect>
            </div>
            <Button onClick={onAdd} loading={add.isPending} disabled={candidates.length === 0}>
              <UserPlus aria-hidden /> Add to team
            </Button>
          </div>
          {addError ? (
            <p id="team-add-member-err" role="alert" className="mt-1.5 text-xs font-medium text-red-600">
              {addError}
            </p>
          ) : null}
          <p className="mt-2 text-xs text-slate-500">
            Someone new? <Link to="/members" className="font-medium text-brand-700 hover:underline">Invite them to the organization</Link> first.
          </p>
        </div>
      ) : null}
    </Card>
  );
}

export function TeamDetail({ teamId }: { teamId: string }) {
  const { role } = useSession();
  const manage = canManage(role);
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  // Never show another team's data while this one loads (the app keeps previous data by default).
  const team = $api.useQuery("get", "/api/v1/teams/{id}", { params: { path: { id: teamId } } }, { placeholderData: undefined });
  const remove = $api.useMutation("delete", "/api/v1/teams/{id}");

  const back = (
    <Link to="/teams" className="mb-3 inline-flex items-center gap-1 text-sm font-medium text-slate-600 hover:text-slate-900">
      <ArrowLeft className="size-4" aria-hidden /> Teams
    </Link>
  );
  if (team.isPending)
    return (
      <>
        {back}
        <Card>
          <Loading label="Loading the team" rows={5} />
        </Card>
      </>
    );
  if (team.isError) {
    const missing = (team.error as unknown) instanceof ApiError && (team.error as unknown as ApiError).status === 404;
    return (
      <>
        {back}
        <Card>
          <ErrorState
            error={team.error}
            title={missing ? "This team does not exist" : "Could not load the team"}
            onRetry={missing ? undefined : () => void team.refetch()}
          />
        </Card>
      </>
    );
  }
  const t = team.data;
  return (
    <>
      {back}
      <PageHeader
        title={t.name}
        description={`Created ${formatDate(t.created_at)}.`}
        actions={
          manage ? (
            <ConfirmDialog
              trigger={
                <Button variant="secondary">
                  <Trash2 aria-hidden /> Delete team
                </Button>
              }
              title={`Delete team ${t.name}?`}
              description="This cannot be undone. Its members stay in the organization."
              confirmLabel="Delete team"
              onConfirm={async () => {
                try {
                  await remove.mutateAsync({ params: { path: { id: t.id } } });
                  await queryClient.invalidateQueries({ queryKey: TEAMS_KEY });
                  toast.success(`Team ${t.name} deleted`);
                  await navigate({ to: "/teams" });
                } catch (err) {
                  toast.error(errorMessage(err));
                  throw err;
                }
              }}
            />
          ) : null
        }
      />
      <div className="grid gap-6 xl:grid-cols-2">
        <TeamSettings team={t} manage={manage} />
        <TeamMembers team={t} manage={manage} />
        <TeamKeys team={t} />
      </div>
    </>
  );
}
