//! The owner's queue actions through `Shop`, on real orders and a real
//! worker: retry, cancel, and the retention that prunes finished jobs.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rusqlite::Connection;
use shopdesk_core::checkout::{LineRequest, OrderRequest, Payment};
use shopdesk_core::db::{self, Durability};
use shopdesk_core::orders::EmailStatus;
use shopdesk_core::queue::{admin, Job, JobError, JobHandler, JobStatus};
use shopdesk_core::{worker, Shop};

const CSV: &str = "Handle,Title,Option1 Name,Option1 Value,Variant SKU,Variant Inventory Qty,Variant Inventory Policy,Variant Price\n\
                   mug,Mug,Title,Default Title,MUG-1,100,deny,9.50\n";

struct Succeed;

impl JobHandler for Succeed {
    fn handle(&self, _: Job) -> BoxFuture<'static, Result<(), JobError>> {
        async { Ok(()) }.boxed()
    }
}

fn shop() -> (tempfile::TempDir, Shop) {
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::open(dir.path()).unwrap();
    shop.import_products_csv_str("mugs.csv", CSV).unwrap();
    (dir, shop)
}

fn order(shop: &Shop, key: &str, email: Option<&str>) -> String {
    shop.place_order(&OrderRequest {
        idempotency_key: key.into(),
        customer_name: None,
        customer_email: email.map(str::to_string),
        lines: vec![LineRequest {
            sku: "MUG-1".into(),
            quantity: 1,
        }],
        payment: Payment::Card {
            reference: "AUTH-1".into(),
        },
    })
    .unwrap()
    .order_id
}

fn raw(dir: &tempfile::TempDir) -> Connection {
    db::open_raw(&dir.path().join("shopdesk.db"), Durability::Normal).unwrap()
}

fn email_job(shop: &Shop, order_id: &str) -> String {
    shop.list_jobs(None, 100)
        .unwrap()
        .into_iter()
        .find(|j| j.idempotency_key.as_deref() == Some(&format!("order-confirmation/{order_id}")))
        .unwrap()
        .id
}

fn email_status(shop: &Shop, order_id: &str) -> EmailStatus {
    shop.list_orders(100)
        .unwrap()
        .into_iter()
        .find(|o| o.order_id == order_id)
        .unwrap()
        .email_status
}

fn quick(shop: &Shop) -> worker::WorkerConfig {
    let mut c = shop.worker_config();
    c.poll_interval = Duration::from_millis(20);
    c
}

#[tokio::test]
async fn a_dead_email_retried_by_the_owner_is_sent() {
    let (dir, shop) = shop();
    let id = order(&shop, "o1", Some("jane@example.com"));
    let job = email_job(&shop, &id);
    raw(&dir)
        .execute(
            "UPDATE Jobs SET status = 'Killed', attempts = 25, done_at = 1,
                             last_result = 'rejected by provider: invalid recipient'
             WHERE id = ?1",
            [&job],
        )
        .unwrap();
    assert_eq!(email_status(&shop, &id), EmailStatus::Failed);

    let info = shop.retry_job(&job).unwrap();
    assert_eq!((info.status, info.attempts), (JobStatus::Pending, 0));
    assert_eq!(email_status(&shop, &id), EmailStatus::Queued);
    worker::run_until_idle(quick(&shop), Arc::new(Succeed))
        .await
        .unwrap();
    assert_eq!(shop.job(&job).unwrap().info.status, JobStatus::Done);
    assert_eq!(email_status(&shop, &id), EmailStatus::Sent);
}

#[tokio::test]
async fn a_cancelled_email_is_never_sent_and_the_order_says_why() {
    let (_dir, shop) = shop();
    shop.set_queue_paused_by_name(Some("email"), true).unwrap();
    let id = order(&shop, "o1", Some("jane@example.com"));
    let job = email_job(&shop, &id);
    shop.cancel_job(&job).unwrap();
    shop.set_queue_paused_by_name(None, false).unwrap();
    worker::run_until_idle(quick(&shop), Arc::new(Succeed))
        .await
        .unwrap();
    let detail = shop.job(&job).unwrap();
    assert_eq!(detail.info.status, JobStatus::Killed);
    assert_eq!(detail.info.attempts, 0, "never ran");
    let summary = shop
        .list_orders(10)
        .unwrap()
        .into_iter()
        .find(|o| o.order_id == id)
        .unwrap();
    assert_eq!(summary.email_status, EmailStatus::Failed);
    assert_eq!(summary.email_error.as_deref(), Some(admin::CANCELLED));
    assert_eq!(shop.purge_dead_jobs(None).unwrap(), 1);
}

#[tokio::test]
async fn the_worker_prunes_done_jobs_past_retention_and_orders_still_read_sent() {
    let (dir, shop) = shop();
    shop.set_setting("job_retention_days", "7").unwrap();
    let old = order(&shop, "old", Some("old@example.com"));
    let recent = order(&shop, "recent", Some("new@example.com"));
    let walk_in = order(&shop, "walk-in", None);
    worker::run_until_idle(quick(&shop), Arc::new(Succeed))
        .await
        .unwrap();
    assert_eq!(shop.job_stats().unwrap().done, 5);

    // The old order's jobs were created and finished 8 days ago; the recent
    // order's 6 days ago.
    let day_ms = 86_400_000;
    let now_ms = shopdesk_core::queue::now_ms();
    let conn = raw(&dir);
    for (order_id, age_days, n) in [(&old, 8, 1), (&recent, 6, 2)] {
        let when = now_ms - age_days * day_ms;
        let ids: Vec<String> = shop
            .list_jobs(None, 100)
            .unwrap()
            .into_iter()
            .filter(|j| {
                j.idempotency_key
                    .as_deref()
                    .unwrap_or("")
                    .ends_with(order_id.as_str())
            })
            .map(|j| j.id)
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let aged = ulid::Ulid::from_parts(when as u64, (n * 10 + i) as u128).to_string();
            conn.execute(
                "UPDATE Jobs SET id = ?1, done_at = ?2 WHERE id = ?3",
                rusqlite::params![aged, when / 1000, id],
            )
            .unwrap();
        }
    }

    worker::run_until_idle(quick(&shop), Arc::new(Succeed))
        .await
        .unwrap();
    assert_eq!(
        shop.job_stats().unwrap().done,
        3,
        "the old order's two jobs went"
    );
    assert_eq!(email_status(&shop, &old), EmailStatus::Sent);
    assert_eq!(email_status(&shop, &recent), EmailStatus::Sent);
    assert_eq!(email_status(&shop, &walk_in), EmailStatus::None);
}
