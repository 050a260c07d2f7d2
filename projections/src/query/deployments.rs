//! Deployment reads.

use muster_domain::TenantId;
use sqlx::PgPool;
use uuid::Uuid;

/// The stored `GET /v1/deployments/{id}` document, as JSON text.
pub async fn document(
    pool: &PgPool,
    tenant: &TenantId,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select document::text as "document!"
             from read.deployments where tenant_id = $1 and deployment_id = $2"#,
        tenant.as_str(),
        id,
    )
    .fetch_optional(pool)
    .await
}

/// A deployment in a list.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeploymentSummary {
    /// Its id.
    pub id: Uuid,
    /// The booking it serves.
    pub booking_id: Uuid,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Higher runs first.
    pub priority: i32,
    /// Steps done.
    pub steps_done: i32,
    /// Steps in all.
    pub steps_total: i32,
    /// Its version.
    pub version: i32,
    /// When it was requested.
    pub requested_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Which deployments a list shows.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    /// Only these statuses (empty: all).
    pub statuses: Vec<String>,
    /// Only those of this booking.
    pub booking_id: Option<Uuid>,
}

/// One page of the tenant's deployments in (requested_at, id) order after
/// `after`.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &DeploymentFilter,
    after: Option<(chrono::DateTime<chrono::Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<DeploymentSummary>, sqlx::Error> {
    sqlx::query_as!(
        DeploymentSummary,
        r#"select deployment_id as id, booking_id, status, priority, steps_done, steps_total,
                  version, requested_at, updated_at
             from read.deployments
            where tenant_id = $1
              and ($2::timestamptz is null or (requested_at, deployment_id) > ($2, $3))
              and (cardinality($4::text[]) = 0 or status = any($4))
              and ($5::uuid is null or booking_id = $5)
            order by requested_at, deployment_id
            limit $6"#,
        tenant.as_str(),
        after.map(|a| a.0),
        after.map(|a| a.1),
        &filter.statuses,
        filter.booking_id,
        limit,
    )
    .fetch_all(pool)
    .await
}
