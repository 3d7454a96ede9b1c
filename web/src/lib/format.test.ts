import { describe, expect, it } from "vitest";
import { formatMicros, formatMs, formatRelative, formatUsd } from "./format";
import { fieldOf } from "@/api/errors";
import { safeRedirect } from "@/features/auth/schemas";

describe("format", () => {
  it("never shows a small cost as $0.00", () => {
    expect(formatMicros(1_230_000)).toBe("$1.23");
    expect(formatMicros(123)).toBe("$0.000123");
    expect(formatMicros(0)).toBe("$0.00");
    expect(formatUsd("12.5")).toBe("$12.50");
  });
  it("formats latencies", () => {
    expect(formatMs(0.25)).toBe("0.25 ms");
    expect(formatMs(420)).toBe("420 ms");
    expect(formatMs(2500)).toBe("2.50 s");
  });
  it("says relative times", () => {
    const now = Date.parse("2026-12-06T12:00:00Z");
    expect(formatRelative("2026-12-06T11:57:00Z", now)).toBe("3 minutes ago");
    expect(formatRelative(null)).toBe("never");
  });
});

describe("api errors", () => {
  it("finds the field a validation message names", () => {
    expect(fieldOf("name: must not be empty")).toBe("name");
    expect(fieldOf("candidates[1].weight: must be positive")).toBe("candidates[1].weight");
    expect(fieldOf("the request body is not valid JSON")).toBeNull();
  });
});

describe("login redirect", () => {
  it("only follows console paths", () => {
    expect(safeRedirect("/keys?x=1")).toBe("/keys?x=1");
    expect(safeRedirect("//evil.example")).toBe("/");
    expect(safeRedirect("https://evil.example")).toBe("/");
    expect(safeRedirect(undefined)).toBe("/");
  });
});
