import { describe, expect, it } from "vitest";
import { heldNote, holdRows, showAll, type ShownRow } from "./hold";

interface Job {
  id: string;
  status: string;
}

const job = (id: string, status = "pending"): Job => ({ id, status });
const key = (j: Job) => j.id;
const view = (rows: ShownRow<Job>[]) => rows.map((r) => `${r.item.id}:${r.item.status}${r.gone ? ":gone" : ""}`);

describe("showAll", () => {
  it("shows the fresh list in its order", () => {
    expect(view(showAll([job("b"), job("a")]))).toEqual(["b:pending", "a:pending"]);
  });
});

describe("holdRows", () => {
  const shown = showAll([job("c"), job("b"), job("a")]);

  it("keeps the rows in place when new ones arrive on top, and counts those", () => {
    const held = holdRows(shown, [job("e"), job("d"), job("c"), job("b"), job("a")], key);
    expect(view(held.rows)).toEqual(["c:pending", "b:pending", "a:pending"]);
    expect(held.waiting).toBe(2);
  });

  it("updates each shown row from the fresh list in its place", () => {
    const held = holdRows(shown, [job("d"), job("c", "done"), job("b", "dead"), job("a")], key);
    expect(view(held.rows)).toEqual(["c:done", "b:dead", "a:pending"]);
    expect(held.waiting).toBe(1);
  });

  it("keeps a row the fresh list no longer has, marked gone", () => {
    const held = holdRows(shown, [job("c"), job("a", "running")], key);
    expect(view(held.rows)).toEqual(["c:pending", "b:pending:gone", "a:running"]);
    expect(held.waiting).toBe(0);
  });

  it("ignores a changed order in the fresh list", () => {
    const held = holdRows(shown, [job("a"), job("b"), job("c")], key);
    expect(view(held.rows)).toEqual(["c:pending", "b:pending", "a:pending"]);
  });

  it("brings a gone row back when the list has it again", () => {
    const first = holdRows(shown, [job("c"), job("a")], key);
    const again = holdRows(first.rows, [job("c"), job("b", "done"), job("a")], key);
    expect(view(again.rows)).toEqual(["c:pending", "b:done", "a:pending"]);
    expect(again.waiting).toBe(0);
  });

  it("holds an empty table empty", () => {
    const held = holdRows([], [job("a")], key);
    expect(held.rows).toEqual([]);
    expect(held.waiting).toBe(1);
  });
});

describe("heldNote", () => {
  it("says what the hold keeps back, and nothing when it keeps nothing", () => {
    expect(heldNote(0, 0)).toBeNull();
    expect(heldNote(4, 0)).toBe("Held · 4 new");
    expect(heldNote(0, 1)).toBe("Held · 1 gone");
    expect(heldNote(2, 1)).toBe("Held · 2 new · 1 gone");
  });
});
