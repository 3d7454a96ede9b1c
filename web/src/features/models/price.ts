/**
 * Prices per million tokens, exact: the API stores integer micro-dollars, so these format and
 * convert through integers and strings, never through binary floats ($0.15, not $0.15000000000000002).
 */
const thousands = new Intl.NumberFormat("en-US");

/** Micro-dollars → a plain decimal string with no trailing zeros: 150000 → "0.15", 2500000 → "2.5". */
export function microsToDecimal(micros: number): string {
  const neg = micros < 0;
  const abs = Math.abs(Math.trunc(micros));
  const whole = Math.floor(abs / 1_000_000);
  const frac = String(abs % 1_000_000).padStart(6, "0").replace(/0+$/, "");
  return `${neg ? "-" : ""}${whole}${frac ? `.${frac}` : ""}`;
}

/** Micro-dollars per 1M tokens → "$0.15", "$2.50", "$0.075", "$1,200.00". */
export function formatPerMtok(micros: number | null | undefined): string {
  if (micros == null) return "—";
  const neg = micros < 0;
  const abs = Math.abs(Math.trunc(micros));
  const whole = Math.floor(abs / 1_000_000);
  let frac = String(abs % 1_000_000).padStart(6, "0").replace(/0+$/, "");
  if (frac.length < 2) frac = frac.padEnd(2, "0");
  return `${neg ? "-" : ""}$${thousands.format(whole)}.${frac}`;
}

/** A USD amount the API accepts: digits, at most 6 decimals. */
export const PRICE_PATTERN = /^\d{1,9}(\.\d{1,6})?$/;
