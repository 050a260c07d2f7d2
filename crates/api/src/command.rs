//! Answering a use case: its outcome rendered the same way whether it ran
//! now or is replayed under its idempotency key.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use muster_app::{AppError, Outcome, Replay};

use crate::ApiError;
use crate::error::problem_response;

/// Renders `answer`: what was executed (now or the first time) with
/// `status` and the body `render` makes of it; a refusal as its problem
/// document. A replay carries `Idempotent-Replayed: true`.
pub(crate) fn respond<T>(
    answer: Result<Outcome<T>, AppError>,
    status: StatusCode,
    render: impl Fn(&T) -> serde_json::Value,
) -> Result<Response, ApiError> {
    let mut response = match answer? {
        Outcome::Executed(executed) => return Ok((status, Json(render(&executed))).into_response()),
        Outcome::Refused(refusal) => return Err(refusal.into()),
        Outcome::Replayed(Replay::Executed(executed)) => {
            (status, Json(render(&executed))).into_response()
        }
        Outcome::Replayed(Replay::Refused(refusal)) => ApiError::from(refusal).into_response(),
        Outcome::Replayed(Replay::Earlier { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if status.is_success() {
                (status, Json(body)).into_response()
            } else {
                problem_response(status, &body)
            }
        }
    };
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}
