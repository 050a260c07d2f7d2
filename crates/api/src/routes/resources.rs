//! Resource commands: register, update, retire.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use muster_domain::FieldError;
use muster_domain::policy::BookingPolicy;
use muster_domain::resource::{ResourceChanges, ResourceEvent, ResourceProfile};
use muster_domain::working_hours::{TimeOfDay, Weekday, WorkingWindow};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{CommandAnswer, CommandHeaders, to_json};
use crate::command::respond;
use crate::extract::{Command, PathIds};
use crate::{ApiError, AppState};

/// The resource routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_resource))
        .routes(routes!(update_resource))
        .routes(routes!(retire_resource))
}

/// One weekly window of availability, in the resource's time zone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkingWindowBody {
    /// The day.
    weekday: Weekday,
    /// Local start, `HH:MM`.
    #[schema(example = "08:00")]
    start: String,
    /// Local end, `HH:MM` (`24:00` for midnight), after `start`.
    #[schema(example = "18:00")]
    end: String,
}

/// A resource to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterResourceBody {
    /// Display name.
    #[schema(example = "Hall A")]
    name: String,
    /// `staff`, `room`, `equipment`, `vehicle`, or free text.
    #[schema(example = "room")]
    kind: String,
    /// Bookings it can hold at one instant (default 1).
    #[serde(default = "one")]
    #[schema(default = 1, minimum = 1, maximum = 10000)]
    capacity: u32,
    /// IANA time zone of its working hours (default `UTC`).
    #[serde(default = "utc")]
    #[schema(default = "UTC", example = "Europe/Berlin")]
    timezone: String,
    /// Weekly windows; none means always available.
    #[serde(default)]
    working_hours: Vec<WorkingWindowBody>,
    /// Labels.
    #[serde(default)]
    tags: Vec<String>,
    /// How many people it holds (a booking with a larger headcount is
    /// refused: 409 `seats-exceeded`).
    #[schema(minimum = 1, maximum = 1000000)]
    seats: Option<u32>,
    /// Buffers, notice and horizon, as ISO 8601 durations.
    #[serde(default)]
    policy: BookingPolicy,
}

fn one() -> u32 {
    1
}

fn utc() -> String {
    "UTC".into()
}

/// Fields to change; absent ones stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateResourceBody {
    /// New name.
    name: Option<String>,
    /// New tags (replacing the old ones).
    tags: Option<Vec<String>>,
    /// New capacity; a decrease below what existing reservations need is 409.
    #[schema(minimum = 1, maximum = 10000)]
    capacity: Option<u32>,
    /// New working hours (replacing the old ones).
    working_hours: Option<Vec<WorkingWindowBody>>,
    /// New seats.
    #[schema(minimum = 1, maximum = 1000000)]
    seats: Option<u32>,
    /// A new booking policy, replacing the old one as a whole (`{}`
    /// removes every part).
    policy: Option<BookingPolicy>,
}

fn working_hours(windows: Vec<WorkingWindowBody>) -> Result<Vec<WorkingWindow>, ApiError> {
    let mut errors = Vec::new();
    let mut parsed = Vec::with_capacity(windows.len());
    for (i, w) in windows.into_iter().enumerate() {
        let mut time = |text: &str, name: &str| {
            text.parse::<TimeOfDay>().map_err(|message| {
                errors.push(FieldError::new(
                    format!("working_hours[{i}].{name}"),
                    message,
                ));
            })
        };
        if let (Ok(start), Ok(end)) = (time(&w.start, "start"), time(&w.end, "end")) {
            parsed.push(WorkingWindow {
                weekday: w.weekday,
                start,
                end,
            });
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Renders a resource command's answer.
fn resource_answer(executed: &muster_store::Executed<ResourceEvent>) -> serde_json::Value {
    to_json(&CommandAnswer::from(&executed.outcome))
}

/// Register a resource.
#[utoipa::path(post, path = "/v1/resources", tag = "resources",
    params(CommandHeaders), request_body = RegisterResourceBody,
    responses((status = 201, description = "Registered", body = CommandAnswer)))]
async fn register_resource(
    State(state): State<AppState>,
    command: Command<RegisterResourceBody>,
) -> Result<Response, ApiError> {
    let body = command.body;
    let profile = ResourceProfile {
        name: body.name,
        kind: body.kind,
        capacity: body.capacity,
        timezone: body.timezone,
        working_hours: working_hours(body.working_hours)?,
        tags: body.tags,
        seats: body.seats,
        policy: body.policy,
    };
    let answer = state.app.register_resource(&command.context, profile).await;
    respond(answer, StatusCode::CREATED, resource_answer)
}

/// Change a resource's name, tags, capacity, working hours, seats or
/// booking policy.
#[utoipa::path(patch, path = "/v1/resources/{id}", tag = "resources",
    params(("id" = Uuid, Path, description = "Resource id"), CommandHeaders),
    request_body = UpdateResourceBody,
    responses((status = 200, description = "Updated (or already so)", body = CommandAnswer)))]
async fn update_resource(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<UpdateResourceBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "resource")?;
    let body = command.body;
    let changes = ResourceChanges {
        name: body.name,
        tags: body.tags,
        capacity: body.capacity,
        working_hours: body.working_hours.map(working_hours).transpose()?,
        seats: body.seats,
        policy: body.policy,
    };
    let answer = state
        .app
        .update_resource(&command.context, id, changes)
        .await;
    respond(answer, StatusCode::OK, resource_answer)
}

/// Retire a resource: it can no longer be reserved.
#[utoipa::path(post, path = "/v1/resources/{id}/retire", tag = "resources",
    params(("id" = Uuid, Path, description = "Resource id"), CommandHeaders),
    responses((status = 200, description = "Retired", body = CommandAnswer)))]
async fn retire_resource(
    State(state): State<AppState>,
    ids: PathIds,
    command: Command<super::bookings::NoBody>,
) -> Result<Response, ApiError> {
    let id = ids.id(0, "resource")?;
    let answer = state.app.retire_resource(&command.context, id).await;
    respond(answer, StatusCode::OK, resource_answer)
}
