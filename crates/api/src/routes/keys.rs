//! API keys (admin): create with a name, list, revoke. A revoked key is
//! refused by every process within two seconds (each verifies a key again
//! after a second in its cache).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use muster_app::Outcome;
use muster_store::Role;
use muster_store::keys::KeyInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Auth;
use crate::extract::{PathIds, QueryBody};
use crate::read::invalid;
use crate::{ApiError, AppState};

/// The key routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// `admin`, `planner` or `analyst`.
    #[schema(example = "planner")]
    role: String,
    /// What it is for (`front desk`, `checkout service`).
    #[schema(example = "checkout service")]
    name: Option<String>,
}

/// A key as it is listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Its id (the `actor` of what it does).
    id: Uuid,
    /// What it is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// `admin`, `planner` or `analyst`.
    role: &'static str,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// When it was last used (to the minute).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<DateTime<Utc>>,
}

impl From<KeyInfo> for KeyView {
    fn from(k: KeyInfo) -> Self {
        Self {
            id: k.key_id,
            name: k.name,
            role: k.role.as_str(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A key just created: the only answer that carries it in clear.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKeyView {
    /// Its id.
    id: Uuid,
    /// The key: send it as `Authorization: Bearer …`. Shown once.
    key: String,
    /// Its role.
    role: &'static str,
    /// What it is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// The tenant's keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Oldest first.
    items: Vec<KeyView>,
}

/// List the tenant's keys (admin).
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, description = "The keys", body = KeyList)))]
async fn list_keys(State(state): State<AppState>, auth: Auth) -> Result<Json<KeyList>, ApiError> {
    let principal = auth.require(&[Role::Admin])?;
    let items = state
        .app
        .list_keys(&principal.tenant)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(Json(KeyList { items }))
}

/// Create a key of the tenant (admin); the answer is the only time it is
/// seen in clear.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKeyBody,
    responses((status = 201, description = "Created", body = CreatedKeyView)))]
async fn create_key(
    State(state): State<AppState>,
    request: QueryBody<CreateKeyBody>,
) -> Result<(StatusCode, Json<CreatedKeyView>), ApiError> {
    let auth = Auth(request.principal);
    let principal = auth.require(&[Role::Admin])?;
    let body = request.body;
    let role: Role = body.role.parse().map_err(|e: String| invalid("role", &e))?;
    let created = match state
        .app
        .create_key(&principal.tenant, role, body.name.as_deref())
        .await?
    {
        Outcome::Executed(created) => created,
        Outcome::Refused(refusal) => return Err(refusal.into()),
        Outcome::Replayed(_) => unreachable!("keys are created without idempotency keys"),
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyView {
            id: created.key_id,
            key: created.key,
            role: role.as_str(),
            name: created.name,
        }),
    ))
}

/// Revoke a key of the tenant (admin): every process refuses it within
/// two seconds. Revoking it again changes nothing.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = Uuid, Path, description = "Key id")),
    responses((status = 200, description = "Revoked", body = KeyView)))]
async fn revoke_key(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<KeyView>, ApiError> {
    let principal = auth.require(&[Role::Admin])?;
    let id = path.id(0, "key")?;
    match state.app.revoke_key(&principal.tenant, id).await? {
        Outcome::Executed(revoked) => Ok(Json(KeyView::from(revoked))),
        Outcome::Refused(refusal) => Err(refusal.into()),
        Outcome::Replayed(_) => unreachable!("keys are revoked without idempotency keys"),
    }
}
