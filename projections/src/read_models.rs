//! The one typed facade through which the HTTP API reads: every query over
//! the read models, the read-your-writes wait, and the readiness check, so
//! that the API needs no SQL and no database driver of its own.

use muster_domain::TenantId;
use std::time::{Duration, Instant};

use chrono::DateTime;
use chrono::Utc;
use muster_domain::time::TimeRange;
use muster_store::{Store, StoreError};
use uuid::Uuid;

use crate::bookings::as_of;
use crate::query::{
    self, BookingFilter, BookingSummary, Occupancy, ProjectionStatus, ResourceFilter,
    ResourceUtilization, ResourceView, ScheduleEntry, StatusCount,
};
use crate::{BookingDocument, ReadModel, ReadSignals};
use muster_domain::Aggregate;
use muster_domain::booking::Booking;

/// Why a read failed. The variants are what a caller answers differently.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The database cannot serve now (down, overloaded, too slow): retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure.
    #[error("a read model query failed")]
    Database(#[source] sqlx::Error),
    /// The event store refused or failed otherwise.
    #[error("the event store failed")]
    Store(#[source] StoreError),
    /// `consistent_with` named a position no command has produced yet, so
    /// waiting for it could only time out.
    #[error("position {position} is beyond every position the event store has handed out")]
    BeyondHead {
        /// The position asked for.
        position: i64,
    },
    /// The read models did not reach the asked position within the wait.
    #[error("the read models have not reached position {position} yet")]
    ConsistencyTimeout {
        /// The position asked for.
        position: i64,
    },
    /// A resource the question names does not exist in the tenant.
    #[error("unknown resource {0}")]
    UnknownResource(Uuid),
    /// Events folded for an answer as of a past instant do not fold.
    #[error("a stored history does not fold")]
    Fold(#[source] crate::ProjectionError),
}

impl From<sqlx::Error> for ReadError {
    fn from(error: sqlx::Error) -> Self {
        if muster_store::db::is_unavailable(&error) {
            ReadError::Unavailable(error)
        } else {
            ReadError::Database(error)
        }
    }
}

impl From<StoreError> for ReadError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(e) => ReadError::Unavailable(e),
            StoreError::Database(e) => ReadError::Database(e),
            other => ReadError::Store(other),
        }
    }
}

/// The read side as the API sees it. Cheap to clone.
#[derive(Clone)]
pub struct ReadModels {
    store: Store,
    /// Where the read models are queried: the primary's pool, or a hot
    /// standby's (`READ_DATABASE_URL`).
    reads: sqlx::PgPool,
    signals: ReadSignals,
}

impl ReadModels {
    /// Reads over `store`'s pool; `signals` tells how far the projections are.
    pub fn new(store: Store, signals: ReadSignals) -> Self {
        Self {
            reads: store.pool().clone(),
            store,
            signals,
        }
    }

    /// Queries the read models on a hot standby instead (`replica`), while
    /// `signals` (from [`ReadSignals::start_on_replica`]) tells how far the
    /// standby's copy of the projections has got, so that read-your-writes
    /// still holds. The event store's positions are still asked of the
    /// primary: only it knows what has been handed out.
    pub fn on_replica(self, replica: sqlx::PgPool, signals: ReadSignals) -> Self {
        Self {
            reads: replica,
            signals,
            ..self
        }
    }

    fn pool(&self) -> &sqlx::PgPool {
        &self.reads
    }

    /// Waits until every one of `models` has applied `position`, at most
    /// `max_wait`, so that a client reads its own writes.
    pub async fn wait_until_applied(
        &self,
        models: &[ReadModel],
        position: i64,
        max_wait: Duration,
    ) -> Result<(), ReadError> {
        if self.signals.reached(models, position) {
            return Ok(());
        }
        // A position no command has produced yet would only ever time out.
        if position > self.store.last_allocated_position().await? {
            return Err(ReadError::BeyondHead { position });
        }
        let started = Instant::now();
        let reached = self.signals.wait_for(models, position, max_wait).await?;
        metrics::histogram!("muster_read_consistency_wait_seconds")
            .record(started.elapsed().as_secs_f64());
        if reached {
            Ok(())
        } else {
            metrics::counter!("muster_read_consistency_timeouts_total").increment(1);
            Err(ReadError::ConsistencyTimeout { position })
        }
    }

    /// Whether every migration this build knows is applied (readiness).
    pub async fn schema_current(&self) -> Result<bool, ReadError> {
        let latest = muster_store::db::migrator()
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        // Not a compile-checked query: `_sqlx_migrations` is sqlx's own
        // table, absent from the database the offline data is prepared on.
        let applied: Option<i64> =
            sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
                .fetch_one(self.store.pool())
                .await?;
        Ok(applied.is_some_and(|v| v >= latest))
    }

    /// Every projection's position, lag and state.
    pub async fn projections(&self) -> Result<Vec<ProjectionStatus>, ReadError> {
        let head = self.store.safe_position().await?;
        Ok(query::status::all(self.store.pool(), head).await?)
    }

    /// One page of the tenant's resources in id order, after `after`.
    pub async fn resources(
        &self,
        tenant: &TenantId,
        filter: &ResourceFilter,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ResourceView>, ReadError> {
        Ok(query::resources::list(self.pool(), tenant, filter, after, limit).await?)
    }

    /// One resource of the tenant, if it exists.
    pub async fn resource(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<Option<ResourceView>, ReadError> {
        Ok(query::resources::by_ids(self.pool(), tenant, &[id])
            .await?
            .pop())
    }

    /// The reservations holding resource `id` within `window`, in start
    /// order; `None` when the tenant has no such resource.
    pub async fn schedule(
        &self,
        tenant: &TenantId,
        id: Uuid,
        window: TimeRange,
    ) -> Result<Option<Vec<ScheduleEntry>>, ReadError> {
        if self.resource(tenant, id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(
            query::bookings::schedule(self.pool(), tenant, id, window).await?,
        ))
    }

    /// One page of the reservations of many resources overlapping
    /// `window`, in (start, reservation id) order after `after`.
    pub async fn schedules(
        &self,
        tenant: &TenantId,
        filter: &query::bookings::ScheduleFilter,
        window: TimeRange,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<query::bookings::ResourceScheduleEntry>, ReadError> {
        Ok(query::bookings::schedules(self.pool(), tenant, filter, window, after, limit).await?)
    }

    /// One page of the tenant's bookings in (start, id) order after `after`.
    pub async fn bookings(
        &self,
        tenant: &TenantId,
        filter: &BookingFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<BookingSummary>, ReadError> {
        Ok(query::bookings::list(self.pool(), tenant, filter, after, limit).await?)
    }

    /// The history of the client with `email` (case-insensitive).
    pub async fn client_history(
        &self,
        tenant: &TenantId,
        email: &str,
    ) -> Result<query::ClientHistory, ReadError> {
        Ok(query::bookings::client_history(self.pool(), tenant, email).await?)
    }

    /// Booking `id` as muster knew it at `as_of`, folded from the events
    /// recorded up to that instant; `None` when it did not exist yet.
    pub async fn booking_as_of(
        &self,
        tenant: &TenantId,
        id: Uuid,
        as_of: DateTime<Utc>,
    ) -> Result<Option<BookingDocument>, ReadError> {
        let events = self
            .store
            .streams_until(tenant, Booking::STREAM_TYPE, &[id], as_of)
            .await?;
        Ok(as_of::documents(&events).map_err(ReadError::Fold)?.pop())
    }

    /// The reservations holding resource `id` within `window` as muster
    /// knew them at `as_of`, in start order, folded from the events of
    /// every booking that ever held the resource; `None` when the tenant
    /// has no such resource. Holds and external calendars' blocks are not
    /// part of the past (holds are fleeting, blocks are a copy of another
    /// calendar).
    pub async fn schedule_as_of(
        &self,
        tenant: &TenantId,
        id: Uuid,
        window: TimeRange,
        as_of: DateTime<Utc>,
    ) -> Result<Option<Vec<ScheduleEntry>>, ReadError> {
        if self.resource(tenant, id).await?.is_none() {
            return Ok(None);
        }
        let candidates = query::bookings::ever_held(self.pool(), tenant, id).await?;
        let events = self
            .store
            .streams_until(tenant, Booking::STREAM_TYPE, &candidates, as_of)
            .await?;
        let documents = as_of::documents(&events).map_err(ReadError::Fold)?;
        let mut entries: Vec<ScheduleEntry> = documents
            .iter()
            .flat_map(|d| {
                d.reservations
                    .iter()
                    .filter(|r| {
                        r.resource_id == id
                            && r.starts_at < window.ends_at
                            && r.ends_at > window.starts_at
                    })
                    .map(|r| ScheduleEntry {
                        reservation_id: r.reservation_id,
                        booking_id: d.id,
                        title: d.title.clone(),
                        status: d.status.clone(),
                        starts_at: r.starts_at,
                        ends_at: r.ends_at,
                        label: r.label.clone(),
                        expires_at: None,
                    })
            })
            .collect();
        entries.sort_by_key(|e| (e.starts_at, e.reservation_id));
        Ok(Some(entries))
    }

    /// A booking's stored document (JSON text), if it exists.
    pub async fn booking_document(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<Option<String>, ReadError> {
        Ok(query::bookings::document(self.pool(), tenant, id).await?)
    }

    /// A deployment's stored document (JSON text), if it exists.
    pub async fn deployment_document(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<Option<String>, ReadError> {
        Ok(query::deployments::document(self.pool(), tenant, id).await?)
    }

    /// One page of the tenant's deployments in (requested_at, id) order.
    pub async fn deployments(
        &self,
        tenant: &TenantId,
        filter: &query::deployments::DeploymentFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<query::deployments::DeploymentSummary>, ReadError> {
        Ok(query::deployments::list(self.pool(), tenant, filter, after, limit).await?)
    }

    /// Utilization per local day of one page of the tenant's resources
    /// (of `kind`, retired ones included) in id order after `after`.
    pub async fn utilization(
        &self,
        tenant: &TenantId,
        kind: Option<&str>,
        window: TimeRange,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ResourceUtilization>, ReadError> {
        let page =
            Occupancy::utilization_page(self.pool(), tenant, kind, window, after, limit).await?;
        Ok(page.utilization().collect())
    }

    /// Bookings starting within `window`, counted by status.
    pub async fn bookings_by_status(
        &self,
        tenant: &TenantId,
        window: TimeRange,
    ) -> Result<Vec<StatusCount>, ReadError> {
        Ok(query::analytics::bookings_by_status(self.pool(), tenant, window).await?)
    }
}
