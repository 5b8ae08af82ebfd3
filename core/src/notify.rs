//! Desktop notifications through the session's notification daemon
//! (freedesktop D-Bus API, via notify-rust).

use crate::money;
use crate::orders::OrderDetail;

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub summary: String,
    pub body: String,
}

/// "Order R-000123 · €54.00", with the items and customer underneath.
pub fn order_placed(order: &OrderDetail) -> Note {
    let items: i64 = order.lines.iter().map(|l| l.quantity).sum();
    let who = order
        .customer_name
        .clone()
        .unwrap_or_else(|| "walk-in customer".into());
    Note {
        summary: format!(
            "Order {} · {}",
            order.receipt_number,
            money::format(order.total_cents, &order.currency)
        ),
        body: format!(
            "{items} item{} · {who} · paid by {}",
            if items == 1 { "" } else { "s" },
            order.payment_method
        ),
    }
}

/// Shows `note` on the desktop. Blocking (a D-Bus round trip): call it off
/// the async executor. Fails when there is no session bus or no daemon.
pub fn show(note: &Note) -> Result<(), String> {
    notify_rust::Notification::new()
        .appname("ShopDesk")
        .summary(&note.summary)
        .body(&note.body)
        .timeout(notify_rust::Timeout::Milliseconds(6000))
        .show()
        .map(|_| ())
        .map_err(|e| format!("no desktop notification service: {e}"))
}
