//! Who the caller is: the key's tenant, id and role, so that a client (the
//! dashboard) can show what its user may do without trying it.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, READERS};
use crate::{ApiError, AppState};

/// The whoami route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(whoami))
}

/// The caller's key.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// The key's tenant.
    tenant: String,
    /// The key's id (the actor of the events it causes).
    key_id: Uuid,
    /// `admin`, `planner` or `analyst`.
    #[schema(example = "planner")]
    role: &'static str,
}

/// Who the presented key is: its tenant, id and role (every role may ask).
#[utoipa::path(get, path = "/v1/whoami", tag = "operations",
    responses((status = 200, description = "The caller", body = WhoAmI)))]
async fn whoami(auth: Auth) -> Result<Json<WhoAmI>, ApiError> {
    let principal = auth.require(READERS)?;
    Ok(Json(WhoAmI {
        tenant: principal.tenant.as_str().to_owned(),
        key_id: principal.key_id,
        role: principal.role.as_str(),
    }))
}
