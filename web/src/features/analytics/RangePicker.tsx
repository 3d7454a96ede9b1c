import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useId, useState } from "react";
import { z } from "zod";
import { Button } from "@/components/ui/button";
import { Field } from "@/components/ui/field";
import { Input, NativeSelect } from "@/components/ui/input";
import { isoToLocalInput, localInputToIso, PRESET_LABEL, RANGES, type RangeKey, type RangeParams } from "./range";

function customSchema(maxDays: number) {
  return z
    .object({ from: z.string().min(1, "Pick a start"), to: z.string().min(1, "Pick an end") })
    .superRefine((v, ctx) => {
      const from = localInputToIso(v.from);
      const to = localInputToIso(v.to);
      if (!from) ctx.addIssue({ code: "custom", path: ["from"], message: "Not a valid date" });
      if (!to) ctx.addIssue({ code: "custom", path: ["to"], message: "Not a valid date" });
      if (from && to) {
        const span = Date.parse(to) - Date.parse(from);
        if (span <= 0) ctx.addIssue({ code: "custom", path: ["to"], message: "Must be after the start" });
        else if (span > maxDays * 86_400_000) ctx.addIssue({ code: "custom", path: ["to"], message: `At most ${maxDays} days` });
      }
    });
}
type CustomForm = { from: string; to: string };

/** A preset select ("Last 24 hours") plus a custom from/to form in the viewer's local time. */
export function RangePicker({ value, onChange, maxDays }: { value: RangeParams; onChange: (next: RangeParams) => void; maxDays: number }) {
  const id = useId();
  const current: RangeKey = value.range ?? "24h";
  const [editing, setEditing] = useState(false);
  const showForm = editing || (current === "custom" && !(value.from && value.to));
  const form = useForm<CustomForm>({
    resolver: zodResolver(customSchema(maxDays)),
    defaultValues: {
      from: isoToLocalInput(value.from ?? new Date(Date.now() - 86_400_000).toISOString()),
      to: isoToLocalInput(value.to ?? new Date().toISOString()),
    },
  });
  const apply = form.handleSubmit((v) => {
    setEditing(false);
    onChange({ range: "custom", from: localInputToIso(v.from) ?? undefined, to: localInputToIso(v.to) ?? undefined });
  });
  return (
    <div className="flex flex-wrap items-end gap-2">
      <div className="space-y-1.5">
        <label htmlFor={`${id}-range`} className="block text-xs font-medium text-slate-600">
          Time range
        </label>
        <NativeSelect
          id={`${id}-range`}
          className="w-44"
          value={editing ? "custom" : current}
          onChange={(e) => {
            const next = e.target.value as RangeKey;
            if (next === "custom") setEditing(true);
            else {
              setEditing(false);
              onChange({ range: next === "24h" ? undefined : next, from: undefined, to: undefined });
            }
          }}
        >
          {RANGES.map((r) => (
            <option key={r} value={r}>
              {PRESET_LABEL[r]}
            </option>
          ))}
        </NativeSelect>
      </div>
      {showForm ? (
        <form onSubmit={apply} noValidate className="flex flex-wrap items-start gap-2" aria-label="Custom range">
          <Field label="From" error={form.formState.errors.from?.message} className="[&_label]:text-xs">
            <Input type="datetime-local" className="w-52" {...form.register("from")} />
          </Field>
          <Field label="To" error={form.formState.errors.to?.message} className="[&_label]:text-xs">
            <Input type="datetime-local" className="w-52" {...form.register("to")} />
          </Field>
          <Button type="submit" size="sm" className="mt-6">
            Apply
          </Button>
          {editing ? (
            <Button variant="ghost" size="sm" className="mt-6" onClick={() => setEditing(false)}>
              Cancel
            </Button>
          ) : null}
        </form>
      ) : current === "custom" ? (
        <Button variant="ghost" size="sm" onClick={() => setEditing(true)}>
          Edit range
        </Button>
      ) : null}
    </div>
  );
}
