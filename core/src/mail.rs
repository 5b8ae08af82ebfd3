//! Order confirmation emails: rendered from templates (minijinja, which
//! escapes HTML for `.html` templates) into an RFC 5322 message
//! (mail-builder: multipart text + HTML), and delivered by writing it
//! atomically into the outbox folder, which needs no network or account.

use std::io::Write;
use std::path::{Path, PathBuf};

use mail_builder::MessageBuilder;
use minijinja::{context, Environment};
use serde::Serialize;

use crate::money;
use crate::orders::OrderDetail;
use crate::text::one_line;

const TEXT_TEMPLATE: &str = "\
Hello{% if name %} {{ name }}{% endif %},

thank you for shopping at {{ shop }}. Your receipt number is {{ receipt }}.

{% for l in lines %}{{ l.quantity }} × {{ l.title }} ({{ l.sku }})  {{ l.unit }}  {{ l.total }}
{% endfor %}
Total: {{ total }}
Paid by {{ payment }}.

{{ shop }}
";

const HTML_TEMPLATE: &str = r#"<!doctype html>
<html><body style="font-family: sans-serif; color: #222">
<p>Hello{% if name %} {{ name }}{% endif %},</p>
<p>thank you for shopping at {{ shop }}. Your receipt number is <strong>{{ receipt }}</strong>.</p>
<table cellpadding="4" style="border-collapse: collapse">
<tr><th align="left">Item</th><th align="right">Qty</th><th align="right">Price</th><th align="right">Total</th></tr>
{% for l in lines %}<tr><td>{{ l.title }}</td><td align="right">{{ l.quantity }}</td><td align="right">{{ l.unit }}</td><td align="right">{{ l.total }}</td></tr>
{% endfor %}<tr><td colspan="3" align="right"><strong>Total</strong></td><td align="right"><strong>{{ total }}</strong></td></tr>
</table>
<p>Paid by {{ payment }}.</p>
<p>{{ shop }}</p>
</body></html>
"#;

/// Who the email is from.
#[derive(Debug, Clone)]
pub struct Sender {
    pub shop_name: String,
    pub email: String,
}

/// A rendered message, ready to deliver.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The bytes of the RFC 5322 message.
    pub rfc5322: Vec<u8>,
    /// Stable per order: a retried delivery writes the same file.
    pub file_name: String,
}

#[derive(Serialize)]
struct LineView {
    sku: String,
    title: String,
    quantity: i64,
    unit: String,
    total: String,
}

/// Renders the confirmation email of an order that has a customer email.
pub fn order_confirmation(order: &OrderDetail, from: &Sender) -> Result<Email, String> {
    let to = order
        .customer_email
        .clone()
        .ok_or_else(|| "the order has no customer email".to_string())?;
    let cur = order.currency.as_str();
    let lines: Vec<LineView> = order
        .lines
        .iter()
        .map(|l| LineView {
            sku: l.sku.clone(),
            title: l.title.clone(),
            quantity: l.quantity,
            unit: money::format(l.unit_price_cents, cur),
            total: money::format(l.line_total_cents, cur),
        })
        .collect();
    let payment = match order.payment_method.as_str() {
        "cash" => "cash".to_string(),
        _ => format!(
            "card (ref. {})",
            order.card_reference.as_deref().unwrap_or("-")
        ),
    };
    let ctx = context! {
        name => order.customer_name,
        shop => from.shop_name,
        receipt => order.receipt_number,
        lines => lines,
        total => money::format(order.total_cents, cur),
        payment => payment,
    };
    let mut env = Environment::new();
    env.add_template("confirmation.txt", TEXT_TEMPLATE)
        .and_then(|_| env.add_template("confirmation.html", HTML_TEMPLATE))
        .map_err(|e| format!("email template: {e}"))?;
    let render = |name: &str| {
        env.get_template(name)
            .and_then(|t| t.render(&ctx))
            .map_err(|e| format!("email template: {e}"))
    };
    let text = render("confirmation.txt")?;
    let html = render("confirmation.html")?;
    // Header text goes through one_line: a line break would start a new
    // header. Input is checked where it is entered; this also covers values
    // stored before those checks.
    let subject = one_line(&format!(
        "Your receipt {} from {} ({})",
        order.receipt_number,
        from.shop_name,
        money::format(order.total_cents, cur)
    ));
    let date = time::OffsetDateTime::parse(
        &order.created_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map(|t| t.unix_timestamp())
    .unwrap_or_else(|_| time::OffsetDateTime::now_utc().unix_timestamp());
    let domain = from.email.rsplit('@').next().unwrap_or("shop.invalid");
    let to_address: mail_builder::headers::address::Address = match &order.customer_name {
        Some(name) => (one_line(name), to.clone()).into(),
        None => to.clone().into(),
    };
    let rfc5322 = MessageBuilder::new()
        .from((one_line(&from.shop_name), from.email.clone()))
        .to(to_address)
        .subject(subject.clone())
        .date(date)
        .message_id(format!("order-confirmation.{}@{domain}", order.order_id))
        .text_body(text.clone())
        .html_body(html.clone())
        .write_to_vec()
        .map_err(|e| format!("building the email: {e}"))?;
    Ok(Email {
        to,
        subject,
        text,
        html,
        rfc5322,
        file_name: format!("{}-{}.eml", order.receipt_number, order.order_id),
    })
}

/// Writes `email` into `outbox` atomically: a temporary file, flushed to
/// disk, then renamed, so a reader never sees half a message and a crash
/// leaves at most a stray temporary file. Writing the same email again
/// replaces the file with identical bytes: never two copies.
pub fn write_to_outbox(outbox: &Path, email: &Email) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(outbox)?;
    let target = outbox.join(&email.file_name);
    let tmp = outbox.join(format!(".{}.tmp", email.file_name));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&email.rfc5322)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &target)?;
    if let Ok(dir) = std::fs::File::open(outbox) {
        let _ = dir.sync_all();
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::OrderLine;

    fn order() -> OrderDetail {
        OrderDetail {
            order_id: "0190-abc".into(),
            receipt_number: "R-000042".into(),
            created_at: "2026-12-03T10:00:00.000Z".into(),
            customer_name: Some("Jane <Doe>".into()),
            customer_email: Some("jane@example.com".into()),
            total_cents: 5999,
            currency: "EUR".into(),
            payment_method: "card".into(),
            tendered_cents: None,
            change_cents: None,
            card_reference: Some("AUTH-7".into()),
            lines: vec![OrderLine {
                sku: "mug".into(),
                title: "Mug".into(),
                unit_price_cents: 5999,
                quantity: 1,
                line_total_cents: 5999,
            }],
        }
    }

    fn sender() -> Sender {
        Sender {
            shop_name: "Corner Shop".into(),
            email: "orders@corner.example".into(),
        }
    }

    #[test]
    fn renders_a_multipart_message_with_receipt_and_total() {
        let email = order_confirmation(&order(), &sender()).unwrap();
        assert_eq!(
            email.subject,
            "Your receipt R-000042 from Corner Shop (€59.99)"
        );
        let msg = mail_parser::MessageParser::default()
            .parse(&email.rfc5322)
            .unwrap();
        assert_eq!(msg.subject(), Some(email.subject.as_str()));
        assert_eq!(
            msg.to().unwrap().first().unwrap().address(),
            Some("jane@example.com")
        );
        assert_eq!(
            msg.from().unwrap().first().unwrap().address(),
            Some("orders@corner.example")
        );
        assert!(msg.body_text(0).unwrap().contains("Total: €59.99"));
        let html = msg.body_html(0).unwrap();
        assert!(
            html.contains("Jane &lt;Doe&gt;"),
            "names are escaped in HTML: {html}"
        );
        assert!(html.contains("AUTH-7"));
    }

    #[test]
    fn a_line_break_in_a_stored_name_cannot_add_a_header() {
        let mut o = order();
        o.customer_name = Some("Eve\r\nBcc: victim@example.com".into());
        let from = Sender {
            shop_name: "Evil\nBcc: x@y.example".into(),
            ..sender()
        };
        let email = order_confirmation(&o, &from).unwrap();
        let raw = String::from_utf8_lossy(&email.rfc5322);
        let headers = &raw[..raw.find("\r\n\r\n").unwrap()];
        assert!(
            !headers
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{headers}"
        );
        let msg = mail_parser::MessageParser::default()
            .parse(&email.rfc5322)
            .unwrap();
        assert!(msg.bcc().is_none());
        assert_eq!(
            msg.subject(),
            Some("Your receipt R-000042 from Evil Bcc: x@y.example (€59.99)")
        );
    }

    #[test]
    fn an_order_without_email_has_no_message() {
        let mut o = order();
        o.customer_email = None;
        assert!(order_confirmation(&o, &sender()).is_err());
    }

    #[test]
    fn writing_twice_leaves_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let email = order_confirmation(&order(), &sender()).unwrap();
        let a = write_to_outbox(dir.path(), &email).unwrap();
        let b = write_to_outbox(dir.path(), &email).unwrap();
        assert_eq!(a, b);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        assert_eq!(std::fs::read(a).unwrap(), email.rfc5322);
    }
}
