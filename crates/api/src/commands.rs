//! Runs a command through the store with the idempotency protocol, so that
//! every command handler stays a few lines long.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use muster_domain::FieldError;
use muster_store::commands::WriteSide;
use muster_store::idempotency::StoredAnswer;
use muster_store::{CommandContext, CommandOutcome, StoreError};
use uuid::Uuid;

use crate::error::problem_response;
use crate::{ApiError, AppState};

/// How a command's answer is shaped.
pub(crate) struct Answering<R, F> {
    /// Status of a successful answer (201 for creations, 200 otherwise).
    pub status: StatusCode,
    /// Body of a successful answer.
    pub render: R,
    /// The body field that names a resource id, for "no such resource".
    pub resource_field: F,
}

/// Runs `command` on stream `stream_id`.
///
/// With an `Idempotency-Key`: a stored answer is replayed (or 422 if the key
/// was used for another request); a success stores its answer in the
/// command's own transaction; a final refusal (4xx) is stored too, so a
/// retry gets the same answer. Races between two requests with one key end
/// with both getting the first answer.
pub(crate) async fn run<A, R, F>(
    state: &AppState,
    context: CommandContext,
    stream_id: Uuid,
    command: A::Command,
    answering: Answering<R, F>,
) -> Result<Response, ApiError>
where
    A: WriteSide,
    A::Command: Clone,
    R: Fn(&CommandOutcome) -> serde_json::Value + Send + Sync + 'static,
    F: Fn(Uuid) -> String,
{
    let tenant = context.tenant.clone();
    if let Some(claim) = &context.idempotency
        && let Some(stored) = state.store.find_answer(&tenant, &claim.key).await?
    {
        return replay(&stored, claim);
    }

    let status = answering.status;
    // Shared with the store, which may render the answer in a batch writer
    // to store it with the command's events.
    let render = std::sync::Arc::new(answering.render);
    let store_render = render.clone();
    let result = state
        .store
        .execute::<A>(&context, stream_id, command, move |outcome| {
            (status.as_u16(), store_render(outcome))
        })
        .await;
    let error = match result {
        Ok(outcome) => return Ok((status, Json(render(&outcome))).into_response()),
        Err(StoreError::UnknownResource(id)) => ApiError::Validation(vec![FieldError::new(
            (answering.resource_field)(id),
            format!("no resource {id}"),
        )]),
        Err(e) => ApiError::from(e),
    };

    let Some(claim) = &context.idempotency else {
        return Err(error);
    };
    // A concurrent request with this key may have committed while this one
    // failed (typically by losing the race to it): answer as it did.
    if let Some(stored) = state.store.find_answer(&tenant, &claim.key).await? {
        return replay(&stored, claim);
    }
    if error.is_final() {
        let problem = serde_json::to_value(error.problem()).unwrap_or_default();
        let status = error.problem().status;
        if !state
            .store
            .remember_answer(&tenant, claim, status, &problem)
            .await?
            && let Some(stored) = state.store.find_answer(&tenant, &claim.key).await?
        {
            return replay(&stored, claim);
        }
    }
    Err(error)
}

/// Answers with a stored answer, marked as a replay.
fn replay(
    stored: &StoredAnswer,
    claim: &muster_store::idempotency::IdempotencyClaim,
) -> Result<Response, ApiError> {
    if !stored.answers(claim) {
        return Err(ApiError::IdempotencyMismatch);
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = if status.is_success() {
        (status, Json(&stored.body)).into_response()
    } else {
        problem_response(status, &stored.body)
    };
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}
