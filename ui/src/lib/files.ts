// Reading files the owner picks. A CSV that is not UTF-8 (often Windows-1252
// from a spreadsheet) is refused as the command line refuses it
// (`Shop::import_products_file`), instead of importing mangled titles.

import type { PublicError } from "./types";

/**
 * A file's bytes as UTF-8 text (a leading byte order mark is dropped).
 * Rejects with `<name> is not UTF-8 text` when any byte sequence is not
 * valid UTF-8, rather than replacing it as `File.text()` does.
 */
export function decodeUtf8(name: string, bytes: ArrayBuffer | Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const err: PublicError = { code: "invalid_input", message: `${name} is not UTF-8 text`, field: "file" };
    throw err;
  }
}

/** A picked file's content as UTF-8 text; see `decodeUtf8`. */
export async function readUtf8File(file: File): Promise<string> {
  return decodeUtf8(file.name, await file.arrayBuffer());
}
