//! Client notifications: the tenant's settings (`PUT|GET
//! /v1/settings/client-notifications`) and the messages a booking's client
//! was sent (`GET /v1/bookings/{id}/notifications`). The messages
//! themselves are made by the client reactor and sent by the workers.

use axum::Json;
use axum::extract::State;
use muster_domain::booking::Booking;
use muster_domain::client_message::{MAX_REMINDER_OFFSET_SECS, MAX_REMINDERS};
use muster_domain::duration::IsoDuration;
use muster_jobs::client_messages::{MessageView, Settings};
use muster_store::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, READERS};
use crate::extract::{PathIds, QueryBody};
use crate::read::invalid;
use crate::{ApiError, AppState};

/// The client-notification routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(booking_notifications))
}

/// What a tenant's clients hear.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientNotificationSettings {
    /// Whether clients get a confirmation, changes, a cancellation and
    /// reminders, by email to the booking's `client.email`.
    enabled: bool,
    /// Reminders this long before a confirmed booking starts (ISO 8601,
    /// at most five, each at most `P30D`).
    #[serde(default, alias = "reminder_offsets")]
    #[schema(example = json!(["PT24H", "PT1H"]))]
    reminders: Vec<String>,
    /// The messages' sender (`Planning <planning@example.com>`); absent:
    /// the server's (`MUSTER_SMTP_FROM`).
    #[serde(default)]
    sender: Option<String>,
}

impl From<Settings> for ClientNotificationSettings {
    fn from(s: Settings) -> Self {
        Self {
            enabled: s.enabled,
            reminders: s
                .reminder_offsets
                .into_iter()
                .map(|o| IsoDuration::from_seconds(o).to_string())
                .collect(),
            sender: s.sender,
        }
    }
}

/// The messages to a booking's client.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookingNotifications {
    /// Soonest due first.
    items: Vec<MessageView>,
}

/// The tenant's client-notification settings.
#[utoipa::path(get, path = "/v1/settings/client-notifications", tag = "notifications",
    responses((status = 200, description = "The settings", body = ClientNotificationSettings)))]
async fn get_settings(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<ClientNotificationSettings>, ApiError> {
    let principal = auth.require(READERS)?;
    let settings = state.client_messages.settings(&principal.tenant).await?;
    Ok(Json(settings.into()))
}

/// Set the tenant's client-notification settings (admin). They apply to
/// the events recorded from now on.
#[utoipa::path(put, path = "/v1/settings/client-notifications", tag = "notifications",
    request_body = ClientNotificationSettings,
    responses((status = 200, description = "The settings now", body = ClientNotificationSettings)))]
async fn put_settings(
    State(state): State<AppState>,
    request: QueryBody<ClientNotificationSettings>,
) -> Result<Json<ClientNotificationSettings>, ApiError> {
    let auth = Auth(request.principal);
    let principal = auth.require(&[Role::Admin])?;
    let body = request.body;
    if body.reminders.len() > MAX_REMINDERS {
        return Err(invalid(
            "reminders",
            &format!("at most {MAX_REMINDERS} reminders"),
        ));
    }
    let mut offsets = Vec::with_capacity(body.reminders.len());
    for raw in &body.reminders {
        let offset: IsoDuration = raw.parse().map_err(|e: String| invalid("reminders", &e))?;
        if offset.is_zero() || offset.seconds() > MAX_REMINDER_OFFSET_SECS {
            return Err(invalid(
                "reminders",
                "each must be more than zero and at most P30D",
            ));
        }
        offsets.push(offset.seconds());
    }
    let sender = body
        .sender
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if let Some(sender) = &sender
        && !plausible_mailbox(sender)
    {
        return Err(invalid(
            "sender",
            "must be an address or `Name <address>`, at most 254 characters",
        ));
    }
    let settings = Settings {
        enabled: body.enabled,
        enabled_since: None,
        reminder_offsets: offsets,
        sender,
    };
    state
        .client_messages
        .set_settings(&principal.tenant, &settings)
        .await?;
    let settings = state.client_messages.settings(&principal.tenant).await?;
    Ok(Json(settings.into()))
}

/// Whether `mailbox` looks like `address` or `Name <address>` (the relay
/// has the last word; this keeps header injection and nonsense out).
fn plausible_mailbox(mailbox: &str) -> bool {
    let address = match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(open), Some(close)) if open < close && close == mailbox.len() - 1 => {
            &mailbox[open + 1..close]
        }
        (None, None) => mailbox,
        _ => return false,
    };
    let parts: Vec<&str> = address.split('@').collect();
    mailbox.chars().count() <= 254
        && !mailbox.chars().any(char::is_control)
        && parts.len() == 2
        && !parts[0].is_empty()
        && parts[1].contains('.')
        && !address.chars().any(char::is_whitespace)
}

/// The messages sent (or to be sent) to a booking's client, with how each
/// went.
#[utoipa::path(get, path = "/v1/bookings/{id}/notifications", tag = "notifications",
    params(("id" = uuid::Uuid, Path, description = "Booking id")),
    responses((status = 200, description = "The messages", body = BookingNotifications)))]
async fn booking_notifications(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<BookingNotifications>, ApiError> {
    let principal = auth.require(READERS)?;
    let id = path.id(0, "booking")?;
    let (_, version) = state.store.load::<Booking>(&principal.tenant, id).await?;
    if version == 0 {
        return Err(ApiError::NotFound("booking".into()));
    }
    let items = state
        .client_messages
        .for_booking(&principal.tenant, id)
        .await?;
    Ok(Json(BookingNotifications { items }))
}
