//! End-to-end test: the real `shopdesk` binary in the real webview, driven
//! through tauri-driver (WebDriver) inside Xvfb with a private session D-Bus
//! and a notification daemon.
//!
//! Run it with `make e2e` (or `scripts/e2e.sh`), which starts those services
//! and sets the environment this test reads:
//!
//! - `SHOPDESK_BIN`: absolute path of the built app,
//! - `WEBDRIVER_URL`: where tauri-driver listens,
//! - `SHOPDESK_E2E_DATA_DIR`: the app's data directory (given to the app as
//!   `SHOPDESK_DATA_DIR` through tauri-driver's environment),
//! - `NOTIFY_LOG`: file that captures desktop notifications,
//! - `CATALOG_CSV`: the Shopify catalog to import,
//! - `E2E_ARTIFACTS_DIR` (optional): where screenshots go, default
//!   `target/e2e`.
//!
//! The test fails, rather than skips, when one of the required variables is
//! missing: a silently skipped end-to-end test looks exactly like a passing one.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use fantoccini::actions::{InputSource, MouseActions, PointerAction};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long to poll for something the UI or a background job should produce.
const WAIT: Duration = Duration::from_secs(20);
/// The first page load includes starting the app and WebKit's processes.
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
/// Upper bound for the whole flow, so a hung WebDriver call cannot hang CI.
const WHOLE_TEST: Duration = Duration::from_secs(300);

const RECEIPT: &str = "R-000001";
const CUSTOMER_NAME: &str = "Ada Lovelace";
const CUSTOMER_EMAIL: &str = "ada@example.com";

struct Env {
    bin: PathBuf,
    webdriver_url: String,
    data_dir: PathBuf,
    notify_log: PathBuf,
    catalog: PathBuf,
    artifacts: PathBuf,
}

fn required(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => bail!(
            "environment variable {name} is not set; run the end-to-end test through \
             `make e2e` (scripts/e2e.sh), which starts Xvfb, D-Bus, dunst and tauri-driver"
        ),
    }
}

impl Env {
    fn from_env() -> Result<Self> {
        let bin = PathBuf::from(required("SHOPDESK_BIN")?);
        ensure!(
            bin.is_file(),
            "SHOPDESK_BIN {} does not exist",
            bin.display()
        );
        let catalog = PathBuf::from(required("CATALOG_CSV")?);
        ensure!(
            catalog.is_file(),
            "CATALOG_CSV {} does not exist",
            catalog.display()
        );
        let artifacts = std::env::var_os("E2E_ARTIFACTS_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e"));
        std::fs::create_dir_all(&artifacts)
            .with_context(|| format!("creating {}", artifacts.display()))?;
        Ok(Self {
            bin,
            webdriver_url: required("WEBDRIVER_URL")?,
            data_dir: PathBuf::from(required("SHOPDESK_E2E_DATA_DIR")?),
            notify_log: PathBuf::from(required("NOTIFY_LOG")?),
            catalog,
            artifacts,
        })
    }
}

#[test]
fn place_order_end_to_end() {
    let env = Env::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let client = connect(&env).await.unwrap_or_else(|e| panic!("{e:#}"));
        let outcome = tokio::time::timeout(WHOLE_TEST, flow(&client, &env)).await;
        let outcome = match outcome {
            Ok(r) => r,
            Err(_) => Err(anyhow!(
                "the end-to-end flow took longer than {WHOLE_TEST:?}"
            )),
        };
        if outcome.is_err() {
            // Best effort: what the window showed when it went wrong.
            let _ = screenshot(&client, &env, "failure").await;
            if let Ok(html) = client.source().await {
                let _ = std::fs::write(env.artifacts.join("failure.html"), html);
            }
        }
        // Ending the session makes tauri-driver close the app.
        let _ = client.close().await;
        if let Err(e) = outcome {
            panic!("end-to-end flow failed: {e:#}");
        }
    });
}

async fn connect(env: &Env) -> Result<Client> {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("wry"));
    caps.insert(
        "tauri:options".into(),
        json!({ "application": env.bin.to_string_lossy() }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // tauri-driver is already listening (the script waits for it), but the
    // native driver behind it may still be starting: retry briefly.
    loop {
        match ClientBuilder::new(connector.clone())
            .capabilities(caps.clone())
            .connect(&env.webdriver_url)
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                eprintln!("e2e: WebDriver session not ready yet: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!("starting a WebDriver session at {}", env.webdriver_url)
                })
            }
        }
    }
}

async fn flow(c: &Client, env: &Env) -> Result<()> {
    step("waiting for the main window");
    wait_for(
        "the navigation (nav-products) to appear",
        FIRST_LOAD_WAIT,
        || async { Ok(find_opt(c, "nav-products").await?.map(|_| ())) },
    )
    .await?;

    import_catalog(c, env).await?;
    new_order(c, env).await?;
    orders(c, env).await?;
    outbox(env).await?;
    notification(env).await?;
    jobs(c, env).await?;
    retry_a_failed_email(c, env).await?;
    jobs_page_actions(c, env).await?;
    step("all checks passed");
    Ok(())
}

async fn import_catalog(c: &Client, env: &Env) -> Result<()> {
    step("Products: a catalog that is not UTF-8 is refused");
    click(c, "nav-products").await?;
    let input = wait_find(c, "import-file").await?;
    let dir = tempfile::tempdir().context("a temp dir for the Windows-1252 catalog")?;
    let latin1 = dir.path().join("latin1.csv");
    std::fs::write(&latin1, latin1_catalog(env)?)
        .with_context(|| format!("writing {}", latin1.display()))?;
    let how = give_file(c, &input, &latin1).await?;
    step(&format!("Products: file given by {how}"));
    let error = wait_text_contains(c, "import-error", "latin1.csv is not UTF-8 text").await?;
    step(&format!("Products: refused with {error:?}"));
    ensure!(
        find_opt(c, "import-summary").await?.is_none(),
        "a summary is shown for a refused import"
    );
    ensure!(
        c.find_all(tid("product-row")).await?.is_empty(),
        "the refused catalog left product rows"
    );
    screenshot(c, env, "products-not-utf8").await?;

    step("Products: importing the catalog");
    let how = give_file(c, &input, &env.catalog).await?;
    step(&format!("Products: file given by {how}"));

    let summary = wait_for(
        "import-summary to say how many products were imported",
        WAIT,
        || async {
            Ok(text_opt(c, "import-summary")
                .await?
                .filter(|t| t.contains("Imported")))
        },
    )
    .await?;
    step(&format!("Products: summary: {summary:?}"));
    let imported = number_after(&summary, "Imported")
        .with_context(|| format!("no number after 'Imported' in the summary {summary:?}"))?;
    ensure!(
        imported > 0,
        "import-summary reports nothing imported: {summary:?}"
    );
    ensure!(
        summary.contains("skipped 0"),
        "the catalog has no bad rows, yet the import skipped some: {summary:?}"
    );

    let rows = wait_for("product rows to list Ocean Blue Shirt", WAIT, || async {
        let rows = c.find_all(tid("product-row")).await?;
        let mut texts = Vec::with_capacity(rows.len());
        for r in &rows {
            texts.push(text_of(c, r).await?);
        }
        Ok(texts
            .iter()
            .any(|t| t.contains("Ocean Blue Shirt"))
            .then_some(texts.len()))
    })
    .await?;
    step(&format!("Products: {rows} product rows shown"));
    ensure!(
        rows as u64 == imported,
        "{imported} products imported but {rows} product rows shown"
    );
    ensure!(
        find_opt(c, "import-error").await?.is_none(),
        "the earlier refusal is still shown after a good import"
    );
    screenshot(c, env, "products").await
}

/// The catalog's first product as a spreadsheet on Windows saves it: with
/// "é" as the single byte 0xE9 in its title, which is not UTF-8.
fn latin1_catalog(env: &Env) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(&env.catalog)
        .with_context(|| format!("reading {}", env.catalog.display()))?;
    let mut lines = text.lines();
    let (Some(header), Some(first)) = (lines.next(), lines.next()) else {
        bail!("the catalog has no product line");
    };
    ensure!(
        first.starts_with("ocean-blue-shirt,Ocean Blue Shirt,"),
        "the catalog's first line is not Ocean Blue Shirt: {first:?}"
    );
    let row = first.replacen(
        "ocean-blue-shirt,Ocean Blue Shirt,",
        "cafe-shirt,Caf\u{e9} Shirt,",
        1,
    );
    let mut out = Vec::new();
    out.extend_from_slice(header.as_bytes());
    out.push(b'\n');
    for ch in row.chars() {
        // Latin-1: every character of this line fits in one byte.
        out.push(u8::try_from(u32::from(ch)).context("a character outside Latin-1")?);
    }
    out.push(b'\n');
    Ok(out)
}

/// Gives the (hidden) file input a file as a pick would. Tries, in order:
/// sending the path to the input as it is; after making it visible;
/// building the File in JS. Says which worked.
async fn give_file(c: &Client, input: &Element, path: &Path) -> Result<&'static str> {
    let path_text = path.to_string_lossy().into_owned();
    if input.send_keys(&path_text).await.is_ok() {
        return Ok("send_keys on the input");
    }
    c.execute(
        "const el = arguments[0];
         el.hidden = false;
         el.removeAttribute('hidden');
         Object.assign(el.style, {display: 'block', visibility: 'visible', opacity: '1',
           position: 'static', width: '300px', height: '30px'});",
        vec![elem_arg(input)?],
    )
    .await
    .context("making the import-file input visible")?;
    if input.send_keys(&path_text).await.is_ok() {
        return Ok("send_keys after making the input visible");
    }
    set_file_via_js(c, input, path).await?;
    Ok("a File built in JS and a change event")
}

async fn new_order(c: &Client, env: &Env) -> Result<()> {
    step("New order: adding Ocean Blue Shirt");
    click(c, "nav-new-order").await?;
    let search = wait_find(c, "sku-search").await?;
    search.click().await.ok();
    search
        .send_keys("ocean")
        .await
        .context("typing into sku-search")?;
    let seen = std::cell::RefCell::new(Vec::new());
    wait_for("a search result for 'ocean'", WAIT, || async {
        let mut texts = Vec::new();
        for r in c.find_all(tid("search-result")).await? {
            texts.push(text_of(c, &r).await?);
        }
        let found = texts.iter().any(|t| t.contains("Ocean Blue Shirt"));
        seen.replace(texts);
        Ok(found.then_some(()))
    })
    .await
    .with_context(|| format!("search results seen: {:?}", seen.borrow()))?;
    search
        .send_keys(&String::from(char::from(Key::Enter)))
        .await?;
    wait_for("one order line after pressing Enter", WAIT, || async {
        let lines = c.find_all(tid("order-line")).await?;
        Ok((lines.len() == 1).then_some(()))
    })
    .await?;
    let line = c.find(tid("order-line")).await?;
    let line_text = text_of(c, &line).await?;
    ensure!(
        line_text.contains("Ocean Blue Shirt"),
        "the order line is not Ocean Blue Shirt: {line_text:?}"
    );
    if let Ok(qty) = line.find(tid("line-qty")).await {
        let v = qty.prop("value").await?.unwrap_or_default();
        ensure!(v == "1", "line-qty should start at 1, is {v:?}");
    } else {
        bail!("the order line has no line-qty input");
    }

    step("New order: customer, cash payment");
    fill(c, "customer-name", CUSTOMER_NAME).await?;
    fill(c, "customer-email", "not-an-email").await?;
    click(c, "pay-cash").await?;
    fill(c, "tendered", "100.00").await?;
    wait_text_contains(c, "order-total", "50.00").await?;
    wait_text_contains(c, "change-due", "50.00").await?;

    step("New order: a malformed email must be refused");
    click(c, "place-order").await?;
    let err = wait_for("error-customer_email for 'not-an-email'", WAIT, || async {
        Ok(text_opt(c, "error-customer_email")
            .await?
            .filter(|t| !t.trim().is_empty()))
    })
    .await?;
    step(&format!("New order: email error shown: {err:?}"));
    // Give a wrongly accepted order a moment to show up before checking.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(r) = text_opt(c, "receipt-number").await? {
        ensure!(
            r.trim().is_empty(),
            "an order was placed despite the malformed email: receipt {r:?}"
        );
    }
    screenshot(c, env, "new-order-invalid").await?;

    step("New order: fixing the email and placing the order");
    fill(c, "customer-email", CUSTOMER_EMAIL).await?;
    wait_text_contains(c, "change-due", "50.00").await?;
    // The order as the owner sees it just before placing it (the README's picture).
    screenshot(c, env, "new-order-ready").await?;
    click(c, "place-order").await?;
    let receipt = wait_for("receipt-number after placing the order", WAIT, || async {
        if let Some(e) = text_opt(c, "form-error")
            .await?
            .filter(|t| !t.trim().is_empty())
        {
            return Err(anyhow!("the order was refused with form-error {e:?}"));
        }
        Ok(text_opt(c, "receipt-number")
            .await?
            .filter(|t| t.contains(RECEIPT)))
    })
    .await?;
    step(&format!("New order: placed, receipt {receipt:?}"));
    screenshot(c, env, "new-order-placed").await
}

async fn orders(c: &Client, env: &Env) -> Result<()> {
    // The page updates live: no reload, so a missed update fails the test.
    step("Orders: waiting for the confirmation email to be sent");
    click(c, "nav-orders").await?;
    let started = Instant::now();
    let mut last_status = String::from("(no row)");
    loop {
        let mut found = None;
        for row in c.find_all(tid("order-row")).await? {
            if text_of(c, &row).await?.contains(RECEIPT) {
                let status = match row.find(tid("email-status")).await {
                    Ok(s) => text_of(c, &s).await?,
                    Err(_) => String::from("(no email-status in the row)"),
                };
                found = Some(status.trim().to_lowercase());
                break;
            }
        }
        if let Some(s) = found {
            if s.contains("sent") {
                break;
            }
            ensure!(!s.contains("failed"), "email-status of {RECEIPT} is {s:?}");
            last_status = s;
        }
        if started.elapsed() > WAIT {
            bail!(
                "timed out after {WAIT:?} waiting for the order row {RECEIPT} with \
                 email-status 'sent'; last seen: {last_status:?}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
    step("Orders: email-status is sent");
    screenshot(c, env, "orders").await
}

async fn outbox(env: &Env) -> Result<()> {
    let dir = env.data_dir.join("outbox");
    step(&format!(
        "Outbox: looking for the .eml in {}",
        dir.display()
    ));
    let file = wait_for(
        "a .eml in the outbox with the receipt and the customer",
        WAIT,
        || {
            let dir = dir.clone();
            async move {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    return Ok(None);
                };
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().and_then(|x| x.to_str()) != Some("eml") {
                        continue;
                    }
                    let raw = std::fs::read(&p).unwrap_or_default();
                    if eml_mentions(&raw, RECEIPT) && eml_mentions(&raw, CUSTOMER_EMAIL) {
                        return Ok(Some(p));
                    }
                }
                Ok(None)
            }
        },
    )
    .await?;
    step(&format!("Outbox: found {}", file.display()));
    Ok(())
}

/// Whether the raw message or its decoded headers and text mention `needle`
/// (bodies may be quoted-printable or base64).
fn eml_mentions(raw: &[u8], needle: &str) -> bool {
    if String::from_utf8_lossy(raw).contains(needle) {
        return true;
    }
    let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
        return false;
    };
    let in_subject = msg.subject().is_some_and(|s| s.contains(needle));
    let in_to = msg
        .to()
        .map(|a| {
            a.iter()
                .any(|a| a.address().is_some_and(|x| x.contains(needle)))
        })
        .unwrap_or(false);
    let in_text = (0..msg.text_body_count())
        .any(|i| msg.body_text(i).is_some_and(|t| t.contains(needle)))
        || (0..msg.html_body_count()).any(|i| msg.body_html(i).is_some_and(|t| t.contains(needle)));
    in_subject || in_to || in_text
}

async fn notification(env: &Env) -> Result<()> {
    step("Notification: waiting for the desktop notification");
    let log = env.notify_log.clone();
    wait_for(
        &format!("{} to mention {RECEIPT}", log.display()),
        WAIT,
        || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                Ok(text.contains(RECEIPT).then_some(()))
            }
        },
    )
    .await?;
    step("Notification: seen");
    Ok(())
}

async fn jobs(c: &Client, env: &Env) -> Result<()> {
    step("Jobs: checking the job list");
    click(c, "nav-jobs").await?;
    // The order's confirmation email and its notification, both done.
    wait_text_contains(c, "stat-done", "2").await?;
    let stats = text_opt(c, "job-stats").await?.unwrap_or_default();
    let statuses = || async {
        let mut out = Vec::new();
        for row in c.find_all(tid("job-row")).await? {
            out.push(text_of(c, &row).await?);
        }
        Ok::<_, anyhow::Error>(out)
    };
    let rows = wait_for("two job rows", WAIT, || async {
        let rows = statuses().await?;
        Ok((rows.len() == 2).then_some(rows))
    })
    .await?;
    step(&format!("Jobs: {rows:?}; stats {stats:?}"));
    ensure!(
        rows.iter().all(|r| r.contains("R-000001")),
        "each job names its order's receipt: {rows:?}"
    );
    screenshot(c, env, "jobs").await?;

    step("Jobs: clicking a count lists only the jobs in that state");
    click(c, "stat-dead").await?;
    wait_text_contains(c, "jobs-empty", "No dead jobs").await?;
    ensure!(
        statuses().await?.is_empty(),
        "the dead filter still lists jobs"
    );
    click(c, "stat-done").await?;
    wait_text_contains(c, "jobs-filter", "done jobs only").await?;
    let done = wait_for("the two done jobs under the done filter", WAIT, || async {
        let rows = statuses().await?;
        Ok((rows.len() == 2 && rows.iter().all(|r| r.contains("done"))).then_some(rows))
    })
    .await?;
    step(&format!("Jobs: done filter shows {done:?}"));
    screenshot(c, env, "jobs-filtered").await?;
    click(c, "jobs-filter-clear").await?;
    wait_for("the filter cleared", WAIT, || async {
        Ok(find_opt(c, "jobs-filter").await?.is_none().then_some(()))
    })
    .await?;

    // Pausing one queue changes no job count (nor the all-paused flag), so
    // only a watch on the database itself can tell the page.
    step("Jobs: a pause from the command line shows up in the open app");
    // The counts: the stats text up to the last one (the queue badge after
    // it says what is paused).
    let counts = |text: Option<String>| {
        let text = text.unwrap_or_default();
        text.split_inclusive("dead")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let stats_before = counts(text_opt(c, "job-stats").await?);
    cli(env, &["jobs", "pause", "email"])?;
    wait_text_contains(c, "queue-state-email", "Paused").await?;
    wait_text_contains(c, "queue-state-notify", "Running").await?;
    wait_text_contains(c, "queue-state", "Email paused").await?;
    let stats_after = counts(text_opt(c, "job-stats").await?);
    ensure!(
        stats_after == stats_before,
        "the counts were meant to stay as they were: {stats_before:?} then {stats_after:?}"
    );
    cli(env, &["jobs", "pause"])?;
    wait_text_contains(c, "queue-state", "Paused").await?;
    cli(env, &["jobs", "resume"])?;
    wait_text_contains(c, "queue-state", "Running").await?;
    wait_text_contains(c, "queue-state-email", "Running").await?;
    Ok(())
}

/// An order placed from the command line whose email job the owner
/// cancelled reads "failed" on the Orders page; its Retry button sends it.
async fn retry_a_failed_email(c: &Client, env: &Env) -> Result<()> {
    step("Orders: a failed email is sent again from its order");
    cli(env, &["jobs", "pause", "email"])?;
    let placed: Value = serde_json::from_str(&cli(
        env,
        &[
            "order",
            "place",
            "--customer-email",
            "grace@example.com",
            "--line",
            "red-sports-tee:1",
            "--pay",
            "card:E2E-1",
            "--json",
        ],
    )?)?;
    let receipt = placed["receipt_number"]
        .as_str()
        .context("order place --json has a receipt_number")?
        .to_string();
    let pending: Value = serde_json::from_str(&cli(
        env,
        &["jobs", "list", "--status", "pending", "--json"],
    )?)?;
    let email_job = pending
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| {
            j["job_type"]
                .as_str()
                .is_some_and(|t| t.starts_with("email"))
        })
        .and_then(|j| j["id"].as_str())
        .context("the new order's email job is pending")?
        .to_string();
    cli(env, &["jobs", "cancel", &email_job])?;
    cli(env, &["jobs", "resume", "email"])?;

    click(c, "nav-orders").await?;
    let row_status = |want: &'static str| {
        let receipt = receipt.clone();
        async move {
            for row in c.find_all(tid("order-row")).await? {
                if text_of(c, &row).await?.contains(&receipt) {
                    let status = text_of(c, &row.find(tid("email-status")).await?).await?;
                    return Ok(status.contains(want).then_some(row));
                }
            }
            Ok(None)
        }
    };
    let row = wait_for("the order's email to read failed", WAIT, || {
        row_status("failed")
    })
    .await?;
    screenshot(c, env, "orders-failed-email").await?;
    let retry = row
        .find(tid("email-retry"))
        .await
        .context("a failed email's order has a Retry button")?;
    retry.click().await?;
    wait_for("the retried email to read sent", WAIT, || {
        row_status("sent")
    })
    .await?;
    step(&format!("Orders: {receipt}'s email retried and sent"));
    Ok(())
}

/// The monitor actions from the Jobs page's own buttons, as the owner uses
/// them: pause and resume (all queues, then one), inspect a job, cancel,
/// retry, delete dead jobs. Each outcome is read back through the command
/// line too, so the page cannot merely claim it.
async fn jobs_page_actions(c: &Client, env: &Env) -> Result<()> {
    click(c, "nav-jobs").await?;
    pause_all_from_the_page(c, env).await?;

    step("Jobs page: pausing the email queue only");
    click(c, "queue-toggle-email").await?;
    wait_text_contains(c, "queue-state-email", "Paused").await?;
    wait_text_contains(c, "queue-state-notify", "Running").await?;
    wait_text_contains(c, "queue-state", "Email paused").await?;
    let stats = cli_json(env, &["jobs", "stats", "--json"])?;
    ensure!(
        queue_paused(&stats, "email")? && !queue_paused(&stats, "notify")?,
        "after pausing Email on the page, jobs stats says {stats}"
    );

    let held = place_cli_order(env, "held@example.com", "striped-silk-blouse", "E2E-2")?;
    step(&format!(
        "Jobs page: {} placed; its notification must run, its email wait",
        held.receipt
    ));
    wait_cli_status(env, &held.notify, "Done").await?;
    wait_job_row(c, &held.notify, "done").await?;
    wait_job_row(c, &held.email, "pending").await?;
    // The notification ran, so the workers polled: an email queue that
    // ignored the pause would have claimed its job too. Give it a few more
    // polls before checking.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = cli_job(env, &held.email)?.context("the held email job exists")?;
    ensure!(
        status == "Pending",
        "the email job of {} ran while the email queue was paused: {status}",
        held.receipt
    );
    wait_job_row(c, &held.email, "pending").await?;
    wait_text_contains(c, "stat-pending", "1").await?;
    screenshot(c, env, "jobs-email-paused").await?;

    inspect_a_job(c, env, &held).await?;

    // New jobs go on top; while the owner points at the list they must not
    // push the row under the pointer down.
    step("Jobs page: new jobs wait while the pointer is over the list");
    let held_cell = find_job_row(c, &held.email)
        .await?
        .context("the held email job has a row")?
        .find(Locator::Css("td"))
        .await?;
    point_at(c, &held_cell).await?;
    let ids_before: Vec<String> = job_rows(c).await?.into_iter().map(|r| r.id).collect();
    let top_before = job_row_top(c, &held.email).await?;
    let cancelled = place_cli_order(env, "lost@example.com", "yellow-wool-jumper", "E2E-3")?;
    let purged = place_cli_order(env, "gone@example.com", "floral-white-top", "E2E-4")?;
    // Each order queued an email and a notification. The counts above the
    // list keep up: the held email and both new ones wait in the paused queue.
    wait_text_contains(c, "jobs-held", "4 new").await?;
    wait_text_contains(c, "stat-pending", "3").await?;
    let ids_held: Vec<String> = job_rows(c).await?.into_iter().map(|r| r.id).collect();
    ensure!(
        ids_held == ids_before,
        "the list changed under the pointer: {ids_before:?} then {ids_held:?}"
    );
    let top_held = job_row_top(c, &held.email).await?;
    ensure!(
        top_held == top_before,
        "the pointed-at row moved from y={top_before} to y={top_held}"
    );
    screenshot(c, env, "jobs-held").await?;
    step("Jobs page: the pointer leaves the list, the new jobs show");
    let heading = c
        .find(Locator::Css("h1"))
        .await
        .context("the page's heading")?;
    point_at(c, &heading).await?;
    wait_for("the held note to go", WAIT, || async {
        Ok(find_opt(c, "jobs-held").await?.is_none().then_some(()))
    })
    .await?;

    step("Jobs page: cancelling two pending emails");
    // New rows go on top and push the others down: wait until both orders'
    // rows are shown and settled, or a click may land on the wrong row.
    for order in [&cancelled, &purged] {
        wait_cli_status(env, &order.notify, "Done").await?;
        wait_job_row(c, &order.notify, "done").await?;
        wait_job_row(c, &order.email, "pending").await?;
    }
    for order in [&cancelled, &purged] {
        click_in_job_row(c, &order.email, "job-cancel").await?;
        let row = wait_job_row(c, &order.email, "dead").await?;
        ensure!(
            row.error.contains("cancelled"),
            "the cancelled job's row gives no reason: {row:?}"
        );
        wait_text_contains(c, "jobs-notice", "cancelled").await?;
        let (status, error) = cli_job(env, &order.email)?.context("the cancelled job exists")?;
        ensure!(
            status == "Killed" && error.as_deref().is_some_and(|e| e.contains("cancelled")),
            "cancelled on the page, yet the command line reads {status} {error:?}"
        );
    }
    wait_text_contains(c, "stat-dead", "2").await?;
    let mut dead: Vec<String> = cli_jobs(env)?
        .iter()
        .filter(|j| j["status"] == "Killed")
        .filter_map(|j| j["id"].as_str().map(str::to_string))
        .collect();
    dead.sort();
    let mut want = vec![cancelled.email.clone(), purged.email.clone()];
    want.sort();
    ensure!(
        dead == want,
        "cancelling {want:?} on the page left these jobs dead: {dead:?}"
    );
    screenshot(c, env, "jobs-cancelled").await?;

    step("Jobs page: resuming the email queue sends the held email only");
    click(c, "queue-toggle-email").await?;
    wait_text_contains(c, "queue-state-email", "Running").await?;
    wait_cli_status(env, &held.email, "Done").await?;
    wait_job_row(c, &held.email, "done").await?;
    let stats = cli_json(env, &["jobs", "stats", "--json"])?;
    ensure!(
        !queue_paused(&stats, "email")?,
        "after resuming Email on the page, jobs stats says {stats}"
    );
    for order in [&cancelled, &purged] {
        let (status, _) = cli_job(env, &order.email)?.context("the cancelled job exists")?;
        ensure!(
            status == "Killed",
            "a cancelled email job ran once its queue resumed: {status}"
        );
    }

    step("Jobs page: retrying a dead email");
    click_in_job_row(c, &cancelled.email, "job-retry").await?;
    wait_text_contains(c, "jobs-notice", "will run again").await?;
    let row = wait_job_row(c, &cancelled.email, "done").await?;
    ensure!(
        row.error.trim().is_empty(),
        "the retried job still shows an error once done: {row:?}"
    );
    wait_cli_status(env, &cancelled.email, "Done").await?;
    screenshot(c, env, "jobs-retried").await?;

    step("Jobs page: deleting the dead jobs");
    click(c, "jobs-purge-dead").await?;
    wait_text_contains(c, "jobs-purge-question", "Delete 1 dead job?").await?;
    screenshot(c, env, "jobs-purge-confirm").await?;
    click(c, "jobs-purge-confirm").await?;
    wait_text_contains(c, "jobs-notice", "Deleted 1 dead job.").await?;
    wait_for("the deleted job's row to go", WAIT, || async {
        let rows = job_rows(c).await?;
        Ok((!rows.iter().any(|r| r.id == purged.email)).then_some(()))
    })
    .await?;
    wait_text_contains(c, "stat-dead", "0").await?;
    let jobs = cli_jobs(env)?;
    ensure!(
        !jobs.iter().any(|j| j["id"] == purged.email.as_str()),
        "the dead job deleted on the page is still listed by the command line"
    );
    ensure!(
        !jobs.iter().any(|j| j["status"] == "Killed"),
        "dead jobs remain after deleting them on the page"
    );
    ensure!(
        jobs.iter()
            .any(|j| j["id"] == cancelled.email.as_str() && j["status"] == "Done"),
        "deleting dead jobs took the retried, done one as well"
    );
    screenshot(c, env, "jobs-purged").await?;
    step("Jobs page: every monitor action done from the page");
    Ok(())
}

/// "Pause all" and "Resume all" on the page, read back by the command line.
async fn pause_all_from_the_page(c: &Client, env: &Env) -> Result<()> {
    step("Jobs page: pause all, then resume all");
    wait_text_contains(c, "queue-toggle", "Pause all").await?;
    click(c, "queue-toggle").await?;
    wait_text_contains(c, "queue-state", "Paused").await?;
    wait_text_contains(c, "queue-state-email", "Paused").await?;
    wait_text_contains(c, "queue-state-notify", "Paused").await?;
    let stats = cli_json(env, &["jobs", "stats", "--json"])?;
    ensure!(
        stats["paused"] == true,
        "after Pause all on the page, jobs stats says {stats}"
    );
    wait_text_contains(c, "queue-toggle", "Resume all").await?;
    click(c, "queue-toggle").await?;
    wait_text_contains(c, "queue-state", "Running").await?;
    wait_text_contains(c, "queue-state-email", "Running").await?;
    let stats = cli_json(env, &["jobs", "stats", "--json"])?;
    ensure!(
        stats["paused"] == false
            && !queue_paused(&stats, "email")?
            && !queue_paused(&stats, "notify")?,
        "after Resume all on the page, jobs stats says {stats}"
    );
    Ok(())
}

/// Clicking a job's row opens its details with the payload; clicking it
/// again closes them.
async fn inspect_a_job(c: &Client, env: &Env, order: &OrderJobs) -> Result<()> {
    step("Jobs page: inspecting the held email job");
    let row = find_job_row(c, &order.email)
        .await?
        .context("the held email job has a row")?;
    // The first cell: the row's middle may be a button in other layouts.
    let cell = row.find(Locator::Css("td")).await?;
    cell.click().await.context("clicking the job's row")?;
    let payload = wait_for("the job's payload in its details", WAIT, || async {
        Ok(text_opt(c, "job-payload")
            .await?
            .filter(|t| t.contains(&order.order_id)))
    })
    .await?;
    let shown: Value = serde_json::from_str(&payload)
        .with_context(|| format!("the payload shown is not JSON: {payload:?}"))?;
    let show = cli_json(env, &["jobs", "show", &order.email, "--json"])?;
    ensure!(
        shown == show["payload"],
        "the page shows payload {shown} but jobs show says {}",
        show["payload"]
    );
    let detail = text_opt(c, "job-detail").await?.unwrap_or_default();
    ensure!(
        detail.contains(&order.email),
        "the details do not name the job {}: {detail:?}",
        order.email
    );
    // The job has not failed: its "Last error" is a plain dash, not red.
    let (error_shown, in_red) = detail_error_look(c).await?;
    ensure!(
        error_shown == "—" && !in_red,
        "a job without an error shows Last error {error_shown:?}{}",
        if in_red { " in red" } else { "" }
    );
    screenshot(c, env, "jobs-detail").await?;
    cell.click().await.context("clicking the job's row again")?;
    wait_for("the details to close", WAIT, || async {
        Ok(find_opt(c, "job-detail").await?.is_none().then_some(()))
    })
    .await
}

/// The open job's "Last error" as shown, and whether it is in the page's
/// error colour.
async fn detail_error_look(c: &Client) -> Result<(String, bool)> {
    let v = c
        .execute(
            "const el = document.querySelector('[data-testid=\"job-detail-error\"]');
             if (!el) return null;
             const probe = document.createElement('span');
             probe.style.color = 'var(--bad)';
             document.body.appendChild(probe);
             const bad = getComputedStyle(probe).color;
             probe.remove();
             return [(el.innerText || el.textContent || '').trim(), getComputedStyle(el).color === bad];",
            vec![],
        )
        .await?;
    let text = v[0]
        .as_str()
        .context("the job's details have a Last error entry (job-detail-error)")?;
    Ok((text.to_string(), v[1].as_bool().unwrap_or(false)))
}

/// The two jobs an order queued.
struct OrderJobs {
    receipt: String,
    order_id: String,
    email: String,
    notify: String,
}

/// Places an order from the command line, as another till or a script
/// would, and finds its jobs by their idempotency keys.
fn place_cli_order(env: &Env, customer_email: &str, sku: &str, auth: &str) -> Result<OrderJobs> {
    let line = format!("{sku}:1");
    let pay = format!("card:{auth}");
    let placed = cli_json(
        env,
        &[
            "order",
            "place",
            "--customer-email",
            customer_email,
            "--line",
            &line,
            "--pay",
            &pay,
            "--json",
        ],
    )?;
    let receipt = placed["receipt_number"]
        .as_str()
        .context("order place --json has a receipt_number")?
        .to_string();
    let order_id = placed["order_id"]
        .as_str()
        .context("order place --json has an order_id")?
        .to_string();
    let jobs = cli_jobs(env)?;
    let job_with_key = |key: String| {
        jobs.iter()
            .find(|j| j["idempotency_key"] == key.as_str())
            .and_then(|j| j["id"].as_str())
            .map(str::to_string)
            .with_context(|| format!("no job with key {key} after placing {receipt}"))
    };
    Ok(OrderJobs {
        email: job_with_key(format!("order-confirmation/{order_id}"))?,
        notify: job_with_key(format!("order-placed/{order_id}"))?,
        receipt,
        order_id,
    })
}

fn cli_json(env: &Env, args: &[&str]) -> Result<Value> {
    let out = cli(env, args)?;
    serde_json::from_str(&out)
        .with_context(|| format!("shopdesk {} printed no JSON: {out:?}", args.join(" ")))
}

/// Every job, as `jobs list --json` gives them.
fn cli_jobs(env: &Env) -> Result<Vec<Value>> {
    match cli_json(env, &["jobs", "list", "--limit", "1000", "--json"])? {
        Value::Array(jobs) => Ok(jobs),
        other => bail!("jobs list --json is not an array: {other}"),
    }
}

/// A job's stored status and last error by the command line; `None` when
/// it is not listed.
fn cli_job(env: &Env, id: &str) -> Result<Option<(String, Option<String>)>> {
    Ok(cli_jobs(env)?.into_iter().find(|j| j["id"] == id).map(|j| {
        (
            j["status"].as_str().unwrap_or_default().to_string(),
            j["last_error"].as_str().map(str::to_string),
        )
    }))
}

async fn wait_cli_status(env: &Env, id: &str, want: &str) -> Result<()> {
    let last = std::cell::RefCell::new(None);
    wait_for(
        &format!("jobs list to read job {id} as {want}"),
        WAIT,
        || async {
            let job = cli_job(env, id)?;
            let ok = job.as_ref().is_some_and(|(s, _)| s == want);
            last.replace(job);
            Ok(ok.then_some(()))
        },
    )
    .await
    .with_context(|| format!("last read: {:?}", last.borrow()))
}

/// Whether `jobs stats --json` lists `queue` as paused.
fn queue_paused(stats: &Value, queue: &str) -> Result<bool> {
    stats["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|q| q["queue"] == queue)
        .and_then(|q| q["paused"].as_bool())
        .with_context(|| format!("jobs stats --json has no queue {queue}: {stats}"))
}

/// One row of the Jobs page's table, as shown.
#[derive(Debug)]
struct JobRow {
    id: String,
    status: String,
    error: String,
}

/// The job rows shown, read in one go.
async fn job_rows(c: &Client) -> Result<Vec<JobRow>> {
    let v = c
        .execute(
            "const text = (row, id) => {
               const el = row.querySelector(`[data-testid=\"${id}\"]`);
               return el ? (el.innerText || el.textContent || '') : '';
             };
             return [...document.querySelectorAll('[data-testid=\"job-row\"]')].map(row => ({
               id: row.dataset.jobId || '',
               status: text(row, 'job-status'),
               error: text(row, 'job-error'),
             }));",
            vec![],
        )
        .await?;
    let rows = v.as_array().context("the job rows script returns a list")?;
    Ok(rows
        .iter()
        .map(|r| JobRow {
            id: r["id"].as_str().unwrap_or_default().to_string(),
            status: r["status"].as_str().unwrap_or_default().trim().to_string(),
            error: r["error"].as_str().unwrap_or_default().trim().to_string(),
        })
        .collect())
}

/// Waits until the page shows job `id` with the status word `want`.
async fn wait_job_row(c: &Client, id: &str, want: &str) -> Result<JobRow> {
    let last = std::cell::RefCell::new(None);
    wait_for(
        &format!("the Jobs page to show job {id} as {want}"),
        WAIT,
        || async {
            let row = job_rows(c).await?.into_iter().find(|r| r.id == id);
            last.replace(row.as_ref().map(|r| r.status.clone()));
            Ok(row.filter(|r| r.status == want))
        },
    )
    .await
    .with_context(|| format!("its row last read {:?}", last.borrow()))
}

async fn find_job_row(c: &Client, id: &str) -> Result<Option<Element>> {
    let selector = format!("[data-testid=\"job-row\"][data-job-id=\"{id}\"]");
    Ok(c.find_all(Locator::Css(&selector))
        .await?
        .into_iter()
        .next())
}

/// Where job `id`'s row starts on the screen (its top, in CSS pixels).
async fn job_row_top(c: &Client, id: &str) -> Result<f64> {
    let v = c
        .execute(
            "const row = document.querySelector(`[data-testid=\"job-row\"][data-job-id=\"${arguments[0]}\"]`);
             return row ? row.getBoundingClientRect().top : null;",
            vec![json!(id)],
        )
        .await?;
    v.as_f64().with_context(|| format!("job {id} has no row"))
}

/// Moves the mouse pointer onto the middle of `element` and leaves it
/// there, as an owner aiming at it does.
async fn point_at(c: &Client, element: &Element) -> Result<()> {
    let mouse = MouseActions::new("pointer".into()).then(PointerAction::MoveToElement {
        element: element.clone(),
        duration: Some(Duration::from_millis(100)),
        x: 0.0,
        y: 0.0,
    });
    c.perform_actions(mouse)
        .await
        .context("moving the pointer")?;
    Ok(())
}

/// Clicks a button (`job-retry`, `job-cancel`) in job `id`'s row.
async fn click_in_job_row(c: &Client, id: &str, button: &str) -> Result<()> {
    let row = find_job_row(c, id)
        .await?
        .with_context(|| format!("job {id} has no row"))?;
    let selector = format!("[data-testid=\"{button}\"]");
    let b = row
        .find(Locator::Css(&selector))
        .await
        .with_context(|| format!("job {id}'s row has no {button} button"))?;
    if b.click().await.is_err() {
        c.execute("arguments[0].click();", vec![elem_arg(&b)?])
            .await
            .with_context(|| format!("clicking {button} of job {id}"))?;
    }
    Ok(())
}

/// Runs the app's command line on the app's own data dir, as a script on
/// the same machine would while the window is open. Returns its stdout.
fn cli(env: &Env, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(&env.bin)
        .arg("--data-dir")
        .arg(&env.data_dir)
        .args(args)
        .output()
        .with_context(|| format!("running shopdesk {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "shopdesk {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------- helpers

fn step(msg: &str) {
    eprintln!("e2e: {msg}");
}

fn tid(id: &str) -> Locator<'static> {
    // Locator borrows its selector; the handful of selectors built here live
    // for the whole test, so leaking them is harmless.
    Locator::Css(Box::leak(
        format!("[data-testid=\"{id}\"]").into_boxed_str(),
    ))
}

fn elem_arg(e: &Element) -> Result<Value> {
    serde_json::to_value(e).context("serialising a WebDriver element")
}

/// Polls `probe` until it yields `Some`, an error that is not a WebDriver
/// "no such element" kind of hiccup, or the timeout passes.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => {
                // Errors raised by the probe itself (not WebDriver) are final.
                if e.downcast_ref::<fantoccini::error::CmdError>().is_none() {
                    return Err(e.context(format!("while waiting for {what}")));
                }
                last_err = Some(e);
            }
        }
        if start.elapsed() > timeout {
            let detail = last_err
                .map(|e| format!("; last WebDriver error: {e:#}"))
                .unwrap_or_default();
            bail!("timed out after {timeout:?} waiting for {what}{detail}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// An element's text as the page lays it out (`innerText`, or `textContent`
/// when that is empty). WebDriver's own "get element text" in WebKitWebDriver
/// drops text it judges hidden, such as the title in a search result.
async fn text_of(c: &Client, e: &Element) -> Result<String> {
    let v = c
        .execute(
            "const el = arguments[0]; return el.innerText || el.textContent || '';",
            vec![elem_arg(e)?],
        )
        .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

async fn find_opt(c: &Client, id: &str) -> Result<Option<Element>> {
    Ok(c.find_all(tid(id)).await?.into_iter().next())
}

async fn wait_find(c: &Client, id: &str) -> Result<Element> {
    wait_for(&format!("element {id}"), WAIT, || find_opt(c, id)).await
}

async fn text_opt(c: &Client, id: &str) -> Result<Option<String>> {
    match find_opt(c, id).await? {
        Some(e) => Ok(Some(text_of(c, &e).await?)),
        None => Ok(None),
    }
}

async fn wait_text_contains(c: &Client, id: &str, needle: &str) -> Result<String> {
    let last = std::cell::RefCell::new(None);
    let r = wait_for(&format!("{id} to show {needle:?}"), WAIT, || async {
        let t = text_opt(c, id).await?;
        // Inputs have no text: fall back to their value.
        let t = match t {
            Some(t) if !t.trim().is_empty() => Some(t),
            _ => match find_opt(c, id).await? {
                Some(e) => e.prop("value").await?,
                None => None,
            },
        };
        last.replace(t.clone());
        Ok(t.filter(|t| t.contains(needle)))
    })
    .await;
    r.with_context(|| format!("{id} last showed {:?}", last.borrow()))
}

/// Clicks an element; if WebDriver refuses (hidden radio behind a label,
/// covered button), clicks it from JavaScript instead.
async fn click(c: &Client, id: &str) -> Result<()> {
    let e = wait_find(c, id).await?;
    if e.click().await.is_err() {
        c.execute("arguments[0].click();", vec![elem_arg(&e)?])
            .await
            .with_context(|| format!("clicking {id}"))?;
    }
    Ok(())
}

/// Replaces an input's value by typing, as a person would; if the value does
/// not stick, sets it from JavaScript and fires input/change events.
async fn fill(c: &Client, id: &str, value: &str) -> Result<()> {
    let e = wait_find(c, id).await?;
    let _ = e.clear().await;
    // Select whatever is left and type over it.
    let select_all = format!("{}a", char::from(Key::Control));
    let _ = e.send_keys(&select_all).await;
    e.send_keys(value)
        .await
        .with_context(|| format!("typing into {id}"))?;
    let now = e.prop("value").await?.unwrap_or_default();
    if now != value {
        c.execute(
            "const [el, v] = arguments;
             const proto = Object.getPrototypeOf(el);
             const setter = Object.getOwnPropertyDescriptor(proto, 'value').set;
             setter.call(el, v);
             el.dispatchEvent(new Event('input', {bubbles: true}));
             el.dispatchEvent(new Event('change', {bubbles: true}));",
            vec![elem_arg(&e)?, json!(value)],
        )
        .await
        .with_context(|| format!("setting {id} from JavaScript"))?;
        let now = e.prop("value").await?.unwrap_or_default();
        ensure!(
            now == value,
            "{id} holds {now:?} after setting it to {value:?}"
        );
    }
    Ok(())
}

/// Last resort for the import: hand the input a File built from the CSV's
/// content and fire `change`, as a browser does after a file pick.
async fn set_file_via_js(c: &Client, input: &Element, path: &Path) -> Result<()> {
    // As bytes: the file need not be UTF-8.
    let content = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "catalog.csv".into());
    c.execute(
        "const [el, name, content] = arguments;
         const dt = new DataTransfer();
         dt.items.add(new File([new Uint8Array(content)], name, {type: 'text/csv'}));
         el.files = dt.files;
         el.dispatchEvent(new Event('input', {bubbles: true}));
         el.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![elem_arg(input)?, json!(name), json!(content)],
    )
    .await
    .context("setting the import file from JavaScript")?;
    Ok(())
}

fn number_after(text: &str, word: &str) -> Option<u64> {
    let rest = &text[text.find(word)? + word.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

async fn screenshot(c: &Client, env: &Env, name: &str) -> Result<()> {
    // Let the page paint what it shows now: WebKit's screenshot is the last
    // frame drawn, which can lag a fresh change.
    let _ = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             requestAnimationFrame(() => requestAnimationFrame(() => done(null)));",
            vec![],
        )
        .await;
    let png = c
        .screenshot()
        .await
        .with_context(|| format!("screenshot {name}"))?;
    let path = env.artifacts.join(format!("{name}.png"));
    std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
    step(&format!("screenshot {}", path.display()));
    Ok(())
}
