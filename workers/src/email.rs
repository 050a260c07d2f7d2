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

    /// The configured sender (`MUSTER_SMTP_FROM`).
    pub fn sender(&self) -> String {
        self.from.to_string()
    }

    /// Sends `letter`: its text and HTML as alternatives, and its calendar
    /// invitation (`text/calendar; method=…`) as an attachment.
    pub async fn send_letter(&self, letter: Letter<'_>) -> CallOutcome {
        use lettre::message::{Attachment, MultiPart, SinglePart};
        let started = Instant::now();
        let message = (|| {
            let from: lettre::message::Mailbox = letter
                .from
                .parse()
                .map_err(|e| format!("sender {:?}: {e}", letter.from))?;
            let to = letter
                .to
                .parse()
                .map_err(|e| format!("recipient {:?}: {e}", letter.to))?;
            let bodies = MultiPart::alternative()
                .singlepart(SinglePart::plain(letter.text))
                .singlepart(SinglePart::html(letter.html));
            let body = match letter.calendar {
                None => bodies,
                Some((method, ics)) => {
                    let kind = ContentType::parse(&format!(
                        "text/calendar; charset=utf-8; method={method}"
                    ))
                    .map_err(|e| e.to_string())?;
                    MultiPart::mixed()
                        .multipart(bodies)
                        .singlepart(Attachment::new("invite.ics".to_owned()).body(ics, kind))
                }
            };
            Message::builder()
                .from(from)
                .to(to)
                .subject(letter.subject)
                .multipart(body)
                .map_err(|e| e.to_string())
        })();
        self.transmit(started, message).await
    }

    /// Sends `body` to `to` with `subject`.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> CallOutcome {
        let started = Instant::now();
        let message = (|| {
            let to = to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?;
            Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(subject)
                .header(ContentType::TEXT_PLAIN)
                .body(body)
                .map_err(|e| e.to_string())
        })();
        self.transmit(started, message).await
    }

    /// Hands `message` (or why it could not be built) to the relay; the
    /// outcome's latency counts from `started`.
    async fn transmit(&self, started: Instant, message: Result<Message, String>) -> CallOutcome {
        let result = match message {
            Ok(message) => self
                .transport
                .send(message)
                .await
                .map(|response| response.code().to_string())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        outcome(result, started.elapsed())
    }
}

/// A message to a person, with alternatives and an invitation.
#[derive(Debug)]
pub struct Letter<'a> {
    /// `Name <address>`.
    pub from: &'a str,
    /// The address.
    pub to: &'a str,
    /// Its subject.
    pub subject: &'a str,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
    /// The invitation's `METHOD` and iCalendar text, if any.
    pub calendar: Option<(&'static str, String)>,
}

/// A send's result as an outcome: the SMTP reply code, or why it failed.
fn outcome(result: Result<String, String>, latency: std::time::Duration) -> CallOutcome {
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
