//! Sending email through an HTTP API shaped like Resend's:
//! `POST {base}/emails` with `Authorization: Bearer KEY` and the message as
//! JSON (`from`, `to`, `subject`, `html`, `text`), answered by `{"id": ...}`.
//!
//! Every request carries an `Idempotency-Key` (the job's own key, e.g.
//! `order-confirmation/<order id>`), the same on every retry, so a retry
//! after a lost answer cannot send the email twice.
//!
//! Every outcome becomes a [`JobError`] the queue knows how to treat:
//! unreachable (connection refused, DNS failure, connect timeout) →
//! [`JobError::Unavailable`]; 429/503 with `Retry-After` →
//! [`JobError::RetryAfter`]; other 429, 408, 409, 5xx, timeouts, broken
//! connections and failed TLS handshakes → [`JobError::Retryable`]; other 4xx →
//! [`JobError::Permanent`] with the provider's own words.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Serialize;

use crate::queue::JobError;

/// Resend's API.
pub const DEFAULT_BASE_URL: &str = "https://api.resend.com";

/// How long connecting may take, and then the whole request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A message to send.
#[derive(Debug, Clone, Serialize)]
pub struct OutgoingEmail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// A client for one provider account.
#[derive(Clone)]
pub struct EmailApi {
    client: reqwest::Client,
    base_url: String,
    api_key: String,
}

impl std::fmt::Debug for EmailApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailApi")
            .field("base_url", &self.base_url)
            .field("api_key", &crate::secrets::mask(&self.api_key))
            .finish()
    }
}

/// One HTTP client per process: it keeps connections to the provider open.
fn shared_client() -> Result<reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // reqwest is built without a default TLS provider (no aws-lc
            // build): use ring's, unless the process already chose one.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .user_agent(concat!("ShopDesk/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot set up the HTTP client: {e}"))
        })
        .clone()
}

/// `"Shop name" <address>`, with the name quoted.
pub fn from_address(name: &str, email: &str) -> String {
    let name = name.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{name}\" <{email}>")
}

impl EmailApi {
    pub fn new(base_url: &str, api_key: &str) -> Result<EmailApi, JobError> {
        let client = shared_client().map_err(JobError::Retryable)?;
        Ok(EmailApi {
            client,
            base_url: base_url.trim().trim_end_matches('/').to_string(),
            api_key: api_key.trim().to_string(),
        })
    }

    /// Sends `email`; returns the provider's id for it.
    pub async fn send(
        &self,
        email: &OutgoingEmail,
        idempotency_key: &str,
    ) -> Result<String, JobError> {
        for to in &email.to {
            if !crate::checkout::is_email(to) {
                return Err(JobError::Permanent(format!(
                    "invalid recipient address \"{to}\""
                )));
            }
        }
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.api_key))
            .map_err(|_| JobError::Permanent("the email API key has invalid characters".into()))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            "Idempotency-Key",
            HeaderValue::from_str(idempotency_key).map_err(|_| {
                JobError::Permanent(format!("bad idempotency key \"{idempotency_key}\""))
            })?,
        );
        let url = format!("{}/emails", self.base_url);
        let response = self
            .client
            .post(&url)
            .headers(headers)
            .json(email)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            let id = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
                .unwrap_or_default();
            if id.is_empty() {
                // Whatever answered is not the email API (a wrong URL, a
                // proxy's or captive portal's page): the email is not known
                // to be sent. Tried again later under the same key, which a
                // real provider answers without sending twice.
                return Err(JobError::Retryable(format!(
                    "{} answered {status} without an email id: is email_api_url the provider's API?",
                    self.base_url
                )));
            }
            return Ok(id);
        }
        Err(classify_status(status, retry_after, &body))
    }
}

/// A failure before any answer: unreachable, or cut off.
fn classify_transport(e: &reqwest::Error) -> JobError {
    let detail = error_chain(e);
    if is_tls_failure(e) {
        // Something answered, but not as the provider (a wrong URL, an
        // expired or intercepted certificate): not a network outage, so the
        // attempt counts and the job does not wait forever.
        JobError::Retryable(format!(
            "the secure connection to the email provider failed (check the provider URL): \
             {detail}"
        ))
    } else if e.is_connect() {
        // Refused, no route, DNS failure or connect timeout: nothing reached
        // the provider.
        JobError::Unavailable(format!("cannot reach the email provider: {detail}"))
    } else if e.is_timeout() {
        JobError::Retryable(format!(
            "the email provider did not answer in time: {detail}"
        ))
    } else {
        JobError::Retryable(format!("the email request failed: {detail}"))
    }
}

/// Whether a TLS error (rustls's own) is among the causes of `e`. I/O
/// errors are looked into as well: they hide the error they wrap from
/// `source()`, and the TLS stream wraps its errors in one or two of them.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_tls_failure(inner) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// The error and its causes on one line (reqwest's own message is terse).
/// Errors carry the URL, never the headers, so no key can leak here.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// What the provider said, in its own words when it gave some.
fn provider_message(status: StatusCode, body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["message", "error"].iter().find_map(|k| match v.get(*k) {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                    Some(s.trim().to_string())
                }
                Some(serde_json::Value::Object(o)) => o
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string),
                _ => None,
            })
        });
    let Some(message) = from_json else {
        return status
            .canonical_reason()
            .unwrap_or("unexpected answer")
            .to_lowercase();
    };
    // A provider's message is one sentence; keep a misbehaving one short.
    let message: String = message.chars().take(300).collect();
    // It follows "rejected by provider: ", so "Invalid recipient" reads
    // "invalid recipient"; an acronym ("API key is invalid") stays as is.
    let mut chars = message.chars();
    let Some(first) = chars.next() else {
        return message;
    };
    if chars.clone().next().is_some_and(char::is_uppercase) {
        return message;
    }
    first.to_lowercase().chain(chars).collect()
}

/// The machine-readable error name of a provider's JSON answer
/// (`{"name": "validation_error", ...}`), if it has one.
fn error_name(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("name")?.as_str().map(str::to_string)
}

/// A non-success answer.
pub fn classify_status(status: StatusCode, retry_after: Option<Duration>, body: &str) -> JobError {
    let message = provider_message(status, body);
    let code = status.as_u16();
    let reason = format!("{message} ({code})");
    match (status, retry_after) {
        (StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE, Some(delay)) => {
            JobError::RetryAfter {
                delay,
                reason: format!("the email provider asked to wait: {reason}"),
            }
        }
        (StatusCode::TOO_MANY_REQUESTS, None) => {
            JobError::Retryable(format!("the email provider is busy: {reason}"))
        }
        // The same idempotency key with another payload (the email changed
        // since the first attempt, e.g. a new shop name): the provider will
        // refuse it under this key every time.
        (StatusCode::CONFLICT, _)
            if error_name(body).as_deref() == Some("invalid_idempotent_request") =>
        {
            JobError::Permanent(format!(
                "rejected by provider: this email was first sent with other content \
                 under the same key ({message}, {code})"
            ))
        }
        // Request timeout; the same idempotency key still being processed.
        (StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT, _) => {
            JobError::Retryable(format!("the email provider asked to try again: {reason}"))
        }
        (s, _) if s.is_server_error() => {
            JobError::Retryable(format!("the email provider failed: {reason}"))
        }
        _ => JobError::Permanent(format!("rejected by provider: {reason}")),
    }
}

/// `Retry-After` as a wait from `now`: whole seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn answers_are_classified() {
        let body = r#"{"statusCode":422,"name":"validation_error","message":"Invalid recipient"}"#;
        assert_eq!(
            classify_status(StatusCode::UNPROCESSABLE_ENTITY, None, body),
            JobError::Permanent("rejected by provider: invalid recipient (422)".into())
        );
        let body = r#"{"statusCode":401,"name":"validation_error","message":"API key is invalid"}"#;
        assert_eq!(
            classify_status(StatusCode::UNAUTHORIZED, None, body),
            JobError::Permanent("rejected by provider: API key is invalid (401)".into())
        );
        assert_eq!(
            classify_status(StatusCode::UNAUTHORIZED, None, ""),
            JobError::Permanent("rejected by provider: unauthorized (401)".into())
        );
        assert!(matches!(
            classify_status(StatusCode::INTERNAL_SERVER_ERROR, None, "oops"),
            JobError::Retryable(_)
        ));
        assert!(matches!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, None, ""),
            JobError::Retryable(_)
        ));
        assert_eq!(
            classify_status(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(Duration::from_secs(5)),
                ""
            ),
            JobError::RetryAfter {
                delay: Duration::from_secs(5),
                reason: "the email provider asked to wait: service unavailable (503)".into()
            }
        );
    }

    #[test]
    fn a_conflict_is_permanent_only_when_the_key_was_used_for_other_content() {
        let reused = r#"{"statusCode":409,"name":"invalid_idempotent_request","message":"Same idempotency key used with a different request payload"}"#;
        assert!(matches!(
            classify_status(StatusCode::CONFLICT, None, reused),
            JobError::Permanent(reason) if reason.contains("other content")
        ));
        let in_flight = r#"{"statusCode":409,"name":"concurrent_idempotent_requests","message":"Same idempotency key used while original request is still in progress"}"#;
        assert!(matches!(
            classify_status(StatusCode::CONFLICT, None, in_flight),
            JobError::Retryable(_)
        ));
        assert!(matches!(
            classify_status(StatusCode::CONFLICT, None, "not json"),
            JobError::Retryable(_)
        ));
    }

    #[test]
    fn the_from_address_quotes_the_name() {
        assert_eq!(
            from_address("Corner \"Shop\"", "orders@corner.example"),
            "\"Corner \\\"Shop\\\"\" <orders@corner.example>"
        );
    }
}
