//! Report requests, their progress and their files (in chunks), with one
//! owner: the API requests and reads them, the report worker writes them.

use chrono::{DateTime, Utc};
use muster_domain::TenantId;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::JobsError;
use crate::job::ReportJob;
use crate::queue::JobQueue;
use crate::text_enum::text_enum;

/// A report from a row of `reports` (its columns by name).
macro_rules! report_of {
    ($row:expr) => {{
        let r = $row;
        Ok::<_, JobsError>(Report {
            id: r.report_id,
            kind: r.kind.try_into()?,
            format: r.format.try_into()?,
            from: r.range_from,
            to: r.range_to,
            resource_kind: r.resource_kind,
            status: r.status.try_into()?,
            rows_written: r.rows_written,
            rows_total: r.rows_total,
            bytes: r.bytes,
            error: r.error,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }};
}

/// The report tables. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reports {
    pool: PgPool,
    queue: JobQueue,
}

text_enum! {
    /// What a report reports.
    pub enum ReportKind {
        /// Per resource per local day: available hours, booked hours, ratio.
        Utilization = "utilization",
        /// One row per booking starting in the window.
        Bookings = "bookings",
        /// Bookings per status per (UTC) day.
        StatusSummary = "status_summary",
    }
}

text_enum! {
    /// A report file's format.
    pub enum ReportFormat {
        /// `text/csv`, with a header row.
        Csv = "csv",
        /// `application/json`, an array of objects.
        Json = "json",
    }
}

text_enum! {
    /// Where a report stands.
    pub enum ReportStatus {
        /// Waiting for a worker (or for its next attempt).
        Queued = "queued",
        /// A worker is writing it.
        Running = "running",
        /// Its file can be downloaded.
        Done = "done",
        /// It failed for good.
        Failed = "failed",
    }
}

/// A report request and its progress.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    /// Its id.
    pub id: Uuid,
    /// What it reports.
    pub kind: ReportKind,
    /// Its file's format.
    pub format: ReportFormat,
    /// Window start.
    pub from: DateTime<Utc>,
    /// Window end.
    pub to: DateTime<Utc>,
    /// Resource kind filter (utilization).
    pub resource_kind: Option<String>,
    /// Where it stands.
    pub status: ReportStatus,
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
    /// What it reports.
    pub kind: ReportKind,
    /// Its file's format.
    pub format: ReportFormat,
    /// Window start.
    pub from: DateTime<Utc>,
    /// Window end.
    pub to: DateTime<Utc>,
    /// Resource kind filter.
    pub resource_kind: Option<String>,
}

/// A report's request as the worker reads it.
#[derive(Debug, Clone)]
pub struct ReportOrder {
    /// What it reports.
    pub kind: ReportKind,
    /// Its file's format.
    pub format: ReportFormat,
    /// Window start.
    pub range_from: DateTime<Utc>,
    /// Window end.
    pub range_to: DateTime<Utc>,
    /// Resource kind filter.
    pub resource_kind: Option<String>,
    /// Where it stands.
    pub status: ReportStatus,
}

impl Reports {
    /// The report tables on `pool`, queueing report jobs on `queue`.
    pub fn new(pool: PgPool, queue: JobQueue) -> Self {
        Self { pool, queue }
    }

    /// Records a report request and queues its job, in one transaction.
    pub async fn request(
        &self,
        tenant: &TenantId,
        requested_by: &str,
        request: &ReportRequest,
    ) -> Result<Report, JobsError> {
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query!(
            r#"insert into reports (tenant_id, report_id, kind, format, range_from, range_to,
                                    resource_kind, requested_by)
               values ($1, $2, $3, $4, $5, $6, $7, $8)
               returning report_id, kind, format, range_from, range_to, resource_kind, status,
                         rows_written, rows_total, bytes, error, created_at, started_at,
                         finished_at"#,
            tenant.as_str(),
            id,
            request.kind.name(),
            request.format.name(),
            request.from,
            request.to,
            request.resource_kind,
            requested_by,
        )
        .fetch_one(&mut *tx)
        .await?;
        let report = report_of!(row)?;
        let job = ReportJob {
            tenant: tenant.to_owned(),
            report_id: id,
            enqueued_at: None,
        };
        self.queue.enqueue(&mut tx, &job).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Report `id` of `tenant`.
    pub async fn get(&self, tenant: &TenantId, id: Uuid) -> Result<Option<Report>, JobsError> {
        let row = sqlx::query!(
            r#"select report_id, kind, format, range_from, range_to, resource_kind, status,
                      rows_written, rows_total, bytes, error, created_at, started_at, finished_at
                 from reports where tenant_id = $1 and report_id = $2"#,
            tenant.as_str(),
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| report_of!(row)).transpose()
    }

    /// The tenant's reports after `after`, newest first.
    pub async fn list(
        &self,
        tenant: &TenantId,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Report>, JobsError> {
        let rows = sqlx::query!(
            r#"select report_id, kind, format, range_from, range_to, resource_kind, status,
                      rows_written, rows_total, bytes, error, created_at, started_at, finished_at
                 from reports where tenant_id = $1 and ($2::uuid is null or report_id < $2)
                order by report_id desc limit $3"#,
            tenant.as_str(),
            before,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| report_of!(row)).collect()
    }

    /// Forgets finished reports (done or failed) older than `keep`, their
    /// files with them; answers how many.
    pub async fn purge_finished(&self, keep: std::time::Duration) -> Result<u64, JobsError> {
        let done = sqlx::query!(
            r#"delete from reports
                where status in ('done', 'failed')
                  and finished_at < now() - make_interval(secs => $1)"#,
            keep.as_secs_f64(),
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Chunk `seq` of report `id`'s file (`None` past the last).
    pub async fn chunk(
        &self,
        tenant: &TenantId,
        id: Uuid,
        seq: i32,
    ) -> Result<Option<Vec<u8>>, JobsError> {
        Ok(sqlx::query_scalar!(
            "select data from report_chunks where tenant_id = $1 and report_id = $2 and seq = $3",
            tenant.as_str(),
            id,
            seq,
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// What report `id` of `tenant` asks for.
    pub async fn order(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<Option<ReportOrder>, JobsError> {
        let row = sqlx::query!(
            r#"select kind, format, range_from, range_to, resource_kind, status
                 from reports where tenant_id = $1 and report_id = $2"#,
            tenant.as_str(),
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ReportOrder {
                kind: r.kind.try_into()?,
                format: r.format.try_into()?,
                range_from: r.range_from,
                range_to: r.range_to,
                resource_kind: r.resource_kind,
                status: r.status.try_into()?,
            })
        })
        .transpose()
    }

    /// Starts (or starts over) building report `id`: what an earlier
    /// attempt wrote is dropped.
    pub async fn start(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobsError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "delete from report_chunks where tenant_id = $1 and report_id = $2",
            tenant.as_str(),
            id,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"update reports set status = 'running', started_at = now(), rows_written = 0,
                                  bytes = 0, error = null
                where tenant_id = $1 and report_id = $2"#,
            tenant.as_str(),
            id,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores chunk `seq` of report `id` and publishes its progress.
    pub async fn write_chunk(
        &self,
        tenant: &TenantId,
        id: Uuid,
        seq: i32,
        data: &[u8],
        rows_written: i64,
        bytes: i64,
    ) -> Result<(), JobsError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "insert into report_chunks (tenant_id, report_id, seq, data) values ($1, $2, $3, $4)",
            tenant.as_str(),
            id,
            seq,
            data,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "update reports set rows_written = $3, bytes = $4 where tenant_id = $1 and report_id = $2",
            tenant.as_str(),
            id,
            rows_written,
            bytes,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks report `id` done.
    pub async fn finish(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobsError> {
        sqlx::query!(
            r#"update reports set status = 'done', rows_total = rows_written, finished_at = now()
                where tenant_id = $1 and report_id = $2"#,
            tenant.as_str(),
            id,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records why an attempt at report `id` failed: `for_good` makes it
    /// `failed`, otherwise it is `queued` again for the next attempt.
    pub async fn record_failure(
        &self,
        tenant: &TenantId,
        id: Uuid,
        error: &str,
        for_good: bool,
    ) -> Result<(), JobsError> {
        let status = if for_good {
            ReportStatus::Failed
        } else {
            ReportStatus::Queued
        };
        sqlx::query!(
            r#"update reports set status = $3, error = $4,
                      finished_at = case when $3 = 'failed' then now() end
                where tenant_id = $1 and report_id = $2"#,
            tenant.as_str(),
            id,
            status.name(),
            error,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
