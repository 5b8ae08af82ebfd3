//! The HTTP email provider against a real HTTP server on loopback: what it
//! sends, how each answer is classified, and what the queue then does with
//! the order's email job.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use shopdesk_core::checkout::{LineRequest, OrderRequest, Payment};
use shopdesk_core::email_api::{EmailApi, OutgoingEmail};
use shopdesk_core::queue::{self, Backoff, JobError, JobStatus};
use shopdesk_core::{jobs, secrets, worker, Shop};

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// What the server answers: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

/// A tiny HTTP/1.1 server: answers each request with the next scripted
/// answer (then `200 {"id": "em_<n>"}`), one request per connection.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (s, q) = (seen.clone(), script.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (s, q) = (s.clone(), q.clone());
                std::thread::spawn(move || serve(stream, &s, &q));
            }
        });
        Server { addr, seen, script }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn then(&self, status: u16, headers: Vec<(&'static str, String)>, body: &str) {
        self.script
            .lock()
            .unwrap()
            .push_back((status, headers, body.to_string()));
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>, script: &Mutex<VecDeque<Answer>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap();
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            method,
            path,
            headers,
            body,
        });
        seen.len()
    };
    let (status, extra, body) = script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| (200, vec![], format!("{{\"id\":\"em_{n}\"}}")));
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
}

/// A loopback address where nothing listens.
fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A loopback server that answers whatever it is sent (a TLS handshake
/// too) with a plain HTTP 400, as a web server on the wrong port would.
fn plain_http_server_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    format!("http://{addr}")
}

fn email() -> OutgoingEmail {
    OutgoingEmail {
        from: "\"Corner Shop\" <orders@corner.example>".into(),
        to: vec!["jane@example.com".into()],
        subject: "Your receipt R-000001".into(),
        html: "<p>Thanks</p>".into(),
        text: "Thanks".into(),
    }
}

const KEY: &str = "re_test_9f8e7d6c5b4a1b2";

#[tokio::test]
async fn a_send_carries_the_key_the_idempotency_key_and_the_message() {
    let server = Server::start();
    let api = EmailApi::new(&format!("{}/", server.url()), KEY).unwrap();
    let id = api.send(&email(), "order-confirmation/o-1").await.unwrap();
    assert_eq!(id, "em_1");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/emails"));
    assert_eq!(r.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(r.headers["idempotency-key"], "order-confirmation/o-1");
    assert!(r.headers["content-type"].starts_with("application/json"));
    assert_eq!(
        r.json(),
        json!({
            "from": "\"Corner Shop\" <orders@corner.example>",
            "to": ["jane@example.com"],
            "subject": "Your receipt R-000001",
            "html": "<p>Thanks</p>",
            "text": "Thanks",
        })
    );
}

#[tokio::test]
async fn answers_become_the_right_job_errors() {
    let server = Server::start();
    let api = EmailApi::new(&server.url(), KEY).unwrap();
    server.then(500, vec![], "{\"message\":\"internal error\"}");
    assert!(matches!(
        api.send(&email(), "k").await,
        Err(JobError::Retryable(_))
    ));
    server.then(
        422,
        vec![],
        r#"{"statusCode":422,"name":"validation_error","message":"Invalid recipient"}"#,
    );
    assert_eq!(
        api.send(&email(), "k").await,
        Err(JobError::Permanent(
            "rejected by provider: invalid recipient (422)".into()
        ))
    );
    server.then(429, vec![("retry-after", "2".into())], "{}");
    match api.send(&email(), "k").await {
        Err(JobError::RetryAfter { delay, .. }) => assert_eq!(delay, Duration::from_secs(2)),
        other => panic!("{other:?}"),
    }
    // A success without an email id is not the provider: not sent.
    for body in ["{}", "<html>ok</html>"] {
        server.then(200, vec![], body);
        match api.send(&email(), "k").await {
            Err(JobError::Retryable(reason)) => {
                assert!(reason.contains("without an email id"), "{reason}")
            }
            other => panic!("{body}: {other:?}"),
        }
    }
    // The same idempotency key on every try.
    assert!(server
        .seen()
        .iter()
        .all(|r| r.headers["idempotency-key"] == "k"));

    let down = EmailApi::new(&closed_port_url(), KEY).unwrap();
    assert!(matches!(
        down.send(&email(), "k").await,
        Err(JobError::Unavailable(_))
    ));

    // Something answers, but not over TLS (a wrong provider URL): not an
    // outage, so it is a counted failure that says what went wrong.
    let not_tls =
        EmailApi::new(&plain_http_server_url().replace("http://", "https://"), KEY).unwrap();
    match not_tls.send(&email(), "k").await {
        Err(JobError::Retryable(reason)) => {
            assert!(reason.contains("secure connection"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // An address the provider would refuse is not even sent.
    let mut bad = email();
    bad.to = vec!["not-an-address".into()];
    assert!(matches!(
        api.send(&bad, "k").await,
        Err(JobError::Permanent(_))
    ));
}

/// A shop with one product, its email going to `url`.
fn shop(url: &str) -> (tempfile::TempDir, Shop) {
    // Never touch a developer's real keyring from a test.
    std::env::set_var(secrets::SECRET_STORE_ENV, "file");
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::open(dir.path()).unwrap();
    shop.import_products_csv_str(
        "t.csv",
        "Handle,Title,Option1 Name,Option1 Value,Variant SKU,Variant Inventory Qty,Variant Price\n\
         mug,Mug,Title,Default Title,mug,100,12.50\n",
    )
    .unwrap();
    // The HTTP provider is chosen once it can send: a from-address of the
    // shop's own and a key.
    let err = shop.config_set("email_provider", "resend").unwrap_err();
    assert_eq!(err.field(), Some("shop_email"), "{err}");
    shop.config_set("shop_email", "orders@corner.example")
        .unwrap();
    let err = shop.config_set("email_provider", "resend").unwrap_err();
    assert_eq!(err.field(), Some("email_api_key"), "{err}");
    shop.config_set("email_api_url", url).unwrap();
    shop.config_set("email_api_key", KEY).unwrap();
    shop.config_set("email_provider", "resend").unwrap();
    (dir, shop)
}

fn place(shop: &Shop, key: &str) -> String {
    shop.place_order(&OrderRequest {
        idempotency_key: key.into(),
        customer_name: Some("Jane".into()),
        customer_email: Some("jane@example.com".into()),
        lines: vec![LineRequest {
            sku: "mug".into(),
            quantity: 1,
        }],
        payment: Payment::Card {
            reference: "AUTH-1".into(),
        },
    })
    .unwrap()
    .order_id
}

fn email_job(shop: &Shop, order_id: &str) -> queue::JobInfo {
    let key = format!("{}{order_id}", jobs::ORDER_CONFIRMATION_KEY_PREFIX);
    shop.list_jobs(None, 100)
        .unwrap()
        .into_iter()
        .find(|j| j.idempotency_key.as_deref() == Some(key.as_str()))
        .unwrap()
}

fn run_at_ms(shop: &Shop, id: &str) -> i64 {
    let conn = rusqlite::Connection::open(shop.data().database()).unwrap();
    conn.query_row("SELECT run_at_ms FROM Jobs WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

async fn drain(shop: &Shop) {
    let mut config = shop.worker_config();
    config.poll_interval = Duration::from_millis(20);
    config.backoff = Backoff {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(50),
    };
    config.prune_every = None;
    worker::run_until_idle(config, shop.job_handler())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_email_goes_out_once_with_its_order_key() {
    let server = Server::start();
    let (_dir, shop) = shop(&server.url());
    // A server error first: retried with the same key.
    server.then(503, vec![], "");
    let order = place(&shop, "o-1");
    drain(&shop).await;
    assert_eq!(email_job(&shop, &order).status, JobStatus::Failed);
    tokio::time::sleep(Duration::from_millis(60)).await;
    drain(&shop).await;
    let job = email_job(&shop, &order);
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert_eq!(job.attempts, 2);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(
            r.headers["idempotency-key"],
            format!("order-confirmation/{order}")
        );
        assert_eq!(r.headers["authorization"], format!("Bearer {KEY}"));
        assert_eq!(r.json()["to"], json!(["jane@example.com"]));
        assert!(r.json()["from"]
            .as_str()
            .unwrap()
            .ends_with("<orders@corner.example>"));
    }
    // Nothing went to the outbox.
    assert!(!shop.data().outbox().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_holds_the_next_attempt_back() {
    let server = Server::start();
    let (_dir, shop) = shop(&server.url());
    server.then(429, vec![("retry-after", "2".into())], "{}");
    let order = place(&shop, "o-1");
    let before = queue::now_ms();
    drain(&shop).await;
    let job = email_job(&shop, &order);
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 1));
    assert!(run_at_ms(&shop, &job.id) >= before + 2000);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_email_is_dead_with_the_reason_on_its_order() {
    let server = Server::start();
    let (_dir, shop) = shop(&server.url());
    server.then(
        422,
        vec![],
        r#"{"statusCode":422,"name":"validation_error","message":"Invalid recipient"}"#,
    );
    let order = place(&shop, "o-1");
    drain(&shop).await;
    let job = email_job(&shop, &order);
    assert_eq!((job.status, job.attempts), (JobStatus::Killed, 1));
    let reason = "rejected by provider: invalid recipient (422)";
    assert_eq!(job.last_error.as_deref(), Some(reason));
    let listed = shop.list_orders(10).unwrap();
    assert_eq!(listed[0].order_id, order);
    assert_eq!(listed[0].email_error.as_deref(), Some(reason));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_provider_is_unreachable_no_attempt_is_used_up() {
    let url = closed_port_url();
    let (_dir, shop) = shop(&url);
    let order = place(&shop, "o-1");
    for _ in 0..3 {
        drain(&shop).await;
        let job = email_job(&shop, &order);
        assert_eq!((job.status, job.attempts), (JobStatus::Failed, 0));
        assert!(job
            .last_error
            .unwrap()
            .starts_with("waiting for the network"));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // The provider comes back: delivered at the next try.
    let server = Server::start();
    shop.config_set("email_api_url", &server.url()).unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    drain(&shop).await;
    let job = email_job(&shop, &order);
    assert_eq!((job.status, job.attempts), (JobStatus::Done, 1));
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn without_a_keyring_the_key_is_kept_in_a_private_file_and_shown_masked() {
    let (dir, shop) = shop("http://127.0.0.1:9");
    let path = dir.path().join("secrets").join("email_api_key");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), KEY);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(shop.config_get("email_api_key").unwrap(), "re_…a1b2");
    let all = shop.config_list().unwrap();
    assert!(all
        .iter()
        .any(|(k, v)| k == "email_api_key" && v == "re_…a1b2"));
    assert!(all.iter().all(|(_, v)| !v.contains("9f8e7d")));
    // Nothing of the key in the database either.
    let db = std::fs::read(shop.data().database()).unwrap();
    assert!(!db.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
    let form = shop.settings_form().unwrap();
    assert_eq!(form.email_api_key.as_deref(), Some("re_…a1b2"));
    // It cannot be removed, nor the from-address reset, while the HTTP
    // provider sends with it: every email would then fail.
    let err = shop.config_set("email_api_key", "").unwrap_err();
    assert_eq!(err.field(), Some("email_api_key"), "{err}");
    let err = shop
        .config_set("shop_email", "orders@shop.invalid")
        .unwrap_err();
    assert_eq!(err.field(), Some("shop_email"), "{err}");
    assert_eq!(shop.config_get("email_api_key").unwrap(), "re_…a1b2");
    // Back to the outbox, the key can go.
    shop.config_set("email_provider", "outbox").unwrap();
    shop.config_set("email_api_key", "").unwrap();
    assert_eq!(shop.config_get("email_api_key").unwrap(), "(not set)");
    assert!(!path.exists());
}

#[test]
fn settings_are_checked_per_field_and_a_blank_key_keeps_the_stored_one() {
    let (_dir, shop) = shop("http://127.0.0.1:9");
    let mut update = shopdesk_core::settings::SettingsUpdate {
        shop_name: "Corner Shop".into(),
        shop_email: "not an address".into(),
        email_provider: "resend".into(),
        email_api_url: "https://api.resend.com".into(),
        email_api_key: Some("  ".into()),
    };
    let err = shop.save_settings(&update).unwrap_err();
    assert_eq!(err.field(), Some("shop_email"));
    // Nothing was saved.
    assert_eq!(shop.config_get("shop_name").unwrap(), "My Shop");
    // The placeholder sender cannot send through a provider.
    update.shop_email = "orders@shop.invalid".into();
    let err = shop.save_settings(&update).unwrap_err();
    assert_eq!(err.field(), Some("shop_email"));
    assert!(err.to_string().contains("verified"), "{err}");
    update.shop_email = "orders@corner.example".into();
    let form = shop.save_settings(&update).unwrap();
    assert_eq!(form.shop_name, "Corner Shop");
    assert_eq!(form.email_api_key.as_deref(), Some("re_…a1b2"));
    update.email_provider = "pigeon".into();
    assert_eq!(
        shop.save_settings(&update).unwrap_err().field(),
        Some("email_provider")
    );
    update.email_provider = "outbox".into();
    update.email_api_key = Some("re_new_key_0000zz99".into());
    let form = shop.save_settings(&update).unwrap();
    assert_eq!(form.email_api_key.as_deref(), Some("re_…zz99"));
}
