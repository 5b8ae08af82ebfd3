// Money as integer cents, never floats: amounts typed by people are parsed
// from their decimal text, and formatting uses integer division only.

/** Same ceiling as the core: one hundred million in major units. */
export const MAX_CENTS = 10_000_000_000;

/** `"60.00"` → 6000, `"1,234.5"` → 123450; `null` for anything that is not an amount. */
export function parseCents(text: string): number | null {
  const t = text.trim().replaceAll(",", "");
  if (t === "") return null;
  const dot = t.indexOf(".");
  const whole = dot === -1 ? t : t.slice(0, dot);
  const frac = dot === -1 ? "" : t.slice(dot + 1);
  if (whole === "" && frac === "") return null;
  if (!/^\d*$/.test(whole) || !/^\d*$/.test(frac)) return null;
  if (frac.length > 2 || whole.length > 12) return null;
  const wholeCents = (whole === "" ? 0 : Number.parseInt(whole, 10)) * 100;
  const fracCents = frac === "" ? 0 : Number.parseInt(frac.padEnd(2, "0"), 10);
  const cents = wholeCents + fracCents;
  return cents <= MAX_CENTS ? cents : null;
}

const SYMBOLS: Record<string, string> = { EUR: "€", USD: "$", GBP: "£" };

/** `5400, "EUR"` → `€54.00`; unknown currencies as `54.00 CHF`. */
export function formatMoney(cents: number, currency: string): string {
  const sign = cents < 0 ? "-" : "";
  const abs = Math.abs(Math.trunc(cents));
  const major = Math.floor(abs / 100);
  const minor = String(abs % 100).padStart(2, "0");
  const amount = `${major}.${minor}`;
  const symbol = SYMBOLS[currency];
  return symbol ? `${sign}${symbol}${amount}` : `${sign}${amount} ${currency}`;
}

/** The plain decimal text for an amount, e.g. to prefill an input: 6000 → `"60.00"`. */
export function centsToText(cents: number): string {
  const abs = Math.abs(Math.trunc(cents));
  return `${cents < 0 ? "-" : ""}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}
