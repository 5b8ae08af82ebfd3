//! Integration tests of the core against real parts: a real SQLite file in a
//! temp dir, the real Shopify catalogs from the shared data, the real queue
//! worker, and real `.eml` files parsed back.

use std::path::{Path, PathBuf};

use shopdesk_core::checkout::{LineRequest, OrderRequest, Payment};
use shopdesk_core::orders::EmailStatus;
use std::time::Duration;

use shopdesk_core::queue::{self, JobStatus};
use shopdesk_core::{worker, Shop};

fn catalog(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/shopify")
        .join(name);
    assert!(path.exists(), "shared catalog missing: {}", path.display());
    path
}

fn shop() -> (tempfile::TempDir, Shop) {
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::open(dir.path()).unwrap();
    (dir, shop)
}

fn stocked_shop() -> (tempfile::TempDir, Shop) {
    let (dir, shop) = shop();
    shop.import_products_file(&catalog("home-and-garden.csv"))
        .unwrap();
    (dir, shop)
}

fn order(key: &str, lines: &[(&str, i64)], email: Option<&str>) -> OrderRequest {
    OrderRequest {
        idempotency_key: key.into(),
        customer_name: Some("Jane Doe".into()),
        customer_email: email.map(str::to_string),
        lines: lines
            .iter()
            .map(|(sku, quantity)| LineRequest {
                sku: sku.to_string(),
                quantity: *quantity,
            })
            .collect(),
        payment: Payment::Cash {
            tendered_cents: 100_000,
        },
    }
}

fn count(shop: &Shop, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(shop.data().database()).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn outbox_files(shop: &Shop) -> Vec<PathBuf> {
    match std::fs::read_dir(shop.data().outbox()) {
        Err(_) => vec![],
        Ok(dir) => {
            let mut v: Vec<PathBuf> = dir
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect();
            v.sort();
            v
        }
    }
}

async fn drain(shop: &Shop) -> worker::RunSummary {
    worker::run_until_idle(shop.worker_config(), shop.job_handler())
        .await
        .unwrap()
}

#[test]
fn both_shared_catalogs_import_every_variant() {
    let (_dir, shop) = shop();
    let apparel = shop.import_products_file(&catalog("apparel.csv")).unwrap();
    assert_eq!(apparel.imported, 22, "{apparel:?}");
    assert_eq!(apparel.updated, 0);
    assert!(apparel.skipped.is_empty(), "{:?}", apparel.skipped);
    let home = shop
        .import_products_file(&catalog("home-and-garden.csv"))
        .unwrap();
    assert_eq!(home.imported, 21, "{home:?}");

    let all = shop.list_products(None, 1000).unwrap();
    assert_eq!(all.len(), 43);

    let small = shop
        .list_products(Some("classic-varsity-top-small"), 5)
        .unwrap();
    assert_eq!(small[0].title, "Classic Varsity Top – Small");
    assert_eq!(small[0].price_cents, 6000);
    assert_eq!(small[0].stock, 1);
    assert!(!small[0].allow_oversell);

    let pot = shop.list_products(Some("clay-plant-pot-large"), 5).unwrap();
    assert_eq!(pot[0].price_cents, 1599);
    assert_eq!(pot[0].stock, 3);
    let sofa = shop.list_products(Some("cream-sofa"), 5).unwrap();
    assert_eq!(sofa[0].price_cents, 50_000);
    assert_eq!(sofa[0].title, "Cream Sofa");
}

#[test]
fn re_importing_updates_and_never_duplicates() {
    let (_dir, shop) = stocked_shop();
    shop.place_order(&order("k", &[("cream-sofa", 1)], None))
        .unwrap();
    let again = shop
        .import_products_file(&catalog("home-and-garden.csv"))
        .unwrap();
    assert_eq!((again.imported, again.updated), (0, 21));
    assert_eq!(shop.list_products(None, 1000).unwrap().len(), 21);
    let sofa = &shop.list_products(Some("cream-sofa"), 1).unwrap()[0];
    assert_eq!(
        sofa.stock, 4,
        "the file's stock is the truth after an import"
    );
}

#[tokio::test]
async fn an_order_sends_one_confirmation_email_to_the_outbox() {
    let (_dir, shop) = stocked_shop();
    let placed = shop
        .place_order(&order(
            "order-1",
            &[("clay-plant-pot-large", 2), ("vanilla-candle", 1)],
            Some("jane@example.com"),
        ))
        .unwrap();
    assert_eq!(placed.receipt_number, "R-000001");
    assert_eq!(placed.total_cents, 2 * 1599 + 1599);
    assert_eq!(placed.change_due_cents, Some(100_000 - 4797));
    assert_eq!(
        shop.list_orders(10).unwrap()[0].email_status,
        EmailStatus::Queued
    );
    assert_eq!(
        shop.list_products(Some("clay-plant-pot-large"), 1).unwrap()[0].stock,
        1
    );

    // The notification job needs a desktop session (the end-to-end test
    // checks it reaches a real daemon); here only the email is asserted.
    drain(&shop).await;

    let files = outbox_files(&shop);
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
    assert_eq!(
        msg.to().unwrap().first().unwrap().address(),
        Some("jane@example.com")
    );
    let subject = msg.subject().unwrap();
    assert!(subject.contains("R-000001"), "{subject}");
    assert!(subject.contains("€47.97"), "{subject}");
    assert!(msg.body_text(0).unwrap().contains("Total: €47.97"));
    assert!(msg.body_html(0).unwrap().contains("R-000001"));

    let listed = &shop.list_orders(10).unwrap()[0];
    assert_eq!(listed.email_status, EmailStatus::Sent);
    let done = shop.list_jobs(Some(JobStatus::Done), 10).unwrap();
    let email_job = done
        .iter()
        .find(|j| j.job_type == "email.order_confirmation")
        .expect("the email job is done");
    assert_eq!(email_job.attempts, 1);
    assert_eq!(
        email_job.idempotency_key.as_deref(),
        Some(format!("order-confirmation/{}", placed.order_id).as_str())
    );
    // Every job says which order it is for, in lists and in detail.
    let all = shop.list_jobs(None, 10).unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all
        .iter()
        .all(|j| j.receipt_number.as_deref() == Some("R-000001")));
    assert_eq!(
        shop.job(&email_job.id)
            .unwrap()
            .info
            .receipt_number
            .as_deref(),
        Some("R-000001")
    );
}

#[tokio::test]
async fn a_walk_in_without_email_gets_no_email_job() {
    let (_dir, shop) = stocked_shop();
    shop.place_order(&order("walk-in", &[("cream-sofa", 1)], None))
        .unwrap();
    assert_eq!(
        count(
            &shop,
            "SELECT count(*) FROM Jobs WHERE job_type LIKE 'email.%'"
        ),
        0
    );
    assert_eq!(
        count(&shop, "SELECT count(*) FROM Jobs"),
        1,
        "only the notification"
    );
    drain(&shop).await;
    assert!(outbox_files(&shop).is_empty());
    assert_eq!(
        shop.list_orders(1).unwrap()[0].email_status,
        EmailStatus::None
    );
}

#[test]
fn a_failed_checkout_leaves_no_order_no_job_and_the_stock_as_it_was() {
    let (_dir, shop) = stocked_shop();
    let cases = [
        order("a", &[("cream-sofa", 5)], Some("jane@example.com")), // only 4 in stock
        order("b", &[("no-such-thing", 1)], Some("jane@example.com")),
        order("c", &[("cream-sofa", 1), ("pink-armchair", 1)], None), // armchair: 0 left
        order("d", &[("cream-sofa", 1)], Some("jane@")),
        order("e", &[], None),
        order("f", &[("cream-sofa", 0)], None),
        order("g", &[("cream-sofa", 1_000_000)], None),
    ];
    let mut codes = vec![];
    for req in &cases {
        let err = shop.place_order(req).unwrap_err();
        codes.push((err.code(), err.field().map(str::to_string)));
    }
    assert_eq!(
        codes,
        vec![
            ("out_of_stock", Some("lines[0].quantity".into())),
            ("invalid_input", Some("lines[0].sku".into())),
            ("out_of_stock", Some("lines[1].quantity".into())),
            ("invalid_input", Some("customer_email".into())),
            ("invalid_input", Some("lines".into())),
            ("invalid_input", Some("lines[0].quantity".into())),
            ("invalid_input", Some("lines[0].quantity".into())),
        ]
    );
    let mut low_cash = order("h", &[("cream-sofa", 1)], None);
    low_cash.payment = Payment::Cash {
        tendered_cents: 49_999,
    };
    let err = shop.place_order(&low_cash).unwrap_err();
    assert_eq!(err.field(), Some("payment.tendered_cents"));
    assert_eq!(
        err.to_string(),
        "cash tendered (€499.99) is less than the total (€500.00)"
    );

    assert_eq!(count(&shop, "SELECT count(*) FROM orders"), 0);
    assert_eq!(count(&shop, "SELECT count(*) FROM payments"), 0);
    assert_eq!(count(&shop, "SELECT count(*) FROM Jobs"), 0);
    assert_eq!(
        shop.list_products(Some("cream-sofa"), 1).unwrap()[0].stock,
        4
    );
    // The next good order still gets the first receipt number: no gaps.
    let placed = shop
        .place_order(&order("i", &[("cream-sofa", 1)], None))
        .unwrap();
    assert_eq!(placed.receipt_number, "R-000001");
}

#[tokio::test]
async fn the_same_key_twice_gives_one_order_and_one_email() {
    let (_dir, shop) = stocked_shop();
    let req = order(
        "double-click",
        &[("cream-sofa", 1)],
        Some("jane@example.com"),
    );
    let first = shop.place_order(&req).unwrap();
    let second = shop.place_order(&req).unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.order_id, second.order_id);
    assert_eq!(first.receipt_number, second.receipt_number);
    assert_eq!(count(&shop, "SELECT count(*) FROM orders"), 1);
    assert_eq!(
        shop.list_products(Some("cream-sofa"), 1).unwrap()[0].stock,
        3
    );

    // The same key for a different order is refused, not silently merged.
    let other = order(
        "double-click",
        &[("cream-sofa", 2)],
        Some("jane@example.com"),
    );
    assert_eq!(shop.place_order(&other).unwrap_err().code(), "conflict");

    drain(&shop).await;
    assert_eq!(outbox_files(&shop).len(), 1);
}

#[test]
fn receipt_numbers_are_gapless_and_in_order() {
    let (_dir, shop) = stocked_shop();
    let mut receipts = vec![];
    for i in 0..5 {
        receipts.push(
            shop.place_order(&order(
                &format!("k{i}"),
                &[("biodegradable-cardboard-pots", 1)],
                None,
            ))
            .unwrap()
            .receipt_number,
        );
    }
    assert_eq!(
        receipts,
        ["R-000001", "R-000002", "R-000003", "R-000004", "R-000005"]
    );
    let listed: Vec<String> = shop
        .list_orders(10)
        .unwrap()
        .into_iter()
        .map(|o| o.receipt_number)
        .collect();
    assert_eq!(listed[0], "R-000005", "newest first");
}

#[tokio::test]
async fn an_email_whose_worker_died_mid_run_is_sent_after_its_lease() {
    let (_dir, shop) = stocked_shop();
    let placed = shop
        .place_order(&order(
            "crash",
            &[("cream-sofa", 1)],
            Some("jane@example.com"),
        ))
        .unwrap();

    // A worker claims everything under a short lease, starts the jobs, then
    // dies without acknowledging anything (no ack, no release: as after a
    // SIGKILL).
    let mut conn = rusqlite::Connection::open(shop.data().database()).unwrap();
    let tx = conn.transaction().unwrap();
    let claimed = queue::claim(&tx, "worker-that-died", 10, Duration::from_millis(300)).unwrap();
    for job in &claimed {
        assert!(queue::start(&tx, "worker-that-died", &job.id, job.attempts).unwrap());
    }
    tx.commit().unwrap();
    assert_eq!(claimed.len(), 2, "email + notification claimed");
    assert!(outbox_files(&shop).is_empty());

    tokio::time::sleep(Duration::from_millis(400)).await;
    drain(&shop).await;

    let files = outbox_files(&shop);
    assert_eq!(
        files.len(),
        1,
        "sent once after the lease lapsed: {files:?}"
    );
    let job = queue::get_by_key(
        &conn,
        "email.order_confirmation",
        &format!("order-confirmation/{}", placed.order_id),
    )
    .unwrap()
    .unwrap();
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(job.attempts, 2, "the dead worker's attempt counts");
}

#[tokio::test]
async fn an_order_says_whether_its_email_went_out_after_the_queue_forgets_the_job() {
    let (_dir, shop) = stocked_shop();
    let sent = shop
        .place_order(&order(
            "sent",
            &[("cream-sofa", 1)],
            Some("jane@example.com"),
        ))
        .unwrap();
    let cancelled = shop
        .place_order(&order(
            "cancelled",
            &[("vanilla-candle", 1)],
            Some("joe@example.com"),
        ))
        .unwrap();
    let job_of = |order_id: &str| {
        let conn = rusqlite::Connection::open(shop.data().database()).unwrap();
        queue::get_by_key(
            &conn,
            "email.order_confirmation",
            &format!("order-confirmation/{order_id}"),
        )
        .unwrap()
        .unwrap()
        .id
    };
    shop.cancel_job(&job_of(&cancelled.order_id)).unwrap();
    drain(&shop).await;

    // Forget every email job: delivered ones (as retention does) and dead ones.
    let conn = rusqlite::Connection::open(shop.data().database()).unwrap();
    conn.execute(
        "DELETE FROM Jobs WHERE job_type = 'email.order_confirmation' AND status = 'Done'",
        [],
    )
    .unwrap();
    assert_eq!(shop.purge_dead_jobs(None).unwrap(), 1);

    let orders = shop.list_orders(10).unwrap();
    let status_of = |id: &str| {
        let o = orders.iter().find(|o| o.order_id == id).unwrap();
        (o.email_status.clone(), o.email_error.clone())
    };
    assert_eq!(status_of(&sent.order_id), (EmailStatus::Sent, None));
    assert_eq!(
        status_of(&cancelled.order_id),
        (
            EmailStatus::Failed,
            Some("not sent: its job was deleted from the queue".to_string())
        )
    );
}
