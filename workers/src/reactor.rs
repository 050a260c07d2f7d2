//! The reactor: a projection whose writes are notification deliveries and
//! their jobs. For every event and every subscription of its tenant that
//! wants it (and existed when the event was recorded), it inserts one
//! delivery row and pushes one job, in the transaction that moves its
//! checkpoint: after a crash it neither loses nor repeats an enqueue, and
//! the delivery's unique (subscription, event) key makes a repeat
//! impossible even if the checkpoint logic were wrong.

use std::collections::HashMap;

use muster_domain::TenantId;
use muster_domain::notification::wants;
use muster_jobs::webhooks::{NewDelivery, Subscription, Webhooks};
use muster_jobs::{JobQueue, NotificationJob};
use muster_projections::{ApplyFuture, Projection, ProjectionError};
use muster_store::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

/// The notification reactor.
pub struct Reactor {
    queue: JobQueue,
}

impl Reactor {
    /// A reactor pushing jobs on `queue`.
    pub fn new(queue: JobQueue) -> Self {
        Self { queue }
    }
}

/// Its checkpoint name.
pub const NAME: &str = "reactor.notifications";

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
            let mut tenants: Vec<&TenantId> = events.iter().map(|e| &e.tenant).collect();
            tenants.sort_unstable();
            tenants.dedup();
            let subscriptions = Webhooks::active_for(&mut *conn, &tenants)
                .await
                .map_err(reactor_error)?;
            if subscriptions.is_empty() {
                return Ok(());
            }
            let mut by_tenant: HashMap<&TenantId, Vec<&Subscription>> = HashMap::new();
            for s in &subscriptions {
                by_tenant.entry(&s.tenant_id).or_default().push(s);
            }
            let mut deliveries = Vec::new();
            for event in events {
                for s in by_tenant.get(&event.tenant).into_iter().flatten() {
                    if s.created_at <= event.recorded_at && wants(&s.event_types, &event.event_type)
                    {
                        deliveries.push(NewDelivery {
                            tenant: event.tenant.clone(),
                            delivery_id: Uuid::now_v7(),
                            webhook_id: s.webhook_id,
                            event_position: event.position,
                            event_type: event.event_type.clone(),
                        });
                    }
                }
            }
            if deliveries.is_empty() {
                return Ok(());
            }
            let created = Webhooks::insert_deliveries(&mut *conn, &deliveries)
                .await
                .map_err(reactor_error)?;
            let jobs: Vec<NotificationJob> = created
                .into_iter()
                .map(|(tenant, delivery_id)| NotificationJob::delivery(tenant, delivery_id))
                .collect();
            self.queue
                .enqueue_many(conn, &jobs)
                .await
                .map_err(reactor_error)?;
            metrics::counter!("muster_reactor_deliveries_total").increment(jobs.len() as u64);
            Ok(())
        })
    }
}

/// The reactor's failures stop its batch like any projection's.
pub(crate) fn reactor_error(e: muster_jobs::JobsError) -> ProjectionError {
    match e {
        muster_jobs::JobsError::Unavailable(e) | muster_jobs::JobsError::Database(e) => {
            ProjectionError::Database(e)
        }
        other => ProjectionError::SideEffect(other.to_string()),
    }
}
