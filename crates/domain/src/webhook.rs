//! A webhook endpoint's health, as the aggregate of the webhook's stream:
//! whether it is disabled, and why. The rule that disables it lives here;
//! since when the endpoint has been failing is the delivery side's
//! bookkeeping (updated by every attempt, success or failure), handed to
//! the rule with each failure.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{EventDecodeError, decode, payload_of};
use crate::{Aggregate, DomainError, DomainEvent};

/// Payload of `webhook.disabled`. Not the URL: a hook's path or query is
/// often its secret, and the feed is open to every reader of the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDisabled {
    /// The subscription.
    pub webhook_id: Uuid,
    /// Why, in words.
    pub reason: String,
    /// The delivery whose failed attempt disabled it.
    pub last_delivery_id: Uuid,
}

/// Commands on a webhook's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCommand {
    /// An attempt to deliver failed.
    NoteFailure {
        /// The webhook (the stream's id).
        webhook_id: Uuid,
        /// The delivery it was for.
        delivery_id: Uuid,
        /// The endpoint answered 410 Gone: it asks to be forgotten.
        gone: bool,
        /// Since when every attempt to the endpoint has failed.
        failing_since: DateTime<Utc>,
        /// The clock.
        now: DateTime<Utc>,
        /// How long an endpoint may fail every attempt before it is
        /// disabled.
        disable_after: Duration,
    },
    /// An admin enables it again.
    Enable,
}

/// Events of a webhook's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEvent {
    /// `webhook.disabled`: no new deliveries until it is enabled.
    Disabled(WebhookDisabled),
    /// `webhook.enabled`: deliveries resume, its failure clock starts over.
    Enabled,
}

/// A webhook endpoint's health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookHealth {
    /// Why it is disabled, while it is.
    pub disabled: Option<String>,
}

impl Aggregate for WebhookHealth {
    type Command = HealthCommand;
    type Event = HealthEvent;
    const STREAM_TYPE: &'static str = "webhook";

    fn evolve(&mut self, event: &HealthEvent) {
        match event {
            HealthEvent::Disabled(d) => self.disabled = Some(d.reason.clone()),
            HealthEvent::Enabled => self.disabled = None,
        }
    }

    /// The stream of a webhook starts with its first health event (the
    /// subscription itself is configuration): a command on a stream with
    /// no events is not "not found" here; the caller knows the webhook.
    fn decide(&self, command: HealthCommand) -> Result<Vec<HealthEvent>, DomainError> {
        Ok(match command {
            HealthCommand::NoteFailure { .. } if self.disabled.is_some() => Vec::new(),
            HealthCommand::NoteFailure {
                webhook_id,
                delivery_id,
                gone,
                failing_since,
                now,
                disable_after,
            } => {
                let reason = if gone {
                    "the endpoint answered 410 Gone".to_owned()
                } else if now - failing_since >= disable_after {
                    format!(
                        "every delivery attempt failed since {}",
                        failing_since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                } else {
                    return Ok(Vec::new());
                };
                vec![HealthEvent::Disabled(WebhookDisabled {
                    webhook_id,
                    reason,
                    last_delivery_id: delivery_id,
                })]
            }
            HealthCommand::Enable if self.disabled.is_some() => vec![HealthEvent::Enabled],
            HealthCommand::Enable => Vec::new(),
        })
    }
}

impl DomainEvent for HealthEvent {
    fn event_type(&self) -> &'static str {
        match self {
            HealthEvent::Disabled(_) => "webhook.disabled",
            HealthEvent::Enabled => "webhook.enabled",
        }
    }

    fn schema_version(&self) -> i32 {
        crate::upcast::current_version(self.event_type())
    }

    fn to_payload(&self) -> serde_json::Value {
        match self {
            HealthEvent::Disabled(d) => payload_of(d),
            HealthEvent::Enabled => serde_json::json!({}),
        }
    }

    fn from_payload(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        Ok(match event_type {
            "webhook.disabled" => HealthEvent::Disabled(decode(event_type, payload)?),
            "webhook.enabled" => HealthEvent::Enabled,
            other => return Err(EventDecodeError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::aggregate::harness::given;

    fn at(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    fn failure(gone: bool, since: i64, now: i64) -> HealthCommand {
        HealthCommand::NoteFailure {
            webhook_id: Uuid::from_u128(1),
            delivery_id: Uuid::from_u128(7),
            gone,
            failing_since: at(since),
            now: at(now),
            disable_after: Duration::hours(24),
        }
    }

    fn disabled(reason: &str) -> HealthEvent {
        HealthEvent::Disabled(WebhookDisabled {
            webhook_id: Uuid::from_u128(1),
            reason: reason.into(),
            last_delivery_id: Uuid::from_u128(7),
        })
    }

    #[test]
    fn a_failing_endpoint_is_disabled_once_it_has_failed_for_the_whole_period() {
        given::<WebhookHealth>([])
            .when(failure(false, 0, 23))
            .then([]);
        let state = given::<WebhookHealth>([])
            .when(failure(false, 0, 24))
            .then([disabled(
                "every delivery attempt failed since 2027-01-01T00:00:00Z",
            )]);
        assert!(state.disabled.is_some());
        // Once disabled, further failures change nothing.
        given::<WebhookHealth>([disabled("x")])
            .when(failure(true, 0, 30))
            .then([]);
    }

    #[test]
    fn a_410_gone_disables_at_once() {
        given::<WebhookHealth>([])
            .when(failure(true, 5, 5))
            .then([disabled("the endpoint answered 410 Gone")]);
    }

    #[test]
    fn enabling_changes_only_a_disabled_endpoint() {
        let state = given::<WebhookHealth>([disabled("x")])
            .when(HealthCommand::Enable)
            .then([HealthEvent::Enabled]);
        assert_eq!(state.disabled, None);
        given::<WebhookHealth>([])
            .when(HealthCommand::Enable)
            .then([]);
    }

    #[test]
    fn the_disabled_payload_is_the_one_recorded_before_the_aggregate() {
        let stored = serde_json::json!({
            "webhook_id": Uuid::from_u128(1),
            "reason": "the endpoint answered 410 Gone",
            "last_delivery_id": Uuid::from_u128(2),
        });
        let event = HealthEvent::from_payload("webhook.disabled", &stored).unwrap();
        assert_eq!(event.to_payload(), stored);
    }
}
