//! Outbound HTTP: signed webhook POSTs with timeouts, no redirects, and a
//! resolver that refuses private and loopback addresses (unless the
//! operator allows them), so a host name that resolves to an internal
//! address cannot be used to reach inside the network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use muster_domain::notification::is_private;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;
use url::Url;

use crate::StartError;

/// The HTTP client every webhook call goes through.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
}

/// How one call went.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The response status, if one came.
    pub status: Option<u16>,
    /// From sending to the response head (or the failure).
    pub latency: Duration,
    /// Why it did not succeed (`None` on a 2xx).
    pub error: Option<String>,
}

impl CallOutcome {
    /// Whether the receiver answered 2xx.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

impl Outbound {
    /// A client with `timeout` on every call (connect included).
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, StartError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("muster/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| StartError::Http(e.to_string()))?;
        Ok(Self { client })
    }

    /// POSTs `body` (JSON) to `url` with `headers`, signed with `secret`
    /// twice: `X-Muster-Signature` (HMAC-SHA256 of the body) and the
    /// Standard Webhooks headers (`webhook-id` = `message_id`, the same on
    /// every retry; `webhook-timestamp`; `webhook-signature`), which
    /// receivers' libraries verify out of the box.
    pub async fn post_signed(
        &self,
        url: &Url,
        secret: &str,
        message_id: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> CallOutcome {
        let signature = format!("sha256={}", sign(secret, &body));
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .client
            .post(url.clone())
            .header("content-type", "application/json")
            .header("x-muster-signature", signature)
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(signature) = standard_signature(secret, message_id, timestamp, &body) {
            request = request.header("webhook-signature", signature);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let started = Instant::now();
        let result = request.body(body).send().await;
        let latency = started.elapsed();
        let outcome = match result {
            Ok(response) => {
                let status = response.status();
                CallOutcome {
                    status: Some(status.as_u16()),
                    latency,
                    error: (!status.is_success())
                        .then(|| format!("the receiver answered {status}")),
                }
            }
            Err(e) => CallOutcome {
                status: None,
                latency,
                error: Some(describe(&e)),
            },
        };
        metrics::histogram!("muster_outbound_call_seconds",
            "outcome" => if outcome.succeeded() { "ok" } else { "failed" })
        .record(latency.as_secs_f64());
        outcome
    }
}

/// What a conditional GET of a calendar document found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The document, and its ETag if the server gave one.
    Document {
        /// The body, as text.
        body: String,
        /// Its ETag.
        etag: Option<String>,
    },
    /// It has not changed since the ETag sent (304).
    NotModified,
}

/// The largest calendar document read (10 MiB).
pub const MAX_CALENDAR_BYTES: usize = 10 << 20;

impl Outbound {
    /// The client itself, for protocols built on it (CalDAV).
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// GETs the iCalendar document at `url` as `basic` (user, password),
    /// unless it still has `etag` (If-None-Match). The same rules as
    /// deliveries hold (private targets, timeouts, no redirects), and a
    /// document over [`MAX_CALENDAR_BYTES`] is refused. The error is fit
    /// to show: it never holds the URL's query or a credential.
    pub async fn get_calendar(
        &self,
        url: &Url,
        basic: Option<(&str, &str)>,
        etag: Option<&str>,
    ) -> Result<Fetched, String> {
        let mut request = self
            .client
            .get(url.clone())
            .header("accept", "text/calendar, */*;q=0.5");
        if let Some((user, password)) = basic {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        let started = Instant::now();
        let result = fetch_body(request).await;
        metrics::histogram!("muster_outbound_call_seconds",
            "outcome" => if result.is_ok() { "ok" } else { "failed" })
        .record(started.elapsed().as_secs_f64());
        result
    }
}

async fn fetch_body(request: reqwest::RequestBuilder) -> Result<Fetched, String> {
    let mut response = request.send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(format!("the calendar server answered {status}"));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_CALENDAR_BYTES as u64)
    {
        return Err(format!(
            "the calendar is larger than {} MiB",
            MAX_CALENDAR_BYTES >> 20
        ));
    }
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_calendar_body(&mut response).await?;
    let body = String::from_utf8(body).map_err(|_| "the calendar is not UTF-8 text".to_owned())?;
    Ok(Fetched::Document { body, etag })
}

/// A calendar server's answer body, refused past [`MAX_CALENDAR_BYTES`].
pub(crate) async fn read_calendar_body(
    response: &mut reqwest::Response,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_CALENDAR_BYTES {
            return Err(format!(
                "the calendar is larger than {} MiB",
                MAX_CALENDAR_BYTES >> 20
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The Standard Webhooks `webhook-signature` value (`v1,<base64>`): with a
/// `whsec_` secret its base64 part is the key, as the spec says; any
/// other secret is used as its bytes (subscriptions made before Standard
/// Webhooks). `None` only for a body that is not UTF-8 (ours is JSON).
pub fn standard_signature(
    secret: &str,
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    let signer = match secret.strip_prefix("whsec_") {
        Some(_) => standardwebhooks::Webhook::new(secret).ok()?,
        None => standardwebhooks::Webhook::from_bytes(secret.as_bytes().to_vec()).ok()?,
    };
    signer.sign(message_id, timestamp, body).ok()
}

/// `hex(HMAC-SHA256(secret, body))`, the `X-Muster-Signature` value after
/// `sha256=`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// What the subscription's owner can act on, in one line. The causes'
/// own texts are never echoed: they may say what an internal host name
/// resolved to, which the delivery log would then show to the tenant.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.to_string().contains(PRIVATE_ONLY) {
            return PRIVATE_ONLY.to_owned();
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return format!("could not connect: {}", io.kind());
        }
        source = cause.source();
    }
    if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_redirect() {
        "the receiver redirected, which is not followed".to_owned()
    } else {
        "the request failed".to_owned()
    }
}

/// Our resolver's refusal: the name does not lead to a public address.
const PRIVATE_ONLY: &str = "the target's name resolves only to private or loopback addresses, which this server does not deliver to";

/// Resolves with the system resolver, then refuses private addresses.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow_private || !is_private(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(PRIVATE_ONLY.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_receivers_will_check() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
