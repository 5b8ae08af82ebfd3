//! The command line: one binary, subcommands for scripting and a headless
//! worker; no subcommand opens the desktop app.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use shopdesk_core::checkout::{LineRequest, OrderRequest, Payment};
use shopdesk_core::queue::JobStatus;
use shopdesk_core::{paths, worker, Shop};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::signals::QuitSignals;

#[derive(Parser, Debug)]
#[command(
    name = "shopdesk",
    version,
    about = "ShopDesk: orders at the counter, emails and notifications in the background"
)]
struct Cli {
    /// Where the database, outbox and logs live [default: $SHOPDESK_DATA_DIR
    /// when set and not empty, else the OS app-data folder]
    // Not clap's `env`: it takes an empty variable as a missing value and
    // refuses every command, even one given --data-dir (see paths::data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import data into the shop
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// The product catalog
    Products {
        #[command(subcommand)]
        action: ProductsAction,
    },
    /// Place an order
    Order {
        #[command(subcommand)]
        action: OrderAction,
    },
    /// Orders placed so far
    Orders {
        #[command(subcommand)]
        action: OrdersAction,
    },
    /// The background job queue
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Shop settings: name, from-address, email provider and its API key
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Run the job queue without the desktop app, until Ctrl-C or SIGTERM (both
    /// stop it gracefully)
    Worker {
        /// Exit once no job is due instead of running until interrupted
        /// (Ctrl-C or SIGTERM still stop it early, as gracefully)
        #[arg(long)]
        until_idle: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Show one setting, or all of them (the API key only masked)
    Get {
        /// e.g. shop_name, shop_email, email_provider (outbox|resend),
        /// email_api_url, email_api_key
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Change a setting (an empty email_api_key removes the key). A value of
    /// "-" is read from standard input, so an API key need not appear in the
    /// shell history or the process list: `shopdesk config set email_api_key - < key.txt`
    Set { key: String, value: String },
}

#[derive(Subcommand, Debug)]
enum ImportWhat {
    /// Import or update products from a Shopify product CSV export
    Products {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ProductsAction {
    /// List products (optionally matching a search)
    List {
        #[arg(long, short)]
        query: Option<String>,
        /// How many to show at most (1 or more)
        #[arg(long, default_value_t = 1000, value_parser = limit)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum OrderAction {
    /// Place an order (checks stock, records payment, queues the email)
    Place(PlaceArgs),
}

#[derive(Args, Debug)]
struct PlaceArgs {
    #[arg(long)]
    customer_name: Option<String>,
    #[arg(long)]
    customer_email: Option<String>,
    /// A line as SKU:QUANTITY; repeat for more lines
    #[arg(long = "line", value_name = "SKU:QTY", required = true)]
    lines: Vec<String>,
    /// cash:TENDERED_CENTS or card:REFERENCE
    #[arg(long, value_name = "cash:CENTS|card:REF")]
    pay: String,
    /// Idempotency key: repeating the command with the same key places one order
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum OrdersAction {
    /// List orders, newest first
    List {
        /// How many to show at most (1 or more)
        #[arg(long, default_value_t = 100, value_parser = limit)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum JobsAction {
    /// List jobs, newest first
    List {
        /// pending, running, retrying (or failed), done or dead
        #[arg(long)]
        status: Option<String>,
        /// How many to show at most (1 or more)
        #[arg(long, default_value_t = 100, value_parser = limit)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Counts per state
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// One job in full, with its payload
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a dead or retrying job again now, with a fresh set of attempts
    Retry {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a pending or retrying job (it becomes dead, never runs)
    Cancel {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Pause a queue (email, notify), or every queue when none is named
    Pause {
        queue: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Resume a queue (email, notify), or every queue when none is named
    Resume {
        queue: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete dead jobs
    PurgeDead {
        /// Only jobs dead for at least this many days
        #[arg(long, value_name = "DAYS")]
        older_than: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

/// A failure to report on stderr.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
}

impl From<shopdesk_core::Error> for Failure {
    fn from(e: shopdesk_core::Error) -> Self {
        let p = e.to_public();
        let message = match p.field {
            Some(field) => format!("{field}: {}", p.message),
            None => p.message,
        };
        Failure {
            code: p.code,
            message,
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: "invalid_input".into(),
        message: message.into(),
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // The same shape as every other error, for scripts that read it.
            let text = e.render().to_string();
            eprint!("error [usage]: {}", text.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    if cli.command.is_some() {
        quit_quietly_on_closed_pipe();
    }
    let data_dir = paths::data_dir(cli.data_dir.as_deref());
    let _log_guard = init_logging(&data_dir, cli.command.is_none());
    match run(cli.command, &data_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error [{}]: {}", f.code, f.message);
            ExitCode::FAILURE
        }
    }
}

/// `shopdesk products list | head` closes the pipe early. Rust ignores
/// SIGPIPE, so the next print would panic with "Broken pipe"; a command-line
/// tool should end quietly instead, as Unix tools do. (Not for the desktop
/// app, whose sockets must not kill it.)
fn quit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: sets a signal disposition at start-up, before any thread
    // of ours exists; SIG_DFL is a valid handler for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs to stderr and to a daily file in `<data dir>/logs`. The CLI keeps
/// stderr quiet (warnings only) so its output stays scriptable. When the
/// log folder cannot be written, ShopDesk says so on stderr and goes on
/// without the file: a log is no reason to refuse to take orders.
fn init_logging(data_dir: &Path, app: bool) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let stderr_filter = EnvFilter::try_from_env("SHOPDESK_LOG")
        .unwrap_or_else(|_| EnvFilter::new(if app { "info" } else { "warn" }));
    let stderr = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(stderr_filter);
    let logs = data_dir.join("logs");
    let appender = std::fs::create_dir_all(&logs)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("shopdesk.log")
                .build(&logs)
                .map_err(|e| e.to_string())
        });
    let (file_layer, guard, problem) = match appender {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(EnvFilter::new("info"));
            (Some(layer), Some(guard), None)
        }
        Err(e) => (None, None, Some(e)),
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init();
    if let Some(e) = problem {
        tracing::warn!(folder = %logs.display(), error = %e, "cannot write the log file; logging to stderr only");
    }
    guard
}

fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("our types always serialise")
    );
}

fn run(command: Option<Command>, data_dir: &Path) -> Result<(), Failure> {
    let shop = Shop::open(data_dir)?;
    let Some(command) = command else {
        return crate::app::run(shop).map_err(|e| Failure {
            code: "app".into(),
            message: e.to_string(),
        });
    };
    match command {
        Command::Import {
            what: ImportWhat::Products { file, json },
        } => {
            let summary = shop.import_products_file(&file)?;
            if json {
                print_json(&summary);
            } else {
                println!(
                    "{}: imported {} · updated {} · skipped {}",
                    summary.source,
                    summary.imported,
                    summary.updated,
                    summary.skipped.len()
                );
                for s in &summary.skipped {
                    println!("  skipped line {} ({}): {}", s.row, s.handle, s.reason);
                }
            }
        }
        Command::Products {
            action: ProductsAction::List { query, limit, json },
        } => {
            let products = shop.list_products(query.as_deref(), limit)?;
            if json {
                print_json(&products);
            } else {
                let currency = shop.setting("currency")?;
                for p in products {
                    println!(
                        "{:<36} {:>10} {:>6}  {}",
                        p.sku,
                        shopdesk_core::money::format(p.price_cents, &currency),
                        p.stock,
                        p.title
                    );
                }
            }
        }
        Command::Order {
            action: OrderAction::Place(args),
        } => place(&shop, args)?,
        Command::Orders {
            action: OrdersAction::List { limit, json },
        } => {
            let orders = shop.list_orders(limit)?;
            if json {
                print_json(&orders);
            } else {
                for o in orders {
                    let email = match (&o.email_status, &o.email_error) {
                        (s, Some(e)) => format!("{s:?}: {e}"),
                        (s, None) => format!("{s:?}"),
                    };
                    println!(
                        "{}  {}  {:>10}  {:<4}  {:<24}  email {}",
                        o.receipt_number,
                        o.created_at,
                        shopdesk_core::money::format(o.total_cents, &o.currency),
                        o.payment_method,
                        o.customer_name.as_deref().unwrap_or("-"),
                        email.to_lowercase()
                    );
                }
            }
        }
        Command::Jobs { action } => jobs_action(&shop, action)?,
        Command::Config { action } => config(&shop, action)?,
        Command::Worker { until_idle } => {
            let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure {
                code: "io".into(),
                message: e.to_string(),
            })?;
            let config = shop.worker_config();
            let handler = shop.job_handler();
            runtime.block_on(async move {
                // Listen before the first job is claimed, so that a stop
                // request from then on gives the claimed jobs back.
                let signals = QuitSignals::listen().map_err(|e| {
                    shopdesk_core::Error::Other(format!("cannot listen for stop signals: {e}"))
                })?;
                let shutdown = async move {
                    let signal = signals.recv().await;
                    tracing::info!("{signal} received: stopping the worker");
                };
                if until_idle {
                    let summary = worker::run_until_idle_or(config, handler, shutdown).await?;
                    print_json(&summary);
                } else {
                    worker::run(config, handler, shutdown).await?;
                }
                Ok::<(), shopdesk_core::Error>(())
            })?;
        }
    }
    Ok(())
}

/// `shopdesk jobs …`: the queue's state and the monitor actions.
fn jobs_action(shop: &Shop, action: JobsAction) -> Result<(), Failure> {
    match action {
        JobsAction::List {
            status,
            limit,
            json,
        } => {
            let status = match status {
                None => None,
                Some(s) => Some(JobStatus::parse(&s).ok_or_else(|| {
                    usage(format!(
                        "unknown job status \"{s}\" (pending, running, retrying, done, dead)"
                    ))
                })?),
            };
            let jobs = shop.list_jobs(status, limit)?;
            if json {
                print_json(&jobs);
            } else {
                for j in jobs {
                    // A finished job has no next run: say when it ended.
                    let when = match &j.done_at {
                        Some(done) => format!("finished {done}"),
                        None => format!("next {}", j.run_at),
                    };
                    println!(
                        "{}  {:<26} {:<8} {:<8} attempts {}/{}  {when}  {}",
                        j.id,
                        j.job_type,
                        j.receipt_number.as_deref().unwrap_or("-"),
                        j.status.label(),
                        j.attempts,
                        j.max_attempts,
                        j.last_error.unwrap_or_default()
                    );
                }
            }
        }
        JobsAction::Stats { json } => {
            let s = shop.job_stats()?;
            // `paused` says every queue is; name the ones that are when not.
            let queues = shop.queue_states()?;
            if json {
                let mut v = serde_json::to_value(&s).map_err(|e| Failure {
                    code: "internal".into(),
                    message: e.to_string(),
                })?;
                v["queues"] = serde_json::json!(queues);
                print_json(&v);
            } else {
                let paused: Vec<&str> = queues
                    .iter()
                    .filter(|q| q.paused)
                    .map(|q| q.queue.as_str())
                    .collect();
                let pause_note = if s.paused {
                    " · all queues paused".to_string()
                } else if paused.is_empty() {
                    String::new()
                } else {
                    format!(" · paused: {}", paused.join(", "))
                };
                println!(
                    "pending {} · running {} · retrying {} · done {} · dead {}{pause_note}",
                    s.pending, s.running, s.failed, s.done, s.dead,
                );
            }
        }
        JobsAction::Show { id, json } => {
            let job = shop.job(&id)?;
            if json {
                print_json(&job);
            } else {
                let i = &job.info;
                println!("{}  {}  {}", i.id, i.job_type, i.status.label());
                if let Some(receipt) = &i.receipt_number {
                    println!("  order       {receipt}");
                }
                println!("  attempts    {}/{}", i.attempts, i.max_attempts);
                println!("  run at      {}", i.run_at);
                if let Some(done) = &i.done_at {
                    println!("  finished    {done}");
                }
                if let Some(by) = &i.lock_by {
                    println!("  claimed by  {by}");
                }
                if let Some(key) = &i.idempotency_key {
                    println!("  key         {key}");
                }
                if let Some(e) = &i.last_error {
                    println!("  last error  {e}");
                }
                println!(
                    "  payload     {}",
                    serde_json::to_string(&job.payload).unwrap_or_default()
                );
            }
        }
        JobsAction::Retry { id, json } => {
            let job = shop.retry_job(&id)?;
            if json {
                print_json(&job);
            } else {
                println!(
                    "job {} ({}) will run again now, with {} attempts",
                    job.id, job.job_type, job.max_attempts
                );
            }
        }
        JobsAction::Cancel { id, json } => {
            let job = shop.cancel_job(&id)?;
            if json {
                print_json(&job);
            } else {
                println!(
                    "job {} ({}) cancelled; it will not run",
                    job.id, job.job_type
                );
            }
        }
        JobsAction::Pause { queue, json } => set_paused(shop, queue.as_deref(), true, json)?,
        JobsAction::Resume { queue, json } => set_paused(shop, queue.as_deref(), false, json)?,
        JobsAction::PurgeDead { older_than, json } => {
            let deleted = shop.purge_dead_jobs(older_than)?;
            if json {
                print_json(&serde_json::json!({ "deleted": deleted }));
            } else {
                match older_than {
                    Some(days) => println!(
                        "deleted {deleted} dead job{} (dead for {days} day{} or more)",
                        plural(deleted),
                        plural(days.into())
                    ),
                    None => println!("deleted {deleted} dead job{}", plural(deleted)),
                }
            }
        }
    }
    Ok(())
}

/// A list's `--limit`: never 0, which would print nothing and look like an
/// empty shop.
fn limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("\"{text}\" is not a whole number of 1 or more")),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn set_paused(shop: &Shop, queue: Option<&str>, paused: bool, json: bool) -> Result<(), Failure> {
    shop.set_queue_paused_by_name(queue, paused)?;
    let states = shop.queue_states()?;
    if json {
        print_json(&states);
    } else {
        let what = match queue {
            Some(q) => format!("queue {}", q.trim().to_ascii_lowercase()),
            None => "all queues".to_string(),
        };
        println!("{what} {}", if paused { "paused" } else { "resumed" });
        for s in states {
            println!(
                "  {:<8} {}",
                s.queue,
                if s.paused { "paused" } else { "running" }
            );
        }
    }
    Ok(())
}

fn config(shop: &Shop, action: ConfigAction) -> Result<(), Failure> {
    let known = |key: &str| {
        let keys = shopdesk_core::settings::config_keys();
        if keys.contains(&key) {
            Ok(())
        } else {
            Err(usage(format!(
                "unknown setting \"{key}\" (one of: {})",
                keys.join(", ")
            )))
        }
    };
    match action {
        ConfigAction::Get {
            key: Some(key),
            json,
        } => {
            known(&key)?;
            let value = shop.config_get(&key)?;
            if json {
                print_json(&serde_json::json!({ key: value }));
            } else {
                println!("{value}");
            }
        }
        ConfigAction::Get { key: None, json } => {
            let all = shop.config_list()?;
            if json {
                let map: serde_json::Map<String, serde_json::Value> = all
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                print_json(&map);
            } else {
                for (k, v) in all {
                    println!("{k} = {v}");
                }
            }
        }
        ConfigAction::Set { key, value } => {
            known(&key)?;
            let typed_here = value != "-";
            let value = if !typed_here {
                read_value_from_stdin()?
            } else {
                value
            };
            shop.config_set(&key, &value)?;
            if typed_here
                && key == shopdesk_core::settings::EMAIL_API_KEY
                && !value.trim().is_empty()
            {
                // Typed on the command line, the key is in the shell's
                // history and, while this runs, in the process list.
                eprintln!(
                    "note: the key given on the command line may be kept in your shell history; \
                     next time pass - and type it (or pipe it) on standard input"
                );
            }
            // Echo what is stored now; the API key only masked.
            println!("{key} = {}", shop.config_get(&key)?);
        }
    }
    Ok(())
}

/// The first line of standard input, without its line ending.
fn read_value_from_stdin() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| usage(format!("could not read the value from standard input: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn parse_line(text: &str) -> Result<LineRequest, Failure> {
    let (sku, qty) = text
        .rsplit_once(':')
        .ok_or_else(|| usage(format!("--line \"{text}\" must be SKU:QUANTITY")))?;
    let quantity = qty.trim().parse::<i64>().map_err(|_| {
        usage(format!(
            "--line \"{text}\": \"{qty}\" is not a whole number"
        ))
    })?;
    Ok(LineRequest {
        sku: sku.to_string(),
        quantity,
    })
}

fn parse_payment(text: &str) -> Result<Payment, Failure> {
    match text.split_once(':') {
        Some(("cash", cents)) => cents
            .trim()
            .parse::<i64>()
            .map(|tendered_cents| Payment::Cash { tendered_cents })
            .map_err(|_| {
                usage(format!(
                    "--pay cash:CENTS: \"{cents}\" is not a whole number of cents"
                ))
            }),
        Some(("card", reference)) => Ok(Payment::Card {
            reference: reference.to_string(),
        }),
        _ => Err(usage(format!(
            "--pay \"{text}\" must be cash:CENTS or card:REFERENCE"
        ))),
    }
}

fn place(shop: &Shop, args: PlaceArgs) -> Result<(), Failure> {
    let lines = args
        .lines
        .iter()
        .map(|l| parse_line(l))
        .collect::<Result<Vec<_>, _>>()?;
    let request = OrderRequest {
        idempotency_key: args.key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        customer_name: args.customer_name,
        customer_email: args.customer_email,
        lines,
        payment: parse_payment(&args.pay)?,
    };
    let placed = shop.place_order(&request)?;
    if args.json {
        print_json(&placed);
    } else {
        let currency = shop.setting("currency")?;
        print!(
            "{} total {}",
            placed.receipt_number,
            shopdesk_core::money::format(placed.total_cents, &currency)
        );
        if let Some(change) = placed.change_due_cents {
            print!(
                " · change {}",
                shopdesk_core::money::format(change, &currency)
            );
        }
        println!(
            "{}",
            if placed.duplicate {
                " (already placed)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_payments_parse() {
        let l = parse_line("tee-small:3").unwrap();
        assert_eq!((l.sku.as_str(), l.quantity), ("tee-small", 3));
        let l = parse_line("odd:sku:2").unwrap();
        assert_eq!(l.sku, "odd:sku");
        assert!(parse_line("tee").is_err());
        assert!(parse_line("tee:many").is_err());
        assert_eq!(
            parse_payment("cash:5000").ok(),
            Some(Payment::Cash {
                tendered_cents: 5000
            })
        );
        assert_eq!(
            parse_payment("card:AUTH-1").ok(),
            Some(Payment::Card {
                reference: "AUTH-1".into()
            })
        );
        assert!(parse_payment("cash:12.50").is_err());
        assert!(parse_payment("cheque:1").is_err());
    }

    fn jobs(args: &[&str]) -> JobsAction {
        let cli = Cli::try_parse_from(["shopdesk", "jobs"].iter().chain(args)).unwrap();
        match cli.command {
            Some(Command::Jobs { action }) => action,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn monitor_actions_parse() {
        assert!(matches!(
            jobs(&["retry", "01ABC"]),
            JobsAction::Retry { id, json: false } if id == "01ABC"
        ));
        assert!(matches!(
            jobs(&["cancel", "01ABC", "--json"]),
            JobsAction::Cancel { id, json: true } if id == "01ABC"
        ));
        assert!(matches!(
            jobs(&["pause"]),
            JobsAction::Pause { queue: None, .. }
        ));
        assert!(matches!(
            jobs(&["resume", "email"]),
            JobsAction::Resume { queue: Some(q), .. } if q == "email"
        ));
        assert!(matches!(
            jobs(&["purge-dead"]),
            JobsAction::PurgeDead {
                older_than: None,
                json: false
            }
        ));
        assert!(matches!(
            jobs(&["purge-dead", "--older-than", "14", "--json"]),
            JobsAction::PurgeDead {
                older_than: Some(14),
                json: true
            }
        ));
        for bad in [
            &["retry"][..],
            &["purge-dead", "--older-than", "-1"],
            &["purge-dead", "--older-than", "week"],
            &["pause", "email", "notify"],
        ] {
            let args = ["shopdesk", "jobs"].iter().chain(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
