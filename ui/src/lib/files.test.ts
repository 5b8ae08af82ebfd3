import { describe, expect, it } from "vitest";
import { decodeUtf8, readUtf8File } from "./files";

const utf8 = (s: string) => new TextEncoder().encode(s);

describe("decodeUtf8", () => {
  it("decodes UTF-8, accents and all, without a byte order mark", () => {
    expect(decodeUtf8("a.csv", utf8("Handle,Title\ncafe,Café crème\n"))).toBe("Handle,Title\ncafe,Café crème\n");
    const withBom = new Uint8Array([0xef, 0xbb, 0xbf, ...utf8("Handle")]);
    expect(decodeUtf8("a.csv", withBom)).toBe("Handle");
  });

  it("refuses Windows-1252 text as the command line does", () => {
    // "Café" as a spreadsheet on Windows saves it: é is the single byte 0xE9.
    const latin1 = new Uint8Array([...utf8("Handle,Title\ncafe,Caf"), 0xe9, ...utf8("\n")]);
    expect(() => decodeUtf8("latin1.csv", latin1)).toThrow(
      expect.objectContaining({ code: "invalid_input", field: "file", message: "latin1.csv is not UTF-8 text" }),
    );
  });

  it("refuses a multi-byte character cut short at the end", () => {
    const cut = utf8("Café").slice(0, -1);
    expect(() => decodeUtf8("cut.csv", cut)).toThrow(expect.objectContaining({ message: "cut.csv is not UTF-8 text" }));
  });
});

describe("readUtf8File", () => {
  it("reads a picked file's bytes", async () => {
    await expect(readUtf8File(new File([utf8("Café")], "ok.csv"))).resolves.toBe("Café");
    const bad = new File([new Uint8Array([0x43, 0x61, 0x66, 0xe9])], "bad.csv");
    await expect(readUtf8File(bad)).rejects.toMatchObject({ message: "bad.csv is not UTF-8 text" });
  });
});
