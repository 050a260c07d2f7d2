//! Webhook subscriptions, their deliveries and attempts, and report
//! requests: the async side's tables that are configuration or job
//! book-keeping rather than domain history.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::jobs::{JobKind, JobRequest, enqueue};
use crate::{Store, StoreError};

/// A webhook subscription as shown (never with its secret).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
}

/// One delivery of one event to one subscription.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Delivery {
    /// Its id, sent as `X-Muster-Delivery` on every attempt.
    pub id: Uuid,
    /// The event's position.
    pub event_position: i64,
    /// The event's type.
    pub event_type: String,
    /// `pending`, `delivered` or `dead` (attempts used up).
    pub status: String,
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
    /// Every attempt, oldest first.
    #[sqlx(json)]
    #[schema(value_type = Vec<DeliveryAttempt>)]
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
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

/// A report request and its progress.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Report {
    /// Its id.
    pub id: Uuid,
    /// `utilization`, `bookings` or `status_summary`.
    pub kind: String,
    /// `csv` or `json`.
    pub format: String,
    /// Window start.
    pub from: DateTime<Utc>,
    /// Window end.
    pub to: DateTime<Utc>,
    /// Resource kind filter (utilization).
    pub resource_kind: Option<String>,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// Rows written so far.
    pub rows_written: i64,
    /// Rows in all, once done.
    pub rows_total: Option<i64>,
    /// Bytes written so far.
    pub bytes: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When a worker started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a report is asked for.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// `utilization`, `bookings` or `status_summary`.
    pub kind: String,
    /// `csv` or `json`.
    pub format: String,
    /// Window start.
    pub from: DateTime<Utc>,
    /// Window end.
    pub to: DateTime<Utc>,
    /// Resource kind filter.
    pub resource_kind: Option<String>,
}

const REPORT_COLUMNS: &str = "report_id as id, kind, format, range_from as \"from\", range_to as \"to\",
    resource_kind, status, rows_written, rows_total, bytes, error, created_at, started_at, finished_at";

impl Store {
    /// Creates a subscription of `tenant`.
    pub async fn create_webhook(
        &self,
        tenant: &str,
        url: &str,
        event_types: &[String],
        secret: &str,
    ) -> Result<Webhook, StoreError> {
        Ok(sqlx::query_as(
            "insert into webhooks (tenant_id, webhook_id, url, event_types, secret)
             values ($1, $2, $3, $4, $5)
             returning webhook_id as id, url, event_types, created_at",
        )
        .bind(tenant)
        .bind(Uuid::now_v7())
        .bind(url)
        .bind(event_types)
        .bind(secret)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Active subscriptions of `tenant` after `after`, by id.
    pub async fn list_webhooks(
        &self,
        tenant: &str,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Webhook>, StoreError> {
        Ok(sqlx::query_as(
            "select webhook_id as id, url, event_types, created_at from webhooks
              where tenant_id = $1 and deleted_at is null and ($2::uuid is null or webhook_id > $2)
              order by webhook_id limit $3",
        )
        .bind(tenant)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a subscription: it matches no further events; deliveries
    /// already queued still run. `false`: no such active subscription.
    pub async fn delete_webhook(&self, tenant: &str, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "update webhooks set deleted_at = now()
              where tenant_id = $1 and webhook_id = $2 and deleted_at is null",
        )
        .bind(tenant)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `tenant` has subscription `id` (deleted ones included).
    pub async fn webhook_exists(&self, tenant: &str, id: Uuid) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "select exists (select 1 from webhooks where tenant_id = $1 and webhook_id = $2)",
        )
        .bind(tenant)
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Deliveries of subscription `webhook` with their attempts, newest
    /// first, before `before`.
    pub async fn list_deliveries(
        &self,
        tenant: &str,
        webhook: Uuid,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        Ok(sqlx::query_as(
            "select d.delivery_id as id, d.event_position, d.event_type, d.status, d.attempts,
                    d.last_status_code, d.last_error, d.created_at, d.delivered_at,
                    coalesce((select jsonb_agg(jsonb_build_object(
                                'attempt', a.attempt, 'started_at', a.started_at,
                                'status_code', a.status_code, 'latency_ms', a.latency_ms,
                                'error', a.error) order by a.attempt)
                                from webhook_attempts a
                               where a.tenant_id = d.tenant_id and a.delivery_id = d.delivery_id),
                             '[]'::jsonb) as attempt_log
               from webhook_deliveries d
              where d.tenant_id = $1 and d.webhook_id = $2
                and ($3::uuid is null or d.delivery_id < $3)
              order by d.delivery_id desc limit $4",
        )
        .bind(tenant)
        .bind(webhook)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a report request and queues its job, in one transaction.
    pub async fn request_report(
        &self,
        tenant: &str,
        requested_by: &str,
        request: &ReportRequest,
    ) -> Result<Report, StoreError> {
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        let report: Report = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "insert into reports (tenant_id, report_id, kind, format, range_from, range_to,
                                  resource_kind, requested_by)
             values ($1, $2, $3, $4, $5, $6, $7, $8)
             returning {REPORT_COLUMNS}"
        )))
        .bind(tenant)
        .bind(id)
        .bind(&request.kind)
        .bind(&request.format)
        .bind(request.from)
        .bind(request.to)
        .bind(&request.resource_kind)
        .bind(requested_by)
        .fetch_one(&mut *tx)
        .await?;
        let job = JobRequest {
            kind: JobKind::Report,
            tenant: tenant.to_owned(),
            args: serde_json::json!({ "tenant": tenant, "report_id": id }),
            priority: 0,
            idempotency_key: format!("report:{id}"),
            work_units: 1,
        };
        enqueue(&mut tx, &self.job_policies, &job).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Report `id` of `tenant`.
    pub async fn report(&self, tenant: &str, id: Uuid) -> Result<Option<Report>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {REPORT_COLUMNS} from reports where tenant_id = $1 and report_id = $2"
        )))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Chunk `seq` of report `id`'s file (`None` past the last).
    pub async fn report_chunk(
        &self,
        tenant: &str,
        id: Uuid,
        seq: i32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(
            "select data from report_chunks where tenant_id = $1 and report_id = $2 and seq = $3",
        )
        .bind(tenant)
        .bind(id)
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?)
    }
}
