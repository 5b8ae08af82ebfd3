//! One error type for the core. Every variant has a stable machine `code`
//! (what the UI and scripts match on) and a message meant for the shop owner.

use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user; `field` names the input it is about
    /// (e.g. `customer_email`, `lines[2].quantity`, `payment.tendered`).
    #[error("{message}")]
    Invalid { field: String, message: String },

    /// Not enough stock for a line.
    #[error("{message}")]
    OutOfStock { field: String, message: String },

    #[error("{0}")]
    NotFound(String),

    /// The same idempotency key was used for a different order.
    #[error("{0}")]
    Conflict(String),

    #[error("catalog file: {0}")]
    Csv(#[from] csv::Error),

    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),

    #[error("database migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),

    #[error("{0}")]
    Io(#[from] std::io::Error),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Stable code for the UI and for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "invalid_input",
            Error::OutOfStock { .. } => "out_of_stock",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Csv(_) => "bad_catalog",
            Error::Db(e) if is_busy(e) => "busy",
            Error::Db(_) | Error::Migration(_) => "storage",
            Error::Io(_) => "io",
            Error::Other(_) => "internal",
        }
    }

    /// The input field this error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } | Error::OutOfStock { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The `{code, message, field}` shape shown to users and scripts.
    pub fn to_public(&self) -> PublicError {
        PublicError {
            code: self.code().to_string(),
            message: self.to_string(),
            field: self.field().map(str::to_string),
        }
    }
}

/// True when SQLite gave up waiting for a lock (safe to retry).
pub fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PublicError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_serialises_with_its_field() {
        let e = Error::invalid("customer_email", "\"x@\" is not an email address");
        let json = serde_json::to_value(e.to_public()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "code": "invalid_input",
                "message": "\"x@\" is not an email address",
                "field": "customer_email"
            })
        );
    }

    #[test]
    fn errors_without_a_field_omit_it() {
        let json =
            serde_json::to_value(Error::NotFound("no such order".into()).to_public()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "not_found", "message": "no such order"})
        );
    }
}
