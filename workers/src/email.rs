//! Email notifications through an SMTP relay (`SMTP_URL`).

use std::time::{Duration, Instant};

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::StartError;
use crate::outbound::CallOutcome;

/// Sends notification emails.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Mailer {
    /// A mailer for `smtp_url` (`smtp://host:port`, `smtps://…`, with
    /// optional credentials), sending as `from`, with `timeout` per send.
    pub fn new(smtp_url: &str, from: &str, timeout: Duration) -> Result<Self, StartError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| StartError::Smtp(e.to_string()))?
            .timeout(Some(timeout))
            .build();
        let from = from
            .parse()
            .map_err(|e| StartError::Smtp(format!("sender {from:?}: {e}")))?;
        Ok(Self { transport, from })
    }

    /// Sends `body` to `to` with `subject`.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> CallOutcome {
        let started = Instant::now();
        let result = async {
            let to = to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?;
            let message = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(subject)
                .header(ContentType::TEXT_PLAIN)
                .body(body)
                .map_err(|e| e.to_string())?;
            self.transport
                .send(message)
                .await
                .map(|response| response.code().to_string())
                .map_err(|e| e.to_string())
        }
        .await;
        let latency = started.elapsed();
        match result {
            Ok(code) => CallOutcome {
                status: code.parse().ok(),
                latency,
                error: None,
            },
            Err(error) => CallOutcome {
                status: None,
                latency,
                error: Some(format!("SMTP: {error}")),
            },
        }
    }
}
