//! Shop settings: a small key/value table with defaults.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use crate::error::{Error, Result};

/// Known settings and their defaults.
pub const DEFAULTS: &[(&str, &str)] = &[
    // How confirmation emails go out: "outbox" (files) or "resend" (HTTP API).
    ("email_provider", "outbox"),
    ("email_api_url", crate::email_api::DEFAULT_BASE_URL),
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
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
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
        "shop_name" if value.chars().count() > 100 => {
            return Err(Error::invalid(
                "value",
                "the shop name is longer than 100 characters",
            ))
        }
        "shop_name" if crate::text::has_control(value) => {
            return Err(Error::invalid(
                "value",
                "the shop name cannot contain line breaks, tabs or other control characters",
            ))
        }
        "email_provider" if !EMAIL_PROVIDERS.contains(&value) => {
            return Err(Error::invalid(
                "value",
                format!("unknown email provider \"{value}\" (outbox or resend)"),
            ))
        }
        "email_api_url" => check_api_url(value)?,
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

/// The email providers: files in the outbox folder, or Resend's HTTP API.
pub const EMAIL_PROVIDERS: [&str; 2] = ["outbox", "resend"];

/// The email API key: not in the database but in the OS keyring (or its
/// fallback file), see [`crate::secrets`].
pub const EMAIL_API_KEY: &str = "email_api_key";

fn check_api_url(value: &str) -> Result<()> {
    let bad = |why: &str| Error::invalid("value", format!("\"{value}\" {why}"));
    let url = reqwest::Url::parse(value).map_err(|_| bad("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("must be an http:// or https:// address"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or a fragment"));
    }
    // The API key goes in a header: in plain http only to this machine.
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(bad(
            "would send the API key unencrypted: use https:// (http:// only for this computer)",
        ));
    }
    Ok(())
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    match ip.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// What the app shows about the shop and where its data lives.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ShopInfo {
    pub shop_name: String,
    pub currency: String,
    pub data_dir: String,
    pub outbox_dir: String,
}

/// The Settings page's fields. The API key is never sent back: only
/// whether one is stored, masked (`re_…a1b2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SettingsForm {
    pub shop_name: String,
    pub shop_email: String,
    pub email_provider: String,
    pub email_api_url: String,
    /// The stored key, masked; `None` when no key is stored.
    pub email_api_key: Option<String>,
}

/// What the Settings page saves. A missing or blank API key keeps the
/// stored one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SettingsUpdate {
    pub shop_name: String,
    pub shop_email: String,
    pub email_provider: String,
    pub email_api_url: String,
    #[serde(default)]
    pub email_api_key: Option<String>,
}

/// The keys `config get` lists, in order: every stored setting, then the
/// API key (shown masked).
pub fn config_keys() -> Vec<&'static str> {
    DEFAULTS
        .iter()
        .map(|(k, _)| *k)
        .chain([EMAIL_API_KEY])
        .collect()
}

/// Whether confirmation emails can go out with this provider: the HTTP
/// provider needs a from-address of the shop's own (not the placeholder it
/// starts with, which a provider refuses, so every email would die) and an
/// API key. The error names the field to fix.
pub fn check_provider_ready(provider: &str, shop_email: &str, has_api_key: bool) -> Result<()> {
    if provider.trim() != "resend" {
        return Ok(());
    }
    if shop_email.trim().to_ascii_lowercase().ends_with(".invalid") {
        return Err(Error::invalid(
            "shop_email",
            "set the address your emails come from (one your email provider has verified)",
        ));
    }
    if !has_api_key {
        return Err(Error::invalid(
            EMAIL_API_KEY,
            "the Resend API needs an API key",
        ));
    }
    Ok(())
}

/// Checks an API key before it is stored (it is never shown back, so a
/// typo must be caught here).
pub fn check_api_key(value: &str) -> Result<()> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            EMAIL_API_KEY,
            "the API key cannot contain spaces or line breaks",
        ));
    }
    if value.len() < 8 {
        return Err(Error::invalid(EMAIL_API_KEY, "the API key is too short"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, Durability};

    #[test]
    fn the_shop_name_is_one_short_line() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(&dir.path().join("shop.db"), Durability::Normal).unwrap();
        for bad in ["Evil\nBcc: x@y.example", "Tab\tShop", &"x".repeat(101)] {
            let err = set(&conn, "shop_name", bad).unwrap_err();
            assert_eq!(err.code(), "invalid_input", "{bad:?}");
        }
        assert_eq!(get(&conn, "shop_name").unwrap(), "My Shop");
        set(&conn, "shop_name", "  Café Zoë  ").unwrap();
        assert_eq!(get(&conn, "shop_name").unwrap(), "Café Zoë");
    }

    #[test]
    fn the_api_key_never_travels_unencrypted_off_this_computer() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(&dir.path().join("shop.db"), Durability::Normal).unwrap();
        for bad in [
            "http://api.example.com",
            "http://10.0.0.5:8080",
            "ftp://api.example.com",
            "https://api.example.com/?x=1",
            "\"Jane\" <jane@example.com>",
        ] {
            let err = set(&conn, "email_api_url", bad).unwrap_err();
            assert_eq!(err.code(), "invalid_input", "{bad:?}");
        }
        for good in [
            "https://api.example.com",
            "http://127.0.0.1:8025",
            "http://localhost:8025/v1",
            "http://[::1]:8025",
        ] {
            set(&conn, "email_api_url", good).unwrap();
            assert_eq!(get(&conn, "email_api_url").unwrap(), good);
        }
        let err = set(&conn, "shop_email", "\"Shop\" <shop@example.com>").unwrap_err();
        assert_eq!(err.code(), "invalid_input");
    }
}
