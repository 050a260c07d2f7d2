//! Projection `deployments`: one row per deployment in `read.deployments`,
//! with the whole `GET /v1/deployments/{id}` answer (status, progress, the
//! steps with every attempt) in `document`.
//!
//! Folds like every projection ([`crate::fold`]): the domain's
//! `Deployment` moved on by `Deployment::evolve`, beside the times only the
//! envelopes know (requested, started, finished, each step attempt).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::Aggregate;
use muster_domain::TenantId;
use muster_domain::deployment::{
    Deployment, DeploymentEvent, DeploymentPlan, DeploymentStatus, StepOutcome, StepPlan, StepState,
};
use muster_store::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ProjectionError;
use crate::fold::{Envelope, Folded, Key, events_of, fold_batch};

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

/// What only the envelopes of a deployment's events say: when it was
/// requested, started and finished, and when each step attempt was
/// recorded (the domain counts attempts; the document lists them).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeploymentEnvelope {
    id: Uuid,
    version: i32,
    position: i64,
    requested_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    /// Each step's attempts (by step name), oldest first.
    attempts: HashMap<String, Vec<StepAttempt>>,
}

/// A deployment as this projection folds it.
type FoldedDeployment = Folded<Deployment, DeploymentEnvelope>;

impl Envelope<Deployment> for DeploymentEnvelope {
    const NOT_CREATED: &'static str = "the deployment was never requested";

    fn created(state: &Deployment) -> bool {
        // Only the request names the booking.
        state.booking_id.is_some()
    }

    fn first(event: &RecordedEvent) -> Self {
        Self {
            id: event.stream_id,
            version: 0,
            position: event.position,
            requested_at: event.recorded_at,
            started_at: None,
            finished_at: None,
            updated_at: event.recorded_at,
            attempts: HashMap::new(),
        }
    }

    fn version(&self) -> i32 {
        self.version
    }

    fn note(&mut self, event: &RecordedEvent, decoded: &DeploymentEvent, state: &Deployment) {
        let at = event.recorded_at;
        if matches!(decoded, DeploymentEvent::Retried) {
            // Running again: it has not finished (yet).
            self.finished_at = None;
        }
        // The times the status first became running and terminal.
        match state.status {
            Some(DeploymentStatus::Running) => {
                self.started_at.get_or_insert(at);
            }
            Some(status) if status.is_terminal() => {
                self.finished_at.get_or_insert(at);
            }
            _ => {}
        }
        if let DeploymentEvent::StepSucceeded(o) | DeploymentEvent::StepFailed(o) = decoded
            && state.steps.iter().any(|s| s.plan.name == o.step)
        {
            self.attempts
                .entry(o.step.clone())
                .or_default()
                .push(StepAttempt {
                    attempt: o.attempt,
                    succeeded: matches!(decoded, DeploymentEvent::StepSucceeded(_)),
                    error: o.error.clone(),
                    at,
                });
        }
        self.version = event.stream_version;
        self.position = event.position;
        self.updated_at = at;
    }
}

impl FoldedDeployment {
    /// The document this deployment shows; `None` before it was requested
    /// (which [`crate::fold::fold`] never returns).
    fn document(&self) -> Option<DeploymentDocument> {
        let (state, envelope) = (&self.state, &self.envelope);
        let (done, total) = state.progress();
        let (steps_done, steps_total) = (count(done), count(total));
        Some(DeploymentDocument {
            id: envelope.id,
            booking_id: state.booking_id?,
            status: state.status?.as_str().to_owned(),
            priority: state.priority,
            progress: if steps_total == 0 {
                1.0
            } else {
                f64::from(steps_done) / f64::from(steps_total)
            },
            steps_done,
            steps_total,
            steps: state
                .steps
                .iter()
                .map(|step| StepView {
                    name: step.plan.name.clone(),
                    resource_id: step.plan.resource_id,
                    label: step.plan.label.clone(),
                    status: step_status(step).to_owned(),
                    attempts: envelope
                        .attempts
                        .get(&step.plan.name)
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect(),
            error: state.error.clone(),
            version: envelope.version,
            position: envelope.position,
            requested_at: envelope.requested_at,
            started_at: envelope.started_at,
            finished_at: envelope.finished_at,
            updated_at: envelope.updated_at,
        })
    }

    /// The deployment a stored document shows: its plan and step outcomes
    /// folded by the domain again, its status and error as stored.
    fn from_document(doc: DeploymentDocument) -> Result<Self, String> {
        let status: DeploymentStatus =
            serde_json::from_value(serde_json::Value::String(doc.status.clone()))
                .map_err(|e| format!("status {:?}: {e}", doc.status))?;
        let mut state = Deployment::default();
        state.evolve(&DeploymentEvent::Requested(DeploymentPlan {
            booking_id: doc.booking_id,
            priority: doc.priority,
            steps: doc
                .steps
                .iter()
                .map(|s| StepPlan {
                    name: s.name.clone(),
                    resource_id: s.resource_id,
                    label: s.label.clone(),
                })
                .collect(),
        }));
        for step in &doc.steps {
            for attempt in &step.attempts {
                let outcome = StepOutcome {
                    step: step.name.clone(),
                    attempt: attempt.attempt,
                    error: attempt.error.clone(),
                };
                state.evolve(&if attempt.succeeded {
                    DeploymentEvent::StepSucceeded(outcome)
                } else {
                    DeploymentEvent::StepFailed(outcome)
                });
            }
        }
        state.status = Some(status);
        state.error = doc.error;
        Ok(Folded {
            state,
            envelope: DeploymentEnvelope {
                id: doc.id,
                version: doc.version,
                position: doc.position,
                requested_at: doc.requested_at,
                started_at: doc.started_at,
                finished_at: doc.finished_at,
                updated_at: doc.updated_at,
                attempts: doc
                    .steps
                    .into_iter()
                    .filter(|s| !s.attempts.is_empty())
                    .map(|s| (s.name, s.attempts))
                    .collect(),
            },
        })
    }
}

/// `pending` until its first attempt, then `succeeded` or `failed` (its
/// last attempt failed).
fn step_status(step: &StepState) -> &'static str {
    if step.done {
        "succeeded"
    } else if step.attempts > 0 {
        "failed"
    } else {
        "pending"
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(crate) async fn apply(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let events = events_of::<Deployment>(events);
    if events.is_empty() {
        return Ok(());
    }
    let mut folded = load(conn, &events).await?;
    let changed = fold_batch(&mut folded, &events)?;
    let docs: Vec<(&TenantId, DeploymentDocument)> = changed
        .iter()
        .filter_map(|k| folded.get(k)?.document().map(|d| (&k.0, d)))
        .collect();
    save(conn, &docs).await
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<HashMap<Key, FoldedDeployment>, ProjectionError> {
    let tenants: Vec<&str> = events.iter().map(|e| e.tenant.as_str()).collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.stream_id).collect();
    // Runtime-checked: unqualified tables, live or staging by search_path.

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
        let id = doc.id;
        let folded = FoldedDeployment::from_document(doc).map_err(|e| {
            ProjectionError::poison(events[0], format!("a read.deployments row is invalid: {e}"))
        })?;
        loaded.insert((tenant, id), folded);
    }
    Ok(loaded)
}

async fn save(
    conn: &mut PgConnection,
    docs: &[(&TenantId, DeploymentDocument)],
) -> Result<(), ProjectionError> {
    let rows: Vec<serde_json::Value> = docs
        .iter()
        .map(|(tenant, d)| serde_json::json!({ "tenant_id": tenant, "document": d }))
        .collect();
    // Runtime-checked: unqualified tables, live or staging by search_path.

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

#[cfg(test)]
mod tests;
