//! Real peers for the async side: an HTTP receiver that records every
//! request and answers from a script, and a minimal SMTP server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Whether `X-Muster-Signature` is the HMAC of the body under `secret`.
    pub fn signed_with(&self, secret: &str) -> bool {
        let Some(hex_sig) = self
            .header("x-muster-signature")
            .strip_prefix("sha256=")
            .map(str::to_owned)
        else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        hex::decode(hex_sig).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
    }
}

/// Decides the status for a request: `(request, how many earlier requests
/// carried the same key)`, where the key is the idempotency key or the
/// delivery id.
pub type Script = Arc<dyn Fn(&Received, usize) -> u16 + Send + Sync>;

/// An HTTP receiver on a loopback port.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Requests that arrived, answered or not yet.
    pub arrived: Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    /// Starts a receiver answering by `script` after `delay`.
    pub async fn start(script: Script, delay: Duration) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let log = received.clone();
        let arrived: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let count = arrived.clone();
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (log, seen, script) = (log.clone(), seen.clone(), script.clone());
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                tokio::time::sleep(delay).await;
                let mut request = Received {
                    headers,
                    body: body.to_vec(),
                    status: 0,
                };
                let key = {
                    let k = request.header("idempotency-key");
                    if k.is_empty() {
                        request.header("x-muster-delivery")
                    } else {
                        k
                    }
                };
                let earlier = {
                    let mut seen = seen.lock().unwrap();
                    let n = seen.entry(key).or_default();
                    *n += 1;
                    *n - 1
                };
                request.status = script(&request, earlier);
                let status = request.status;
                log.lock().unwrap().push(request);
                StatusCode::from_u16(status).unwrap()
            }
        };
        let router = axum::Router::new().route("/hook", post(handler));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url,
            received,
            arrived,
        }
    }

    /// Answers 200 to everything at once.
    pub async fn ok() -> Self {
        Self::start(Arc::new(|_, _| 200), Duration::ZERO).await
    }

    /// How many requests arrived so far.
    pub fn arrivals(&self) -> usize {
        self.arrived.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// A minimal SMTP server that keeps every message's DATA.
#[derive(Clone)]
pub struct SmtpServer {
    pub url: String,
    pub messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let messages: Arc<Mutex<Vec<String>>> = Arc::default();
        let store = messages.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 test ESMTP\r\n").await;
                    let mut data: Option<String> = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(body) = data.as_mut() {
                            if line == "." {
                                store.lock().unwrap().push(data.take().unwrap_or_default());
                                let _ = write.write_all(b"250 queued\r\n").await;
                            } else {
                                body.push_str(&line);
                                body.push('\n');
                            }
                            continue;
                        }
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 test\r\n",
                            "DATA" => {
                                data = Some(String::new());
                                b"354 go ahead\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        };
                        let _ = write.write_all(reply).await;
                    }
                });
            }
        });
        Self { url, messages }
    }
}
