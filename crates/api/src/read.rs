//! What every query endpoint shares: read-your-writes waits, time windows,
//! limits and cursors.

use chrono::{DateTime, Utc};
use muster_domain::FieldError;
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

/// An opaque cursor for `parts` (hex, so that it needs no URL encoding).
pub(crate) fn encode_cursor(parts: &str) -> String {
    hex::encode(parts)
}

/// The parts of a cursor made by [`encode_cursor`].
pub(crate) fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    hex::decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(bad_cursor)
}

pub(crate) fn bad_cursor() -> ApiError {
    invalid("cursor", "is not a cursor this API returned")
}

/// The id a cursor of an id-ordered list holds, if one was sent.
pub(crate) fn id_cursor(cursor: Option<&str>) -> Result<Option<uuid::Uuid>, ApiError> {
    cursor
        .map(|c| decode_cursor(c)?.parse().map_err(|_| bad_cursor()))
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
        items.last().map(|last| encode_cursor(&key(last)))
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

/// The (instant, id) a cursor of a list ordered by time then id holds.
pub(crate) fn time_id_cursor(
    cursor: Option<&str>,
) -> Result<Option<(DateTime<Utc>, uuid::Uuid)>, ApiError> {
    cursor
        .map(|c| {
            let parts = decode_cursor(c)?;
            let (at, id) = parts.split_once('|').ok_or_else(bad_cursor)?;
            Ok((time("cursor", at)?, id.parse().map_err(|_| bad_cursor())?))
        })
        .transpose()
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
