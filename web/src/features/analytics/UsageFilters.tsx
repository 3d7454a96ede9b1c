import { useId, useState } from "react";
import { X } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Input, NativeSelect } from "@/components/ui/input";
import type { Lookups } from "./lookups";
import { parseTagFilter } from "./search";

export interface FilterValues {
  model?: string | undefined;
  provider?: string | undefined;
  team_id?: string | undefined;
  key_id?: string | undefined;
  tag?: string | undefined;
}

function SelectFilter({ label, value, options, onChange }: { label: string; value: string | undefined; options: Array<{ value: string; label: string }>; onChange: (v: string | undefined) => void }) {
  const id = useId();
  // A value from the URL that the lists do not know (a deleted key) stays selectable.
  const all = value && !options.some((o) => o.value === value) ? [...options, { value, label: value }] : options;
  return (
    <div className="space-y-1.5">
      <label htmlFor={id} className="block text-xs font-medium text-slate-600">
        {label}
      </label>
      <NativeSelect id={id} className="w-40" value={value ?? ""} onChange={(e) => onChange(e.target.value || undefined)}>
        <option value="">All</option>
        {all.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </NativeSelect>
    </div>
  );
}

/** A `key=value` tag filter, applied on Enter (or the button); invalid input is explained inline. */
export function TagFilter({ value, onChange }: { value: string | undefined; onChange: (v: string | undefined) => void }) {
  const id = useId();
  const [draft, setDraft] = useState(value?.replace(":", "=") ?? "");
  const [error, setError] = useState<string | null>(null);
  const [synced, setSynced] = useState(value);
  if (synced !== value) {
    // The URL changed (back button, "clear filters"): show what it holds.
    setSynced(value);
    setDraft(value?.replace(":", "=") ?? "");
    setError(null);
  }
  return (
    <form
      className="space-y-1.5"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        if (!draft.trim()) {
          setError(null);
          onChange(undefined);
          return;
        }
        const tag = parseTagFilter(draft);
        if (!tag) setError("Use key=value");
        else {
          setError(null);
          onChange(tag);
        }
      }}
    >
      <label htmlFor={id} className="block text-xs font-medium text-slate-600">
        Tag
      </label>
      <div className="flex gap-1">
        <Input
          id={id}
          className="w-40"
          placeholder="feature=search"
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? `${id}-err` : undefined}
        />
        <Button type="submit" variant="secondary" size="sm" className="h-9">
          Apply
        </Button>
      </div>
      {error ? (
        <p id={`${id}-err`} role="alert" className="text-xs font-medium text-red-600">
          {error}
        </p>
      ) : null}
    </form>
  );
}

/** Model, provider, team, key and tag filters; each change goes to the URL (and resets paging). */
export function UsageFilters({ values, lookups, onChange }: { values: FilterValues; lookups: Lookups; onChange: (patch: FilterValues) => void }) {
  const any = Boolean(values.model || values.provider || values.team_id || values.key_id || values.tag);
  return (
    <>
      <SelectFilter label="Model" value={values.model} options={lookups.modelNames.map((m) => ({ value: m, label: m }))} onChange={(model) => onChange({ model })} />
      <SelectFilter label="Provider" value={values.provider} options={lookups.providerKinds.map((p) => ({ value: p, label: p }))} onChange={(provider) => onChange({ provider })} />
      <SelectFilter label="Team" value={values.team_id} options={lookups.teams.map((t) => ({ value: t.id, label: t.name }))} onChange={(team_id) => onChange({ team_id })} />
      <SelectFilter label="API key" value={values.key_id} options={lookups.keys.map((k) => ({ value: k.id, label: k.name }))} onChange={(key_id) => onChange({ key_id })} />
      <TagFilter value={values.tag} onChange={(tag) => onChange({ tag })} />
      {any ? (
        <Button variant="ghost" size="sm" className="h-9 self-end" onClick={() => onChange({ model: undefined, provider: undefined, team_id: undefined, key_id: undefined, tag: undefined })}>
          <X aria-hidden /> Clear filters
        </Button>
      ) : null}
    </>
  );
}
