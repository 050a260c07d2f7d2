//! The report job: build one report file from the read models, streaming
//! rows into ~256 KiB chunks stored in `report_chunks`, so memory stays
//! bounded whatever the report's size, and progress is visible while it
//! runs.

use apalis::prelude::{Attempt as ApalisAttempt, BoxDynError, Data, TaskId};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;
use muster_domain::time::TimeRange;
use muster_projections::query::Occupancy;
use muster_store::jobs::JobKind;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::Shared;
use crate::queue::{Attempt, JobFailure, JobLease};

const CHUNK: usize = 256 * 1024;
/// Resources per page of the utilization report.
const RESOURCE_PAGE: i64 = 500;

/// Arguments of a report job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportJob {
    /// The tenant.
    pub tenant: String,
    /// The report.
    pub report_id: Uuid,
    /// When it was queued (ms since the epoch).
    #[serde(default)]
    pub enqueued_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Request {
    kind: String,
    format: String,
    range_from: DateTime<Utc>,
    range_to: DateTime<Utc>,
    resource_kind: Option<String>,
    status: String,
}

/// Builds one report.
pub(crate) async fn run(
    job: ReportJob,
    rt: Data<Shared>,
    id: TaskId,
    attempt: ApalisAttempt,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job.report", report_id = %job.report_id, tenant = %job.tenant, attempt = attempt.current());
    let book = Attempt::begin(
        &rt,
        JobKind::Report,
        &id,
        attempt.current(),
        job.enqueued_at,
    );
    let lease = match JobLease::take(&rt, format!("report:{}", job.report_id)).await {
        Ok(Some(lease)) => lease,
        // Another worker builds it: leave its progress alone, look later.
        Ok(None) => {
            let busy = "another worker is building this report".to_owned();
            return book.finish(Err(JobFailure::Retry(busy))).await;
        }
        Err(e) => return book.finish(Err(e.into())).await,
    };
    let result = build(rt.store.pool(), &job).instrument(span).await;
    lease.release().await;
    if let Err(JobFailure::Retry(e) | JobFailure::Fatal(e)) = &result {
        let status = if book.is_last() || matches!(result, Err(JobFailure::Fatal(_))) {
            "failed"
        } else {
            "queued"
        };
        let _ = sqlx::query(
            "update reports set status = $3, error = $4,
                    finished_at = case when $3 = 'failed' then now() end
              where tenant_id = $1 and report_id = $2",
        )
        .bind(&job.tenant)
        .bind(job.report_id)
        .bind(status)
        .bind(e)
        .execute(rt.store.pool())
        .await;
    }
    book.finish(result).await
}

async fn build(pool: &PgPool, job: &ReportJob) -> Result<(), JobFailure> {
    let Some(request) = sqlx::query_as::<_, Request>(
        "select kind, format, range_from, range_to, resource_kind, status
           from reports where tenant_id = $1 and report_id = $2",
    )
    .bind(&job.tenant)
    .bind(job.report_id)
    .fetch_optional(pool)
    .await?
    else {
        return Err(JobFailure::Fatal("the report does not exist".into()));
    };
    if request.status == "done" {
        return Ok(());
    }
    // A retry starts over: drop what an earlier attempt wrote.
    sqlx::query("delete from report_chunks where tenant_id = $1 and report_id = $2")
        .bind(&job.tenant)
        .bind(job.report_id)
        .execute(pool)
        .await?;
    sqlx::query(
        "update reports set status = 'running', started_at = now(), rows_written = 0, bytes = 0,
                error = null
          where tenant_id = $1 and report_id = $2",
    )
    .bind(&job.tenant)
    .bind(job.report_id)
    .execute(pool)
    .await?;
    let window = TimeRange {
        starts_at: request.range_from,
        ends_at: request.range_to,
    };
    let format = match request.format.as_str() {
        "json" => Format::Json,
        _ => Format::Csv,
    };
    let mut out = ChunkWriter::new(pool, job, format);
    match request.kind.as_str() {
        "utilization" => utilization(pool, job, &window, request.resource_kind, &mut out).await?,
        "bookings" => bookings(pool, job, &window, &mut out).await?,
        "status_summary" => status_summary(pool, job, &window, &mut out).await?,
        other => return Err(JobFailure::Fatal(format!("unknown report kind {other}"))),
    }
    out.finish().await?;
    metrics::counter!("muster_reports_total", "kind" => request.kind).increment(1);
    Ok(())
}

/// Per resource per local day: available hours, booked hours, ratio.
async fn utilization(
    pool: &PgPool,
    job: &ReportJob,
    window: &TimeRange,
    kind: Option<String>,
    out: &mut ChunkWriter<'_>,
) -> Result<(), JobFailure> {
    out.header(&[
        "resource_id",
        "resource_name",
        "resource_kind",
        "date",
        "available_hours",
        "booked_hours",
        "utilization",
    ]);
    let mut after = None;
    loop {
        // The same assembly as the API's utilization, a page at a time;
        // each resource's days are computed only as they are written.
        let page = Occupancy::utilization_page(
            pool,
            &job.tenant,
            kind.as_deref(),
            *window,
            after,
            RESOURCE_PAGE,
        )
        .await?;
        let Some(last) = page.resources().last() else {
            break;
        };
        after = Some(last.id);
        for u in page.utilization() {
            for day in u.days {
                out.row(&[
                    Value::Text(u.resource_id.to_string()),
                    Value::Text(u.name.clone()),
                    Value::Text(u.kind.clone()),
                    Value::Text(day.date.to_string()),
                    Value::Number(day.available_hours),
                    Value::Number(day.booked_hours),
                    day.utilization.map_or(Value::Null, Value::Number),
                ]);
            }
            out.flush_if_full().await?;
        }
        if (page.resources().len() as i64) < RESOURCE_PAGE {
            break;
        }
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct BookingRow {
    booking_id: Uuid,
    title: String,
    client_name: String,
    client_email: Option<String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    headcount: i32,
    status: String,
}

/// One row per booking starting in the window.
async fn bookings(
    pool: &PgPool,
    job: &ReportJob,
    window: &TimeRange,
    out: &mut ChunkWriter<'_>,
) -> Result<(), JobFailure> {
    out.header(&[
        "booking_id",
        "title",
        "client_name",
        "client_email",
        "starts_at",
        "ends_at",
        "headcount",
        "status",
    ]);
    let mut conn = pool.acquire().await?;
    let mut rows = sqlx::query_as::<_, BookingRow>(
        "select booking_id, title, client_name, client_email, starts_at, ends_at, headcount, status
           from read.bookings
          where tenant_id = $1 and starts_at >= $2 and starts_at < $3
          order by starts_at, booking_id",
    )
    .bind(&job.tenant)
    .bind(window.starts_at)
    .bind(window.ends_at)
    .fetch(&mut *conn);
    while let Some(b) = rows.try_next().await? {
        out.row(&[
            Value::Text(b.booking_id.to_string()),
            Value::Text(b.title),
            Value::Text(b.client_name),
            b.client_email.map_or(Value::Null, Value::Text),
            Value::Text(b.starts_at.to_rfc3339()),
            Value::Text(b.ends_at.to_rfc3339()),
            Value::Number(f64::from(b.headcount)),
            Value::Text(b.status),
        ]);
        out.flush_if_full().await?;
    }
    Ok(())
}

/// Bookings per status per (UTC) start day.
async fn status_summary(
    pool: &PgPool,
    job: &ReportJob,
    window: &TimeRange,
    out: &mut ChunkWriter<'_>,
) -> Result<(), JobFailure> {
    out.header(&["date", "status", "bookings"]);
    let mut conn = pool.acquire().await?;
    let mut rows = sqlx::query_as::<_, (NaiveDate, String, i64)>(
        "select (starts_at at time zone 'UTC')::date, status, count(*)::int8
           from read.bookings
          where tenant_id = $1 and starts_at >= $2 and starts_at < $3
          group by 1, 2 order by 1, 2",
    )
    .bind(&job.tenant)
    .bind(window.starts_at)
    .bind(window.ends_at)
    .fetch(&mut *conn);
    while let Some((date, status, count)) = rows.try_next().await? {
        out.row(&[
            Value::Text(date.to_string()),
            Value::Text(status),
            Value::Number(count as f64),
        ]);
        out.flush_if_full().await?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Format {
    Csv,
    Json,
}

enum Value {
    Text(String),
    Number(f64),
    Null,
}

/// Serialises rows as CSV or a JSON array and stores them in chunks.
struct ChunkWriter<'a> {
    pool: &'a PgPool,
    job: &'a ReportJob,
    format: Format,
    columns: Vec<&'static str>,
    buf: Vec<u8>,
    seq: i32,
    rows: i64,
    bytes: i64,
}

impl<'a> ChunkWriter<'a> {
    fn new(pool: &'a PgPool, job: &'a ReportJob, format: Format) -> Self {
        Self {
            pool,
            job,
            format,
            columns: Vec::new(),
            buf: Vec::with_capacity(CHUNK + 4096),
            seq: 0,
            rows: 0,
            bytes: 0,
        }
    }

    fn header(&mut self, columns: &[&'static str]) {
        self.columns = columns.to_vec();
        match self.format {
            Format::Csv => {
                self.buf.extend_from_slice(columns.join(",").as_bytes());
                self.buf.extend_from_slice(b"\r\n");
            }
            Format::Json => self.buf.extend_from_slice(b"["),
        }
    }

    fn row(&mut self, values: &[Value]) {
        match self.format {
            Format::Csv => {
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    match v {
                        Value::Text(t) => csv_field(&mut self.buf, t),
                        Value::Number(n) => self.buf.extend_from_slice(n.to_string().as_bytes()),
                        Value::Null => {}
                    }
                }
                self.buf.extend_from_slice(b"\r\n");
            }
            Format::Json => {
                if self.rows > 0 {
                    self.buf.push(b',');
                }
                self.buf.extend_from_slice(b"\n");
                let object: serde_json::Map<String, serde_json::Value> = self
                    .columns
                    .iter()
                    .zip(values)
                    .map(|(c, v)| {
                        let v = match v {
                            Value::Text(t) => serde_json::Value::String(t.clone()),
                            Value::Number(n) => serde_json::json!(n),
                            Value::Null => serde_json::Value::Null,
                        };
                        ((*c).to_owned(), v)
                    })
                    .collect();
                let _ = serde_json::to_writer(&mut self.buf, &object);
            }
        }
        self.rows += 1;
    }

    async fn flush_if_full(&mut self) -> Result<(), sqlx::Error> {
        if self.buf.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    /// Stores the buffer as the next chunk and publishes the progress.
    async fn flush(&mut self) -> Result<(), sqlx::Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.bytes += self.buf.len() as i64;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "insert into report_chunks (tenant_id, report_id, seq, data) values ($1, $2, $3, $4)",
        )
        .bind(&self.job.tenant)
        .bind(self.job.report_id)
        .bind(self.seq)
        .bind(&self.buf)
        .execute(&mut *tx)
        .await?;
        sqlx::query("update reports set rows_written = $3, bytes = $4 where tenant_id = $1 and report_id = $2")
            .bind(&self.job.tenant)
            .bind(self.job.report_id)
            .bind(self.rows)
            .bind(self.bytes)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.seq += 1;
        self.buf.clear();
        Ok(())
    }

    async fn finish(mut self) -> Result<(), sqlx::Error> {
        if let Format::Json = self.format {
            self.buf.extend_from_slice(b"\n]\n");
        }
        self.flush().await?;
        sqlx::query(
            "update reports set status = 'done', rows_total = rows_written, finished_at = now()
              where tenant_id = $1 and report_id = $2",
        )
        .bind(&self.job.tenant)
        .bind(self.job.report_id)
        .execute(self.pool)
        .await?;
        Ok(())
    }
}

/// Writes `text` as a CSV field, quoted when it must be.
fn csv_field(buf: &mut Vec<u8>, text: &str) {
    if text.contains([',', '"', '\r', '\n']) {
        buf.push(b'"');
        buf.extend_from_slice(text.replace('"', "\"\"").as_bytes());
        buf.push(b'"');
    } else {
        buf.extend_from_slice(text.as_bytes());
    }
}
