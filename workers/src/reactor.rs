//! The reactor: a projection whose writes are notification deliveries and
//! their jobs. For every event and every subscription of its tenant that
//! wants it (and existed when the event was recorded), it inserts one
//! delivery row and pushes one job, in the transaction that moves its
//! checkpoint: after a crash it neither loses nor repeats an enqueue, and
//! the delivery's unique (subscription, event) key makes a repeat
//! impossible even if the checkpoint logic were wrong.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use muster_domain::notification::wants;
use muster_projections::{ApplyFuture, Projection, ProjectionError};
use muster_store::RecordedEvent;
use muster_store::jobs::{JobKind, JobPolicies, JobRequest, enqueue_many};
use sqlx::PgConnection;
use uuid::Uuid;

/// The notification reactor.
pub struct Reactor {
    policies: JobPolicies,
}

impl Reactor {
    /// A reactor pushing jobs with `policies`.
    pub fn new(policies: JobPolicies) -> Self {
        Self { policies }
    }
}

/// Its checkpoint name.
pub const NAME: &str = "reactor.notifications";

#[derive(sqlx::FromRow)]
struct Subscription {
    tenant_id: String,
    webhook_id: Uuid,
    event_types: Vec<String>,
    created_at: DateTime<Utc>,
}

impl Projection for Reactor {
    fn name(&self) -> &'static str {
        NAME
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            let mut tenants: Vec<&str> = events.iter().map(|e| e.tenant.as_str()).collect();
            tenants.sort_unstable();
            tenants.dedup();
            let subscriptions: Vec<Subscription> = sqlx::query_as(
                "select tenant_id, webhook_id, event_types, created_at from public.webhooks
                  where tenant_id = any($1) and deleted_at is null",
            )
            .bind(&tenants)
            .fetch_all(&mut *conn)
            .await?;
            if subscriptions.is_empty() {
                return Ok(());
            }
            let mut by_tenant: HashMap<&str, Vec<&Subscription>> = HashMap::new();
            for s in &subscriptions {
                by_tenant.entry(s.tenant_id.as_str()).or_default().push(s);
            }
            let (mut t, mut d, mut w, mut p, mut k) = (vec![], vec![], vec![], vec![], vec![]);
            for event in events {
                for s in by_tenant.get(event.tenant.as_str()).into_iter().flatten() {
                    if s.created_at <= event.recorded_at && wants(&s.event_types, &event.event_type)
                    {
                        t.push(event.tenant.clone());
                        d.push(Uuid::now_v7());
                        w.push(s.webhook_id);
                        p.push(event.position);
                        k.push(event.event_type.clone());
                    }
                }
            }
            if t.is_empty() {
                return Ok(());
            }
            let created: Vec<(String, Uuid)> = sqlx::query_as(
                "insert into public.webhook_deliveries
                     (tenant_id, delivery_id, webhook_id, event_position, event_type)
                 select * from unnest($1::text[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[])
                 on conflict (tenant_id, webhook_id, event_position) do nothing
                 returning tenant_id, delivery_id",
            )
            .bind(&t)
            .bind(&d)
            .bind(&w)
            .bind(&p)
            .bind(&k)
            .fetch_all(&mut *conn)
            .await?;
            let jobs: Vec<JobRequest> = created
                .into_iter()
                .map(|(tenant, delivery_id)| JobRequest {
                    kind: JobKind::Notification,
                    args: serde_json::json!({ "tenant": tenant, "delivery_id": delivery_id }),
                    tenant,
                    priority: 0,
                    idempotency_key: delivery_id.to_string(),
                    work_units: 1,
                })
                .collect();
            enqueue_many(conn, &self.policies, &jobs)
                .await
                .map_err(ProjectionError::Store)?;
            metrics::counter!("muster_reactor_deliveries_total").increment(jobs.len() as u64);
            Ok(())
        })
    }
}
