import { Link } from "@tanstack/react-router";
import { KeyRound } from "lucide-react";
import { $api, type Schemas } from "@/api/client";
import { Card, CardHeader } from "@/components/ui/card";
import { Badge } from "@/components/ui/badge";
import { Table, TBody, TD, TH, THead, TR } from "@/components/ui/table";
import { Empty, ErrorState, Loading } from "@/components/states";
import { formatRelative } from "@/lib/format";

type Key = Schemas["KeyDto"];

function status(k: Key, now: number): { label: string; tone: "success" | "warning" | "danger" | "neutral" } {
  if (k.revoked_at) return { label: "Revoked", tone: "neutral" };
  if (k.expires_at && new Date(k.expires_at).getTime() <= now) return { label: "Expired", tone: "danger" };
  return { label: "Active", tone: "success" };
}

/** The team's API keys (`GET /keys?team_id=`): the team's budgets and limits apply to them. */
export function TeamKeys({ team }: { team: Schemas["TeamDto"] }) {
  const keys = $api.useQuery("get", "/api/v1/keys", { params: { query: { team_id: team.id } } });
  const now = Date.now();
  let body;
  if (keys.isPending) body = <Loading label="Loading the team's keys" />;
  else if (keys.isError) body = <ErrorState error={keys.error} onRetry={() => void keys.refetch()} title="Could not load the team's keys" />;
  else if (keys.data.data.length === 0)
    body = (
      <Empty
        icon={<KeyRound className="size-8" />}
        title="No keys in this team"
        description="Create a key with this team on the API keys page: the team's budgets, limits and region policy then apply to it."
        action={
          <Link to="/keys" className="text-sm font-medium text-brand-700 hover:underline">
            Go to API keys
          </Link>
        }
      />
    );
  else
    body = (
      <Table aria-label={`Keys of ${team.name}`}>
        <THead>
          <TR>
            <TH>Name</TH>
            <TH>Prefix</TH>
            <TH>Status</TH>
            <TH>Last used</TH>
          </TR>
        </THead>
        <TBody>
          {keys.data.data.map((k) => {
            const s = status(k, now);
            return (
              <TR key={k.id}>
                <TD className="font-medium">{k.name}</TD>
                <TD className="font-mono text-xs">{k.prefix}…</TD>
                <TD>
                  <Badge tone={s.tone}>{s.label}</Badge>
                </TD>
                <TD>{formatRelative(k.last_used_at)}</TD>
              </TR>
            );
          })}
        </TBody>
      </Table>
    );
  return (
    <Card className="xl:col-span-2">
      <CardHeader title="API keys" description="Keys of this team. Manage them on the API keys page." />
      {body}
    </Card>
  );
}
