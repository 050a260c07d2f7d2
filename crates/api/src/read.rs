//! What every query endpoint shares: read-your-writes waits, time windows,
//! limits and cursors.

use chrono::{DateTime, Duration, Utc};
use muster_domain::FieldError;
use muster_domain::duration::IsoDuration;
use muster_domain::time::TimeRange;
use muster_projections::ReadModel;

use crate::{ApiError, AppState};

/// Waits until `models` have applied `position` (when the client passed
/// `consistent_with`), at most the configured wait; then 503 + Retry-After.
pub(crate) async fn consistent_with(
    state: &AppState,
    models: &[ReadModel],
    position: Option<i64>,
) -> Result<(), ApiError> {
    let Some(position) = position else {
        return Ok(());
    };
    if position < 0 {
        return Err(invalid("consistent_with", "must be at least 0"));
    }
    Ok(state
        .reads
        .wait_until_applied(models, position, state.config.consistency_wait)
        .await?)
}

/// A validated `[from, to)` of at most `max_days` days.
pub(crate) fn window(from: &str, to: &str, max_days: i64) -> Result<TimeRange, ApiError> {
    let starts_at = time("from", from)?;
    let ends_at = time("to", to)?;
    if ends_at <= starts_at {
        return Err(invalid("to", "must be after from"));
    }
    if ends_at - starts_at > chrono::Duration::days(max_days) {
        return Err(invalid(
            "to",
            &format!("the window must not exceed {max_days} days"),
        ));
    }
    TimeRange::new(starts_at, ends_at, "").map_err(|e| ApiError::Validation(vec![e]))
}

/// Parses an RFC 3339 time from a query string, where an unencoded `+`
/// of the offset arrives as a space.
pub(crate) fn time(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(&raw.replace(' ', "+"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            invalid(
                field,
                "must be an RFC 3339 time with offset, e.g. 2027-06-12T14:00:00Z",
            )
        })
}

/// The page size: 1 to `max`, default `default`.
pub(crate) fn limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(invalid("limit", &format!("must be between 1 and {max}")))
    }
}

/// The shape of a cursor of a list ordered by id: the last id, as 32 hex
/// digits (opaque to clients; fixed so that the document can state it).
pub(crate) const ID_CURSOR: &str = "^[0-9a-fA-F]{32}$";
/// The shape of a cursor of a list ordered by time then id: the instant
/// (microseconds since 1970, 16 hex digits) and the id (32).
pub(crate) const TIME_ID_CURSOR: &str = "^[0-9a-fA-F]{48}$";
/// The shape of a job cursor: the last job's id (a ULID).
pub(crate) const JOB_CURSOR: &str = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$";

pub(crate) fn bad_cursor() -> ApiError {
    invalid("cursor", "is not a cursor this API returned")
}

/// The cursor after `id` in a list ordered by id.
pub(crate) fn id_cursor_of(id: uuid::Uuid) -> String {
    id.simple().to_string()
}

/// The id a cursor of an id-ordered list holds, if one was sent.
pub(crate) fn id_cursor(cursor: Option<&str>) -> Result<Option<uuid::Uuid>, ApiError> {
    cursor
        .map(|c| {
            if c.len() != 32 {
                return Err(bad_cursor());
            }
            uuid::Uuid::try_parse(c).map_err(|_| bad_cursor())
        })
        .transpose()
}

/// The cursor after (`at`, `id`) in a list ordered by time then id.
pub(crate) fn time_id_cursor_of(at: DateTime<Utc>, id: uuid::Uuid) -> String {
    format!("{:016x}{}", at.timestamp_micros(), id.simple())
}

/// The (instant, id) a cursor of a list ordered by time then id holds. An
/// instant outside the years 1 to 9999 (no list holds one) is brought to
/// the nearest of them: the page is then the first or past the last.
pub(crate) fn time_id_cursor(
    cursor: Option<&str>,
) -> Result<Option<(DateTime<Utc>, uuid::Uuid)>, ApiError> {
    cursor
        .map(|c| {
            if c.len() != 48 || !c.is_ascii() {
                return Err(bad_cursor());
            }
            let micros = u64::from_str_radix(&c[..16], 16).map_err(|_| bad_cursor())? as i64;
            let id = uuid::Uuid::try_parse(&c[16..]).map_err(|_| bad_cursor())?;
            let first = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").map(|t| t.to_utc());
            let last = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z").map(|t| t.to_utc());
            let (Ok(first), Ok(last)) = (first, last) else {
                return Err(bad_cursor());
            };
            let at = DateTime::from_timestamp_micros(micros)
                .unwrap_or(if micros < 0 { first } else { last })
                .clamp(first, last);
            Ok((at, id))
        })
        .transpose()
}

/// The job id a job cursor holds, if one was sent.
pub(crate) fn job_cursor(cursor: Option<&str>) -> Result<Option<&str>, ApiError> {
    cursor
        .map(|c| {
            let ulid = c.len() == 26
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() && !b"IiLlOoUu".contains(&b));
            if ulid { Ok(c) } else { Err(bad_cursor()) }
        })
        .transpose()
}

/// The cursor of the page after `items`: the last item's key, when the
/// page is full (a shorter page is the last).
pub(crate) fn next_cursor<T>(
    items: &[T],
    limit: i64,
    key: impl Fn(&T) -> String,
) -> Option<String> {
    if items.len() as i64 == limit {
        items.last().map(key)
    } else {
        None
    }
}

/// The statuses a `status` filter names (comma-separated), each one of
/// `allowed`; none: any.
pub(crate) fn statuses(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let statuses: Vec<String> = raw
        .into_iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = statuses.iter().find(|s| !allowed.contains(&s.as_str())) {
        return Err(invalid(
            "status",
            &format!("{bad:?} is not one of {}", allowed.join(", ")),
        ));
    }
    Ok(statuses)
}

pub(crate) fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Validation(vec![FieldError::new(field, message)])
}

/// Answers with a read model's stored JSON document as it is (no decoding
/// on the hot path), or 404 for `what`.
pub(crate) fn stored_document(
    document: Option<String>,
    what: &str,
    request: &axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let document = document.ok_or_else(|| ApiError::NotFound(what.into()))?;
    Ok(revalidated(
        document.into_bytes(),
        "application/json",
        request,
    ))
}

/// A body with a strong `ETag` (a digest of its bytes: it changes exactly
/// when the document does, its version included), or `304 Not Modified`
/// when the request's `If-None-Match` names it.
pub(crate) fn revalidated(
    body: Vec<u8>,
    content_type: &'static str,
    request: &axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    use sha2::Digest;
    let etag = format!("\"{}\"", hex::encode(&sha2::Sha256::digest(&body)[..12]));
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    response
}

/// Longest window availability, a pool's availability and finding a time
/// are computed over.
pub(crate) const MAX_DAYS: i64 = 62;

/// Minutes (`90`) or an ISO 8601 time duration (`PT1H30M`), 1 minute to
/// 62 days.
pub(crate) fn duration(field: &str, raw: &str) -> Result<Duration, ApiError> {
    let bad = || {
        invalid(
            field,
            "must be minutes (90) or ISO 8601 (PT1H30M), 1 minute to 62 days",
        )
    };
    let minutes: i64 = if raw.bytes().all(|b| b.is_ascii_digit()) && !raw.is_empty() {
        raw.parse().map_err(|_| bad())?
    } else {
        let d: IsoDuration = raw.parse().map_err(|_| bad())?;
        if d.seconds() % 60 != 0 {
            return Err(bad());
        }
        d.seconds() / 60
    };
    if !(1..=MAX_DAYS * 24 * 60).contains(&minutes) {
        return Err(bad());
    }
    Ok(Duration::minutes(minutes))
}
