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
