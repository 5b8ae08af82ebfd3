// A live list that keeps still under the pointer. The Jobs page gets a
// fresh list on every change, newest first; put in as it comes, each new
// job pushes every row down, and a click aimed at one row's button lands
// on another's. While the table is held (the pointer is over it), its rows
// keep their places: each takes its fresh state where the fresh list still
// has it; one the list no longer has stays, marked gone; new ones wait and
// are counted. Letting go shows the fresh list as it is.

/** A row as the table shows it. */
export interface ShownRow<T> {
  item: T;
  /** No longer in the fresh list: shown only until the hold ends. */
  gone: boolean;
}

export interface HeldRows<T> {
  rows: ShownRow<T>[];
  /** Fresh items not shown yet. */
  waiting: number;
}

/** The fresh list as it is: what the table shows when not held. */
export function showAll<T>(fresh: readonly T[]): ShownRow<T>[] {
  return fresh.map((item) => ({ item, gone: false }));
}

/**
 * The rows to show while held: `shown` in its order, each row updated from
 * `fresh` (matched by `key`) or marked gone; fresh items not shown are only
 * counted.
 */
export function holdRows<T>(
  shown: readonly ShownRow<T>[],
  fresh: readonly T[],
  key: (item: T) => string,
): HeldRows<T> {
  const byKey = new Map(fresh.map((item) => [key(item), item] as const));
  const rows = shown.map((row) => {
    const now = byKey.get(key(row.item));
    return now === undefined ? { item: row.item, gone: true } : { item: now, gone: false };
  });
  const kept = new Set(shown.map((row) => key(row.item)));
  const waiting = fresh.filter((item) => !kept.has(key(item))).length;
  return { rows, waiting };
}

/**
 * The note shown while a hold keeps changes back (short: it sits in the
 * table's header); null when it keeps none.
 */
export function heldNote(waiting: number, gone: number): string | null {
  if (waiting === 0 && gone === 0) return null;
  const parts = ["Held"];
  if (waiting > 0) parts.push(`${waiting} new`);
  if (gone > 0) parts.push(`${gone} gone`);
  return parts.join(" · ");
}
