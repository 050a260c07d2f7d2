//! Clients' personal data (SPEC §12): erasure (admin).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use muster_app::Outcome;
use muster_domain::erasure::ErasureEvent;
use muster_projections::ReadModel;
use muster_store::{Executed, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{CommandHeaders, to_json};
use crate::command::respond;
use crate::extract::Command;
use crate::{ApiError, AppState};

/// The client routes that write.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(erase_client))
}

/// Whom to erase.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseBody {
    /// The client's email address (any case).
    #[schema(example = "ann@example.com")]
    email: String,
}

/// What an erasure did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureAnswer {
    /// The erasure (the stream of its `client.erased`).
    id: Uuid,
    /// Position of its `client.erased` in the global event order.
    position: i64,
    /// The bookings whose client it was (now `{"erased":true}`).
    bookings: Vec<Uuid>,
    /// The waitlist entries whose client it was.
    waitlist_entries: Vec<Uuid>,
    /// Data keys deleted: every personal field they sealed reads as erased.
    keys_deleted: u32,
    /// Events written before personal data was sealed, redacted in place
    /// (the one exception to append-only).
    events_redacted: u32,
    /// Whether the read models had scrubbed their copies when this was
    /// answered (they do when they reach `position`; read with
    /// `consistent_with` to wait for it).
    read_models_scrubbed: bool,
}

fn answer(executed: &Executed<ErasureEvent>, scrubbed: bool) -> serde_json::Value {
    let erased = executed
        .events
        .first()
        .map(|ErasureEvent::Erased(e)| e.clone())
        .unwrap_or_default();
    to_json(&ErasureAnswer {
        id: executed.outcome.stream_id,
        position: executed.outcome.position,
        bookings: erased.bookings,
        waitlist_entries: erased.waitlist_entries,
        keys_deleted: erased.keys_deleted,
        events_redacted: erased.events_redacted,
        read_models_scrubbed: scrubbed,
    })
}

/// Erase a client's personal data (admin): their data keys are deleted,
/// so their name, email, phone and notes read as erased in every event,
/// and every copy muster keeps is scrubbed (read models, client messages,
/// waitlist entries, quota subjects, stored answers, report files).
/// Events keep their shape, times and positions. Erasing again finds
/// nothing more. `docs/personal-data.md` says what is kept and why.
#[utoipa::path(post, path = "/v1/clients/erase", tag = "bookings",
    params(CommandHeaders),
    request_body = EraseBody,
    responses((status = 200, description = "Erased", body = ErasureAnswer)))]
async fn erase_client(
    State(state): State<AppState>,
    command: Command<EraseBody>,
) -> Result<Response, ApiError> {
    if command.principal.role != Role::Admin {
        return Err(ApiError::Forbidden(command.principal.role.as_str()));
    }
    let outcome = state
        .app
        .erase_client(&command.context, &command.body.email)
        .await;
    // The answer waits for the read models to scrub their copies, so that
    // an erasure answered is an erasure done; a projector that is not
    // running (or far behind) does it when it comes, and says so here.
    let scrubbed = match &outcome {
        Ok(Outcome::Executed(executed)) => state
            .reads
            .wait_until_applied(
                &[ReadModel::Bookings],
                executed.outcome.position,
                state.config.consistency_wait,
            )
            .await
            .is_ok(),
        _ => false,
    };
    respond(outcome, StatusCode::OK, |e| answer(e, scrubbed))
}
