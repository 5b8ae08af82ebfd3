//! Money as integer minor units. No floats anywhere: prices are parsed from
//! decimal text and summed with checked arithmetic.

use crate::error::{Error, Result};

/// Largest amount we accept anywhere (one hundred million in major units):
/// far above any till, far below i64 overflow even when multiplied.
pub const MAX_CENTS: i64 = 10_000_000_000;

/// Parses a decimal amount like `"59.99"`, `"50"`, `"1,234.5"` into cents.
/// Rejects negatives, more than two decimals, and anything that is not a number.
/// A comma is only a thousands separator (`1,234` but not `12,50`, which
/// would otherwise read as 1250: a decimal comma is refused, not guessed).
pub fn parse_cents(text: &str) -> Option<i64> {
    let t = text.trim();
    let whole_part = t.split_once('.').map_or(t, |(w, _)| w);
    if t.split_once('.').is_some_and(|(_, f)| f.contains(',')) {
        return None;
    }
    if whole_part.contains(',') {
        let mut groups = whole_part.split(',');
        let first = groups.next().unwrap_or_default();
        if first.is_empty() || first.len() > 3 || groups.any(|g| g.len() != 3) {
            return None;
        }
    }
    let t: String = t.chars().filter(|c| *c != ',').collect();
    if t.is_empty() {
        return None;
    }
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w, f),
        None => (t.as_str(), ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 2 || whole.len() > 12 {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    let cents = whole.checked_mul(100)?.checked_add(frac)?;
    (cents <= MAX_CENTS).then_some(cents)
}

/// `quantity × unit`, refusing overflow and absurd totals.
pub fn line_total(unit_cents: i64, quantity: i64) -> Result<i64> {
    unit_cents
        .checked_mul(quantity)
        .filter(|t| *t <= MAX_CENTS)
        .ok_or_else(|| Error::Other("line total is too large".into()))
}

/// Formats cents for people: `5400, "EUR"` → `€54.00`.
pub fn format(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let amount = format!("{}.{:02}", abs / 100, abs % 100);
    match currency {
        "EUR" => format!("{sign}€{amount}"),
        "USD" => format!("{sign}${amount}"),
        "GBP" => format!("{sign}£{amount}"),
        other => format!("{sign}{amount} {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_prices_without_floats() {
        assert_eq!(parse_cents("59.99"), Some(5999));
        assert_eq!(parse_cents("50"), Some(5000));
        assert_eq!(parse_cents("9.9"), Some(990));
        assert_eq!(parse_cents(" 0.01 "), Some(1));
        assert_eq!(parse_cents("1,234.50"), Some(123_450));
        assert_eq!(parse_cents("1,234,567"), Some(123_456_700));
        // A decimal comma (or stray commas) is refused, never read as 100× more.
        for bad in ["12,50", "0,05", "1,2,3", ",500", "1234,567", "1.2,5", "12,"] {
            assert_eq!(parse_cents(bad), None, "{bad}");
        }
        assert_eq!(parse_cents(".5"), Some(50));
        // 0.1 + 0.2 style trouble cannot happen: 0.29 stays 29 cents.
        assert_eq!(parse_cents("0.29"), Some(29));
    }

    #[test]
    fn rejects_what_is_not_a_price() {
        for bad in [
            "",
            "abc",
            "-1",
            "1.234",
            "1e3",
            "12.3.4",
            ".",
            "999999999999999",
        ] {
            assert_eq!(parse_cents(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn line_totals_refuse_overflow() {
        assert_eq!(line_total(1999, 3).unwrap(), 5997);
        assert!(line_total(i64::MAX / 2, 3).is_err());
        assert!(line_total(MAX_CENTS, 2).is_err());
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format(5400, "EUR"), "€54.00");
        assert_eq!(format(5, "USD"), "$0.05");
        assert_eq!(format(-150, "GBP"), "-£1.50");
        assert_eq!(format(123456, "CHF"), "1234.56 CHF");
    }
}
