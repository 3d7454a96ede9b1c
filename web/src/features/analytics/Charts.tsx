/**
 * Chart components: they draw the rows a prepare function built and decide nothing. Times are
 * epoch ms (UTC buckets) rendered in the viewer's zone.
 */
import { Area, AreaChart, Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { ReactElement, ReactNode } from "react";
import type { Interval } from "./range";

export interface SeriesDef {
  key: string;
  label: string;
  color: string;
  stack?: string;
  dashed?: boolean;
}

export const PALETTE = ["#4f46e5", "#0ea5e9", "#f59e0b", "#ef4444", "#10b981", "#a855f7", "#ec4899", "#64748b", "#84cc16", "#14b8a6"];

const tickFormats: Record<Interval, Intl.DateTimeFormat> = {
  minute: new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" }),
  hour: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit" }),
  day: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" }),
};
const tooltipFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function formatTick(t: number, interval: Interval): string {
  return tickFormats[interval].format(new Date(t));
}

interface TimeChartProps {
  title: string;
  description?: ReactNode;
  rows: Array<Record<string, number | null>>;
  series: SeriesDef[];
  kind: "line" | "area" | "bar";
  interval: Interval;
  yFormat: (v: number) => string;
  height?: number;
  empty?: ReactNode;
}

export function TimeChart({ title, description, rows, series, kind, interval, yFormat, height = 200, empty }: TimeChartProps) {
  const common = {
    data: rows,
    margin: { top: 8, right: 8, bottom: 0, left: 0 },
  };
  const axes = [
    <CartesianGrid key="g" strokeDasharray="3 3" stroke="#e2e8f0" vertical={false} />,
    <XAxis
      key="x"
      dataKey="t"
      type="number"
      scale="time"
      domain={["dataMin", "dataMax"]}
      tickFormatter={(t: number) => formatTick(t, interval)}
      tick={{ fontSize: 11, fill: "#475569" }}
      tickLine={false}
      axisLine={{ stroke: "#cbd5e1" }}
      minTickGap={24}
      // Bars are centred on their bucket: keep the first and last inside the plot.
      padding={kind === "bar" ? { left: 12, right: 12 } : undefined}
    />,
    <YAxis key="y" tickFormatter={(v: number) => yFormat(v)} tick={{ fontSize: 11, fill: "#475569" }} tickLine={false} axisLine={false} width={76} />,
    <Tooltip
      key="tt"
      labelFormatter={(t) => tooltipFormat.format(new Date(Number(t)))}
      formatter={(v, name) => [typeof v === "number" ? yFormat(v) : "—", name]}
      contentStyle={{ fontSize: 12, borderRadius: 6 }}
    />,
    series.length > 1 ? <Legend key="l" wrapperStyle={{ fontSize: 12 }} /> : null,
  ];
  let chart: ReactNode;
  if (kind === "line") {
    chart = (
      <LineChart {...common}>
        {axes}
        {series.map((s) => (
          <Line key={s.key} type="monotone" dataKey={s.key} name={s.label} stroke={s.color} strokeWidth={2} dot={rows.length <= 60 ? { r: 2.5 } : false} strokeDasharray={s.dashed ? "4 3" : undefined} isAnimationActive={false} />
        ))}
      </LineChart>
    );
  } else if (kind === "area") {
    chart = (
      <AreaChart {...common}>
        {axes}
        {series.map((s) => (
          <Area key={s.key} type="monotone" dataKey={s.key} name={s.label} stroke={s.color} fill={s.color} fillOpacity={0.2} stackId={s.stack} isAnimationActive={false} />
        ))}
      </AreaChart>
    );
  } else {
    chart = (
      <BarChart {...common}>
        {axes}
        {series.map((s) => (
          <Bar key={s.key} dataKey={s.key} name={s.label} fill={s.color} stackId={s.stack} isAnimationActive={false} />
        ))}
      </BarChart>
    );
  }
  return (
    <figure className="rounded-lg border border-slate-200 bg-white p-4 shadow-sm">
      <figcaption className="mb-2">
        <span className="text-sm font-semibold text-slate-900">{title}</span>
        {description ? <span className="mt-0.5 block text-xs text-slate-500">{description}</span> : null}
      </figcaption>
      {empty ? (
        <div className="grid place-items-center text-sm text-slate-500" style={{ height }}>
          {empty}
        </div>
      ) : (
        <div style={{ height }} role="img" aria-label={`${title} chart`}>
          <ResponsiveContainer width="100%" height="100%">
            {chart as ReactElement}
          </ResponsiveContainer>
        </div>
      )}
    </figure>
  );
}
