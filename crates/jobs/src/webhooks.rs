//! Webhook subscriptions, their deliveries and attempts: configuration
//! and book-keeping of the notification side, with one owner.

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use muster_store::EventRow;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::JobsError;
use crate::text_enum::text_enum;

/// The webhook tables. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Webhooks {
    pool: PgPool,
    /// An endpoint failing every attempt this long is disabled.
    disable_after: std::time::Duration,
}

/// How long an endpoint may fail every attempt before it is disabled, by
/// default.
pub const DEFAULT_DISABLE_AFTER: std::time::Duration =
    std::time::Duration::from_secs(5 * 24 * 3600);

text_enum! {
    /// Where a delivery stands.
    pub enum DeliveryStatus {
        /// Not delivered yet; attempts may remain.
        Pending = "pending",
        /// The receiver answered 2xx (or the email relay accepted it).
        Delivered = "delivered",
        /// Attempts used up, or the target was refused: a dead letter.
        Dead = "dead",
    }
}

/// A webhook subscription as shown (never with its secret).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries go (`https://…` or `mailto:…`).
    pub url: String,
    /// The event types it wants (`booking.confirmed`, `booking.*`, `*`,
    /// `deployment.step` for dispatch).
    pub event_types: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was disabled (a 410 Gone, or failing every attempt too
    /// long); a disabled endpoint gets no new deliveries until enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// One delivery of one event to one subscription.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    /// Its id, sent as `X-Muster-Delivery` on every attempt.
    pub id: Uuid,
    /// The event's position.
    pub event_position: i64,
    /// The event's type.
    pub event_type: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: i32,
    /// The last response status.
    pub last_status_code: Option<i32>,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The replay that made it (absent for the original delivery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<Uuid>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// What a replay queued.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Replay {
    /// Its id: every delivery it made carries it as `replay_of`.
    pub replay_id: Uuid,
    /// How many deliveries it queued.
    pub deliveries: usize,
    /// More matching events followed the last one sent: replay again
    /// from the last delivered event's time to send the rest.
    pub truncated: bool,
}

/// Most events one replay re-sends.
pub const MAX_REPLAY: i64 = 10_000;

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    /// 1-based.
    pub attempt: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The response status, if one came.
    pub status_code: Option<i32>,
    /// How long it took.
    pub latency_ms: f64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A subscription as the reactor matches events against it.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its id.
    pub webhook_id: Uuid,
    /// The event types it wants.
    pub event_types: Vec<String>,
    /// When it was created: it wants no event recorded before.
    pub created_at: DateTime<Utc>,
}

/// A subscription as a dispatcher calls it (with its secret).
#[derive(Debug, Clone)]
pub struct Target {
    /// Its id.
    pub webhook_id: Uuid,
    /// Where to send.
    pub url: String,
    /// The signing secret.
    pub secret: String,
    /// The event types it wants.
    pub event_types: Vec<String>,
}

/// A delivery to make: where to, with which secret, of which event.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    /// Where it stands.
    pub status: DeliveryStatus,
    /// The event's type.
    pub event_type: String,
    /// The event as stored: [`EventRow::into_recorded`] upcasts it.
    pub event: EventRow,
    /// Where to send.
    pub url: String,
    /// The signing secret.
    pub secret: String,
    /// Why nothing is sent to its endpoint, if so: the endpoint is
    /// disabled, or the subscription was deleted (its pending retries end
    /// as dead letters rather than go on calling a URL nobody wants
    /// called).
    pub held_back: Option<String>,
    /// The replay that made it, if any.
    pub replay_of: Option<Uuid>,
}

/// One new delivery of one event to one subscription.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The tenant.
    pub tenant: TenantId,
    /// The delivery's id.
    pub delivery_id: Uuid,
    /// The subscription.
    pub webhook_id: Uuid,
    /// The event's position.
    pub event_position: i64,
    /// The event's type.
    pub event_type: String,
}

/// One attempt of a delivery, as it ended.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The response status, if one came.
    pub status_code: Option<u16>,
    /// How long it took.
    pub latency: std::time::Duration,
    /// Why it failed.
    pub error: Option<&'a str>,
    /// The delivery's status after it.
    pub status: DeliveryStatus,
}

/// An endpoint whose delivery attempt just failed.
#[derive(Debug, Clone, Copy)]
pub struct Failing {
    /// The subscription.
    pub webhook_id: Uuid,
    /// Since when every attempt to it has failed.
    pub since: DateTime<Utc>,
    /// Whether it is disabled already.
    pub disabled: bool,
}

impl Webhooks {
    /// The webhook tables on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            disable_after: DEFAULT_DISABLE_AFTER,
        }
    }

    /// The same tables, disabling an endpoint after it failed every attempt
    /// for `disable_after`.
    pub fn with_disable_after(mut self, disable_after: std::time::Duration) -> Self {
        self.disable_after = disable_after;
        self
    }

    /// Re-sends the subscription's matching events recorded since `since`
    /// (at most [`MAX_REPLAY`], oldest first) as new deliveries marked
    /// with a new replay id, queued in one transaction. `Ok(None)`: no such
    /// active subscription.
    pub async fn replay(
        &self,
        queue: &crate::JobQueue,
        tenant: &TenantId,
        id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Option<Replay>, JobsError> {
        let mut tx = self.pool.begin().await?;
        let Some(filters) = sqlx::query_scalar!(
            r#"select event_types from webhooks
                where tenant_id = $1 and webhook_id = $2 and deleted_at is null
                  for share"#,
            tenant.as_str(),
            id,
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        // Below the safe position, as every reader of the feed: an event
        // still committing is the reactor's, not the replay's.
        // The subscription's filters in SQL, so that the limit counts only
        // matching events: exact types, `prefix.*` as LIKE patterns
        // (prefixes are lower-case letters, `_` and dots; `_` escaped),
        // `*` as everything.
        let every = filters.iter().any(|f| f == "*");
        let exact: Vec<&str> = filters
            .iter()
            .filter(|f| !f.ends_with(".*"))
            .map(String::as_str)
            .collect();
        let prefixes: Vec<String> = filters
            .iter()
            .filter_map(|f| f.strip_suffix(".*"))
            .map(|p| format!("{}.%", p.replace('_', "\\_")))
            .collect();
        let events = sqlx::query!(
            r#"with head as (select muster_safe_position() as position)
               select e.position, e.event_type from events e, head
                where e.tenant_id = $1 and e.recorded_at >= $2 and e.position <= head.position
                  and ($4 or e.event_type = any($5) or e.event_type like any($6))
                order by e.position limit $3"#,
            tenant.as_str(),
            since,
            MAX_REPLAY + 1,
            every,
            &exact as &[&str],
            &prefixes,
        )
        .fetch_all(&mut *tx)
        .await?;
        let truncated = events.len() as i64 > MAX_REPLAY;
        let replay_id = Uuid::now_v7();
        let wanted: Vec<(i64, String)> = events
            .into_iter()
            .take(MAX_REPLAY as usize)
            .map(|e| (e.position, e.event_type))
            .collect();
        let ids: Vec<Uuid> = wanted.iter().map(|_| Uuid::now_v7()).collect();
        let positions: Vec<i64> = wanted.iter().map(|w| w.0).collect();
        let types: Vec<&str> = wanted.iter().map(|w| w.1.as_str()).collect();
        sqlx::query!(
            r#"insert into webhook_deliveries
                   (tenant_id, delivery_id, webhook_id, event_position, event_type, replay_of)
               select $1, d, $2, p, t, $3
                 from unnest($4::uuid[], $5::int8[], $6::text[]) as x(d, p, t)"#,
            tenant.as_str(),
            id,
            replay_id,
            &ids,
            &positions,
            &types as &[&str],
        )
        .execute(&mut *tx)
        .await?;
        let jobs: Vec<crate::NotificationJob> = ids
            .iter()
            .map(|&delivery_id| crate::NotificationJob::delivery(tenant.clone(), delivery_id))
            .collect();
        queue.enqueue_many(&mut tx, &jobs).await?;
        tx.commit().await?;
        metrics::counter!("muster_webhook_replayed_total").increment(jobs.len() as u64);
        Ok(Some(Replay {
            replay_id,
            deliveries: jobs.len(),
            truncated,
        }))
    }

    /// Forgets finished deliveries (delivered or dead) older than `keep`,
    /// their attempt logs with them; answers how many.
    pub async fn purge_finished(&self, keep: std::time::Duration) -> Result<u64, JobsError> {
        let done = sqlx::query!(
            r#"delete from webhook_deliveries
                where status in ('delivered', 'dead')
                  and coalesce(delivered_at, created_at) < now() - make_interval(secs => $1)"#,
            keep.as_secs_f64(),
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The active subscriptions of `tenants`, on the reactor's connection
    /// (inside the transaction that moves its checkpoint).
    pub async fn active_for(
        conn: &mut PgConnection,
        tenants: &[&TenantId],
    ) -> Result<Vec<Subscription>, JobsError> {
        let tenants: Vec<&str> = tenants.iter().map(|t| t.as_str()).collect();
        let rows = sqlx::query!(
            r#"select tenant_id, webhook_id, event_types, created_at from public.webhooks
                where tenant_id = any($1) and deleted_at is null and disabled_at is null"#,
            &tenants as &[&str],
        )
        .fetch_all(conn)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Subscription {
                    tenant_id: tenant_of(r.tenant_id)?,
                    webhook_id: r.webhook_id,
                    event_types: r.event_types,
                    created_at: r.created_at,
                })
            })
            .collect()
    }

    /// Inserts `deliveries` on the reactor's connection; a (subscription,
    /// event) pair that already has one is skipped. Returns the (tenant,
    /// delivery id) of those inserted.
    pub async fn insert_deliveries(
        conn: &mut PgConnection,
        deliveries: &[NewDelivery],
    ) -> Result<Vec<(TenantId, Uuid)>, JobsError> {
        let tenants: Vec<&str> = deliveries.iter().map(|d| d.tenant.as_str()).collect();
        let ids: Vec<Uuid> = deliveries.iter().map(|d| d.delivery_id).collect();
        let webhooks: Vec<Uuid> = deliveries.iter().map(|d| d.webhook_id).collect();
        let positions: Vec<i64> = deliveries.iter().map(|d| d.event_position).collect();
        let types: Vec<&str> = deliveries.iter().map(|d| d.event_type.as_str()).collect();
        let rows = sqlx::query!(
            r#"insert into public.webhook_deliveries
                   (tenant_id, delivery_id, webhook_id, event_position, event_type)
               select * from unnest($1::text[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[])
               on conflict (tenant_id, webhook_id, event_position) where replay_of is null
               do nothing
               returning tenant_id, delivery_id"#,
            &tenants as &[&str],
            &ids,
            &webhooks,
            &positions,
            &types as &[&str],
        )
        .fetch_all(conn)
        .await?;
        rows.into_iter()
            .map(|r| Ok((tenant_of(r.tenant_id)?, r.delivery_id)))
            .collect()
    }

    /// The active subscriptions of `tenant` with their secrets, by id: the
    /// dispatch targets of deployment steps.
    pub async fn targets(&self, tenant: &TenantId) -> Result<Vec<Target>, JobsError> {
        Ok(sqlx::query_as!(
            Target,
            r#"select webhook_id, url, secret, event_types from webhooks
                where tenant_id = $1 and deleted_at is null and disabled_at is null
                order by webhook_id"#,
            tenant.as_str(),
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Delivery `id` of `tenant` with its subscription's target.
    pub async fn pending_delivery(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<Option<PendingDelivery>, JobsError> {
        // The event comes in the same round trip: a delivery is a handful
        // of statements, and this was one of them. Events are never
        // deleted, so the inner join loses no delivery.
        let row = sqlx::query!(
            r#"select d.status, d.event_type, w.url, w.secret,
                      case when w.deleted_at is not null
                           then 'the subscription was deleted'
                           when w.disabled_at is not null
                           then 'the endpoint is disabled: ' || coalesce(w.disabled_reason, 'disabled')
                      end as held_back,
                      d.replay_of,
                      e.tenant_id as e_tenant_id, e.position, e.stream_type, e.stream_id,
                      e.stream_version, e.event_type as e_event_type, e.schema_version,
                      e.payload, e.metadata, e.recorded_at,
                      (select k.sealed from personal_keys k
                        where k.tenant_id = e.tenant_id
                          and k.key_id = (e.payload->'sealed_personal'->>'key')::uuid) as "data_key?"
                 from webhook_deliveries d
                 join webhooks w on w.tenant_id = d.tenant_id and w.webhook_id = d.webhook_id
                 join events e on e.tenant_id = d.tenant_id and e.position = d.event_position
                where d.tenant_id = $1 and d.delivery_id = $2"#,
            tenant.as_str(),
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(PendingDelivery {
                status: DeliveryStatus::try_from(r.status)?,
                event_type: r.event_type,
                event: EventRow {
                    tenant_id: r.e_tenant_id,
                    position: r.position,
                    stream_type: r.stream_type,
                    stream_id: r.stream_id,
                    stream_version: r.stream_version,
                    event_type: r.e_event_type,
                    schema_version: r.schema_version,
                    payload: r.payload,
                    metadata: r.metadata,
                    recorded_at: r.recorded_at,
                    data_key: r.data_key,
                },
                url: r.url,
                secret: r.secret,
                held_back: r.held_back,
                replay_of: r.replay_of,
            })
        })
        .transpose()
    }

    /// Logs an attempt of delivery `id` and moves its status, with its
    /// endpoint's failure clock: a success stops it, a failure starts it
    /// (if it is not running). Answers, for a failed attempt, what the
    /// endpoint's health rule needs (`muster_app`'s
    /// `note_webhook_failure` decides whether to disable it).
    pub async fn record_attempt(
        &self,
        tenant: &TenantId,
        id: Uuid,
        attempt: &AttemptRecord<'_>,
    ) -> Result<Option<Failing>, JobsError> {
        if attempt.status == DeliveryStatus::Delivered {
            // The common case in one round trip, with no transaction
            // around it: this is most of a delivery's database time.
            log_attempt(&self.pool, tenant, id, attempt).await?;
            return Ok(None);
        }
        let mut tx = self.pool.begin().await?;
        log_attempt(&mut *tx, tenant, id, attempt).await?;
        let failing = sqlx::query!(
            r#"update webhooks w
                  set failing_since = coalesce(w.failing_since, now())
                 from webhook_deliveries d
                where d.tenant_id = $1 and d.delivery_id = $2
                  and w.tenant_id = d.tenant_id and w.webhook_id = d.webhook_id
            returning w.webhook_id, w.failing_since as "failing_since!",
                      w.disabled_at is not null as "disabled!""#,
            tenant.as_str(),
            id,
        )
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(failing.map(|f| Failing {
            webhook_id: f.webhook_id,
            since: f.failing_since,
            disabled: f.disabled,
        }))
    }

    /// Makes delivery `id` a dead letter if it is still pending: its
    /// endpoint was disabled, so no attempt follows.
    pub async fn bury(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobsError> {
        sqlx::query!(
            r#"update webhook_deliveries set status = 'dead'
                where tenant_id = $1 and delivery_id = $2 and status = 'pending'"#,
            tenant.as_str(),
            id,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How long an endpoint may fail every attempt before it is disabled.
    pub fn disable_after(&self) -> std::time::Duration {
        self.disable_after
    }

    /// Creates a subscription of `tenant`.
    pub async fn create(
        &self,
        tenant: &TenantId,
        url: &str,
        event_types: &[String],
        secret: &str,
    ) -> Result<Webhook, JobsError> {
        Ok(sqlx::query_as!(
            Webhook,
            r#"insert into webhooks (tenant_id, webhook_id, url, event_types, secret)
               values ($1, $2, $3, $4, $5)
               returning webhook_id as id, url, event_types, created_at, disabled_at,
                         disabled_reason"#,
            tenant.as_str(),
            Uuid::now_v7(),
            url,
            event_types,
            secret,
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Active subscriptions of `tenant` after `after`, by id.
    pub async fn list(
        &self,
        tenant: &TenantId,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Webhook>, JobsError> {
        Ok(sqlx::query_as!(
            Webhook,
            r#"select webhook_id as id, url, event_types, created_at, disabled_at, disabled_reason
                 from webhooks
                where tenant_id = $1 and deleted_at is null
                  and ($2::uuid is null or webhook_id > $2)
                order by webhook_id limit $3"#,
            tenant.as_str(),
            after,
            limit,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a subscription: it matches no further events; deliveries
    /// already queued still run. `false`: no such active subscription.
    pub async fn delete(&self, tenant: &TenantId, id: Uuid) -> Result<bool, JobsError> {
        let done = sqlx::query!(
            r#"update webhooks set deleted_at = now()
                where tenant_id = $1 and webhook_id = $2 and deleted_at is null"#,
            tenant.as_str(),
            id,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `tenant` has subscription `id` (deleted ones included).
    pub async fn exists(&self, tenant: &TenantId, id: Uuid) -> Result<bool, JobsError> {
        Ok(sqlx::query_scalar!(
            r#"select exists (select 1 from webhooks where tenant_id = $1 and webhook_id = $2)
                   as "exists!""#,
            tenant.as_str(),
            id,
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Deliveries of subscription `webhook` with their attempts, newest
    /// first, before `before`.
    pub async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook: Uuid,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Delivery>, JobsError> {
        let rows = sqlx::query!(
            r#"select d.delivery_id, d.event_position, d.event_type, d.status, d.attempts,
                      d.last_status_code, d.last_error, d.created_at, d.delivered_at, d.replay_of,
                      coalesce((select jsonb_agg(jsonb_build_object(
                                  'attempt', a.attempt, 'started_at', a.started_at,
                                  'status_code', a.status_code, 'latency_ms', a.latency_ms,
                                  'error', a.error) order by a.attempt)
                                  from webhook_attempts a
                                 where a.tenant_id = d.tenant_id
                                   and a.delivery_id = d.delivery_id),
                               '[]'::jsonb) as "attempt_log!"
                 from webhook_deliveries d
                where d.tenant_id = $1 and d.webhook_id = $2
                  and ($3::uuid is null or d.delivery_id < $3)
                order by d.delivery_id desc limit $4"#,
            tenant.as_str(),
            webhook,
            before,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Delivery {
                    id: r.delivery_id,
                    event_position: r.event_position,
                    event_type: r.event_type,
                    status: DeliveryStatus::try_from(r.status)?,
                    attempts: r.attempts,
                    last_status_code: r.last_status_code,
                    last_error: r.last_error,
                    created_at: r.created_at,
                    delivered_at: r.delivered_at,
                    replay_of: r.replay_of,
                    attempt_log: serde_json::from_value(r.attempt_log)
                        .map_err(|e| JobsError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }
}

/// A tenant id as stored (the tables only hold valid ones).
fn tenant_of(stored: String) -> Result<TenantId, JobsError> {
    TenantId::try_from(stored).map_err(|e| JobsError::Corrupt(e.to_string()))
}

/// One statement: the delivery's new state, its attempt log entry and,
/// after a success, the end of its endpoint's failure clock.
///
/// It commits without waiting for the WAL flush (`synchronous_commit` is
/// set for this transaction only, inside the statement, so that a success
/// needs no transaction of its own): the queue's record that the job is
/// done commits after it and flushes it too, and if a crash loses both,
/// the job runs again (at least once, same delivery id). Waiting here made
/// every delivery wait for an fsync of its own.
///
/// A healthy endpoint's row is neither locked nor rewritten: locking it
/// made every delivery to one endpoint wait for the one before it (the
/// backlog drained 4x slower). A failure racing a success is ordered
/// after it, which is as true as any order of two concurrent attempts.
async fn log_attempt<'c, E>(
    conn: E,
    tenant: &TenantId,
    id: Uuid,
    attempt: &AttemptRecord<'_>,
) -> Result<(), JobsError>
where
    E: sqlx::PgExecutor<'c>,
{
    sqlx::query!(
        r#"with delivery as (
               update webhook_deliveries
                  set attempts = attempts + 1, status = $3, last_status_code = $4,
                      last_error = $5,
                      delivered_at = case when $3 = 'delivered' then now() end
                where tenant_id = $1 and delivery_id = $2
                returning tenant_id, delivery_id, webhook_id, attempts),
           logged as (
               insert into webhook_attempts
                     (tenant_id, delivery_id, attempt, started_at, status_code, latency_ms, error)
               select tenant_id, delivery_id, attempts, $6, $4, $7, $5 from delivery),
           healthy as (
               update webhooks w set failing_since = null
                 from delivery d
                where $3 = 'delivered'
                  and w.tenant_id = d.tenant_id and w.webhook_id = d.webhook_id
                  and w.failing_since is not null)
           select set_config('synchronous_commit', 'off', true)"#,
        tenant.as_str(),
        id,
        attempt.status.name(),
        attempt.status_code.map(i32::from),
        attempt.error,
        attempt.started_at,
        attempt.latency.as_secs_f64() * 1000.0,
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}
