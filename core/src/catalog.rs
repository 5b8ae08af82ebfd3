//! The product catalog: Shopify product CSV import and product look-up.
//!
//! Shopify's format has one row per variant. The first row of a product
//! carries its title and option names; later rows of the same handle carry
//! only the variant's option values, price, stock; rows that carry only an
//! extra image are continuation rows and are skipped.

use std::collections::HashMap;
use std::io::Read;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::db::now_rfc3339;
use crate::error::{Error, Result};
use crate::money;
use crate::text::{has_control, one_line};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub sku: String,
    pub handle: String,
    pub title: String,
    pub price_cents: i64,
    pub stock: i64,
    pub allow_oversell: bool,
    pub barcode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRow {
    /// Line of the file where the row starts (the header is line 1).
    pub row: u64,
    pub handle: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub source: String,
    pub imported: u64,
    pub updated: u64,
    pub skipped: Vec<SkippedRow>,
}

/// Columns we read, by their Shopify header names.
struct Columns {
    handle: usize,
    title: usize,
    option_values: [Option<usize>; 3],
    sku: Option<usize>,
    qty: Option<usize>,
    policy: Option<usize>,
    price: usize,
    barcode: Option<usize>,
    image: Option<usize>,
}

impl Columns {
    fn from_headers(headers: &csv::StringRecord) -> Result<Self> {
        let find = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let need = |name: &str| {
            find(name).ok_or_else(|| {
                Error::invalid(
                    "file",
                    format!("not a Shopify product CSV: the \"{name}\" column is missing"),
                )
            })
        };
        Ok(Columns {
            handle: need("Handle")?,
            title: need("Title")?,
            option_values: [1, 2, 3].map(|i| find(&format!("Option{i} Value"))),
            sku: find("Variant SKU"),
            qty: find("Variant Inventory Qty"),
            policy: find("Variant Inventory Policy"),
            price: need("Variant Price")?,
            barcode: find("Variant Barcode"),
            image: find("Image Src"),
        })
    }
}

fn field(rec: &csv::StringRecord, col: Option<usize>) -> &str {
    col.and_then(|c| rec.get(c)).map(str::trim).unwrap_or("")
}

/// A stable SKU for a variant without one: the handle plus its option values,
/// in lowercase with dashes (`classic-varsity-top-small`).
pub fn generated_sku(handle: &str, option_values: &[impl AsRef<str>]) -> String {
    let mut parts = vec![handle.to_string()];
    for v in option_values.iter().map(AsRef::as_ref) {
        if v.is_empty() || v.eq_ignore_ascii_case("Default Title") {
            continue;
        }
        parts.push(v.to_string());
    }
    let mut sku = String::new();
    for ch in parts.join("-").chars() {
        if ch.is_alphanumeric() {
            sku.extend(ch.to_lowercase());
        } else if !sku.ends_with('-') && !sku.is_empty() {
            sku.push('-');
        }
    }
    sku.trim_end_matches('-').to_string()
}

/// Byte offsets of every '\n' in `data`.
fn memchr_newlines(data: &[u8]) -> Vec<usize> {
    data.iter()
        .enumerate()
        .filter_map(|(i, b)| (*b == b'\n').then_some(i))
        .collect()
}

/// A parsed catalog file: the products, and a reason per skipped row.
#[derive(Debug, Default)]
pub struct ParsedCatalog {
    pub products: Vec<Product>,
    pub skipped: Vec<SkippedRow>,
}

/// Parses a Shopify product CSV. Pure: touches no database.
pub fn parse_shopify_csv(mut reader: impl Read) -> Result<ParsedCatalog> {
    // Line numbers are counted here from each record's byte offset: the csv
    // crate's own line count is off by one on CRLF files (Shopify's).
    let mut data = Vec::new();
    reader.read_to_end(&mut data)?;
    let newlines: Vec<usize> = memchr_newlines(&data);
    // A record's offset can point at the line ending before it (CRLF):
    // step over line endings to its first byte, then count the lines above.
    let line_at = |byte: u64| {
        let mut at = usize::try_from(byte).unwrap_or(usize::MAX);
        while matches!(data.get(at), Some(b'\r' | b'\n')) {
            at += 1;
        }
        newlines.partition_point(|&n| n < at) as u64 + 1
    };
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(data.as_slice());
    let cols = Columns::from_headers(csv.headers()?)?;
    // A product's title is on its first row only.
    let mut titles: HashMap<String, String> = HashMap::new();
    let mut seen_skus: HashMap<String, u64> = HashMap::new();
    let mut products = Vec::new();
    let mut skipped = Vec::new();

    for record in csv.records() {
        let rec = record?;
        let row = rec.position().map(|p| line_at(p.byte())).unwrap_or(0);
        let handle = field(&rec, Some(cols.handle)).to_string();
        let mut skip = |reason: String| {
            skipped.push(SkippedRow {
                row,
                handle: handle.clone(),
                reason,
            })
        };
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if handle.is_empty() {
            skip("no handle".into());
            continue;
        }
        let title = one_line(field(&rec, Some(cols.title)));
        if !title.is_empty() {
            titles.insert(handle.clone(), title);
        }
        let values: Vec<String> = cols
            .option_values
            .iter()
            .map(|c| one_line(field(&rec, *c)))
            .collect();
        let price_text = field(&rec, Some(cols.price));
        let sku_text = field(&rec, cols.sku);
        if price_text.is_empty() && sku_text.is_empty() && values.iter().all(|v| v.is_empty()) {
            let reason = if field(&rec, cols.image).is_empty() {
                "no variant on this row (no price, SKU or option values)"
            } else {
                "image-only row (an extra picture of the product above, not a variant)"
            };
            skip(reason.into());
            continue;
        }
        let Some(product_title) = titles.get(&handle).cloned() else {
            skip("variant row before its product's first row (no title)".into());
            continue;
        };
        let Some(price_cents) = money::parse_cents(price_text) else {
            skip(if price_text.is_empty() {
                "no price".into()
            } else {
                format!("price \"{price_text}\" is not an amount")
            });
            continue;
        };
        let qty_text = field(&rec, cols.qty);
        let stock = if qty_text.is_empty() {
            0
        } else {
            match qty_text.parse::<i64>() {
                Ok(q) if q.abs() <= 1_000_000_000 => q,
                _ => {
                    skip(format!("stock \"{qty_text}\" is not a whole number"));
                    continue;
                }
            }
        };
        let sku = if sku_text.is_empty() {
            generated_sku(&handle, &values)
        } else {
            sku_text.to_string()
        };
        if sku.chars().count() > MAX_SKU_CHARS || has_control(&sku) {
            skip(format!(
                "SKU longer than {MAX_SKU_CHARS} characters or with a line break or other control character"
            ));
            continue;
        }
        if let Some(first) = seen_skus.get(&sku) {
            skip(format!("duplicate SKU \"{sku}\" (first on line {first})"));
            continue;
        }
        seen_skus.insert(sku.clone(), row);
        let option_label: Vec<&str> = values
            .iter()
            .map(String::as_str)
            .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("Default Title"))
            .collect();
        let full_title = if option_label.is_empty() {
            product_title
        } else {
            format!("{product_title} – {}", option_label.join(" / "))
        };
        if full_title.chars().count() > MAX_TITLE_CHARS {
            skip(format!(
                "title with its options is longer than {MAX_TITLE_CHARS} characters"
            ));
            continue;
        }
        let barcode = field(&rec, cols.barcode).trim_start_matches('\'').trim();
        products.push(Product {
            sku,
            handle: handle.clone(),
            title: full_title,
            price_cents,
            stock,
            allow_oversell: field(&rec, cols.policy).eq_ignore_ascii_case("continue"),
            barcode: (!barcode.is_empty()).then(|| barcode.to_string()),
        });
    }
    Ok(ParsedCatalog { products, skipped })
}

/// Longest title (with its option values) a product may have: it has to fit
/// on a receipt line, an email and the till's list.
const MAX_TITLE_CHARS: usize = 255;
/// Longest SKU: SKUs are typed, scanned and printed.
const MAX_SKU_CHARS: usize = 100;

/// Imports a Shopify product CSV inside `tx`: new SKUs are inserted, known
/// ones updated (price, title, stock, policy), so a re-import never duplicates.
pub fn import_shopify_csv(
    tx: &Transaction,
    source: &str,
    reader: impl Read,
) -> Result<ImportSummary> {
    let ParsedCatalog { products, skipped } = parse_shopify_csv(reader)?;
    if products.is_empty() {
        // Nothing to import is a failed import, not an empty success: say
        // why, with the first reasons when rows were skipped.
        let why = match skipped.len() {
            0 => "it has no product rows".to_string(),
            n => {
                let first: Vec<String> = skipped
                    .iter()
                    .take(3)
                    .map(|s| format!("line {}: {}", s.row, s.reason))
                    .collect();
                format!(
                    "all {n} of its rows were skipped ({}{})",
                    first.join("; "),
                    if n > 3 { "; …" } else { "" }
                )
            }
        };
        return Err(Error::invalid(
            "file",
            format!("nothing imported from {source}: {why}"),
        ));
    }
    let now = now_rfc3339();
    let mut summary = ImportSummary {
        source: source.to_string(),
        skipped,
        ..Default::default()
    };
    let mut exists = tx.prepare_cached("SELECT 1 FROM products WHERE sku = ?1")?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO products (sku, handle, title, price_cents, stock, allow_oversell, barcode, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (sku) DO UPDATE SET
           handle = excluded.handle, title = excluded.title, price_cents = excluded.price_cents,
           stock = excluded.stock, allow_oversell = excluded.allow_oversell,
           barcode = excluded.barcode, updated_at = excluded.updated_at",
    )?;
    for p in &products {
        let known = exists.exists([&p.sku])?;
        upsert.execute(params![
            p.sku,
            p.handle,
            p.title,
            p.price_cents,
            p.stock,
            p.allow_oversell,
            p.barcode,
            now
        ])?;
        if known {
            summary.updated += 1;
        } else {
            summary.imported += 1;
        }
    }
    Ok(summary)
}

const PRODUCT_COLUMNS: &str = "sku, handle, title, price_cents, stock, allow_oversell, barcode";

fn product_from_row(r: &rusqlite::Row) -> rusqlite::Result<Product> {
    Ok(Product {
        sku: r.get(0)?,
        handle: r.get(1)?,
        title: r.get(2)?,
        price_cents: r.get(3)?,
        stock: r.get(4)?,
        allow_oversell: r.get(5)?,
        barcode: r.get(6)?,
    })
}

/// Longer than any title, SKU or barcode; SQLite refuses very long LIKE
/// patterns anyway.
const MAX_QUERY_CHARS: usize = 200;

/// Products matching `query` (exact SKU or barcode first, then SKU, title or
/// handle containing it), or all products by title when there is no query.
pub fn search(conn: &Connection, query: Option<&str>, limit: usize) -> Result<Vec<Product>> {
    let limit = crate::db::sql_limit(limit);
    let q = query.map(str::trim).unwrap_or("");
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::invalid(
            "query",
            format!("a search is at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let products = if q.is_empty() {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY title, sku LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit], product_from_row)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    } else {
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let like = format!("%{escaped}%");
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products
             WHERE sku = ?1 COLLATE NOCASE OR barcode = ?1
                OR sku LIKE ?2 ESCAPE '\\' OR title LIKE ?2 ESCAPE '\\' OR handle LIKE ?2 ESCAPE '\\'
             ORDER BY (sku = ?1 COLLATE NOCASE OR barcode = ?1) DESC, title, sku
             LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![q, like, limit], product_from_row)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    Ok(products)
}

pub fn get(conn: &Connection, sku: &str) -> Result<Option<Product>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE sku = ?1"
    ))?;
    Ok(stmt.query_row([sku], product_from_row).optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Handle,Title,Option1 Name,Option1 Value,Option2 Name,Option2 Value,Variant SKU,Variant Inventory Qty,Variant Inventory Policy,Variant Price,Variant Barcode,Image Src\n";

    fn parse(body: &str) -> (Vec<Product>, Vec<SkippedRow>) {
        let parsed = parse_shopify_csv(format!("{HEADER}{body}").as_bytes()).unwrap();
        (parsed.products, parsed.skipped)
    }

    #[test]
    fn every_variant_row_becomes_a_product_with_a_stable_sku() {
        let (products, skipped) = parse(
            "tee,Tee,Size,Small,Colour,Red,,3,deny,19.99,,http://img/1.jpg\n\
             tee,,,Large,,Blue,,0,continue,21,,\n\
             mug,Mug,Title,Default Title,,,MUG-1,7,deny,9.5,'0123,\n",
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(products.len(), 3);
        assert_eq!(products[0].sku, "tee-small-red");
        assert_eq!(products[0].title, "Tee – Small / Red");
        assert_eq!(products[0].price_cents, 1999);
        assert_eq!(products[0].stock, 3);
        assert!(!products[0].allow_oversell);
        assert_eq!(products[1].sku, "tee-large-blue");
        assert!(
            products[1].allow_oversell,
            "policy continue allows overselling"
        );
        assert_eq!(products[2].sku, "MUG-1");
        assert_eq!(products[2].title, "Mug");
        assert_eq!(products[2].price_cents, 950);
        assert_eq!(products[2].barcode.as_deref(), Some("0123"));
    }

    #[test]
    fn image_only_and_broken_rows_are_skipped_with_a_reason() {
        let (products, skipped) = parse(
            "tee,Tee,Title,Default Title,,,,1,deny,10,,http://img/1.jpg\n\
             tee,,,,,,,,,,,http://img/2.jpg\n\
             hat,Hat,Title,Default Title,,,,1,deny,ten,,\n\
             ,Nameless,Title,Default Title,,,,1,deny,1,,\n\
             cap,,,Blue,,,,1,deny,1,,\n\
             bag,Bag,Title,Default Title,,,,lots,deny,1,,\n",
        );
        assert_eq!(products.len(), 1);
        let reasons: Vec<(u64, &str)> =
            skipped.iter().map(|s| (s.row, s.reason.as_str())).collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert_eq!(reasons[0].0, 3);
        assert!(reasons[0].1.starts_with("image-only row"));
        assert_eq!(reasons[1].1, "price \"ten\" is not an amount");
        assert_eq!(reasons[2].1, "no handle");
        assert!(reasons[3].1.contains("before its product's first row"));
        assert_eq!(reasons[4].1, "stock \"lots\" is not a whole number");
    }

    #[test]
    fn titles_are_one_line_and_of_a_sane_length() {
        let long = "x".repeat(300);
        let (products, skipped) = parse(&format!(
            "a,\"Big\r\n\tMug \",Size,\"Extra\nLarge\",,,,1,deny,1,,\n\
             b,{long},Title,Default Title,,,,1,deny,1,,\n\
             c,C,Title,Default Title,,,\"C\n1\",1,deny,1,,\n"
        ));
        assert_eq!(products.len(), 1, "{skipped:?}");
        assert_eq!(products[0].title, "Big Mug – Extra Large");
        assert_eq!(products[0].sku, "a-extra-large");
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0]
            .reason
            .starts_with("title with its options is longer than 255"));
        assert!(
            skipped[1].reason.contains("control character"),
            "{skipped:?}"
        );
    }

    #[test]
    fn a_file_with_nothing_to_import_is_an_error_that_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn =
            crate::db::open(&dir.path().join("shop.db"), crate::db::Durability::Normal).unwrap();
        let mut import = |body: &str| {
            crate::db::write(&mut conn, |tx| {
                import_shopify_csv(tx, "x.csv", format!("{HEADER}{body}").as_bytes())
            })
        };
        let err = import("").unwrap_err();
        assert_eq!(err.code(), "invalid_input");
        assert!(
            err.to_string()
                .contains("nothing imported from x.csv: it has no product rows"),
            "{err}"
        );
        let err = import("hat,Hat,Title,Default Title,,,,1,deny,ten,,\n").unwrap_err();
        assert!(
            err.to_string().contains(
                "all 1 of its rows were skipped (line 2: price \"ten\" is not an amount)"
            ),
            "{err}"
        );
        assert_eq!(
            import("hat,Hat,Title,Default Title,,,,1,deny,10,,\n")
                .unwrap()
                .imported,
            1
        );
    }

    #[test]
    fn a_duplicate_sku_in_one_file_is_skipped() {
        let (products, skipped) = parse(
            "a,A,Title,Default Title,,,X,1,deny,1,,\n\
             b,B,Title,Default Title,,,X,1,deny,2,,\n",
        );
        assert_eq!(products.len(), 1);
        assert_eq!(skipped[0].reason, "duplicate SKU \"X\" (first on line 2)");
    }

    #[test]
    fn line_numbers_count_crlf_lines_and_multi_line_fields() {
        let header = HEADER.trim_end();
        let csv = format!(
            "{header}\r\n\
             a,A,Title,Default Title,,,X,1,deny,1,,\r\n\
             b,\"B\r\nline two\",Title,Default Title,,,X,1,deny,2,,\r\n\
             c,C,Title,Default Title,,,X,1,deny,3,,\r\n"
        );
        let parsed = parse_shopify_csv(csv.as_bytes()).unwrap();
        let rows: Vec<(u64, &str)> = parsed
            .skipped
            .iter()
            .map(|s| (s.row, s.reason.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (3, "duplicate SKU \"X\" (first on line 2)"),
                (5, "duplicate SKU \"X\" (first on line 2)")
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_a_catalog_is_refused_clearly() {
        let err = parse_shopify_csv("name,price\nx,1\n".as_bytes()).unwrap_err();
        assert_eq!(err.code(), "invalid_input");
        assert!(
            err.to_string().contains("\"Handle\" column is missing"),
            "{err}"
        );
    }

    #[test]
    fn generated_skus_are_slugs() {
        assert_eq!(
            generated_sku("clay-plant-pot", &["Large", "", ""]),
            "clay-plant-pot-large"
        );
        assert_eq!(generated_sku("x", &["Default Title"]), "x");
        assert_eq!(
            generated_sku("x", &["Extra Large / 2", "Café"]),
            "x-extra-large-2-café"
        );
    }
}
