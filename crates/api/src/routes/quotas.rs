//! Quotas (SPEC §12): how much a client, a resource, a pool or an API key
//! may book per local day, week or month (`PUT|GET|DELETE
//! /v1/quotas/{name}`, `GET /v1/quotas`), and what a subject has used
//! (`GET /v1/quotas/{name}/usage`). Every command that books is checked
//! against them in its own transaction (409 `quota-exceeded`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use muster_domain::quota::{QuotaInput, QuotaLimit, QuotaPeriod, QuotaScope, normal_subject};
use muster_store::Role;
use muster_store::quotas::StoredQuota;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, READERS};
use crate::extract::{PathIds, QueryBody, QueryParams};
use crate::read::invalid;
use crate::{ApiError, AppState};

/// The quota routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_quotas))
        .routes(routes!(get_quota, put_quota, delete_quota))
        .routes(routes!(quota_usage))
}

/// A quota's definition, as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    /// Whose bookings count together: `client` (by email,
    /// case-insensitive), `resource`, `pool` (reservations picked from
    /// it) or `key` (the API key that made them).
    scope: QuotaScope,
    /// `day`, `week` (ISO, from Monday) or `month`, local to `timezone`.
    period: QuotaPeriod,
    /// At most this many bookings (and unexpired holds) per period. Give
    /// this or `max_hours`.
    #[schema(minimum = 1, maximum = 100_000, example = 3)]
    max_bookings: Option<u32>,
    /// At most this many hours booked per period, in whole minutes (a
    /// multiple of 1/60).
    #[schema(exclusive_minimum = 0, maximum = 100_000)]
    max_hours: Option<f64>,
    /// IANA zone of the periods (default UTC).
    #[schema(example = "Europe/Berlin")]
    timezone: Option<String>,
    /// Only these subjects (at most 1,000): emails for a client quota,
    /// else ids of the tenant's resources, pools or API keys, each of
    /// which must exist; absent: every subject of the scope.
    subjects: Option<Vec<String>>,
}

/// A quota.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaView {
    /// Its name.
    name: String,
    /// Whose bookings count together.
    scope: QuotaScope,
    /// The period its limit applies to.
    period: QuotaPeriod,
    /// The most bookings per period, for a count quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_bookings: Option<u32>,
    /// The most hours per period, for an hours quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_hours: Option<f64>,
    /// The zone its periods are local to.
    timezone: String,
    /// The subjects it applies to; empty: every one of its scope.
    subjects: Vec<String>,
    /// When it was first defined.
    created_at: DateTime<Utc>,
    /// When it last changed.
    updated_at: DateTime<Utc>,
}

impl From<StoredQuota> for QuotaView {
    fn from(q: StoredQuota) -> Self {
        let (max_bookings, max_hours) = limit(q.spec.limit);
        Self {
            name: q.name,
            scope: q.spec.scope,
            period: q.spec.period,
            max_bookings,
            max_hours,
            timezone: q.spec.timezone.name().to_owned(),
            subjects: q.spec.subjects,
            created_at: q.created_at,
            updated_at: q.updated_at,
        }
    }
}

fn limit(limit: QuotaLimit) -> (Option<u32>, Option<f64>) {
    match limit {
        QuotaLimit::Bookings(n) => (Some(n), None),
        QuotaLimit::Minutes(m) => (None, Some(m as f64 / 60.0)),
    }
}

/// A quota as defined, with how many bookings and holds it counted at once.
#[derive(Debug, Serialize, ToSchema)]
pub struct DefinedQuota {
    /// The quota.
    #[serde(flatten)]
    quota: QuotaView,
    /// Bookings and holds from the current period on that it counted when
    /// it was defined.
    counted: usize,
}

/// The tenant's quotas.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaList {
    /// By name.
    items: Vec<QuotaView>,
}

fn name_of(path: &PathIds) -> &str {
    path.0.first().map_or("", String::as_str)
}

/// The quota the path names, or 404.
async fn quota_named(
    state: &AppState,
    tenant: &muster_domain::TenantId,
    path: &PathIds,
) -> Result<StoredQuota, ApiError> {
    state
        .store
        .find_quota(tenant, name_of(path))
        .await?
        .ok_or_else(|| ApiError::NotFound("quota".into()))
}

/// Define a quota, or redefine it (admin). It counts what is booked from
/// the current period on at once, and every command from then on is
/// checked against it in its own transaction.
#[utoipa::path(put, path = "/v1/quotas/{name}", tag = "quotas",
    params(("name" = String, Path, description = "The quota's name: 1 to 64 letters, digits, '-', '_' or '.'")),
    request_body = QuotaBody,
    responses(
        (status = 201, description = "Defined", body = DefinedQuota),
        (status = 200, description = "Redefined", body = DefinedQuota)))]
async fn put_quota(
    State(state): State<AppState>,
    path: PathIds,
    request: QueryBody<QuotaBody>,
) -> Result<Response, ApiError> {
    let principal = Auth(request.principal).require(&[Role::Admin])?.clone();
    let body = request.body;
    let input = QuotaInput {
        scope: Some(body.scope.as_str().to_owned()),
        period: Some(body.period.as_str().to_owned()),
        max_bookings: body.max_bookings.map(i64::from),
        max_hours: body.max_hours,
        timezone: body.timezone,
        subjects: body.subjects,
    };
    let defined = state
        .app
        .define_quota(&principal.tenant, name_of(&path), input)
        .await??;
    let status = if defined.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = DefinedQuota {
        quota: defined.quota.into(),
        counted: defined.counted,
    };
    Ok((status, Json(answer)).into_response())
}

/// The tenant's quotas.
#[utoipa::path(get, path = "/v1/quotas", tag = "quotas",
    responses((status = 200, description = "The quotas", body = QuotaList)))]
async fn list_quotas(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<QuotaList>, ApiError> {
    let principal = auth.require(READERS)?;
    let items = state.store.list_quotas(&principal.tenant).await?;
    Ok(Json(QuotaList {
        items: items.into_iter().map(QuotaView::from).collect(),
    }))
}

/// Read a quota.
#[utoipa::path(get, path = "/v1/quotas/{name}", tag = "quotas",
    params(("name" = String, Path, description = "The quota's name")),
    responses((status = 200, description = "The quota", body = QuotaView)))]
async fn get_quota(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<Json<QuotaView>, ApiError> {
    let principal = auth.require(READERS)?;
    let quota = quota_named(&state, &principal.tenant, &path).await?;
    Ok(Json(quota.into()))
}

/// Remove a quota (admin): what it counted goes with it.
#[utoipa::path(delete, path = "/v1/quotas/{name}", tag = "quotas",
    params(("name" = String, Path, description = "The quota's name")),
    responses((status = 204, description = "Removed")))]
async fn delete_quota(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
) -> Result<StatusCode, ApiError> {
    let principal = auth.require(&[Role::Admin])?;
    if state
        .app
        .remove_quota(&principal.tenant, name_of(&path))
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("quota".into()))
    }
}

/// Whose usage to read, and when.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// The subject: an email for a client quota, else a resource, pool or
    /// key id.
    subject: String,
    /// An instant in the period to read (default now).
    at: Option<DateTime<Utc>>,
}

/// What a subject has used of a quota in one period.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaUsageView {
    /// The quota.
    quota: String,
    /// The subject, as the quota keeps it (emails in lower case).
    subject: String,
    /// The period's first instant.
    period_starts_at: DateTime<Utc>,
    /// The instant after it.
    period_ends_at: DateTime<Utc>,
    /// Bookings and unexpired holds counted.
    bookings: i64,
    /// Hours they book.
    hours: f64,
    /// The most bookings per period, for a count quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_bookings: Option<u32>,
    /// The most hours per period, for an hours quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_hours: Option<f64>,
}

/// What a subject has used of a quota in the period containing `at`.
/// Always current: read from the write side.
#[utoipa::path(get, path = "/v1/quotas/{name}/usage", tag = "quotas",
    params(("name" = String, Path, description = "The quota's name"), UsageQuery),
    responses((status = 200, description = "The usage", body = QuotaUsageView)))]
async fn quota_usage(
    State(state): State<AppState>,
    auth: Auth,
    path: PathIds,
    QueryParams(query): QueryParams<UsageQuery>,
) -> Result<Json<QuotaUsageView>, ApiError> {
    let principal = auth.require(READERS)?;
    let quota = quota_named(&state, &principal.tenant, &path).await?;
    let subject = normal_subject(quota.spec.scope, &query.subject).ok_or_else(|| {
        invalid(
            "subject",
            &format!("is not a subject of a {} quota", quota.spec.scope.as_str()),
        )
    })?;
    let usage = state
        .store
        .quota_usage(
            &principal.tenant,
            &quota,
            &subject,
            query.at.unwrap_or_else(Utc::now),
        )
        .await?;
    let (max_bookings, max_hours) = limit(quota.spec.limit);
    Ok(Json(QuotaUsageView {
        quota: quota.name,
        subject,
        period_starts_at: usage.period_starts_at,
        period_ends_at: usage.period_ends_at,
        bookings: usage.bookings,
        hours: usage.minutes as f64 / 60.0,
        max_bookings,
        max_hours,
    }))
}
