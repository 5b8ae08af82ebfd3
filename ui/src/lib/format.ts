// Small display helpers shared by the pages.

/** `lines[0].quantity` → `lines-0-quantity`, for `data-testid="error-…"`. */
export function fieldSlug(field: string): string {
  return field.replace(/[[\].]+/g, "-").replace(/-+$/, "");
}

/** A timestamp as local date and time; the raw text if it does not parse. */
export function formatTime(value: string | null | undefined): string {
  if (!value) return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return value;
  const today = new Date();
  const sameDay =
    d.getFullYear() === today.getFullYear() &&
    d.getMonth() === today.getMonth() &&
    d.getDate() === today.getDate();
  const time = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (sameDay) return time;
  return `${d.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" })} ${time}`;
}

/** Fresh key for one order attempt; older webviews lack `randomUUID`. */
export function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
