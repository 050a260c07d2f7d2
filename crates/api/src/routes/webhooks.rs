//! Webhook subscriptions (admin): create, list, delete, and each one's
//! deliveries with every attempt.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use muster_domain::FieldError;
use muster_domain::notification::{WebhookTarget, validate_filters};
use muster_jobs::webhooks::{Delivery, Webhook};
use muster_store::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::extract::{Command, PathIds, QueryBody, QueryParams};
use crate::read::{id_cursor, id_cursor_of, limit, next_cursor};
use crate::{ApiError, AppState};

/// The webhook routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(delete_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(enable_webhook))
        .routes(routes!(replay_webhook))
}

/// A subscription to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookBody {
    /// `https://…` (POSTed to, signed) or `mailto:…` (sent through SMTP).
    /// Private and loopback addresses are refused unless the operator
    /// allows them.
    #[schema(example = "https://hooks.example.com/muster")]
    url: String,
    /// Event types to deliver: exact (`booking.confirmed`), `prefix.*`, or
    /// `*`; `deployment.step` makes it a dispatch webhook.
    event_types: Vec<String>,
    /// The signing secret: a Standard Webhooks secret (`whsec_` and the
    /// base64 of 24 to 64 random bytes), or 16 to 256 characters used as
    /// they are. Left out, muster generates a `whsec_` one and answers it
    /// once.
    secret: Option<String>,
}

/// A subscription just created, with its secret when muster generated it
/// (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    webhook: Webhook,
    /// The generated `whsec_` secret (absent when the request gave one).
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

/// A fresh Standard Webhooks secret: `whsec_` and 32 random bytes in base64.
fn generated_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Whether `secret` is one a receiver can verify with.
fn check_secret(secret: &str) -> Result<(), FieldError> {
    use base64::Engine;
    match secret.strip_prefix("whsec_") {
        Some(encoded) => match base64::engine::general_purpose::STANDARD.decode(encoded) {
            Ok(key) if (24..=64).contains(&key.len()) => Ok(()),
            _ => Err(FieldError::new(
                "secret",
                "a whsec_ secret is the base64 of 24 to 64 bytes",
            )),
        },
        None if (16..=256).contains(&secret.chars().count()) => Ok(()),
        None => Err(FieldError::new(
            "secret",
            "must be 16 to 256 characters, or whsec_…",
        )),
    }
}

/// Paging of lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookPage {
    /// Subscriptions by id.
    items: Vec<Webhook>,
    /// The next page's cursor, if any.
    next_cursor: Option<String>,
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// Deliveries, newest first, with their attempts.
    items: Vec<Delivery>,
    /// The next page's cursor, if any.
    next_cursor: Option<String>,
}

/// Subscribe a URL (or mail address) to event types.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body = CreateWebhookBody,
    responses((status = 201, description = "Created", body = CreatedWebhook)))]
async fn create_webhook(
    State(state): State<AppState>,
    request: QueryBody<CreateWebhookBody>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let auth = Auth(request.principal);
    let principal = auth.require(&[Role::Admin])?;
    let body = request.body;
    let mut errors = Vec::new();
    if let Err(e) = WebhookTarget::parse(&body.url, state.config.allow_private_webhooks) {
        errors.push(e);
    }
    if let Err(e) = validate_filters(&body.event_types) {
        errors.push(e);
    }
    if let Some(Err(e)) = body.secret.as_deref().map(check_secret) {
        errors.push(e);
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let generated = body.secret.is_none().then(generated_secret);
    let secret = body
        .secret
        .or_else(|| generated.clone())
        .unwrap_or_default();
    let webhook = state
        .webhooks
        .create(&principal.tenant, &body.url, &body.event_types, &secret)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook,
            secret: generated,
        }),
    ))
}

/// List the subscriptions.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(PageQuery),
    responses((status = 200, description = "Subscriptions", body = WebhookPage)))]
async fn list_webhooks(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Json<WebhookPage>, ApiError> {
    let principal = auth.require(&[Role::Admin])?;
    let limit = limit(q.limit, 50, 200)?;
    let after = id_cursor(q.cursor.as_deref())?;
    let items = state.webhooks.list(&principal.tenant, after, limit).await?;
    let next_cursor = next_cursor(&items, limit, |w| id_cursor_of(w.id));
    Ok(Json(WebhookPage { items, next_cursor }))
}

/// Delete a subscription: it matches no further events.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The subscription")),
    responses((status = 204, description = "Deleted")))]
async fn delete_webhook(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<StatusCode, ApiError> {
    let principal = auth.require(&[Role::Admin])?;
    let id = path.id(0, "webhook")?;
    if state.webhooks.delete(&principal.tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook".into()))
    }
}

/// A subscription's deliveries, newest first, each with its attempt log
/// (status code, latency, error).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The subscription"), PageQuery),
    responses((status = 200, description = "Deliveries", body = DeliveryPage)))]
async fn list_deliveries(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let principal = auth.require(&[Role::Admin])?;
    let id = path.id(0, "webhook")?;
    let limit = limit(q.limit, 50, 200)?;
    let before = id_cursor(q.cursor.as_deref())?;
    if !state.webhooks.exists(&principal.tenant, id).await? {
        return Err(ApiError::NotFound("webhook".into()));
    }
    let items = state
        .webhooks
        .list_deliveries(&principal.tenant, id, before, limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |d| id_cursor_of(d.id));
    Ok(Json(DeliveryPage { items, next_cursor }))
}

/// Enable a disabled subscription again (disabled after a 410 Gone, or
/// after every delivery failed for `MUSTER_WEBHOOK_DISABLE_AFTER`): new
/// events are delivered to it from now on (`webhook.enabled`).
#[utoipa::path(post, path = "/v1/webhooks/{id}/enable", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The subscription"), super::CommandHeaders),
    responses((status = 204, description = "Enabled (or already so)")))]
async fn enable_webhook(
    State(state): State<AppState>,
    path: PathIds,
    command: Command<super::bookings::NoBody>,
) -> Result<Response, ApiError> {
    if command.principal.role != Role::Admin {
        return Err(ApiError::Forbidden(command.principal.role.as_str()));
    }
    let id = path.id(0, "webhook")?;
    let answer = state.app.enable_webhook(&command.context, id).await;
    crate::command::respond(answer, StatusCode::NO_CONTENT, |_| serde_json::Value::Null).map(
        |mut response| {
            // No content: the status says it all.
            *response.body_mut() = axum::body::Body::empty();
            response
        },
    )
}

/// From when to replay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Events recorded at or after this instant are sent again (at most
    /// 10,000, oldest first).
    since: chrono::DateTime<chrono::Utc>,
}

/// Re-send the subscription's matching events since an instant (after an
/// outage on the receiver's side), as new deliveries marked with the
/// replay's id (`replay_of` in the body, `X-Muster-Replay` header).
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The subscription")),
    request_body = ReplayBody,
    responses((status = 202, description = "Queued", body = muster_jobs::webhooks::Replay)))]
async fn replay_webhook(
    State(state): State<AppState>,
    path: PathIds,
    request: QueryBody<ReplayBody>,
) -> Result<(StatusCode, Json<muster_jobs::webhooks::Replay>), ApiError> {
    let auth = Auth(request.principal);
    let principal = auth.require(&[Role::Admin])?;
    let id = path.id(0, "webhook")?;
    let replay = state
        .webhooks
        .replay(&state.jobs, &principal.tenant, id, request.body.since)
        .await?
        .ok_or_else(|| ApiError::NotFound("webhook".into()))?;
    Ok((StatusCode::ACCEPTED, Json(replay)))
}
