//! Checkout through the real [`Shop::place_order`] on a database that
//! already holds many orders, while a worker runs the order jobs alongside
//! with the shop's own handler (or, for comparison, with checkout sending
//! the email itself before it answers). A slow email provider is a real
//! HTTP server on loopback (the tests' mail sink) that answers each email
//! after a delay.
//!
//! The cost of one durable commit on a shared disk swings by an order of
//! magnitude with what else is writing, so every timed order is paired with
//! a raw FULL commit made just before it, on the same disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use shopdesk_core::catalog::Product;
use shopdesk_core::checkout::{self, LineRequest, OrderRequest, Payment};
use shopdesk_core::db::{self, Durability};
use shopdesk_core::queue::{Job, JobError, JobHandler};
use shopdesk_core::{jobs, notify, orders, secrets, settings, Shop};
use shopdesk_tests::sink::MailSink;

use crate::queue::{checkpoint, JobFuture, RunningWorker};
use crate::raw::{self, Committer};
use crate::{runtime, BenchResult, Latencies};

/// Untimed orders placed before the timed ones (with the worker running).
pub const WARMUP: usize = 10;

/// Products in the bench catalog.
const PRODUCTS: usize = 40;

/// The API key the shops send to the mail sink (which takes any).
const API_KEY: &str = "re_bench_0123456789abcdef";

#[derive(Debug, Clone, Default)]
pub struct CheckoutRun {
    /// Per order: `place_order` (plus, in [`sync_email`], sending its
    /// email and waiting for the provider's answer).
    pub latencies: Latencies,
    /// One-row FULL commits to a side database on the same disk, one just
    /// before each timed order: the durable-commit cost at the same moments,
    /// with the same worker running.
    pub raw_full: Latencies,
    pub seeded_orders: u64,
    pub seed_elapsed: Duration,
    /// Jobs not yet finished when the last timed order was placed.
    pub backlog_at_end: u64,
    /// Email jobs of the bench's orders that were done when the worker
    /// stopped (written to the outbox, or accepted by the HTTP provider),
    /// and those that were not.
    pub emails_written: u64,
    pub emails_pending: u64,
    /// Emails the HTTP provider accepted (distinct idempotency keys); 0
    /// when the shop writes its email to the outbox.
    pub emails_accepted_by_provider: u64,
}

/// How checkout is paced and interleaved.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Orders already in each database.
    pub seeded: usize,
    /// Timed orders per measurement.
    pub samples: usize,
    /// Pause after each order (a till is not a load generator; the worker
    /// gets a share of the write lock).
    pub gap: Duration,
    /// The tills take turns this many times each.
    pub blocks: usize,
}

/// Where a till's shop sends its confirmation emails.
#[derive(Debug, Clone, Copy)]
enum Email {
    /// The outbox folder (the shop's default): a file written and fsynced.
    Outbox,
    /// The HTTP provider, a mail sink on loopback that answers each email
    /// after this long.
    Http { answer_after: Duration },
}

/// A shop on a fresh database with `seeded` orders, and a side database
/// for paired raw commits.
struct Till {
    dir: tempfile::TempDir,
    shop: Shop,
    /// The HTTP provider, for [`Email::Http`].
    sink: Option<MailSink>,
    products: Vec<Product>,
    raw: Committer,
    placed: usize,
    latencies: Vec<Duration>,
    raw_full: Vec<Duration>,
    seeded: usize,
    seed_elapsed: Duration,
    backlog_at_end: u64,
}

impl Till {
    fn new(seeded: usize, email: Email) -> BenchResult<Till> {
        let dir = tempfile::tempdir()?;
        let shop = Shop::open(&dir.path().join("shop"))?;
        shop.set_setting("shop_name", "Bench Shop")?;
        shop.set_setting("shop_email", "orders@bench.example")?;
        let sink = match email {
            Email::Outbox => None,
            Email::Http { answer_after } => {
                let sink = MailSink::start();
                sink.set_delay(answer_after);
                use_http_provider(&shop, &sink.url())?;
                Some(sink)
            }
        };
        let summary = shop.import_products_csv_str("bench.csv", &catalog_csv(PRODUCTS))?;
        if summary.imported != PRODUCTS as u64 {
            return Err(format!("bench catalog: {summary:?}").into());
        }
        let products = shop.list_products(None, PRODUCTS * 2)?;
        let seed_started = Instant::now();
        seed_orders(&shop.data().database(), &products, seeded)?;
        let seed_elapsed = seed_started.elapsed();
        let raw = Committer::open(&dir.path().join("raw.db"), raw::Sync::Full)?;
        Ok(Till {
            dir,
            shop,
            sink,
            products,
            raw,
            placed: 0,
            latencies: Vec::new(),
            raw_full: Vec::new(),
            seeded,
            seed_elapsed,
            backlog_at_end: 0,
        })
    }

    fn db_path(&self) -> PathBuf {
        self.shop.data().database()
    }

    /// One raw FULL commit, then one order (and, with `send`, its email
    /// sent before the order counts as answered), then `gap`. The first
    /// [`WARMUP`] orders are not recorded.
    fn round(&mut self, send: Option<&SendNow>, gap: Duration) -> BenchResult<()> {
        let i = self.placed;
        let raw = self.raw.commit()?;
        let req = order_request(format!("bench-{i}"), &self.products, i);
        let started = Instant::now();
        let placed = self.shop.place_order(&req)?;
        if let Some(send) = send {
            send.email(&placed.order_id)?;
        }
        let elapsed = started.elapsed();
        if placed.duplicate {
            return Err(format!("order {i} was taken for a duplicate").into());
        }
        self.placed += 1;
        if i >= WARMUP {
            self.latencies.push(elapsed);
            self.raw_full.push(raw);
        }
        std::thread::sleep(gap);
        Ok(())
    }

    /// `n` more orders through a connection of its own with
    /// synchronous=OFF and no automatic checkpoints: what checkout costs
    /// without the fsync, and how many pages each order writes.
    fn anatomy(&mut self, n: usize) -> BenchResult<Anatomy> {
        let mut conn = db::open_raw(&self.db_path(), Durability::Normal)?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        checkpoint(&conn)?;
        let mut samples = Vec::with_capacity(n);
        for k in 0..n {
            let req = order_request(format!("anatomy-{k}"), &self.products, k);
            let started = Instant::now();
            checkout::place(&mut conn, &req)?;
            samples.push(started.elapsed());
        }
        let frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))?;
        checkpoint(&conn)?;
        Ok(Anatomy {
            sync_off: Latencies::new(samples),
            wal_pages_per_order: frames as f64 / n.max(1) as f64,
        })
    }

    fn note_backlog(&mut self) -> BenchResult<()> {
        let stats = self.shop.job_stats()?;
        self.backlog_at_end = stats.pending + stats.running + stats.failed;
        Ok(())
    }

    fn finish(self) -> BenchResult<CheckoutRun> {
        let conn = db::open_raw(&self.db_path(), Durability::Normal)?;
        let count = |done: bool| -> BenchResult<u64> {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM Jobs
                 WHERE job_type = ?1 AND lock_by IS NOT 'seed' AND (status = 'Done') = ?2",
                params![jobs::ORDER_CONFIRMATION_EMAIL, done],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        };
        let run = CheckoutRun {
            latencies: Latencies::new(self.latencies.clone()),
            raw_full: Latencies::new(self.raw_full.clone()),
            seeded_orders: self.seeded as u64,
            seed_elapsed: self.seed_elapsed,
            backlog_at_end: self.backlog_at_end,
            emails_written: count(true)?,
            emails_pending: count(false)?,
            emails_accepted_by_provider: self
                .sink
                .as_ref()
                .map_or(0, |sink| sink.accepted_keys().len() as u64),
        };
        drop(conn);
        drop(self.sink);
        drop(self.shop);
        drop(self.dir);
        Ok(run)
    }
}

/// The three checkout measurements that take turns, and the anatomy.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// Worker alongside, running the jobs as the app does ([`BenchJobs`]),
    /// the email written to the outbox.
    pub normal: CheckoutRun,
    /// Worker alongside, the email sent to the HTTP provider, which answers
    /// each after `email_latency` (a slow provider).
    pub slow_email: CheckoutRun,
    /// No worker: what checkout costs on its own.
    pub no_worker: CheckoutRun,
    /// Measured on the no-worker database after the turns.
    pub anatomy: Anatomy,
}

/// Where a checkout's time goes, apart from waiting for the disk.
#[derive(Debug, Clone, Default)]
pub struct Anatomy {
    /// `checkout::place` with synchronous=OFF: validation, SQL, the WAL
    /// writes (to the OS cache), no fsync.
    pub sync_off: Latencies,
    /// WAL frames (pages) one order's commit writes.
    pub wal_pages_per_order: f64,
}

/// Checkout with the worker alongside (normal and slow email) and without
/// it, each on its own database of `pace.seeded` orders; then, on the
/// no-worker database, the anatomy of `anatomy_orders` more orders. The
/// three take turns in `pace.blocks` blocks each, a worker running only
/// during its till's blocks, so that the machine's other work weighs on all
/// three alike.
pub fn compare(
    pace: Pace,
    email_latency: Duration,
    anatomy_orders: usize,
) -> BenchResult<Comparison> {
    let slow = Email::Http {
        answer_after: email_latency,
    };
    // (till, whether a worker runs alongside)
    let mut tills = [
        (Till::new(pace.seeded, Email::Outbox)?, true),
        (Till::new(pace.seeded, slow)?, true),
        (Till::new(pace.seeded, Email::Outbox)?, false),
    ];
    let rt = runtime()?;
    let blocks = pace.blocks.max(1);
    for block in 0..blocks {
        let mut timed = pace.samples / blocks + usize::from(block < pace.samples % blocks);
        if block == 0 {
            timed += WARMUP;
        }
        for (till, with_worker) in tills.iter_mut() {
            let worker = with_worker.then(|| {
                RunningWorker::start(
                    &rt,
                    till.shop.worker_config(),
                    Arc::new(BenchJobs::new(&till.shop)),
                )
            });
            // Let the worker open its connection before the first order.
            std::thread::sleep(Duration::from_millis(50));
            let result = (0..timed)
                .try_for_each(|_| till.round(None, pace.gap))
                .and_then(|_| till.note_backlog());
            if let Some(worker) = worker {
                worker.stop(&rt)?;
            }
            result?;
        }
    }
    let [(normal, _), (slow_email, _), (mut no_worker, _)] = tills;
    let anatomy = no_worker.anatomy(anatomy_orders)?;
    Ok(Comparison {
        normal: normal.finish()?,
        slow_email: slow_email.finish()?,
        no_worker: no_worker.finish()?,
        anatomy,
    })
}

/// Checkout that sends the confirmation email itself before answering:
/// each order is placed (and committed), then its email is rendered and
/// sent by the shop's own email job handler to the HTTP provider, a mail
/// sink on loopback that answers after `send_latency`, and only with the
/// provider's answer does checkout answer. No worker runs (the order's
/// queued jobs stay pending).
pub fn sync_email(pace: Pace, send_latency: Duration) -> BenchResult<CheckoutRun> {
    let mut till = Till::new(
        pace.seeded,
        Email::Http {
            answer_after: send_latency,
        },
    )?;
    let send = SendNow {
        rt: runtime()?,
        handler: till.shop.job_handler(),
    };
    for _ in 0..(WARMUP + pace.samples) {
        till.round(Some(&send), pace.gap)?;
    }
    till.note_backlog()?;
    till.finish()
}

/// Sends an order's confirmation email at once, as the worker would run
/// its email job: the shop's own handler, awaited.
struct SendNow {
    rt: tokio::runtime::Runtime,
    handler: Arc<dyn JobHandler>,
}

impl SendNow {
    fn email(&self, order_id: &str) -> BenchResult<()> {
        let job = Job {
            id: format!("send-now/{order_id}"),
            job_type: jobs::ORDER_CONFIRMATION_EMAIL.into(),
            payload: serde_json::json!(jobs::OrderJob {
                order_id: order_id.into()
            }),
            attempt: 1,
            max_attempts: 1,
            idempotency_key: Some(format!("{}{order_id}", jobs::ORDER_CONFIRMATION_KEY_PREFIX)),
        };
        self.rt
            .block_on(self.handler.handle(job))
            .map_err(|e| format!("sending the email of order {order_id}: {e}").into())
    }
}

/// A Shopify product CSV of `n` products with plenty of stock.
fn catalog_csv(n: usize) -> String {
    let mut csv = String::from(
        "Handle,Title,Variant SKU,Variant Inventory Qty,Variant Inventory Policy,Variant Price\n",
    );
    for i in 0..n {
        csv.push_str(&format!(
            "bench-product-{i},Bench product {i},BENCH-{i:03},1000000000,deny,{}.{:02}\n",
            3 + i % 50,
            (i * 37) % 100
        ));
    }
    csv
}

/// Order `i`: three different products, a named customer with an email,
/// paid by card or cash in turn.
fn order_request(key: String, products: &[Product], i: usize) -> OrderRequest {
    let lines = (0..3)
        .map(|k| LineRequest {
            sku: products[(3 * i + k) % products.len()].sku.clone(),
            quantity: 1 + ((i + k) % 3) as i64,
        })
        .collect();
    OrderRequest {
        idempotency_key: key,
        customer_name: Some(format!("Customer {i}")),
        customer_email: Some(format!("customer{i}@example.com")),
        lines,
        payment: if i.is_multiple_of(2) {
            Payment::Card {
                reference: format!("AUTH-{i}"),
            }
        } else {
            Payment::Cash {
                tendered_cents: 1_000_000,
            }
        },
    }
}

/// Writes `n` orders with the rows checkout writes for each (the order with
/// its validated request, 3 lines, the stock taken, the payment, and its two
/// jobs through [`jobs::enqueue_order_jobs`]) in one transaction with
/// synchronous=OFF, then marks those jobs Done, as a worker would have.
fn seed_orders(db_path: &Path, products: &[Product], n: usize) -> BenchResult<()> {
    let mut conn = db::open_raw(db_path, Durability::Normal)?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let currency = settings::get(&tx, "currency")?;
        let price = |sku: &str| {
            products
                .iter()
                .find(|p| p.sku == sku)
                .map(|p| (p.price_cents, p.title.clone()))
        };
        let mut insert_order = tx.prepare(
            "INSERT INTO orders (id, idempotency_key, request_json, receipt_seq, receipt_number,
                                 created_at, customer_name, customer_email, total_cents, currency)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut insert_line = tx.prepare(
            "INSERT INTO order_lines (order_id, line_no, sku, title, unit_price_cents, quantity,
                                      line_total_cents)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut take_stock = tx.prepare("UPDATE products SET stock = stock - ?2 WHERE sku = ?1")?;
        let mut insert_payment = tx.prepare(
            "INSERT INTO payments (order_id, method, amount_cents, tendered_cents, change_cents,
                                   reference)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for i in 0..n {
            let req = checkout::validate(&order_request(format!("seed-{i}"), products, i))?;
            let request_json = serde_json::to_string(&req)?;
            let order_id = uuid::Uuid::now_v7().to_string();
            let mut priced = Vec::with_capacity(req.lines.len());
            for line in &req.lines {
                let (unit, title) = price(&line.sku).ok_or("seed: unknown SKU")?;
                priced.push((line, unit, title, unit * line.quantity));
            }
            let total: i64 = priced.iter().map(|p| p.3).sum();
            let seq = i as i64 + 1;
            insert_order.execute(params![
                order_id,
                req.idempotency_key,
                request_json,
                seq,
                checkout::receipt_number(seq),
                db::now_rfc3339(),
                req.customer_name,
                req.customer_email,
                total,
                currency,
            ])?;
            for (no, (line, unit, title, line_total)) in priced.iter().enumerate() {
                insert_line.execute(params![
                    order_id,
                    no as i64 + 1,
                    line.sku,
                    title,
                    unit,
                    line.quantity,
                    line_total
                ])?;
                take_stock.execute(params![line.sku, line.quantity])?;
            }
            let (method, tendered, change, reference) = match &req.payment {
                Payment::Cash { tendered_cents } => (
                    "cash",
                    Some(*tendered_cents),
                    Some(tendered_cents - total),
                    None,
                ),
                Payment::Card { reference } => ("card", None, None, Some(reference.clone())),
            };
            insert_payment.execute(params![
                order_id, method, total, tendered, change, reference
            ])?;
            jobs::enqueue_order_jobs(&tx, &order_id, req.customer_email.is_some())?;
        }
        tx.execute(
            "UPDATE Jobs SET status = 'Done', attempts = 1, lock_by = 'seed', lock_at = run_at,
                             done_at = run_at
             WHERE status = 'Pending'",
            [],
        )?;
    }
    tx.commit()?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    checkpoint(&conn)?;
    Ok(())
}

/// An order as `orders::get` reads it, on `reader` (opened on first use).
fn read_order(
    reader: &Mutex<Option<Connection>>,
    db_path: &Path,
    order_id: &str,
) -> Result<orders::OrderDetail, JobError> {
    let retryable = |e: shopdesk_core::Error| JobError::Retryable(e.to_string());
    let mut slot = reader.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(db::open_raw(db_path, Durability::Normal).map_err(retryable)?);
    }
    let conn = slot
        .as_ref()
        .ok_or_else(|| JobError::Retryable("no reader".into()))?;
    orders::get(conn, order_id)
        .map_err(retryable)?
        .ok_or_else(|| JobError::Permanent(format!("order {order_id} does not exist")))
}

/// Points the shop's email at the HTTP provider at `url`, as Settings does,
/// with the API key in the shop's secret file.
fn use_http_provider(shop: &Shop, url: &str) -> BenchResult<()> {
    // The shop's jobs read the key from where this says: the file, never
    // the desktop's keyring (this process is the bench's own).
    std::env::set_var(secrets::SECRET_STORE_ENV, "file");
    shop.config_set("email_api_url", url)?;
    shop.config_set(settings::EMAIL_API_KEY, API_KEY)?;
    shop.config_set("email_provider", "resend")?;
    Ok(())
}

/// The shop's jobs as the app runs them, except that the notification is
/// built but not shown (showing needs a desktop session's D-Bus): the email
/// job goes to the shop's own handler ([`Shop::job_handler`]), which renders
/// the email from the database and writes it to the outbox or sends it to
/// the HTTP provider, as the shop's settings say.
pub struct BenchJobs {
    shop_jobs: Arc<dyn JobHandler>,
    db_path: PathBuf,
    reader: Arc<Mutex<Option<Connection>>>,
}

impl BenchJobs {
    pub fn new(shop: &Shop) -> Self {
        Self {
            shop_jobs: shop.job_handler(),
            db_path: shop.data().database(),
            reader: Arc::default(),
        }
    }
}

impl JobHandler for BenchJobs {
    fn handle(&self, job: Job) -> JobFuture {
        if job.job_type != jobs::ORDER_NOTIFICATION {
            return self.shop_jobs.handle(job);
        }
        let db_path = self.db_path.clone();
        let reader = self.reader.clone();
        Box::pin(async move {
            let order: jobs::OrderJob = serde_json::from_value(job.payload)
                .map_err(|e| JobError::Permanent(format!("bad job payload: {e}")))?;
            tokio::task::spawn_blocking(move || {
                let detail = read_order(&reader, &db_path, &order.order_id)?;
                let note = notify::order_placed(&detail);
                if note.summary.is_empty() {
                    return Err(JobError::Permanent("empty notification".into()));
                }
                Ok(())
            })
            .await
            .map_err(|e| JobError::Retryable(format!("job task failed: {e}")))?
        })
    }
}
