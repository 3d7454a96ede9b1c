import { describe, expect, it } from "vitest";
import { formatPerMtok, microsToDecimal } from "./price";

describe("prices per 1M tokens", () => {
  it("formats micro-dollars exactly", () => {
    expect(formatPerMtok(150_000)).toBe("$0.15");
    expect(formatPerMtok(2_500_000)).toBe("$2.50");
    expect(formatPerMtok(75_000)).toBe("$0.075");
    expect(formatPerMtok(1)).toBe("$0.000001");
    expect(formatPerMtok(0)).toBe("$0.00");
    expect(formatPerMtok(1_200_000_000)).toBe("$1,200.00");
    expect(formatPerMtok(null)).toBe("—");
  });
  it("turns micro-dollars into the decimal string the API accepts", () => {
    expect(microsToDecimal(150_000)).toBe("0.15");
    expect(microsToDecimal(10_000_000)).toBe("10");
    expect(microsToDecimal(125_000)).toBe("0.125");
  });
});
