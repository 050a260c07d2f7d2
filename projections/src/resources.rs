//! Projection `resources`: one row per resource in `read.resources`.
//!
//! A batch loads the rows its events touch, folds the events with the
//! domain's own `Resource::evolve`, and writes the rows back in one
//! statement, so catch-up costs a few statements per batch, not per event.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::resource::{Resource, ResourceEvent, ResourceProfile};
use muster_domain::{Aggregate, DomainEvent};
use muster_store::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{ProjectionError, expect_next};

/// A `read.resources` row.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResourceRow {
    tenant_id: TenantId,
    resource_id: Uuid,
    version: i32,
    registered_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    position: i64,
    retired: bool,
    #[serde(flatten)]
    profile: ResourceProfile,
}

type Key = (TenantId, Uuid);

pub(crate) async fn apply(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let events: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.stream_type == Resource::STREAM_TYPE)
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let mut rows = load(conn, &events).await?;
    let mut changed: Vec<Key> = Vec::new();
    for event in events {
        let decoded = ResourceEvent::from_payload(&event.event_type, event.payload.clone())
            .map_err(|e| ProjectionError::poison(event, e))?;
        let key = (event.tenant.clone(), event.stream_id);
        match (rows.get_mut(&key), decoded) {
            (Some(row), decoded) => {
                expect_next(event, row.version)?;
                let mut state = Resource {
                    profile: Some(row.profile.clone()),
                    retired: row.retired,
                };
                state.evolve(&decoded);
                row.profile = state.profile.unwrap_or_else(|| row.profile.clone());
                row.retired = state.retired;
                row.version = event.stream_version;
                row.updated_at = event.recorded_at;
                row.position = event.position;
            }
            (None, ResourceEvent::Registered(profile)) => {
                expect_next(event, 0)?;
                rows.insert(
                    key.clone(),
                    ResourceRow {
                        tenant_id: event.tenant.clone(),
                        resource_id: event.stream_id,
                        version: event.stream_version,
                        registered_at: event.recorded_at,
                        updated_at: event.recorded_at,
                        position: event.position,
                        retired: false,
                        profile,
                    },
                );
            }
            (None, _) => {
                return Err(ProjectionError::poison(
                    event,
                    "the resource is not registered",
                ));
            }
        }
        changed.push(key);
    }
    changed.sort_unstable();
    changed.dedup();
    let changed: Vec<&ResourceRow> = changed.iter().filter_map(|k| rows.get(k)).collect();
    save(conn, &changed).await
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<HashMap<Key, ResourceRow>, ProjectionError> {
    let keys: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::json!({"tenant_id": e.tenant, "resource_id": e.stream_id}))
        .collect();
    let rows: Vec<(serde_json::Value,)> = sqlx::query_as(
        r#"select to_jsonb(r)
             from resources r
             join jsonb_to_recordset($1) as k(tenant_id text, resource_id uuid)
               on r.tenant_id = k.tenant_id and r.resource_id = k.resource_id"#,
    )
    .bind(serde_json::Value::Array(keys))
    .fetch_all(&mut *conn)
    .await?;
    let mut loaded = HashMap::with_capacity(rows.len());
    for (json,) in rows {
        let row: ResourceRow = serde_json::from_value(json).map_err(|e| {
            ProjectionError::poison(
                events[0],
                format!("a read.resources row does not decode: {e}"),
            )
        })?;
        loaded.insert((row.tenant_id.clone(), row.resource_id), row);
    }
    Ok(loaded)
}

async fn save(conn: &mut PgConnection, rows: &[&ResourceRow]) -> Result<(), ProjectionError> {
    let rows = serde_json::to_value(rows).unwrap_or_default();
    sqlx::query(
        r#"insert into resources
               (tenant_id, resource_id, name, kind, capacity, timezone, working_hours, tags,
                retired, version, registered_at, updated_at, position)
           select tenant_id, resource_id, name, kind, capacity, timezone, working_hours,
                  array(select jsonb_array_elements_text(tags)), retired, version,
                  registered_at, updated_at, position
             from jsonb_to_recordset($1) as x(
                  tenant_id text, resource_id uuid, name text, kind text, capacity integer,
                  timezone text, working_hours jsonb, tags jsonb, retired boolean,
                  version integer, registered_at timestamptz, updated_at timestamptz,
                  position bigint)
           on conflict (tenant_id, resource_id) do update
              set name = excluded.name, kind = excluded.kind, capacity = excluded.capacity,
                  timezone = excluded.timezone, working_hours = excluded.working_hours,
                  tags = excluded.tags, retired = excluded.retired, version = excluded.version,
                  updated_at = excluded.updated_at, position = excluded.position"#,
    )
    .bind(rows)
    .execute(conn)
    .await?;
    Ok(())
}
