//! Shop settings: a small key/value table with defaults.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use crate::error::{Error, Result};

/// Known settings and their defaults.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("shop_name", "My Shop"),
    ("shop_email", "orders@shop.invalid"),
    ("currency", "EUR"),
    // Days a finished job is kept before the worker prunes it.
    ("job_retention_days", "30"),
];

pub fn get(conn: &Connection, key: &str) -> Result<String> {
    let default = DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| Error::invalid("key", format!("unknown setting \"{key}\"")))?;
    let value: Option<String> = conn
        .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(value.unwrap_or_else(|| default.to_string()))
}

pub fn set(conn: &Connection, key: &str, value: &str) -> Result<()> {
    if !DEFAULTS.iter().any(|(k, _)| *k == key) {
        return Err(Error::invalid("key", format!("unknown setting \"{key}\"")));
    }
    let value = value.trim();
    match key {
        "currency" if !(value.len() == 3 && value.chars().all(|c| c.is_ascii_uppercase())) => {
            return Err(Error::invalid(
                "value",
                "currency must be a three-letter ISO code such as EUR",
            ))
        }
        "shop_email" if !crate::checkout::is_email(value) => {
            return Err(Error::invalid(
                "value",
                format!("\"{value}\" is not an email address"),
            ))
        }
        "shop_name" if value.is_empty() => {
            return Err(Error::invalid("value", "the shop name cannot be empty"))
        }
        "job_retention_days"
            if !value
                .parse::<u32>()
                .is_ok_and(|days| (1..=3650).contains(&days)) =>
        {
            return Err(Error::invalid(
                "value",
                "the job retention must be a whole number of days from 1 to 3650",
            ))
        }
        _ => {}
    }
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// What the app shows about the shop and where its data lives.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ShopInfo {
    pub shop_name: String,
    pub currency: String,
    pub data_dir: String,
    pub outbox_dir: String,
}
