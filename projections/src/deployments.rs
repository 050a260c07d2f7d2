//! Projection `deployments`: one row per deployment in `read.deployments`,
//! with the whole `GET /v1/deployments/{id}` answer (status, progress, the
//! steps with every attempt) in `document`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_domain::deployment::{Deployment, DeploymentEvent, DeploymentStatus};
use muster_domain::{Aggregate, DomainEvent};
use muster_store::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ProjectionError, expect_next};

/// A deployment as `GET /v1/deployments/{id}` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentDocument {
    /// The deployment's id.
    pub id: Uuid,
    /// The booking it serves.
    pub booking_id: Uuid,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Higher runs first.
    pub priority: u8,
    /// Steps done / steps, 0 to 1.
    pub progress: f64,
    /// Steps done.
    pub steps_done: u32,
    /// Steps in all.
    pub steps_total: u32,
    /// The steps in order.
    pub steps: Vec<StepView>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its version (stream version).
    pub version: i32,
    /// Position of its last event.
    pub position: i64,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// When a worker first started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One step of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    /// Its name (`dispatch:<resource id>` or `notify`).
    pub name: String,
    /// The resource it dispatches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<Uuid>,
    /// The reservation's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `pending`, `succeeded` or `failed` (last attempt failed).
    pub status: String,
    /// Every attempt, oldest first.
    pub attempts: Vec<StepAttempt>,
}

/// One attempt of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepAttempt {
    /// 1-based.
    pub attempt: u32,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was recorded.
    pub at: DateTime<Utc>,
}

type Key = (TenantId, Uuid);

pub(crate) async fn apply(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let events: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.stream_type == Deployment::STREAM_TYPE)
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let mut docs = load(conn, &events).await?;
    let mut changed: Vec<Key> = Vec::new();
    for event in events {
        let decoded = DeploymentEvent::from_payload(&event.event_type, event.payload.clone())
            .map_err(|e| ProjectionError::poison(event, e))?;
        let key = (event.tenant.clone(), event.stream_id);
        match (docs.get_mut(&key), decoded) {
            (Some(doc), decoded) => {
                expect_next(event, doc.version)?;
                evolve(doc, &decoded, event);
            }
            (None, DeploymentEvent::Requested(plan)) => {
                expect_next(event, 0)?;
                docs.insert(
                    key.clone(),
                    DeploymentDocument {
                        id: event.stream_id,
                        booking_id: plan.booking_id,
                        status: DeploymentStatus::Queued.as_str().to_owned(),
                        priority: plan.priority,
                        progress: 0.0,
                        steps_done: 0,
                        steps_total: plan.steps.len() as u32,
                        steps: plan
                            .steps
                            .into_iter()
                            .map(|s| StepView {
                                name: s.name,
                                resource_id: s.resource_id,
                                label: s.label,
                                status: "pending".into(),
                                attempts: Vec::new(),
                            })
                            .collect(),
                        error: None,
                        version: event.stream_version,
                        position: event.position,
                        requested_at: event.recorded_at,
                        started_at: None,
                        finished_at: None,
                        updated_at: event.recorded_at,
                    },
                );
            }
            (None, _) => {
                return Err(ProjectionError::poison(
                    event,
                    "the deployment was never requested",
                ));
            }
        }
        changed.push(key);
    }
    changed.sort_unstable();
    changed.dedup();
    let changed: Vec<(&TenantId, &DeploymentDocument)> = changed
        .iter()
        .filter_map(|k| docs.get(k).map(|d| (&k.0, d)))
        .collect();
    save(conn, &changed).await
}

/// The document after `event` (the read-side mirror of
/// `Deployment::evolve`, plus timestamps and the attempt log).
fn evolve(doc: &mut DeploymentDocument, event: &DeploymentEvent, recorded: &RecordedEvent) {
    let at = recorded.recorded_at;
    let finish = |doc: &mut DeploymentDocument, status: DeploymentStatus| {
        doc.status = status.as_str().to_owned();
        doc.finished_at = Some(at);
    };
    match event {
        DeploymentEvent::Requested(_) => {}
        DeploymentEvent::Started => {
            doc.status = DeploymentStatus::Running.as_str().to_owned();
            doc.started_at.get_or_insert(at);
        }
        DeploymentEvent::StepSucceeded(o) | DeploymentEvent::StepFailed(o) => {
            let succeeded = matches!(event, DeploymentEvent::StepSucceeded(_));
            if let Some(step) = doc.steps.iter_mut().find(|s| s.name == o.step) {
                step.status = if succeeded { "succeeded" } else { "failed" }.into();
                step.attempts.push(StepAttempt {
                    attempt: o.attempt,
                    succeeded,
                    error: o.error.clone(),
                    at,
                });
            }
            doc.steps_done = doc.steps.iter().filter(|s| s.status == "succeeded").count() as u32;
            doc.progress = if doc.steps_total == 0 {
                1.0
            } else {
                f64::from(doc.steps_done) / f64::from(doc.steps_total)
            };
        }
        DeploymentEvent::Succeeded => finish(doc, DeploymentStatus::Succeeded),
        DeploymentEvent::Failed { error } => {
            doc.error = Some(error.clone());
            finish(doc, DeploymentStatus::Failed);
        }
        DeploymentEvent::Cancelled => finish(doc, DeploymentStatus::Cancelled),
    }
    doc.version = recorded.stream_version;
    doc.position = recorded.position;
    doc.updated_at = at;
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<HashMap<Key, DeploymentDocument>, ProjectionError> {
    let tenants: Vec<&str> = events.iter().map(|e| e.tenant.as_str()).collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.stream_id).collect();
    let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "select d.tenant_id, d.document
           from deployments d
           join unnest($1::text[], $2::uuid[]) as k(tenant_id, deployment_id)
             on d.tenant_id = k.tenant_id and d.deployment_id = k.deployment_id",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut loaded = HashMap::with_capacity(rows.len());
    for (tenant, json) in rows {
        let tenant =
            TenantId::try_from(tenant).map_err(|e| ProjectionError::poison(events[0], e))?;
        let doc: DeploymentDocument = serde_json::from_value(json).map_err(|e| {
            ProjectionError::poison(
                events[0],
                format!("a read.deployments row does not decode: {e}"),
            )
        })?;
        loaded.insert((tenant, doc.id), doc);
    }
    Ok(loaded)
}

async fn save(
    conn: &mut PgConnection,
    docs: &[(&TenantId, &DeploymentDocument)],
) -> Result<(), ProjectionError> {
    let rows: Vec<serde_json::Value> = docs
        .iter()
        .map(|(tenant, d)| serde_json::json!({ "tenant_id": tenant, "document": d }))
        .collect();
    sqlx::query(
        r#"insert into deployments
               (tenant_id, deployment_id, booking_id, status, priority, steps_done, steps_total,
                version, requested_at, updated_at, position, document)
           select x.tenant_id, (d->>'id')::uuid, (d->>'booking_id')::uuid, d->>'status',
                  (d->>'priority')::int, (d->>'steps_done')::int, (d->>'steps_total')::int,
                  (d->>'version')::int, (d->>'requested_at')::timestamptz,
                  (d->>'updated_at')::timestamptz, (d->>'position')::bigint, d
             from jsonb_to_recordset($1) as x(tenant_id text, document jsonb),
                  lateral (select x.document as d) doc
           on conflict (tenant_id, deployment_id) do update
              set status = excluded.status, steps_done = excluded.steps_done,
                  version = excluded.version, updated_at = excluded.updated_at,
                  position = excluded.position, document = excluded.document"#,
    )
    .bind(serde_json::Value::Array(rows))
    .execute(conn)
    .await?;
    Ok(())
}
