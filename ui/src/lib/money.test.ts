import { describe, expect, it } from "vitest";
import { centsToText, formatMoney, parseCents } from "./money";

describe("parseCents", () => {
  it("reads decimal text as whole cents", () => {
    expect(parseCents("60.00")).toBe(6000);
    expect(parseCents("60")).toBe(6000);
    expect(parseCents("9.9")).toBe(990);
    expect(parseCents(" 0.01 ")).toBe(1);
    expect(parseCents("1,234.50")).toBe(123450);
    expect(parseCents(".5")).toBe(50);
  });

  it("never goes through floating point", () => {
    // 0.29 * 100 is 28.999999999999996 in floating point.
    expect(parseCents("0.29")).toBe(29);
    expect(parseCents("1.15")).toBe(115);
    expect(parseCents("4.35")).toBe(435);
  });

  it("refuses what is not an amount", () => {
    for (const bad of ["", " ", ".", "abc", "-5", "1.234", "1e3", "12.5.0", "€5", "100000000000000"]) {
      expect(parseCents(bad), bad).toBeNull();
    }
  });
});

describe("formatMoney", () => {
  it("shows the shop currency's symbol", () => {
    expect(formatMoney(5400, "EUR")).toBe("€54.00");
    expect(formatMoney(5, "USD")).toBe("$0.05");
    expect(formatMoney(123456, "GBP")).toBe("£1234.56");
    expect(formatMoney(-250, "EUR")).toBe("-€2.50");
  });

  it("names other currencies after the amount", () => {
    expect(formatMoney(1999, "CHF")).toBe("19.99 CHF");
  });

  it("gives the plain text back for inputs", () => {
    expect(centsToText(6000)).toBe("60.00");
    expect(centsToText(7)).toBe("0.07");
  });
});
