import { cn } from "@/lib/cn";

/**
 * A cap meter: `spent` (solid) and `reserved` (striped, in-flight reservations) against `limit`.
 * Values are in the same unit (e.g. micro-dollars). Accessible as a meter with a text label.
 */
export function CapBar({ spent, reserved = 0, limit, label }: { spent: number; reserved?: number; limit: number; label: string }) {
  const pct = (v: number) => (limit > 0 ? Math.min(100, (v / limit) * 100) : 0);
  const used = pct(spent);
  const held = Math.min(100 - used, pct(reserved));
  const tone = spent + reserved >= limit ? "bg-red-500" : used >= 80 ? "bg-amber-500" : "bg-brand-600";
  return (
    <div role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={limit} aria-valuenow={Math.min(spent, limit)} className="h-2.5 w-full overflow-hidden rounded-full bg-slate-200">
      <div className="flex h-full">
        <div className={cn("h-full", tone)} style={{ width: `${used}%` }} />
        <div className="h-full bg-[repeating-linear-gradient(45deg,#94a3b8_0,#94a3b8_4px,#cbd5e1_4px,#cbd5e1_8px)]" style={{ width: `${held}%` }} />
      </div>
    </div>
  );
}
