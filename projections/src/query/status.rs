//! Where each projection is (`GET /v1/projections`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

/// A projection's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectionStatus {
    /// Its stable name.
    pub name: String,
    /// The position it has applied up to.
    pub position: i64,
    /// The event store's safe head.
    pub head: i64,
    /// Events it still has to apply.
    pub lag_events: i64,
    /// `running`, or `failed` after a poison event.
    pub state: String,
    /// The position of the event it stopped at, when failed.
    pub failed_position: Option<i64>,
    /// Why it stopped, when failed.
    pub error: Option<String>,
    /// The process (`host:pid`) that applied its last batch.
    pub owner: Option<String>,
    /// When its checkpoint last moved.
    pub updated_at: DateTime<Utc>,
    /// A rebuild in progress: the position it has reached.
    pub rebuild_position: Option<i64>,
}

/// Every projection that has run, by name.
pub async fn all(pool: &PgPool, head: i64) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select c.name, c.position, c.state, c.failed_position, c.error, c.owner,
                  c.updated_at, r.position as "rebuild_position?"
             from projection_checkpoints c
             left join projection_rebuilds r on r.name = c.name
            order by c.name"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ProjectionStatus {
            lag_events: (head - r.position).max(0),
            name: r.name,
            position: r.position,
            head,
            state: r.state,
            failed_position: r.failed_position,
            error: r.error,
            owner: r.owner,
            updated_at: r.updated_at,
            rebuild_position: r.rebuild_position,
        })
        .collect())
}
