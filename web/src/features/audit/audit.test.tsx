import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { useState } from "react";
import type { Schemas } from "@/api/client";
import { server } from "@/test/msw";
import { renderWithApp } from "@/test/render";
import { on, USER_ID } from "../budgets/fixtures";
import { AuditView } from "./AuditPage";
import type { AuditSearch } from "./search";

const members: Schemas["MemberList"] = {
  data: [
    { user_id: USER_ID, email: "alice@example.com", role: "owner", created_at: "2026-11-01T10:00:00Z" },
    { user_id: "00000000-0000-7000-8000-0000000000b2", email: "bob@example.com", role: "admin", created_at: "2026-11-02T10:00:00Z" },
  ],
};

function event(id: number, over: Partial<Schemas["AuditEventDto"]> = {}): Schemas["AuditEventDto"] {
  return {
    id,
    action: "update",
    object_kind: "budget",
    object_id: "00000000-0000-7000-8000-0000000000e5",
    actor_user_id: USER_ID,
    actor_session_id: "00000000-0000-7000-8000-0000000000f6",
    actor_role: "owner",
    before: { scope: "team", period: "monthly", limit_usd: "25", hard: true } as never,
    after: { scope: "team", period: "monthly", limit_usd: "40", hard: false } as never,
    created_at: "2026-12-06T10:00:00Z",
    ...over,
  };
}

/** The route keeps the search in the URL; here a state stands in for it. */
function Harness({ initial, seen }: { initial: AuditSearch; seen: AuditSearch[] }) {
  const [search, setSearch] = useState<AuditSearch>(initial);
  return (
    <AuditView
      search={search}
      onSearch={(next) => {
        seen.push(next);
        setSearch(next);
      }}
    />
  );
}

describe("AuditView", () => {
  it("sends the filters to the API and pages with its cursor", async () => {
    const user = userEvent.setup();
    const queries: URLSearchParams[] = [];
    server.use(
      on("get", "/api/v1/members", () => members),
      on("get", "/api/v1/audit", ({ request }) => {
        const q = new URL(request.url).searchParams;
        queries.push(q);
        return q.get("cursor") === "41"
          ? { data: [event(40, { action: "create", before: null })], next_cursor: null }
          : { data: [event(42), event(41, { action: "create", before: null })], next_cursor: "41" };
      }),
    );
    const seen: AuditSearch[] = [];
    renderWithApp(<Harness initial={{ action: "create", object_kind: "budget" }} seen={seen} />);
    await screen.findByRole("list", { name: "Audit events" });
    expect(queries[0]!.get("action")).toBe("create");
    expect(queries[0]!.get("object_kind")).toBe("budget");
    expect(queries[0]!.has("cursor")).toBe(false);
    expect(screen.getByRole("combobox", { name: "Action" })).toHaveValue("create");

    // Another actor: a new first page with the actor's id, and the URL search updated.
    await user.selectOptions(screen.getByRole("combobox", { name: "Actor" }), "bob@example.com");
    await waitFor(() => expect(queries.at(-1)!.get("actor_user_id")).toBe("00000000-0000-7000-8000-0000000000b2"));
    expect(queries.at(-1)!.get("action")).toBe("create");
    expect(seen.at(-1)).toEqual({ action: "create", object_kind: "budget", actor_user_id: "00000000-0000-7000-8000-0000000000b2" });

    // Load more continues from next_cursor with the same filters.
    await user.click(await screen.findByRole("button", { name: "Load more" }));
    await waitFor(() => expect(queries.at(-1)!.get("cursor")).toBe("41"));
    expect(queries.at(-1)!.get("actor_user_id")).toBe("00000000-0000-7000-8000-0000000000b2");
    expect(await screen.findByText("3 events")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Load more" })).not.toBeInTheDocument();
  });

  it("expands an event to show what changed, before and after", async () => {
    const user = userEvent.setup();
    server.use(
      on("get", "/api/v1/members", () => members),
      on("get", "/api/v1/audit", () => ({ data: [event(42)], next_cursor: null })),
    );
    renderWithApp(<Harness initial={{}} seen={[]} />);
    const list = await screen.findByRole("list", { name: "Audit events" });
    const toggle = within(list).getByRole("button", { name: /Budget/ });
    expect(toggle).toHaveAttribute("aria-expanded", "false");
    expect(toggle).toHaveTextContent("alice@example.com");
    await user.click(toggle);
    expect(toggle).toHaveAttribute("aria-expanded", "true");
    expect(screen.getByText("limit_usd")).toBeInTheDocument();
    expect(screen.getByText("Before")).toBeInTheDocument();
    expect(screen.getByText("After")).toBeInTheDocument();
    expect(screen.getByText(/"limit_usd": "40"/)).toBeInTheDocument();
  });

  it("says so when no event matches, and clears the filters", async () => {
    const user = userEvent.setup();
    server.use(
      on("get", "/api/v1/members", () => members),
      on("get", "/api/v1/audit", () => ({ data: [], next_cursor: null })),
    );
    const seen: AuditSearch[] = [];
    renderWithApp(<Harness initial={{ action: "rotate" }} seen={seen} />);
    expect(await screen.findByText("No events match these filters")).toBeInTheDocument();
    await user.click(screen.getAllByRole("button", { name: /Clear filters/ })[0]!);
    expect(seen.at(-1)).toEqual({});
  });
});
