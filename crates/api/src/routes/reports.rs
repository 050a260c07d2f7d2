//! Reports: request one (202; a worker builds it from the read models),
//! follow it, download the file.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Utc};
use futures_util::StreamExt;
use muster_domain::TenantId;
use muster_jobs::reports::{Report, ReportFormat, ReportKind, ReportRequest, ReportStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, READERS};
use crate::extract::{PathIds, QueryBody, QueryParams};
use crate::read::invalid;
use crate::{ApiError, AppState};

/// Longest report window.
const MAX_DAYS: i64 = 366;

/// The report routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_report, list_reports))
        .routes(routes!(get_report))
        .routes(routes!(download_report))
}

/// A report to build.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestReportBody {
    /// What to report.
    kind: ReportKind,
    /// Window start (RFC 3339).
    from: DateTime<Utc>,
    /// Window end, after `from`, at most 366 days later.
    to: DateTime<Utc>,
    /// File format (default csv).
    format: Option<ReportFormat>,
    /// Only resources of this kind (utilization).
    resource_kind: Option<String>,
}

/// Request a report: answers 202 with its id; poll `GET /v1/reports/{id}`.
#[utoipa::path(post, path = "/v1/reports", tag = "reports",
    request_body = RequestReportBody,
    responses((status = 202, description = "Queued", body = Report)))]
async fn request_report(
    State(state): State<AppState>,
    request: QueryBody<RequestReportBody>,
) -> Result<(StatusCode, Json<Report>), ApiError> {
    let body = request.body;
    // The same bounds as every other time the API takes (years 1 to 9999
    // in UTC), so that a ±14:00 offset cannot reach year 0 or 10000.
    for (value, field) in [(body.from, "from"), (body.to, "to")] {
        if !(1..=9999).contains(&value.year()) {
            return Err(invalid(field, "must be between the years 1 and 9999"));
        }
    }
    if body.to <= body.from {
        return Err(invalid("to", "must be after from"));
    }
    if body.to - body.from > chrono::Duration::days(MAX_DAYS) {
        return Err(invalid("to", "must be at most 366 days after from"));
    }
    if body
        .resource_kind
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.chars().count() > 100)
    {
        return Err(invalid("resource_kind", "must be 1 to 100 characters"));
    }
    let report = state
        .reports
        .request(
            &request.principal.tenant,
            &request.principal.key_id.to_string(),
            &ReportRequest {
                kind: body.kind,
                format: body.format.unwrap_or(ReportFormat::Csv),
                from: body.from,
                to: body.to,
                resource_kind: body.resource_kind,
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(report)))
}

/// The report named in the path, or 404.
async fn find_report(
    state: &AppState,
    tenant: &TenantId,
    path: &PathIds,
) -> Result<(uuid::Uuid, Report), ApiError> {
    let id = path.id(0, "report")?;
    let report = state
        .reports
        .get(tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("report".into()))?;
    Ok((id, report))
}

/// Paging of the report list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportListQuery {
    /// At most this many (1 to 200, default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportPage {
    /// Reports, newest first.
    items: Vec<Report>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// The tenant's reports, newest first (finished ones are kept for
/// `MUSTER_REPORT_RETENTION`, 30 days by default).
#[utoipa::path(get, path = "/v1/reports", tag = "reports", params(ReportListQuery),
    responses((status = 200, description = "A page of reports", body = ReportPage)))]
async fn list_reports(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<ReportListQuery>,
) -> Result<Json<ReportPage>, ApiError> {
    let principal = auth.require(READERS)?;
    let limit = crate::read::limit(q.limit, 50, 200)?;
    let before = crate::read::id_cursor(q.cursor.as_deref())?;
    let items = state.reports.list(&principal.tenant, before, limit).await?;
    let next_cursor = crate::read::next_cursor(&items, limit, |r| crate::read::id_cursor_of(r.id));
    Ok(Json(ReportPage { items, next_cursor }))
}

/// A report's status and progress.
#[utoipa::path(get, path = "/v1/reports/{id}", tag = "reports",
    params(("id" = Uuid, Path, description = "The report")),
    responses((status = 200, description = "The report", body = Report)))]
async fn get_report(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<Report>, ApiError> {
    let principal = auth.require(READERS)?;
    let (_, report) = find_report(&state, &principal.tenant, &path).await?;
    Ok(Json(report))
}

/// Download a finished report's file, streamed from its stored chunks.
#[utoipa::path(get, path = "/v1/reports/{id}/download", tag = "reports",
    params(("id" = Uuid, Path, description = "The report")),
    responses((status = 200, description = "The file (409 until the report is done)",
               content((String = "text/csv"), (Vec<serde_json::Value> = "application/json")))))]
async fn download_report(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Response, ApiError> {
    let principal = auth.require(READERS)?;
    let (id, report) = find_report(&state, &principal.tenant, &path).await?;
    if report.status != ReportStatus::Done {
        return Err(ApiError::ReportNotReady(report.status.name()));
    }
    let content_type = if report.format == ReportFormat::Json {
        "application/json"
    } else {
        "text/csv; charset=utf-8"
    };
    let disposition = format!(
        "attachment; filename=\"{}-{}.{}\"",
        report.kind.name(),
        report.id,
        report.format.name()
    );
    let reports = state.reports.clone();
    let tenant = principal.tenant.clone();
    let chunks = futures_util::stream::unfold(0, move |seq| {
        let reports = reports.clone();
        let tenant = tenant.clone();
        async move {
            match reports.chunk(&tenant, id, seq).await {
                Ok(Some(data)) => Some((Ok::<_, std::io::Error>(data), seq + 1)),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), i32::MAX)),
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_LENGTH, report.bytes.to_string()),
        ],
        // Fused: a compressing encoder polls its body once more after the
        // end, and `unfold` panics if polled after it ended (the connection
        // died mid-body for every client that accepted gzip or br).
        Body::from_stream(chunks.fuse()),
    )
        .into_response())
}
