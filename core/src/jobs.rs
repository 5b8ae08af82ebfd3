//! The shop's background jobs: what checkout enqueues and how each runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use rusqlite::{Connection, Transaction};
use serde::{Deserialize, Serialize};

use crate::db::{self, Durability};
use crate::email_api::{self, EmailApi, OutgoingEmail};
use crate::error::Result;
use crate::mail;
use crate::notify;
use crate::orders;
use crate::paths::DataDir;
use crate::queue::{self, Job, JobError, JobHandler, JobInfo, NewJob};
use crate::secrets::{self, SecretStore, Secrets};
use crate::settings;

/// Sends an order's confirmation email.
pub const ORDER_CONFIRMATION_EMAIL: &str = "email.order_confirmation";
/// The email job's idempotency key is this prefix plus the order id.
pub const ORDER_CONFIRMATION_KEY_PREFIX: &str = "order-confirmation/";
/// Shows a desktop notification for a new order.
pub const ORDER_NOTIFICATION: &str = "notify.order_placed";
pub const ORDER_NOTIFICATION_KEY_PREFIX: &str = "order-placed/";

/// Notifications are a courtesy: a few tries, then give up.
const NOTIFICATION_MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderJob {
    pub order_id: String,
}

/// Enqueues a new order's jobs inside the checkout transaction.
pub fn enqueue_order_jobs(tx: &Transaction, order_id: &str, has_email: bool) -> Result<()> {
    let payload = serde_json::json!(OrderJob {
        order_id: order_id.to_string()
    });
    if has_email {
        let mut job = NewJob::new(ORDER_CONFIRMATION_EMAIL, payload.clone());
        job.idempotency_key = Some(format!("{ORDER_CONFIRMATION_KEY_PREFIX}{order_id}"));
        queue::enqueue(tx, &job)?;
    }
    let mut job = NewJob::new(ORDER_NOTIFICATION, payload);
    job.idempotency_key = Some(format!("{ORDER_NOTIFICATION_KEY_PREFIX}{order_id}"));
    job.max_attempts = NOTIFICATION_MAX_ATTEMPTS;
    queue::enqueue(tx, &job)?;
    Ok(())
}

/// The id of the order a job is for, from its idempotency key (the shop's
/// order jobs are keyed `<prefix><order id>`).
pub fn order_id_of(job: &JobInfo) -> Option<&str> {
    let key = job.idempotency_key.as_deref()?;
    [ORDER_CONFIRMATION_KEY_PREFIX, ORDER_NOTIFICATION_KEY_PREFIX]
        .iter()
        .find_map(|prefix| key.strip_prefix(prefix))
}

/// Fills in the receipt number of each order job's order (one query), so
/// that people see which order a job is for.
pub fn add_receipts(conn: &Connection, jobs: &mut [JobInfo]) -> Result<()> {
    let ids: Vec<&str> = jobs.iter().filter_map(order_id_of).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let ids = serde_json::to_string(&ids).map_err(|e| crate::Error::Other(e.to_string()))?;
    let receipts: HashMap<String, String> = conn
        .prepare_cached(
            "SELECT id, receipt_number FROM orders WHERE id IN (SELECT value FROM json_each(?1))",
        )?
        .query_map([ids], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for job in jobs {
        job.receipt_number = order_id_of(job).and_then(|id| receipts.get(id).cloned());
    }
    Ok(())
}

/// Runs the shop's jobs against its data directory.
pub struct ShopJobs {
    data: DataDir,
    /// A reading connection of the handlers' own (jobs only read the shop's
    /// tables; the worker writes job rows on its own connection).
    conn: Arc<Mutex<Option<Connection>>>,
}

impl ShopJobs {
    pub fn new(data: DataDir) -> Self {
        Self {
            data,
            conn: Arc::new(Mutex::new(None)),
        }
    }
}

fn retryable(e: impl std::fmt::Display) -> JobError {
    JobError::Retryable(e.to_string())
}

/// Reads what a job needs under the handlers' connection, opening it lazily.
fn with_conn<T>(
    slot: &Mutex<Option<Connection>>,
    data: &DataDir,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T, JobError> {
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        *guard = Some(db::open_raw(&data.database(), Durability::Normal).map_err(retryable)?);
    }
    let conn = guard.as_ref().expect("just opened");
    f(conn).map_err(|e| match e {
        crate::Error::Db(ref d) if crate::error::is_busy(d) => retryable(e),
        crate::Error::Db(_) | crate::Error::Io(_) => retryable(e),
        other => JobError::Permanent(other.to_string()),
    })
}

fn order_of(job: &Job) -> Result<OrderJob, JobError> {
    serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("bad job payload: {e}")))
}

fn load_order(
    slot: &Mutex<Option<Connection>>,
    data: &DataDir,
    order_id: &str,
) -> Result<(orders::OrderDetail, mail::Sender), JobError> {
    let found = with_conn(slot, data, |c| {
        let order = orders::get(c, order_id)?;
        let sender = mail::Sender {
            shop_name: settings::get(c, "shop_name")?,
            email: settings::get(c, "shop_email")?,
        };
        Ok(order.map(|o| (o, sender)))
    })?;
    found.ok_or_else(|| JobError::Permanent(format!("order {order_id} does not exist")))
}

/// How an email job's blocking part ended: written to the outbox, or
/// ready to go to the HTTP provider.
enum EmailStep {
    Written,
    Send {
        api: EmailApi,
        email: Box<OutgoingEmail>,
        key: String,
        receipt: String,
    },
}

/// Renders the confirmation email and, with the outbox provider, delivers
/// it; with the HTTP provider, returns what to send.
fn prepare_email(
    slot: &Mutex<Option<Connection>>,
    data: &DataDir,
    job: &Job,
) -> Result<EmailStep, JobError> {
    let order = order_of(job)?;
    let (detail, sender) = load_order(slot, data, &order.order_id)?;
    let (provider, api_url) = with_conn(slot, data, |c| {
        Ok((
            settings::get(c, "email_provider")?,
            settings::get(c, "email_api_url")?,
        ))
    })?;
    let email = mail::order_confirmation(&detail, &sender).map_err(JobError::Permanent)?;
    if provider != "resend" {
        let path = mail::write_to_outbox(&data.outbox(), &email)
            .map_err(|e| retryable(format!("writing to the outbox failed: {e}")))?;
        tracing::info!(receipt = %detail.receipt_number, path = %path.display(), "confirmation email written");
        return Ok(EmailStep::Written);
    }
    let api_key = Secrets::new(data.root(), secrets::Mode::from_env())
        .get(settings::EMAIL_API_KEY)
        .map_err(|e| retryable(format!("cannot read the email API key: {e}")))?
        .ok_or_else(|| {
            JobError::Retryable(
                "no API key is set for the email provider (Settings → API key)".into(),
            )
        })?;
    let key = job
        .idempotency_key
        .clone()
        .unwrap_or_else(|| format!("{ORDER_CONFIRMATION_KEY_PREFIX}{}", order.order_id));
    Ok(EmailStep::Send {
        api: EmailApi::new(&api_url, &api_key)?,
        email: Box::new(OutgoingEmail {
            from: email_api::from_address(&sender.shop_name, &sender.email),
            to: vec![email.to],
            subject: email.subject,
            html: email.html,
            text: email.text,
        }),
        key,
        receipt: detail.receipt_number,
    })
}

impl JobHandler for ShopJobs {
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<(), JobError>> {
        let data = self.data.clone();
        let slot = self.conn.clone();
        Box::pin(async move {
            if job.job_type == ORDER_CONFIRMATION_EMAIL {
                let step = tokio::task::spawn_blocking(move || prepare_email(&slot, &data, &job))
                    .await
                    .map_err(|e| JobError::Retryable(format!("job task failed: {e}")))??;
                if let EmailStep::Send {
                    api,
                    email,
                    key,
                    receipt,
                } = step
                {
                    let id = api.send(&email, &key).await?;
                    tracing::info!(%receipt, provider_id = %id, "confirmation email accepted by the provider");
                }
                return Ok(());
            }
            let task = tokio::task::spawn_blocking(move || -> Result<(), JobError> {
                match job.job_type.as_str() {
                    ORDER_NOTIFICATION => {
                        let order = order_of(&job)?;
                        let (detail, _) = load_order(&slot, &data, &order.order_id)?;
                        let note = notify::order_placed(&detail);
                        match notify::show(&note) {
                            Ok(()) => {
                                tracing::info!(summary = %note.summary, "notification shown")
                            }
                            // A notification is for whoever is at the
                            // desktop now; with no desktop there is nobody
                            // to tell, later is too late, and retrying
                            // would only fill the queue with dead jobs.
                            Err(notify::NotShown::NoDesktop(why)) => {
                                tracing::info!(summary = %note.summary, reason = %why, "notification skipped: no desktop")
                            }
                            Err(notify::NotShown::Failed(why)) => {
                                return Err(JobError::Retryable(why))
                            }
                        }
                        Ok(())
                    }
                    other => Err(JobError::Permanent(format!("unknown job type \"{other}\""))),
                }
            });
            task.await
                .map_err(|e| JobError::Retryable(format!("job task failed: {e}")))?
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::checkout::{LineRequest, OrderRequest, Payment};
    use crate::Shop;

    /// A shop with one order that has an email, and that order's email job
    /// as the worker would hand it over.
    fn shop_with_an_order(dir: &std::path::Path) -> (Shop, Job) {
        let shop = Shop::open(dir).unwrap();
        shop.import_products_csv_str(
            "mugs.csv",
            "Handle,Title,Variant SKU,Variant Inventory Qty,Variant Inventory Policy,Variant Price\n\
             mug,Mug,MUG-1,10,deny,9.50\n",
        )
        .unwrap();
        let placed = shop
            .place_order(&OrderRequest {
                idempotency_key: "busy-1".into(),
                customer_name: None,
                customer_email: Some("busy@example.com".into()),
                lines: vec![LineRequest {
                    sku: "MUG-1".into(),
                    quantity: 1,
                }],
                payment: Payment::Card {
                    reference: "AUTH-1".into(),
                },
            })
            .unwrap();
        let job = Job {
            id: "busy-job".into(),
            job_type: ORDER_CONFIRMATION_EMAIL.into(),
            payload: serde_json::json!({ "order_id": placed.order_id }),
            attempt: 1,
            max_attempts: 25,
            idempotency_key: Some(format!(
                "{ORDER_CONFIRMATION_KEY_PREFIX}{}",
                placed.order_id
            )),
        };
        (shop, job)
    }

    fn outbox_files(data: &DataDir) -> usize {
        std::fs::read_dir(data.outbox()).map_or(0, |d| d.count())
    }

    /// While another connection keeps everyone else out of the database,
    /// the email job's reads fail with SQLite's busy error: the attempt is
    /// retryable (the job will run again), never permanent (dead). Once the
    /// database is free, the same job runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_database_fails_a_job_retryably_and_the_next_attempt_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (shop, job) = shop_with_an_order(dir.path());
        let data = shop.data().clone();
        // The till is closed: the only other connection is the holder's.
        drop(shop);
        let jobs = ShopJobs::new(data.clone());
        // The handlers' connection, waiting 50 ms for a lock instead of the
        // usual 10 s, so the test sees busy quickly. It has not read yet: a
        // connection that has read a WAL database keeps a shared lock on it,
        // and no other could then take the exclusive one.
        let conn = Connection::open(data.database()).unwrap();
        conn.busy_timeout(Duration::from_millis(50)).unwrap();
        *jobs.conn.lock().unwrap() = Some(conn);

        // A connection in exclusive locking mode, inside a write
        // transaction: in WAL mode that keeps readers out too.
        let holder = db::open_raw(&data.database(), Durability::Normal).unwrap();
        holder.busy_timeout(Duration::from_secs(1)).unwrap();
        holder
            .pragma_update(None, "locking_mode", "EXCLUSIVE")
            .unwrap();
        holder
            .execute_batch(
                "BEGIN EXCLUSIVE;
                 UPDATE settings SET value = value WHERE key = 'shop_name';",
            )
            .unwrap();
        let err = jobs.handle(job.clone()).await.unwrap_err();
        match &err {
            JobError::Retryable(reason) => assert!(
                reason.contains("locked") || reason.contains("busy"),
                "{reason}"
            ),
            other => panic!("a busy database must be retryable, got {other:?}"),
        }
        assert_eq!(outbox_files(&data), 0);

        // Exclusive locking mode keeps the lock until the connection closes.
        holder.execute_batch("COMMIT").unwrap();
        drop(holder);
        jobs.handle(job.clone()).await.unwrap();
        assert_eq!(outbox_files(&data), 1, "the email is written once");

        // What will never work is still permanent: an order that is gone.
        let mut gone = job;
        gone.payload = serde_json::json!({ "order_id": "no-such-order" });
        assert!(matches!(
            jobs.handle(gone).await,
            Err(JobError::Permanent(reason)) if reason.contains("does not exist")
        ));
    }
}
