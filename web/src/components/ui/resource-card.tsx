import type { ReactNode } from "react";

/**
 * One resource as a card, for phones where a wide table would hide its columns (and its
 * actions) off-screen: a title line with actions, then label/value pairs.
 */
export function ResourceCard({ title, badge, actions, fields }: { title: ReactNode; badge?: ReactNode; actions?: ReactNode; fields: { label: string; value: ReactNode }[] }) {
  return (
    <li className="px-4 py-3">
      <div className="flex items-start justify-between gap-2">
        <div className="flex min-w-0 flex-wrap items-center gap-2">
          <span className="truncate font-medium text-slate-900">{title}</span>
          {badge}
        </div>
        {actions ? <div className="-mr-2 -mt-1 flex shrink-0 items-center">{actions}</div> : null}
      </div>
      <dl className="mt-2 grid grid-cols-[7rem_1fr] gap-x-3 gap-y-1 text-sm">
        {fields.map((f) => (
          <div key={f.label} className="contents">
            <dt className="text-slate-500">{f.label}</dt>
            <dd className="min-w-0 break-words text-slate-800">{f.value}</dd>
          </div>
        ))}
      </dl>
    </li>
  );
}

export function ResourceCardList({ label, children }: { label: string; children: ReactNode }) {
  return (
    <ul aria-label={label} className="divide-y divide-slate-100">
      {children}
    </ul>
  );
}
