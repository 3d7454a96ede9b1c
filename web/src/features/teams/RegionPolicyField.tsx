import { useId, useState, type KeyboardEvent } from "react";
import { Plus, X } from "lucide-react";
import { $api } from "@/api/client";
import { Input } from "@/components/ui/input";
import { Button } from "@/components/ui/button";

/** A region or region prefix as the API matches it (`eu`, `eu-west-1`, `us-east`). */
const REGION = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function regionProblem(value: string, current: string[]): string | null {
  const v = value.trim();
  if (!v) return "Type a region or a prefix such as eu";
  if (!REGION.test(v)) return "Use letters, digits, dots, dashes or underscores (at most 64)";
  if (current.includes(v)) return `${v} is already in the list`;
  return null;
}

interface RegionPolicyFieldProps {
  /** The allowed regions; an empty list means "no policy" (sent as null). */
  value: string[];
  onChange: (next: string[]) => void;
  label: string;
  description: string;
  disabled?: boolean;
  error?: string | undefined;
}

/**
 * Edits a region policy: a list of regions or region prefixes, with the regions of the
 * organization's deployments offered as suggestions.
 */
export function RegionPolicyField({ value, onChange, label, description, disabled, error }: RegionPolicyFieldProps) {
  const id = useId();
  const [draft, setDraft] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const models = $api.useQuery("get", "/api/v1/models", {}, { staleTime: 60_000 });
  const known = [...new Set((models.data?.data ?? []).map((m) => m.region).filter((r): r is string => !!r))].sort();

  const add = () => {
    const p = regionProblem(draft, value);
    setProblem(p);
    if (p) return;
    onChange([...value, draft.trim()]);
    setDraft("");
  };
  const onKeyDown = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === "Enter") {
      e.preventDefault();
      add();
    }
  };
  const shown = problem ?? error;
  return (
    <div className="space-y-1.5">
      {disabled ? (
        <p className="block text-sm font-medium text-slate-800">{label}</p>
      ) : (
        <label htmlFor={`${id}-input`} className="block text-sm font-medium text-slate-800">
          {label}
        </label>
      )}
      <ul aria-label={`${label}: selected regions`} className="flex min-h-7 flex-wrap gap-1.5">
        {value.length === 0 ? (
          <li className="text-sm text-slate-500">No policy: any region is allowed.</li>
        ) : (
          value.map((r) => (
            <li key={r} className="inline-flex items-center gap-1 rounded-full bg-brand-50 py-0.5 pl-2.5 pr-1 text-xs font-medium text-brand-700 ring-1 ring-inset ring-brand-100">
              <span className="font-mono">{r}</span>
              {disabled ? null : (
                <button
                  type="button"
                  onClick={() => onChange(value.filter((x) => x !== r))}
                  className="rounded-full p-0.5 hover:bg-brand-100"
                  aria-label={`Remove region ${r}`}
                >
                  <X className="size-3" aria-hidden />
                </button>
              )}
            </li>
          ))
        )}
      </ul>
      {disabled ? null : (
        <div className="flex gap-2">
          <Input
            id={`${id}-input`}
            list={`${id}-known`}
            value={draft}
            placeholder="eu, us-east-1…"
            autoComplete="off"
            onChange={(e) => {
              setDraft(e.target.value);
              setProblem(null);
            }}
            onKeyDown={onKeyDown}
            aria-invalid={shown ? true : undefined}
            aria-describedby={`${id}-desc${shown ? ` ${id}-err` : ""}`}
            className="max-w-xs"
          />
          <datalist id={`${id}-known`}>
            {known.filter((r) => !value.includes(r)).map((r) => (
              <option key={r} value={r} />
            ))}
          </datalist>
          <Button variant="secondary" onClick={add} aria-label={`Add region to ${label.toLowerCase()}`}>
            <Plus aria-hidden /> Add
          </Button>
        </div>
      )}
      <p id={`${id}-desc`} className="text-xs text-slate-500">
        {description}
        {known.length > 0 && !disabled ? <> Your deployments run in: {known.join(", ")}.</> : null}
      </p>
      {shown ? (
        <p id={`${id}-err`} role="alert" className="text-xs font-medium text-red-600">
          {shown}
        </p>
      ) : null}
    </div>
  );
}
