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
        .as_deref()
        .or(order.customer_email.as_deref())
        .unwrap_or("walk-in customer");
    Note {
        summary: format!(
            "Order {} · {}",
            order.receipt_number,
            money::format(order.total_cents, &order.currency)
        ),
        // Notification daemons read the body as markup: "Smith & Sons"
        // or "<Jo>" must show as typed.
        body: escape_markup(&format!(
            "{items} item{} · {who} · paid by {}",
            if items == 1 { "" } else { "s" },
            order.payment_method
        )),
    }
}

fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Why a notification was not shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotShown {
    /// No desktop session to show it on: no session bus, or no
    /// notification service on it (a headless worker, an SSH session).
    NoDesktop(String),
    /// The service is there but the call failed; worth another try.
    Failed(String),
}

/// Shows `note` on the desktop. Blocking (a D-Bus round trip): call it off
/// the async executor.
pub fn show(note: &Note) -> Result<(), NotShown> {
    notify_rust::Notification::new()
        .appname("ShopDesk")
        .summary(&note.summary)
        .body(&note.body)
        .timeout(notify_rust::Timeout::Milliseconds(6000))
        .show()
        .map(|_| ())
        .map_err(|e| {
            // notify-rust keeps its error's kind private; its debug form
            // names the D-Bus failure.
            let detail = format!("{e:?}");
            let message = format!("no desktop notification service: {e}");
            if is_no_desktop(&detail) {
                NotShown::NoDesktop(message)
            } else {
                NotShown::Failed(message)
            }
        })
}

/// Whether a D-Bus failure means there is no desktop at all: the session
/// bus cannot be reached (no address, no socket) or nothing on it provides
/// notifications.
fn is_no_desktop(detail: &str) -> bool {
    [
        "Zbus(Connection(",
        "Zbus(InputOutput(",
        "Zbus(Address(",
        "ServiceUnknown",
        "NameHasNoOwner",
    ]
    .iter()
    .any(|mark| detail.contains(mark))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::OrderLine;

    fn order(name: Option<&str>, email: Option<&str>) -> OrderDetail {
        OrderDetail {
            order_id: "o1".into(),
            receipt_number: "R-000123".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            customer_name: name.map(Into::into),
            customer_email: email.map(Into::into),
            total_cents: 5400,
            currency: "EUR".into(),
            payment_method: "card".into(),
            tendered_cents: None,
            change_cents: None,
            card_reference: Some("x".into()),
            lines: vec![OrderLine {
                sku: "A".into(),
                title: "A".into(),
                unit_price_cents: 2700,
                quantity: 2,
                line_total_cents: 5400,
            }],
        }
    }

    #[test]
    fn no_session_bus_or_no_service_means_no_desktop() {
        for detail in [
            r#"Error { kind: Zbus(Connection(Os { code: 2, kind: NotFound }, Address { guid: None })) }"#,
            r#"Error { kind: Zbus(Address("DBUS_SESSION_BUS_ADDRESS not set")) }"#,
            r#"Error { kind: Zbus(MethodError(OwnedErrorName("org.freedesktop.DBus.Error.ServiceUnknown"), None, Msg)) }"#,
        ] {
            assert!(is_no_desktop(detail), "{detail}");
        }
        let spawn_failed = r#"Error { kind: Zbus(MethodError(OwnedErrorName("org.freedesktop.DBus.Error.Spawn.ChildSignaled"), None, Msg)) }"#;
        assert!(!is_no_desktop(spawn_failed));
    }

    #[test]
    fn names_the_customer_as_best_it_can() {
        let note = order_placed(&order(Some("Smith & <Sons>"), Some("s@example.com")));
        assert_eq!(note.summary, "Order R-000123 · €54.00");
        assert_eq!(
            note.body,
            "2 items · Smith &amp; &lt;Sons&gt; · paid by card"
        );
        let note = order_placed(&order(None, Some("s@example.com")));
        assert_eq!(note.body, "2 items · s@example.com · paid by card");
        let note = order_placed(&order(None, None));
        assert_eq!(note.body, "2 items · walk-in customer · paid by card");
    }
}
