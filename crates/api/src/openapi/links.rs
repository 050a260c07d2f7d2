//! OpenAPI links: where what a creation answers goes next. Clients and
//! stateful fuzzers follow them (a booking → its confirmation, its
//! deployment …). One table, written out, rather than inferred from path
//! prefixes: each link names the operation and where its parameters come
//! from.

use serde_json::{Map, Value, json};

/// A link's source: the operation (path, method) and its success status.
type Source = (&'static str, &'static str, &'static str);
/// A link's target: its operation id, and its parameters (name, runtime
/// expression); `booking_id` goes in the body.
type Target = (&'static str, &'static [(&'static str, &'static str)]);

const ID: &[(&str, &str)] = &[("id", "$response.body#/id")];
const PATH_ID: &[(&str, &str)] = &[("id", "$request.path.id")];
const RESERVATION: &[(&str, &str)] = &[
    ("id", "$response.body#/id"),
    ("rid", "$response.body#/reservations/0/reservation_id"),
];
const ADDED_RESERVATION: &[(&str, &str)] = &[
    ("id", "$request.path.id"),
    ("rid", "$response.body#/reservations/0/reservation_id"),
];

const LINKS: &[(Source, &[Target])] = &[
    (
        ("/v1/resources", "post", "201"),
        &[
            ("get_resource", ID),
            ("update_resource", ID),
            ("retire_resource", ID),
            ("resource_schedule", ID),
            ("create_feed", ID),
        ],
    ),
    (
        ("/v1/bookings", "post", "201"),
        &[
            ("get_booking", ID),
            ("update_booking", ID),
            ("confirm_booking", ID),
            ("start_booking", ID),
            ("complete_booking", ID),
            ("cancel_booking", ID),
            ("reschedule_booking", ID),
            ("add_reservation", ID),
            ("add_task", ID),
            ("booking_notifications", ID),
            ("release_reservation", RESERVATION),
            ("move_reservation", RESERVATION),
            ("get_series", &[("id", "$response.body#/series_id")]),
            ("cancel_series", &[("id", "$response.body#/series_id")]),
            (
                "request_deployment",
                &[("booking_id", "$response.body#/id")],
            ),
        ],
    ),
    (
        ("/v1/bookings/{id}/reservations", "post", "201"),
        &[
            ("get_booking", PATH_ID),
            ("release_reservation", ADDED_RESERVATION),
            ("move_reservation", ADDED_RESERVATION),
        ],
    ),
    (
        ("/v1/bookings/{id}/tasks", "post", "201"),
        &[(
            "complete_task",
            &[
                ("id", "$request.path.id"),
                ("tid", "$response.body#/task_id"),
            ],
        )],
    ),
    (
        ("/v1/holds", "post", "201"),
        &[("get_hold", ID), ("release_hold", ID)],
    ),
    (
        ("/v1/deployments", "post", "202"),
        &[
            ("get_deployment", ID),
            ("cancel_deployment", ID),
            ("retry_deployment", ID),
        ],
    ),
    (
        ("/v1/reports", "post", "202"),
        &[("get_report", ID), ("download_report", ID)],
    ),
    (("/v1/keys", "post", "201"), &[("revoke_key", ID)]),
    (
        ("/v1/pools", "post", "201"),
        &[("get_pool", ID), ("update_pool", ID)],
    ),
    (
        ("/v1/waitlist", "post", "201"),
        &[("get_entry", ID), ("leave_waitlist", ID)],
    ),
    (
        ("/v1/webhooks", "post", "201"),
        &[
            ("delete_webhook", ID),
            ("enable_webhook", ID),
            ("replay_webhook", ID),
            ("list_deliveries", ID),
        ],
    ),
    (
        ("/v1/resources/{id}/feeds", "post", "201"),
        &[("revoke_feed", ID)],
    ),
    (
        ("/v1/jobs", "get", "200"),
        &[("retry_job", &[("id", "$response.body#/items/0/id")])],
    ),
];

/// Adds the links of [`LINKS`] to `doc`; a link to an operation the
/// document does not have is a bug of the table, caught by a test.
pub(super) fn apply(doc: &mut Value) {
    for ((path, method, status), targets) in LINKS {
        let mut links = Map::new();
        for (operation, parameters) in *targets {
            let mut link = json!({"operationId": operation});
            let (body, params): (Vec<_>, Vec<_>) = parameters
                .iter()
                .partition(|(name, _)| *name == "booking_id");
            if !params.is_empty() {
                link["parameters"] = params
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), json!(value)))
                    .collect::<Map<_, _>>()
                    .into();
            }
            if let Some((name, value)) = body.first() {
                link["requestBody"] = json!({ *name: value });
            }
            links.insert((*operation).to_owned(), link);
        }
        let response = &mut doc["paths"][*path][*method]["responses"][*status];
        if let Some(response) = response.as_object_mut() {
            response.insert("links".into(), Value::Object(links));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_joins_operations_the_document_has() {
        let doc = crate::openapi::document();
        let operations: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        for ((path, method, status), targets) in LINKS {
            let links = &doc["paths"][*path][*method]["responses"][*status]["links"];
            assert!(links.is_object(), "{method} {path} {status} has no links");
            for (operation, _) in *targets {
                assert!(operations.contains(operation), "no operation {operation}");
                assert_eq!(links[*operation]["operationId"], *operation);
            }
        }
    }
}
