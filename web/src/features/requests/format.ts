import { formatMs } from "@/lib/format";

/** The log's latencies are whole milliseconds: "0 ms", "120 ms", "1.25 s". */
export function wholeMs(ms: number | null | undefined): string {
  return ms != null && ms < 1000 ? `${Math.round(ms)} ms` : formatMs(ms);
}
