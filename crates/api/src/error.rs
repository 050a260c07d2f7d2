//! The one error type of the HTTP layer, answered as RFC 9457
//! `application/problem+json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use muster_domain::policy::Refusal;
use muster_domain::{DomainError, FieldError};
use muster_jobs::JobsError;
use muster_projections::ReadError;
use muster_store::{ReservationConflict, StoreError};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A problem document (RFC 9457). `type` is stable; `detail` is for humans.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g.
    /// `urn:muster:problem:validation`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// For validation problems: each offending field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<FieldProblem>)]
    pub errors: Vec<FieldError>,
    /// For reservation conflicts: the reservations in the way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<ConflictingReservation>)]
    pub conflicts: Vec<ReservationConflict>,
    /// For a stale `If-Match`: the entity's current version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
    /// For a series that cannot be booked: each occurrence in the way,
    /// with why and the reservations it met.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub occurrences: Vec<muster_domain::series::SkippedOccurrence>,
    /// For `pool-exhausted`: the pick that could not be filled, with why
    /// each member that was not free was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ExhaustedPick>)]
    pub pick: Option<muster_app::Exhausted>,
    /// For `quota-exceeded`: the quota, the subject, the period and what
    /// it holds already.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ExceededQuota>)]
    pub quota: Option<muster_store::QuotaExceeded>,
}

/// A quota a command would pass.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "schema-only mirror of muster_store::QuotaExceeded"
)]
pub struct ExceededQuota {
    /// The quota's name.
    quota: String,
    /// `client`, `resource`, `pool` or `key`.
    scope: String,
    /// The subject (an email in lower case, or an id).
    subject: String,
    /// The period's first instant.
    period_starts_at: chrono::DateTime<chrono::Utc>,
    /// The instant after the period.
    period_ends_at: chrono::DateTime<chrono::Utc>,
    /// The most bookings a period may have (count quotas).
    max_bookings: Option<u32>,
    /// The most hours a period may have (hours quotas).
    max_hours: Option<f64>,
    /// Bookings and unexpired holds the period has.
    used_bookings: i64,
    /// Hours they book.
    used_hours: f64,
    /// The booking or hold (with a series, the occurrence) that would pass it.
    charge_id: Uuid,
}

/// A pick a pool could not fill.
#[derive(ToSchema)]
#[expect(dead_code, reason = "schema-only mirror of muster_app::Exhausted")]
pub struct ExhaustedPick {
    /// The request's field that asked for it (`reservations[1].pool_id`).
    field: String,
    /// The pool (absent for `any_of`).
    pool_id: Option<Uuid>,
    /// How many members it wanted.
    count: u32,
    /// How many were free.
    free: u32,
    /// Each member that was not free.
    members: Vec<MemberReason>,
}

/// Why one member could not be picked.
#[derive(ToSchema)]
#[expect(dead_code, reason = "schema-only mirror of muster_app::MemberRefusal")]
pub struct MemberReason {
    /// The member.
    resource_id: Uuid,
    /// `busy`, `outside-working-hours`, `seats-exceeded`, `too-soon`,
    /// `too-far-ahead`, `retired`, or `picked` (the request took it for
    /// another of its reservations).
    reason: String,
}

/// One invalid field of a request.
#[derive(ToSchema)]
#[expect(dead_code, reason = "schema-only mirror of muster_domain::FieldError")]
pub struct FieldProblem {
    /// JSON path of the field, e.g. `reservations[0].ends_at`.
    field: String,
    /// What is wrong with it.
    message: String,
}

/// A reservation that stands in the way of a requested one.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "schema-only mirror of muster_store::ReservationConflict"
)]
pub struct ConflictingReservation {
    resource_id: uuid::Uuid,
    booking_id: uuid::Uuid,
    reservation_id: uuid::Uuid,
    starts_at: chrono::DateTime<chrono::Utc>,
    ends_at: chrono::DateTime<chrono::Utc>,
    /// Present when it is a hold: when it stops counting.
    hold_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Present when it is a block of an external calendar: the calendar
    /// link (`reservation_id` is then the block, `booking_id` the link).
    calendar_id: Option<uuid::Uuid>,
}

/// Everything an HTTP request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request (syntax, headers, query string).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed but invalid fields.
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    /// No or unknown API key.
    #[error("missing or unknown API key")]
    Unauthorized,
    /// The key's role may not do this.
    #[error("the {0} role may not do this")]
    Forbidden(&'static str),
    /// No such entity in the caller's tenant.
    #[error("{0} not found")]
    NotFound(String),
    /// The entity already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The entity's state does not allow the command.
    #[error("{0}")]
    InvalidTransition(String),
    /// Concurrent writers kept changing the entity; a retry may succeed.
    #[error("the entity kept changing concurrently; retry")]
    ConcurrencyConflict,
    /// Lowering a capacity below what existing reservations need.
    #[error("existing reservations need a capacity of at least {0}")]
    CapacityInUse(usize),
    /// A retired resource cannot be reserved.
    #[error("resource {0} is retired and cannot be reserved")]
    ResourceRetired(Uuid),
    /// `consistent_with` names a position the event store never handed
    /// out: no read model will ever reach it.
    #[error("position {0} is beyond every position the event store has handed out")]
    PositionAhead(i64),
    /// Only a dead letter can be re-driven.
    #[error("only a job that used up its attempts can be retried")]
    JobNotDead,
    /// A report's file is not ready to download.
    #[error("the report is {0}; download it once it is done")]
    ReportNotReady(&'static str),
    /// A reservation would exceed a resource's capacity, or meets a
    /// block of the resource's external calendar.
    #[error("{}", if .0.iter().any(ReservationConflict::is_external) {
        "the resource's own calendar says it is busy at that time"
    } else {
        "the resource is already reserved at that time"
    })]
    ReservationConflict(Vec<ReservationConflict>),
    /// A pool has fewer free members than a pick wants (nothing was
    /// booked).
    #[error("only {} of the {} members wanted are free; nothing was booked", .0.free, .0.count)]
    PoolExhausted(muster_app::Exhausted),
    /// A quota would be passed (nothing was booked).
    #[error("quota {} allows no more for {} in the period from {}; nothing was booked", .0.quota, .0.subject, .0.period_starts_at.to_rfc3339())]
    QuotaExceeded(Box<muster_store::QuotaExceeded>),
    /// Occurrences of a series cannot be booked (all or nothing: nothing
    /// was).
    #[error("{} occurrence(s) of the series cannot be booked; nothing was booked", .0.len())]
    SeriesConflict(Vec<muster_domain::series::SkippedOccurrence>),
    /// A live stream would break a cap: per key (429) or per process (503).
    #[error("{}", match .0 {
        crate::live::CapReached::Key(n) => format!("this key already has {n} live streams open; close one first"),
        crate::live::CapReached::Process(n) => format!("this process serves {n} live streams already; retry shortly or elsewhere"),
    })]
    TooManyStreams(crate::live::CapReached),
    /// A resource's booking rule refuses the reservation itself.
    #[error("{}", refusal_detail(*.resource_id, .refusal))]
    Refused {
        /// The resource.
        resource_id: Uuid,
        /// Why.
        refusal: Refusal,
    },
    /// `If-Match` names a version that is no longer current.
    #[error("the entity is at version {current}, not {expected}")]
    PreconditionFailed {
        /// What the client sent.
        expected: i64,
        /// The current version.
        current: i64,
    },
    /// Body over the configured limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The client did not send its whole body in time.
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u128),
    /// Body not sent as JSON.
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    /// The same `Idempotency-Key` was used with another request.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    /// Per-key rate limit exceeded.
    #[error("rate limit exceeded; retry after {0} s")]
    RateLimited(u64),
    /// The database is unavailable or the request took too long.
    #[error("{0}")]
    Unavailable(String),
    /// A fault on our side; details are logged, never sent.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) | ApiError::IdempotencyMismatch => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_)
            | ApiError::InvalidTransition(_)
            | ApiError::ConcurrencyConflict
            | ApiError::CapacityInUse(_)
            | ApiError::ResourceRetired(_)
            | ApiError::JobNotDead
            | ApiError::PositionAhead(_)
            | ApiError::ReportNotReady(_)
            | ApiError::ReservationConflict(_)
            | ApiError::SeriesConflict(_)
            | ApiError::PoolExhausted(_)
            | ApiError::QuotaExceeded(_)
            | ApiError::Refused { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited(_)
            | ApiError::TooManyStreams(crate::live::CapReached::Key(_)) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::TooManyStreams(crate::live::CapReached::Process(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Validation(_) => "validation",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::AlreadyExists(_) => "already-exists",
            ApiError::InvalidTransition(_) => "invalid-transition",
            ApiError::ConcurrencyConflict => "concurrency-conflict",
            ApiError::CapacityInUse(_) => "capacity-in-use",
            ApiError::ResourceRetired(_) => "resource-retired",
            ApiError::JobNotDead => "job-not-failed",
            ApiError::PositionAhead(_) => "position-ahead",
            ApiError::ReportNotReady(_) => "report-not-ready",
            ApiError::ReservationConflict(conflicts)
                if conflicts.iter().any(ReservationConflict::is_external) =>
            {
                "external-busy"
            }
            ApiError::ReservationConflict(_) | ApiError::SeriesConflict(_) => {
                "reservation-conflict"
            }
            ApiError::PoolExhausted(_) => "pool-exhausted",
            ApiError::QuotaExceeded(_) => "quota-exceeded",
            ApiError::Refused { refusal, .. } => refusal.reason(),
            ApiError::PreconditionFailed { .. } => "stale-version",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::BodyTimeout(_) => "request-timeout",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::IdempotencyMismatch => "idempotency-key-reused",
            ApiError::RateLimited(_) => "rate-limited",
            ApiError::TooManyStreams(_) => "too-many-streams",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let mut problem = Problem {
            problem_type: format!("urn:muster:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: Vec::new(),
            conflicts: Vec::new(),
            current_version: None,
            occurrences: Vec::new(),
            pick: None,
            quota: None,
        };
        match self {
            ApiError::Validation(errors) => {
                problem.errors.clone_from(errors);
                problem.detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            ApiError::ReservationConflict(conflicts) => problem.conflicts.clone_from(conflicts),
            ApiError::SeriesConflict(occurrences) => problem.occurrences.clone_from(occurrences),
            ApiError::PoolExhausted(pick) => problem.pick = Some(pick.clone()),
            ApiError::QuotaExceeded(exceeded) => problem.quota = Some((**exceeded).clone()),
            ApiError::PreconditionFailed { current, .. } => {
                problem.current_version = Some(*current)
            }
            _ => {}
        }
        problem
    }
}

/// Renders a problem document with its status and content type.
pub fn problem_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_value(self.problem()).unwrap_or_default();
        let mut response = problem_response(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            ApiError::RateLimited(seconds) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            ApiError::Unavailable(_) | ApiError::TooManyStreams(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid(errors) => ApiError::Validation(errors),
            DomainError::NotFound(what) | DomainError::UnknownChild(what) => {
                ApiError::NotFound(what.into())
            }
            DomainError::AlreadyExists(what) => ApiError::AlreadyExists(what.into()),
            DomainError::InvalidTransition(detail) => ApiError::InvalidTransition(detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Rejected(e) => e.into(),
            StoreError::PreconditionFailed { expected, actual } => ApiError::PreconditionFailed {
                expected,
                current: actual,
            },
            // The caller replays the first request's answer; this only shows
            // if that answer has since expired.
            StoreError::ConcurrencyConflict | StoreError::IdempotencyKeyTaken => {
                ApiError::ConcurrencyConflict
            }
            StoreError::ReservationConflict(conflicts) => ApiError::ReservationConflict(conflicts),
            StoreError::CapacityInUse { needed } => ApiError::CapacityInUse(needed),
            StoreError::QuotaExceeded(exceeded) => ApiError::QuotaExceeded(exceeded),
            StoreError::UnknownResource(id) => ApiError::Validation(vec![FieldError::new(
                "resource_id",
                format!("no resource {id}"),
            )]),
            StoreError::RetiredResource(id) => ApiError::ResourceRetired(id),
            StoreError::Refused {
                resource_id,
                refusal,
            } => ApiError::Refused {
                resource_id,
                refusal,
            },
            StoreError::NotFound(what) => ApiError::NotFound(format!("no such {what}")),
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable("the database is unavailable; retry shortly".into())
            }
            StoreError::NoSecretKey => ApiError::Unavailable(
                "MUSTER_SECRET_KEY is not set on this server: personal data cannot be erased"
                    .into(),
            ),
            e @ (StoreError::Database(_)
            | StoreError::CorruptEvent { .. }
            | StoreError::CorruptRow(_)
            | StoreError::NoJobQueue) => {
                tracing::error!(error = &e as &dyn std::error::Error, "store failure");
                ApiError::Internal
            }
        }
    }
}

impl From<muster_app::Refusal> for ApiError {
    fn from(refusal: muster_app::Refusal) -> Self {
        use muster_app::Refusal as R;
        match refusal {
            R::Invalid { errors } => ApiError::Validation(errors),
            R::NotFound { what } => ApiError::NotFound(what),
            R::AlreadyExists { what } => ApiError::AlreadyExists(what),
            R::InvalidTransition { detail } => ApiError::InvalidTransition(detail),
            R::ReservationConflict { conflicts } => ApiError::ReservationConflict(conflicts),
            R::SeriesConflict { occurrences } => ApiError::SeriesConflict(occurrences),
            R::PoolExhausted(pick) => ApiError::PoolExhausted(pick),
            R::QuotaExceeded(exceeded) => ApiError::QuotaExceeded(exceeded),
            R::CapacityInUse { needed } => ApiError::CapacityInUse(needed),
            R::ResourceRetired { resource_id } => ApiError::ResourceRetired(resource_id),
            R::Policy {
                resource_id,
                refusal,
            } => ApiError::Refused {
                resource_id,
                refusal,
            },
            R::StaleVersion { expected, current } => {
                ApiError::PreconditionFailed { expected, current }
            }
            R::IdempotencyKeyReused => ApiError::IdempotencyMismatch,
            R::ConcurrencyConflict => ApiError::ConcurrencyConflict,
        }
    }
}

impl From<muster_app::AppError> for ApiError {
    fn from(error: muster_app::AppError) -> Self {
        match error {
            muster_app::AppError::Store(e) => e.into(),
            muster_app::AppError::Jobs(e) => e.into(),
            muster_app::AppError::Misconfigured(e) => {
                tracing::error!(error = %e, "the server is misconfigured");
                ApiError::Unavailable(e)
            }
        }
    }
}

impl From<JobsError> for ApiError {
    fn from(error: JobsError) -> Self {
        match error {
            JobsError::NotFound(what) => ApiError::NotFound(format!("no such {what}")),
            JobsError::JobNotDead => ApiError::JobNotDead,
            JobsError::Unavailable(e) => StoreError::Unavailable(e).into(),
            e @ (JobsError::Database(_)
            | JobsError::Encode(_)
            | JobsError::Queue(_)
            | JobsError::Corrupt(_)) => {
                tracing::error!(error = &e as &dyn std::error::Error, "job queue failure");
                ApiError::Internal
            }
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable("the database is unavailable; retry shortly".into())
            }
            e @ (ReadError::Database(_) | ReadError::Fold(_)) => {
                tracing::error!(error = &e as &dyn std::error::Error, "read failure");
                ApiError::Internal
            }
            ReadError::Store(e) => e.into(),
            ReadError::BeyondHead { position } => ApiError::PositionAhead(position),
            ReadError::ConsistencyTimeout { position } => ApiError::Unavailable(format!(
                "the read models have not reached position {position} yet; retry"
            )),
            ReadError::UnknownResource(id) => ApiError::Validation(vec![FieldError::new(
                "resource_ids",
                format!("unknown resource {id}"),
            )]),
        }
    }
}

/// A refusal in words, naming the resource and the limit it ran into.
fn refusal_detail(resource_id: Uuid, refusal: &Refusal) -> String {
    match refusal {
        Refusal::SeatsExceeded { seats, headcount } => {
            format!("resource {resource_id} seats {seats}; the booking's headcount is {headcount}")
        }
        Refusal::TooSoon { earliest } => format!(
            "resource {resource_id} needs more notice: the earliest start now is {}",
            earliest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        Refusal::TooFarAhead { latest } => format!(
            "resource {resource_id} takes no bookings that far ahead: the latest start now is {}",
            latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        Refusal::OutsideWorkingHours => format!(
            "the reservation is outside resource {resource_id}'s working hours; a planner may send \"outside_working_hours\": true to book it anyway"
        ),
        Refusal::Full(_) => "the resource is already reserved at that time".to_owned(),
    }
}
