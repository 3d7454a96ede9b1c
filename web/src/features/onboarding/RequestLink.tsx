import { Link } from "@tanstack/react-router";
import type { ReactNode } from "react";

/**
 * A link to one request's detail page (`/requests/<id>`, owned by the request-log page). The
 * route is typed once that page lands; until then the path is given as a plain string.
 */
export function RequestLink({ id, children, className }: { id: string; children: ReactNode; className?: string }) {
  return (
    <Link to={`/requests/${id}` as "/requests"} className={className ?? "font-medium text-brand-700 hover:underline"}>
      {children}
    </Link>
  );
}
