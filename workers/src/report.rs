//! The report job: build one report file from the read models, streaming
//! rows into ~256 KiB chunks stored in `report_chunks`, so memory stays
//! bounded whatever the report's size, and progress is visible while it
//! runs.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use muster_domain::time::TimeRange;
use muster_jobs::reports::{ReportFormat, ReportKind, ReportStatus, Reports};
use muster_jobs::{JobsError, ReportJob};
use muster_projections::query::Occupancy;
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::Runtime;
use crate::failure::{Cause, JobFailure};
use crate::queue::{Attempt, JobLease};

const CHUNK: usize = 256 * 1024;
/// Resources per page of the utilization report.
const RESOURCE_PAGE: i64 = 500;

/// Builds one report.
pub(crate) async fn build_report(
    rt: &Runtime,
    job: &ReportJob,
    book: &mut Attempt,
) -> Result<(), JobFailure> {
    let span = tracing::info_span!("job.report", report_id = %job.report_id, tenant = %job.tenant, attempt = book.number());
    let Some(lease) = JobLease::take(rt, format!("report:{}", job.report_id)).await? else {
        // Another worker builds it: leave its progress alone, look later.
        return Err(JobFailure::Retry(Cause::Leased("report")));
    };
    let result = build(rt, job).instrument(span).await;
    lease.release().await;
    if let Err(failure) = &result {
        let e = failure.cause().to_string();
        let for_good = book.is_last() || matches!(failure, JobFailure::Fatal(_));
        if let Err(re) = rt
            .reports
            .record_failure(&job.tenant, job.report_id, &e, for_good)
            .await
        {
            tracing::warn!(report_id = %job.report_id, error = %re, "cannot record the report's failure");
        }
    }
    result
}

async fn build(rt: &Runtime, job: &ReportJob) -> Result<(), JobFailure> {
    let pool = rt.store.pool();
    let Some(request) = rt.reports.order(&job.tenant, job.report_id).await? else {
        return Err(JobFailure::Fatal(Cause::Missing("report")));
    };
    if request.status == ReportStatus::Done {
        return Ok(());
    }
    // A retry starts over: drop what an earlier attempt wrote.
    rt.reports.start(&job.tenant, job.report_id).await?;
    let window = TimeRange {
        starts_at: request.range_from,
        ends_at: request.range_to,
    };
    let mut out = ChunkWriter::new(&rt.reports, job, request.format);
    match request.kind {
        ReportKind::Utilization => {
            utilization(pool, job, &window, request.resource_kind, &mut out).await?
        }
        ReportKind::Bookings => bookings(pool, job, &window, &mut out).await?,
        ReportKind::StatusSummary => status_summary(pool, job, &window, &mut out).await?,
    }
    out.finish().await?;
    metrics::counter!("muster_reports_total", "kind" => request.kind.name()).increment(1);
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
    let mut rows = sqlx::query_as!(
        BookingRow,
        "select booking_id, title, client_name, client_email, starts_at, ends_at, headcount, status
           from read.bookings
          where tenant_id = $1 and starts_at >= $2 and starts_at < $3
          order by starts_at, booking_id",
        job.tenant.as_str(),
        window.starts_at,
        window.ends_at,
    )
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
    let mut rows = sqlx::query!(
        r#"select (starts_at at time zone 'UTC')::date as "date!", status,
                  count(*)::int8 as "bookings!"
             from read.bookings
            where tenant_id = $1 and starts_at >= $2 and starts_at < $3
            group by 1, 2 order by 1, 2"#,
        job.tenant.as_str(),
        window.starts_at,
        window.ends_at,
    )
    .fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        let (date, status, count) = (row.date, row.status, row.bookings);
        out.row(&[
            Value::Text(date.to_string()),
            Value::Text(status),
            Value::Number(count as f64),
        ]);
        out.flush_if_full().await?;
    }
    Ok(())
}

enum Value {
    Text(String),
    Number(f64),
    Null,
}

/// Serialises rows as CSV or a JSON array and stores them in chunks.
struct ChunkWriter<'a> {
    reports: &'a Reports,
    job: &'a ReportJob,
    format: ReportFormat,
    columns: Vec<&'static str>,
    buf: Vec<u8>,
    seq: i32,
    rows: i64,
    bytes: i64,
}

impl<'a> ChunkWriter<'a> {
    fn new(reports: &'a Reports, job: &'a ReportJob, format: ReportFormat) -> Self {
        Self {
            reports,
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
            ReportFormat::Csv => {
                self.buf.extend_from_slice(columns.join(",").as_bytes());
                self.buf.extend_from_slice(b"\r\n");
            }
            ReportFormat::Json => self.buf.extend_from_slice(b"["),
        }
    }

    fn row(&mut self, values: &[Value]) {
        match self.format {
            ReportFormat::Csv => {
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
            ReportFormat::Json => {
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

    async fn flush_if_full(&mut self) -> Result<(), JobsError> {
        if self.buf.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    /// Stores the buffer as the next chunk and publishes the progress.
    async fn flush(&mut self) -> Result<(), JobsError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.bytes += self.buf.len() as i64;
        self.reports
            .write_chunk(
                &self.job.tenant,
                self.job.report_id,
                self.seq,
                &self.buf,
                self.rows,
                self.bytes,
            )
            .await?;
        self.seq += 1;
        self.buf.clear();
        Ok(())
    }

    async fn finish(mut self) -> Result<(), JobsError> {
        if let ReportFormat::Json = self.format {
            self.buf.extend_from_slice(b"\n]\n");
        }
        self.flush().await?;
        self.reports
            .finish(&self.job.tenant, self.job.report_id)
            .await
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
