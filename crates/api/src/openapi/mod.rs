//! The OpenAPI document, built from the routes themselves (utoipa-axum), so
//! it cannot drift from what is served.

mod constraints;
mod links;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi as OpenApiDoc, RefOr, ResponseBuilder, SecurityRequirement,
};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;

/// Top-level document: info, tags, security scheme.
#[derive(OpenApi)]
#[openapi(
    info(title = "muster", description = "Event-sourced scheduling of bookings on shared resources."),
    tags(
        (name = "resources", description = "Staff, rooms, equipment, vehicles"),
        (name = "bookings", description = "Bookings, reservations and tasks"),
        (name = "holds", description = "Tentative claims that count until they expire"),
        (name = "pools", description = "Sets of interchangeable resources: any one of these"),
        (name = "waitlist", description = "Clients waiting for a range, offered freed capacity by themselves"),
        (name = "calendars", description = "External calendars: their busy time blocks a resource"),
        (name = "quotas", description = "How much a client, resource, pool or API key may book per day, week or month"),
        (name = "events", description = "The event feed"),
        (name = "keys", description = "API keys: create, list, revoke (admin)"),
        (name = "notifications", description = "What bookings' clients hear: settings, and the messages per booking"),
    ),
    components(schemas(Problem, muster_jobs::admin::JobStatusFilter)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The errors any `/v1` operation may answer, all as problem+json.
const PROBLEMS: &[(&str, &str)] = &[
    ("400", "Malformed request"),
    ("401", "Missing or unknown API key"),
    ("403", "The key's role may not do this"),
    ("404", "No such entity in the caller's tenant"),
    (
        "409",
        "Conflicts with the entity's state or another reservation",
    ),
    ("412", "If-Match names a stale version"),
    ("413", "Body too large"),
    ("415", "Body is not JSON"),
    (
        "422",
        "Invalid fields, or an Idempotency-Key reused for another request",
    ),
    ("429", "Rate limit exceeded; see Retry-After"),
    (
        "503",
        "Database unavailable or request timed out; see Retry-After",
    ),
];

/// The served document: bearer security and the shared problem responses
/// on every `/v1` operation, the server's rules the derives cannot state
/// ([`constraints`]), and links from creations to what acts on the created
/// entity ([`links`]).
pub fn finish(mut doc: OpenApiDoc) -> serde_json::Value {
    add_problems(&mut doc);
    let mut json = serde_json::to_value(&doc).unwrap_or_default();
    constraints::apply(&mut json);
    links::apply(&mut json);
    json
}

/// The document as served, for tests.
#[cfg(test)]
pub(crate) fn document() -> serde_json::Value {
    finish(crate::v1_routes().split_for_parts().1)
}

fn add_problems(doc: &mut OpenApiDoc) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
            &mut item.put,
        ]
        .into_iter()
        .flatten()
        {
            operation.security = Some(vec![SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
            for (status, description) in PROBLEMS {
                operation
                    .responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(*description)
                                .content(
                                    "application/problem+json",
                                    ContentBuilder::new()
                                        .schema(Some(RefOr::Ref(
                                            utoipa::openapi::Ref::from_schema_name("Problem"),
                                        )))
                                        .build(),
                                )
                                .build(),
                        )
                    });
            }
        }
    }
}
