//! The OpenAPI document, built from the routes themselves (utoipa-axum), so
//! it cannot drift from what is served.

use utoipa::openapi::link::LinkBuilder;
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
/// on every `/v1` operation, and links from creations to what acts on the
/// created entity.
pub fn finish(mut doc: OpenApiDoc) -> serde_json::Value {
    add_problems(&mut doc);
    link_creations(&mut doc);
    let mut json = serde_json::to_value(&doc).unwrap_or_default();
    fix_link_field_names(&mut json);
    json
}

/// utoipa 5 serialises `Link` fields in snake case; OpenAPI spells them
/// `operationId` and `operationRef`.
fn fix_link_field_names(json: &mut serde_json::Value) {
    let Some(paths) = json.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let responses = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let links = response.get_mut("links").and_then(|l| l.as_object_mut());
        for link in links.into_iter().flat_map(|l| l.values_mut()) {
            if let Some(link) = link.as_object_mut()
                && let Some(id) = link.remove("operation_id")
            {
                link.insert("operationId".into(), id);
            }
        }
    }
}

/// OpenAPI links: where the id a creation answers goes next. Clients and
/// stateful fuzzers follow them (booking → confirm → start …).
fn link_creations(doc: &mut OpenApiDoc) {
    let creations = [
        ("/v1/resources", "/v1/resources/{id}", "$response.body#/id"),
        ("/v1/bookings", "/v1/bookings/{id}", "$response.body#/id"),
        (
            "/v1/bookings/{id}/tasks",
            "/v1/bookings/{id}/tasks/{tid}",
            "$request.path.id",
        ),
        (
            "/v1/bookings/{id}/reservations",
            "/v1/bookings/{id}/reservations/{rid}",
            "$request.path.id",
        ),
    ];
    let extra: &[(&str, &str)] = &[
        ("tid", "$response.body#/task_id"),
        ("rid", "$response.body#/reservations/0/reservation_id"),
    ];
    let mut links = Vec::new();
    for (created_at, prefix, id) in creations {
        for (path, item) in &doc.paths.paths {
            if !path.starts_with(prefix) {
                continue;
            }
            for operation in [&item.post, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                let Some(target) = &operation.operation_id else {
                    continue;
                };
                let mut link = LinkBuilder::new()
                    .operation_id(target.clone())
                    .parameter("id", id);
                for (name, value) in extra {
                    if path.contains(&format!("{{{name}}}")) {
                        link = link.parameter(*name, *value);
                    }
                }
                links.push((created_at, target.clone(), link.build()));
            }
        }
    }
    for (created_at, target, link) in links {
        let created = doc
            .paths
            .paths
            .get_mut(created_at)
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.responses.responses.get_mut("201"));
        if let Some(RefOr::T(response)) = created {
            response.links.insert(target, RefOr::T(link));
        }
    }
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
