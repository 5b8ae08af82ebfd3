//! A mail sink for tests: a real HTTP server on loopback that answers like
//! the email provider (Resend's `POST /emails`), records every request, and
//! can be told to misbehave.
//!
//! Plain `std::net` and one thread per connection: the tests need to control
//! the socket itself (answer nothing and hang, close without answering, stop
//! listening so connections are refused), which is simplest without an HTTP
//! framework in between, and it keeps the sink independent of the async
//! runtime of the code under test.
//!
//! Every answer carries `Connection: close`, so a client never reuses a
//! connection across a change of behaviour (or across the sink going down).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the sink answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// 200 with `{"id": ...}`; the same id for a repeated `Idempotency-Key`.
    Accept,
    /// 500 Internal Server Error.
    ServerError,
    /// 429 Too Many Requests with `Retry-After: N` (seconds).
    TooManyRequests { retry_after_secs: u64 },
    /// Read the request, then answer nothing for this long (or until the
    /// sink is dropped), then close the connection.
    Hang(Duration),
    /// Read the request, then close the connection without answering.
    Close,
}

/// What the sink did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with this status (and, for 2xx, this id).
    Answered { status: u16, id: Option<String> },
    /// No answer (hung or closed).
    NoAnswer,
}

/// One request as the sink received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// When the request was fully read.
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub outcome: Outcome,
    /// When the answer was written (None when there was none, or not yet).
    pub answered_at: Option<Instant>,
}

impl Request {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The recipients in the body's `to` (a string or a list of strings).
    pub fn recipients(&self) -> Vec<String> {
        match self.json().get("to") {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    }

    /// Answered with a 2xx status.
    pub fn accepted(&self) -> bool {
        matches!(self.outcome, Outcome::Answered { status, .. } if (200..300).contains(&status))
    }

    pub fn status(&self) -> Option<u16> {
        match self.outcome {
            Outcome::Answered { status, .. } => Some(status),
            Outcome::NoAnswer => None,
        }
    }
}

#[derive(Default)]
struct State {
    /// Used once the script is empty.
    default: Option<Behavior>,
    /// Behaviours for the next requests, in order.
    script: VecDeque<Behavior>,
    /// Accepted requests wait this long before their answer.
    delay: Duration,
    /// Recipients answered with 422 "invalid recipient".
    rejected: HashSet<String>,
    requests: Vec<Request>,
    /// Requests read so far, answered or not (a request is recorded in
    /// `requests` only once it is answered or given up on).
    arrived: usize,
    /// The id given to each idempotency key.
    ids: HashMap<String, String>,
    next_id: u64,
    /// Set when the sink is dropped: hanging connections give up.
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Notified on every recorded request and when the sink closes.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The accept loop of a listening sink.
struct Listening {
    stop: Arc<Mutex<bool>>,
    thread: JoinHandle<()>,
}

/// A running mail sink. Dropping it stops listening and ends hanging
/// connections.
pub struct MailSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listening: Mutex<Option<Listening>>,
}

impl MailSink {
    /// Starts a sink on 127.0.0.1 (a free port), accepting every request.
    pub fn start() -> MailSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mail sink on loopback");
        let addr = listener.local_addr().expect("the sink's address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                default: Some(Behavior::Accept),
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let sink = MailSink {
            addr,
            shared,
            listening: Mutex::new(None),
        };
        sink.listen_on(listener);
        sink
    }

    /// `http://127.0.0.1:PORT`: the provider's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How requests are answered from now on (after any scripted ones).
    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.lock().default = Some(behavior);
    }

    /// Answers the next request this way, then goes back to the usual
    /// behaviour. Calls queue up in order.
    pub fn script(&self, behavior: Behavior) {
        self.shared.lock().script.push_back(behavior);
    }

    /// Accepted requests are answered after this delay.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// Requests to this recipient are answered 422 "invalid recipient".
    pub fn reject_recipient(&self, address: &str) {
        self.shared
            .lock()
            .rejected
            .insert(address.to_ascii_lowercase());
    }

    /// Stops rejecting every recipient.
    pub fn accept_all_recipients(&self) {
        self.shared.lock().rejected.clear();
    }

    /// Stops listening: new connections are refused (requests already read
    /// are still answered).
    pub fn down(&self) {
        let Some(listening) = self.listening_slot().take() else {
            return;
        };
        *listening.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        // Wake the blocking accept; it sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let _ = listening.thread.join();
    }

    /// Listens again on the same port.
    pub fn up(&self) {
        if self.listening_slot().is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("the mail sink cannot listen on {} again: {e}", self.addr),
            }
        };
        self.listen_on(listener);
    }

    pub fn is_up(&self) -> bool {
        self.listening_slot().is_some()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Requests read so far, including those still waiting for an answer.
    pub fn arrived(&self) -> usize {
        self.shared.lock().arrived
    }

    /// Waits until at least `n` requests have arrived (answered or not).
    pub fn wait_arrived(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.arrived < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// How many requests with each idempotency key were accepted (2xx).
    pub fn accepted_keys(&self) -> HashMap<String, usize> {
        let mut keys = HashMap::new();
        for r in self.shared.lock().requests.iter().filter(|r| r.accepted()) {
            if let Some(k) = r.idempotency_key() {
                *keys.entry(k.to_string()).or_insert(0) += 1;
            }
        }
        keys
    }

    /// Waits until `done` holds for the recorded requests, or `timeout`
    /// passes. Returns whether it held.
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&[Request]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if done(&state.requests) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn listening_slot(&self) -> MutexGuard<'_, Option<Listening>> {
        self.listening.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn listen_on(&self, listener: TcpListener) {
        let stop = Arc::new(Mutex::new(false));
        let shared = self.shared.clone();
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mail-sink-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if *stop_flag.lock().unwrap_or_else(|p| p.into_inner()) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = shared.clone();
                    let _ = std::thread::Builder::new()
                        .name("mail-sink-conn".into())
                        .spawn(move || serve(&shared, stream));
                }
            })
            .expect("start the mail sink thread");
        *self.listening_slot() = Some(Listening { stop, thread });
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        self.down();
    }
}

/// A request as read from the socket, before it is answered.
struct Incoming {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Option<Incoming> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().ok()?;
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(Incoming {
        method,
        path,
        headers,
        body,
    })
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    extra: &[(&str, String)],
    body: &str,
) {
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

fn serve(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(incoming) = read_request(&stream) else {
        return; // the wake-up connection of `down`, or a client that gave up
    };
    let at = Instant::now();
    let mut request = Request {
        at,
        method: incoming.method,
        path: incoming.path,
        headers: incoming.headers,
        body: incoming.body,
        outcome: Outcome::NoAnswer,
        answered_at: None,
    };
    shared.lock().arrived += 1;
    shared.changed.notify_all();

    // Decide under the lock, answer outside it.
    let (behavior, delay) = {
        let mut state = shared.lock();
        let behavior = state
            .script
            .pop_front()
            .or_else(|| state.default.clone())
            .unwrap_or(Behavior::Accept);
        (behavior, state.delay)
    };
    let rejected = {
        let state = shared.lock();
        request
            .recipients()
            .iter()
            .any(|r| state.rejected.contains(&r.to_ascii_lowercase()))
    };
    let not_emails = request.method != "POST" || request.path.trim_end_matches('/') != "/emails";

    enum Answer {
        Status(u16, &'static str, Vec<(&'static str, String)>, String),
        Ok,
        Hang(Duration),
        Close,
    }
    let answer = if not_emails {
        Answer::Status(
            404,
            "Not Found",
            vec![],
            r#"{"statusCode":404,"name":"not_found","message":"no such route"}"#.into(),
        )
    } else {
        match behavior {
            Behavior::Accept if rejected => Answer::Status(
                422,
                "Unprocessable Entity",
                vec![],
                r#"{"statusCode":422,"name":"validation_error","message":"invalid recipient"}"#
                    .into(),
            ),
            Behavior::Accept => Answer::Ok,
            Behavior::ServerError => Answer::Status(
                500,
                "Internal Server Error",
                vec![],
                r#"{"statusCode":500,"name":"internal_server_error","message":"try again"}"#.into(),
            ),
            Behavior::TooManyRequests { retry_after_secs } => Answer::Status(
                429,
                "Too Many Requests",
                vec![("Retry-After", retry_after_secs.to_string())],
                r#"{"statusCode":429,"name":"rate_limit_exceeded","message":"slow down"}"#.into(),
            ),
            Behavior::Hang(d) => Answer::Hang(d),
            Behavior::Close => Answer::Close,
        }
    };

    // A request is recorded before its answer is written, so that whoever
    // acts on the answer (a job marked done) finds it recorded; the time of
    // the answer is filled in once written.
    let record = |request: Request| -> usize {
        let mut state = shared.lock();
        state.requests.push(request);
        shared.changed.notify_all();
        state.requests.len() - 1
    };
    let answered = |index: usize| {
        shared.lock().requests[index].answered_at = Some(Instant::now());
        shared.changed.notify_all();
    };

    match answer {
        Answer::Status(status, reason, extra, body) => {
            request.outcome = Outcome::Answered { status, id: None };
            let index = record(request);
            respond(&mut stream, status, reason, &extra, &body);
            answered(index);
        }
        Answer::Ok => {
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            let id = {
                let mut state = shared.lock();
                state.next_id += 1;
                let fresh = format!("sink-{:06}", state.next_id);
                match request.idempotency_key() {
                    Some(key) => state.ids.entry(key.to_string()).or_insert(fresh).clone(),
                    None => fresh,
                }
            };
            let body = serde_json::json!({ "id": id }).to_string();
            request.outcome = Outcome::Answered {
                status: 200,
                id: Some(id),
            };
            let index = record(request);
            respond(&mut stream, 200, "OK", &[], &body);
            answered(index);
        }
        Answer::Hang(d) => {
            let _ = record(request);
            let deadline = Instant::now() + d;
            let mut state = shared.lock();
            while !state.closing && Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                state = shared
                    .changed
                    .wait_timeout(state, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            drop(state);
            let _ = stream.shutdown(Shutdown::Both);
        }
        Answer::Close => {
            let _ = record(request);
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one `POST /emails`; returns the raw answer ("" when none).
    fn post(sink: &MailSink, key: &str, to: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(sink.addr())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let body = serde_json::json!({"from": "shop@example.com", "to": [to], "subject": "Hi",
                                      "html": "<p>Hi</p>", "text": "Hi"})
        .to_string();
        write!(
            s,
            "POST /emails HTTP/1.1\r\nHost: x\r\nIdempotency-Key: {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    }

    fn id_of(answer: &str) -> String {
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_repeated_key_gets_the_same_id() {
        let sink = MailSink::start();
        let a1 = post(&sink, "k/1", "a@example.com").unwrap();
        let a2 = post(&sink, "k/1", "a@example.com").unwrap();
        let b = post(&sink, "k/2", "b@example.com").unwrap();
        assert!(a1.starts_with("HTTP/1.1 200"), "{a1}");
        assert_eq!(id_of(&a1), id_of(&a2));
        assert_ne!(id_of(&a1), id_of(&b));
        let keys = sink.accepted_keys();
        assert_eq!((keys["k/1"], keys["k/2"]), (2, 1));
        let r = &sink.requests()[0];
        assert_eq!(r.recipients(), ["a@example.com"]);
        assert_eq!(r.json()["subject"], "Hi");
    }

    #[test]
    fn scripted_failures_then_back_to_accepting() {
        let sink = MailSink::start();
        sink.script(Behavior::TooManyRequests {
            retry_after_secs: 2,
        });
        sink.script(Behavior::ServerError);
        sink.script(Behavior::Close);
        let r = post(&sink, "k", "a@example.com").unwrap();
        assert!(r.starts_with("HTTP/1.1 429"), "{r}");
        assert!(r.contains("Retry-After: 2\r\n"), "{r}");
        assert!(post(&sink, "k", "a@example.com")
            .unwrap()
            .starts_with("HTTP/1.1 500"));
        assert_eq!(post(&sink, "k", "a@example.com").unwrap_or_default(), "");
        assert!(post(&sink, "k", "a@example.com")
            .unwrap()
            .starts_with("HTTP/1.1 200"));
        let statuses: Vec<_> = sink.requests().iter().map(Request::status).collect();
        assert_eq!(statuses, [Some(429), Some(500), None, Some(200)]);
    }

    #[test]
    fn a_rejected_recipient_gets_422_until_forgiven() {
        let sink = MailSink::start();
        sink.reject_recipient("Bad@Example.com");
        let r = post(&sink, "k", "bad@example.com").unwrap();
        assert!(r.starts_with("HTTP/1.1 422"), "{r}");
        assert!(r.contains("invalid recipient"), "{r}");
        assert!(post(&sink, "k2", "good@example.com")
            .unwrap()
            .starts_with("HTTP/1.1 200"));
        sink.accept_all_recipients();
        assert!(post(&sink, "k", "bad@example.com")
            .unwrap()
            .starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn down_refuses_connections_and_up_listens_on_the_same_port() {
        let sink = MailSink::start();
        sink.down();
        let e = TcpStream::connect(sink.addr()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        sink.up();
        assert!(post(&sink, "k", "a@example.com")
            .unwrap()
            .starts_with("HTTP/1.1 200"));
        assert_eq!(
            sink.request_count(),
            1,
            "the wake-up connection is not a request"
        );
    }

    #[test]
    fn a_hanging_answer_ends_when_the_sink_is_dropped() {
        let sink = MailSink::start();
        sink.set_behavior(Behavior::Hang(Duration::from_secs(60)));
        let addr = sink.addr();
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"POST /emails HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
                .unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            answer
        });
        assert!(sink.wait_for(Duration::from_secs(5), |r| r.len() == 1));
        let started = Instant::now();
        drop(sink);
        assert_eq!(client.join().unwrap(), "");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
