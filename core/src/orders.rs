//! Reading orders back: the Orders page list (with each order's email
//! status, read from its job) and one order in full (for its email).

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::jobs;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailStatus {
    /// No email (walk-in customer without an address).
    None,
    Queued,
    Sent,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub order_id: String,
    pub receipt_number: String,
    pub created_at: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub total_cents: i64,
    pub currency: String,
    pub payment_method: String,
    pub line_count: i64,
    pub email_status: EmailStatus,
    /// Why the email failed, or why its last attempt failed while it waits
    /// to be retried.
    pub email_error: Option<String>,
    /// The confirmation email's job while the queue has it (to retry a
    /// failed email from the order).
    pub email_job_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub title: String,
    pub unit_price_cents: i64,
    pub quantity: i64,
    pub line_total_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDetail {
    pub order_id: String,
    pub receipt_number: String,
    pub created_at: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub total_cents: i64,
    pub currency: String,
    pub payment_method: String,
    pub tendered_cents: Option<i64>,
    pub change_cents: Option<i64>,
    pub card_reference: Option<String>,
    pub lines: Vec<OrderLine>,
}

/// What the Orders page says about an order's email. The email job's row
/// tells while it exists; once the queue has pruned or deleted it, the
/// order's own `email_sent_at` does. `has_address`: the order has a
/// customer email, so a missing job that never sent was deleted by the
/// owner as a dead job.
fn email_status(
    job_status: Option<&str>,
    has_address: bool,
    sent: bool,
) -> (EmailStatus, Option<&'static str>) {
    match job_status {
        Some("Done") => (EmailStatus::Sent, None),
        Some("Killed") => (EmailStatus::Failed, None),
        Some(_) => (EmailStatus::Queued, None),
        None if sent => (EmailStatus::Sent, None),
        None if has_address => (
            EmailStatus::Failed,
            Some("not sent: its job was deleted from the queue"),
        ),
        None => (EmailStatus::None, None),
    }
}

/// Newest first.
pub fn list(conn: &Connection, limit: usize) -> Result<Vec<OrderSummary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.id, o.receipt_number, o.created_at, o.customer_name, o.customer_email,
                o.total_cents, o.currency, p.method,
                (SELECT count(*) FROM order_lines l WHERE l.order_id = o.id),
                j.status, j.last_result, o.email_sent_at IS NOT NULL, j.id
         FROM orders o
         JOIN payments p ON p.order_id = o.id
         LEFT JOIN Jobs j ON j.job_type = ?1 AND j.idempotency_key = ?2 || o.id
         ORDER BY o.receipt_seq DESC
         LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![
            jobs::ORDER_CONFIRMATION_EMAIL,
            jobs::ORDER_CONFIRMATION_KEY_PREFIX,
            crate::db::sql_limit(limit)
        ],
        |r| {
            let status: Option<String> = r.get(9)?;
            let last: Option<String> = r.get(10)?;
            let has_address = r.get::<_, Option<String>>(4)?.is_some();
            let sent: bool = r.get(11)?;
            let (email_status, why) = email_status(status.as_deref(), has_address, sent);
            let email_error = match (&email_status, status.as_deref()) {
                (EmailStatus::Failed, Some(_)) | (EmailStatus::Queued, Some("Failed")) => last,
                (EmailStatus::Failed, None) => why.map(str::to_string),
                _ => None,
            };
            Ok(OrderSummary {
                order_id: r.get(0)?,
                receipt_number: r.get(1)?,
                created_at: r.get(2)?,
                customer_name: r.get(3)?,
                customer_email: r.get(4)?,
                total_cents: r.get(5)?,
                currency: r.get(6)?,
                payment_method: r.get(7)?,
                line_count: r.get(8)?,
                email_status,
                email_error,
                email_job_id: r.get(12)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn get(conn: &Connection, order_id: &str) -> Result<Option<OrderDetail>> {
    let head = conn
        .query_row(
            "SELECT o.id, o.receipt_number, o.created_at, o.customer_name, o.customer_email,
                    o.total_cents, o.currency, p.method, p.tendered_cents, p.change_cents, p.reference
             FROM orders o JOIN payments p ON p.order_id = o.id
             WHERE o.id = ?1",
            [order_id],
            |r| {
                Ok(OrderDetail {
                    order_id: r.get(0)?,
                    receipt_number: r.get(1)?,
                    created_at: r.get(2)?,
                    customer_name: r.get(3)?,
                    customer_email: r.get(4)?,
                    total_cents: r.get(5)?,
                    currency: r.get(6)?,
                    payment_method: r.get(7)?,
                    tendered_cents: r.get(8)?,
                    change_cents: r.get(9)?,
                    card_reference: r.get(10)?,
                    lines: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut order) = head else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT sku, title, unit_price_cents, quantity, line_total_cents
         FROM order_lines WHERE order_id = ?1 ORDER BY line_no",
    )?;
    order.lines = stmt
        .query_map([order_id], |r| {
            Ok(OrderLine {
                sku: r.get(0)?,
                title: r.get(1)?,
                unit_price_cents: r.get(2)?,
                quantity: r.get(3)?,
                line_total_cents: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(order))
}
