//! Projection `resources`: one row per resource in `read.resources`.
//!
//! Folds like every projection ([`crate::fold`]): a batch loads the rows
//! its events touch (each holds the domain's `ResourceProfile` and retired
//! flag), folds every event, the registration too, with the domain's own
//! `Resource::evolve`, and writes the rows back in one statement, so
//! catch-up costs a few statements per batch, not per event.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::resource::{Resource, ResourceEvent, ResourceProfile};
use muster_store::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ProjectionError;
use crate::fold::{Envelope, Folded, Key, events_of, fold_batch};

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

/// What only the envelopes of a resource's events say.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResourceEnvelope {
    version: i32,
    registered_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    position: i64,
}

/// A resource as this projection folds it.
type FoldedResource = Folded<Resource, ResourceEnvelope>;

impl Envelope<Resource> for ResourceEnvelope {
    const NOT_CREATED: &'static str = "the resource is not registered";

    fn created(state: &Resource) -> bool {
        state.profile.is_some()
    }

    fn first(event: &RecordedEvent) -> Self {
        Self {
            version: 0,
            registered_at: event.recorded_at,
            updated_at: event.recorded_at,
            position: event.position,
        }
    }

    fn version(&self) -> i32 {
        self.version
    }

    fn note(&mut self, event: &RecordedEvent, _: &ResourceEvent, _: &Resource) {
        self.version = event.stream_version;
        self.updated_at = event.recorded_at;
        self.position = event.position;
    }
}

impl FoldedResource {
    /// The row of the resource `key`; `None` before it was registered
    /// (which [`crate::fold::fold`] never returns).
    fn row(&self, (tenant_id, resource_id): &Key) -> Option<ResourceRow> {
        Some(ResourceRow {
            tenant_id: tenant_id.clone(),
            resource_id: *resource_id,
            version: self.envelope.version,
            registered_at: self.envelope.registered_at,
            updated_at: self.envelope.updated_at,
            position: self.envelope.position,
            retired: self.state.retired,
            profile: self.state.profile.clone()?,
        })
    }

    /// The resource a stored row holds.
    fn from_row(row: ResourceRow) -> Self {
        Folded {
            state: Resource {
                profile: Some(row.profile),
                retired: row.retired,
            },
            envelope: ResourceEnvelope {
                version: row.version,
                registered_at: row.registered_at,
                updated_at: row.updated_at,
                position: row.position,
            },
        }
    }
}

pub(crate) async fn apply(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let events = events_of::<Resource>(events);
    if events.is_empty() {
        return Ok(());
    }
    let mut folded = load(conn, &events).await?;
    let changed = fold_batch(&mut folded, &events)?;
    let rows: Vec<ResourceRow> = changed
        .iter()
        .filter_map(|k| folded.get(k)?.row(k))
        .collect();
    save(conn, &rows).await
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<HashMap<Key, FoldedResource>, ProjectionError> {
    let keys: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::json!({"tenant_id": e.tenant, "resource_id": e.stream_id}))
        .collect();
    // Runtime-checked: unqualified tables, live or staging by search_path.

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
        let key = (row.tenant_id.clone(), row.resource_id);
        loaded.insert(key, FoldedResource::from_row(row));
    }
    Ok(loaded)
}

async fn save(conn: &mut PgConnection, rows: &[ResourceRow]) -> Result<(), ProjectionError> {
    let rows = serde_json::to_value(rows).unwrap_or_default();
    // Runtime-checked: unqualified tables, live or staging by search_path.

    sqlx::query(
        r#"insert into resources
               (tenant_id, resource_id, name, kind, capacity, timezone, working_hours, tags,
                retired, version, registered_at, updated_at, position, seats, policy)
           select tenant_id, resource_id, name, kind, capacity, timezone, working_hours,
                  array(select jsonb_array_elements_text(tags)), retired, version,
                  registered_at, updated_at, position, seats, coalesce(policy, '{}')
             from jsonb_to_recordset($1) as x(
                  tenant_id text, resource_id uuid, name text, kind text, capacity integer,
                  timezone text, working_hours jsonb, tags jsonb, retired boolean,
                  version integer, registered_at timestamptz, updated_at timestamptz,
                  position bigint, seats integer, policy jsonb)
           on conflict (tenant_id, resource_id) do update
              set name = excluded.name, kind = excluded.kind, capacity = excluded.capacity,
                  seats = excluded.seats, policy = excluded.policy,
                  timezone = excluded.timezone, working_hours = excluded.working_hours,
                  tags = excluded.tags, retired = excluded.retired, version = excluded.version,
                  updated_at = excluded.updated_at, position = excluded.position"#,
    )
    .bind(rows)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
