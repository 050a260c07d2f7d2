//! Idempotency on the API side: the `Idempotency-Key` header, the
//! request's fingerprint, running a command under the protocol, replaying
//! a key's record, and which refusals are final. (The store keeps the
//! records: `muster_store::idempotency`.)

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use muster_domain::{FieldError, TenantId};
use muster_store::effects::WriteSide;
use muster_store::idempotency::{IdempotencyClaim, Recorded, StoredRecord};
use muster_store::{CommandContext, CommandOutcome, StoreError};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::problem_response;
use crate::{ApiError, AppState};

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub(crate) fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or("");
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// The claim of `key` by a request: the key and the request's fingerprint.
pub(crate) fn claim(
    key: String,
    method: &Method,
    path: &str,
    body: &serde_json::Value,
) -> IdempotencyClaim {
    IdempotencyClaim {
        fingerprint: fingerprint(method, path, body),
        key,
    }
}

/// SHA-256 over method, path and the canonical (key-sorted) body, so that
/// the same request with reordered keys or other whitespace matches.
fn fingerprint(method: &Method, path: &str, body: &serde_json::Value) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str());
    hasher.update(b" ");
    hasher.update(path);
    hasher.update(b"\n");
    hasher.update(body.to_string());
    hasher.finalize().into()
}

/// Whether a refusal is the command's final answer, recorded under its key
/// so that a retry gets it too. Refusals that a retry may not meet (a rate
/// limit, a race lost to a concurrent writer) are not.
fn is_final(error: &ApiError) -> bool {
    error.status().is_client_error()
        && !matches!(
            error,
            ApiError::RateLimited(_) | ApiError::Unauthorized | ApiError::ConcurrencyConflict
        )
}

/// How a command's answer is shaped.
pub(crate) struct Answering<R, F> {
    /// Status of a successful answer (201 for creations, 200 otherwise).
    pub status: StatusCode,
    /// Body of a successful answer, from the command's outcome and the
    /// events it appended (the same the first time and on replay).
    pub render: R,
    /// The body field that names a resource id, for "no such resource".
    pub resource_field: F,
}

/// Runs `command` on stream `stream_id`.
///
/// With an `Idempotency-Key`: a stored record is replayed (or 422 if the
/// key was used for another request); a success records its outcome in the
/// command's own transaction; a final refusal is recorded too, so a retry
/// gets the same answer. Races between two requests with one key end with
/// both getting the first answer.
pub(crate) async fn run_command<A, R, F>(
    state: &AppState,
    context: CommandContext,
    stream_id: Uuid,
    command: A::Command,
    answering: Answering<R, F>,
) -> Result<Response, ApiError>
where
    A: WriteSide,
    A::Command: Clone,
    R: Fn(&CommandOutcome, &[A::Event]) -> serde_json::Value,
    F: Fn(Uuid) -> String,
{
    run_linked::<A, A, R, F>(state, context, stream_id, command, Vec::new(), answering).await
}

/// Runs `command` on stream `stream_id` together with `linked` commands on
/// other streams, all or nothing ([`muster_store::Store::execute_linked`]),
/// with the idempotency of [`run_command`]. The answer is rendered from
/// the command's own events, so a replay answers the same.
pub(crate) async fn run_linked<A, B, R, F>(
    state: &AppState,
    context: CommandContext,
    stream_id: Uuid,
    command: A::Command,
    linked: Vec<(Uuid, B::Command)>,
    answering: Answering<R, F>,
) -> Result<Response, ApiError>
where
    A: WriteSide,
    A::Command: Clone,
    B: WriteSide,
    B::Command: Clone,
    R: Fn(&CommandOutcome, &[A::Event]) -> serde_json::Value,
    F: Fn(Uuid) -> String,
{
    let tenant = context.tenant.clone();
    if let Some(replayed) = replay_recorded::<A, R, F>(state, &context, &answering).await? {
        return Ok(replayed);
    }

    let executed = state
        .store
        .execute_linked::<A, B>(&context, stream_id, command, linked)
        .await;
    let error = match executed.map(|(executed, _)| executed) {
        Ok(executed) => {
            let body = (answering.render)(&executed.outcome, &executed.events);
            return Ok((answering.status, Json(body)).into_response());
        }
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
    if let Some(stored) = state.store.find_record(&tenant, &claim.key).await? {
        return replay::<A, R, F>(state, &tenant, &stored, claim, &answering).await;
    }
    if is_final(&error) {
        let problem = serde_json::to_value(error.problem()).unwrap_or_default();
        if !state.store.record_refusal(&tenant, claim, &problem).await?
            && let Some(stored) = state.store.find_record(&tenant, &claim.key).await?
        {
            return replay::<A, R, F>(state, &tenant, &stored, claim, &answering).await;
        }
    }
    Err(error)
}

/// The recorded answer of the context's idempotency key, if it has one:
/// what a command that must look at the world before it runs (a series'
/// conflict check) answers first, as [`run_linked`] does.
pub(crate) async fn replay_recorded<A, R, F>(
    state: &AppState,
    context: &CommandContext,
    answering: &Answering<R, F>,
) -> Result<Option<Response>, ApiError>
where
    A: WriteSide,
    R: Fn(&CommandOutcome, &[A::Event]) -> serde_json::Value,
{
    let Some(claim) = &context.idempotency else {
        return Ok(None);
    };
    let Some(stored) = state.store.find_record(&context.tenant, &claim.key).await? else {
        return Ok(None);
    };
    replay::<A, R, F>(state, &context.tenant, &stored, claim, answering)
        .await
        .map(Some)
}

/// Answers with a key's record, rendered as the first answer was, marked
/// as a replay.
async fn replay<A, R, F>(
    state: &AppState,
    tenant: &TenantId,
    stored: &StoredRecord,
    claim: &IdempotencyClaim,
    answering: &Answering<R, F>,
) -> Result<Response, ApiError>
where
    A: WriteSide,
    R: Fn(&CommandOutcome, &[A::Event]) -> serde_json::Value,
{
    if !stored.answers(claim) {
        return Err(ApiError::IdempotencyMismatch);
    }
    let mut response = match &stored.recorded {
        Recorded::Committed(outcome) => {
            let events = state.store.appended_events::<A>(tenant, outcome).await?;
            let body = (answering.render)(outcome, &events);
            (answering.status, Json(body)).into_response()
        }
        Recorded::Refused(problem) => {
            let status = problem["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::CONFLICT);
            problem_response(status, problem)
        }
        Recorded::Rendered { status, body } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            if status.is_success() {
                (status, Json(body)).into_response()
            } else {
                problem_response(status, body)
            }
        }
    };
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_key_order_but_not_values() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":2}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "b":2, "a":1 }"#).unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":3}"#).unwrap();
        let f = |v| fingerprint(&Method::POST, "/v1/x", v);
        assert_eq!(f(&a), f(&b));
        assert_ne!(f(&a), f(&c));
    }
}
