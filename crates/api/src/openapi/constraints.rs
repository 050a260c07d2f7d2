//! What the server accepts, stated in the document where the derives
//! cannot say it: header grammars, cursor shapes, comma-separated lists as
//! arrays, the shape of free text (not blank, no NUL), lengths counted in
//! characters, enums of names (time zones, roles), ISO 8601 durations, and
//! the one choice a reservation body makes (a hold, or a range).
//!
//! Limits come from the constants the server checks with, so the two
//! cannot drift apart; `scripts/fuzz-api` (schemathesis, every check, the
//! stateful phase included) holds the document to the server in CI. Rules
//! that compare two fields (an end after its start, a window's length) are
//! said in descriptions: JSON Schema cannot state them.

use muster_domain::booking::{
    MAX_EMAIL, MAX_HEADCOUNT, MAX_LABEL, MAX_NOTES, MAX_PHONE, MAX_TITLE,
};
use muster_domain::notification::MAX_URL;
use muster_domain::resource::{MAX_KIND, MAX_NAME, MAX_TAG, MAX_TAGS, MAX_WINDOWS};
use serde_json::{Map, Value, json};

use crate::extract::IF_MATCH_PATTERN;
use crate::read::{ID_CURSOR, JOB_CURSOR, TIME_ID_CURSOR};

/// Rust's `char::is_whitespace` (Unicode White_Space) as a class body:
/// neither ECMA's nor Python's `\s` is that set.
const WHITE_SPACE: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Control characters, as `char::is_control` has them.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// No NUL: Postgres cannot store it, so no field takes it.
const NO_NUL: &str = r"^[^\u0000]*$";
/// A number of an ISO 8601 duration's part: 1 to 9 digits.
const PART: &str = "[0-9]{1,9}";

/// Free text that is not blank after trimming and holds no NUL.
fn text() -> String {
    format!(r"^[^\u0000]*[^\u0000{WHITE_SPACE}][^\u0000]*$")
}

/// An ISO 8601 duration of weeks, days, hours, minutes and seconds, as
/// `muster_domain::duration::IsoDuration` parses it.
fn iso_duration() -> String {
    format!(
        "^P(({PART}W)?({PART}D)?T(({PART}H)({PART}M)?({PART}S)?|({PART}M)({PART}S)?|{PART}S)\
         |{PART}W({PART}D)?|{PART}D)$"
    )
}

/// An email address as the server checks it: one `@`, text before it, a
/// dot after it, no white space (and no NUL, which no field takes).
fn email() -> String {
    let part = format!(r"[^@\u0000{WHITE_SPACE}]");
    format!("^{part}+@{part}*\\.{part}*$")
}

/// Tightens `doc` (the generated document, as JSON) to the server's rules.
pub(super) fn apply(doc: &mut Value) {
    headers(doc);
    queries(doc);
    bodies(doc);
}

/// Each operation's parameters.
fn parameters(doc: &mut Value) -> impl Iterator<Item = (&str, &mut Map<String, Value>)> {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.iter_mut())
        .flat_map(|(path, item)| {
            item.as_object_mut()
                .into_iter()
                .flat_map(|ops| ops.values_mut())
                .filter_map(|op| op.get_mut("parameters")?.as_array_mut())
                .flat_map(|params| params.iter_mut())
                .filter_map(|p| p.as_object_mut())
                .map(move |p| (path.as_str(), p))
        })
}

fn headers(doc: &mut Value) {
    for (_, p) in parameters(doc) {
        if p["in"] != "header" {
            continue;
        }
        let schema = match p["name"].as_str() {
            Some("If-Match") => json!({"type": "string", "pattern": IF_MATCH_PATTERN}),
            Some("Idempotency-Key") => {
                json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"})
            }
            // Any value is taken; one that is not 1 to 128 visible ASCII
            // characters is replaced by a generated id.
            Some("X-Correlation-Id") => json!({"type": "string"}),
            _ => continue,
        };
        p.insert("schema".into(), schema);
    }
}

fn queries(doc: &mut Value) {
    let statuses =
        |values: &[&str]| json!({"type": "array", "items": {"type": "string", "enum": values}});
    let ids = |most: usize| {
        json!({"type": "array", "minItems": 1, "maxItems": most,
               "items": {"type": "string", "format": "uuid"}})
    };
    for (path, p) in parameters(doc) {
        if p["in"] != "query" {
            continue;
        }
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        let schema = p.entry("schema").or_insert_with(|| json!({}));
        match name.as_str() {
            "from" | "to" | "starts_at" | "ends_at" | "as_of" => {
                schema["format"] = json!("date-time");
            }
            "consistent_with" | "after" => schema["maximum"] = json!(i64::MAX),
            "min_capacity" | "min_seats" => schema["maximum"] = json!(u32::MAX),
            "cursor" => {
                let shape = match path {
                    "/v1/bookings" | "/v1/deployments" | "/v1/schedule" => TIME_ID_CURSOR,
                    "/v1/jobs" => JOB_CURSOR,
                    _ => ID_CURSOR,
                };
                *schema = json!({"type": "string", "pattern": shape});
            }
            "actor" => {
                *schema =
                    json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_NUL});
            }
            "kind" | "tag" | "client" | "stream_type" | "event_type" | "subject" => {
                schema["pattern"] = json!(NO_NUL);
            }
            _ => continue,
        }
    }
    // A quota's name, and a client's email, in the path.
    for (path, p) in parameters(doc) {
        if p["in"] != "path" {
            continue;
        }
        if path.starts_with("/v1/quotas/{name}") {
            p.insert(
                "schema".into(),
                json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}),
            );
        } else if path == "/v1/clients/{email}" {
            p.insert(
                "schema".into(),
                json!({"type": "string", "pattern": "^[A-Za-z0-9._+-]{1,64}@[A-Za-z0-9.-]{1,100}$"}),
            );
        }
    }
    // Comma-separated lists, as OpenAPI spells them.
    for (path, p) in parameters(doc) {
        let name = p["name"].as_str().unwrap_or_default();
        match (path, name) {
            ("/v1/bookings" | "/v1/deployments", "status")
            | ("/v1/availability" | "/v1/schedule", "resource_ids") => {
                let list = match (path, name) {
                    ("/v1/bookings", _) => statuses(&[
                        "requested",
                        "confirmed",
                        "in_progress",
                        "completed",
                        "cancelled",
                    ]),
                    ("/v1/deployments", _) => {
                        statuses(&["queued", "running", "succeeded", "failed", "cancelled"])
                    }
                    ("/v1/availability", _) => ids(50),
                    _ => ids(500),
                };
                p.insert("schema".into(), list);
                p.insert("style".into(), json!("form"));
                p.insert("explode".into(), json!(false));
            }
            ("/v1/availability" | "/v1/pools/{id}/availability", "duration") => {
                p.insert(
                    "schema".into(),
                    json!({"type": "string",
                           "pattern": format!("^([0-9]{{1,18}}|{})$", &iso_duration()[1..iso_duration().len() - 1])}),
                );
            }
            _ => {}
        }
    }
}

/// A property of a component schema, to tighten.
fn property<'a>(doc: &'a mut Value, schema: &str, name: &str) -> &'a mut Value {
    &mut doc["components"]["schemas"][schema]["properties"][name]
}

fn bodies(doc: &mut Value) {
    let text = text();
    let iso = iso_duration();
    let set = |doc: &mut Value, schema: &str, name: &str, extra: Value| {
        let property = property(doc, schema, name);
        if let (Some(p), Some(extra)) = (property.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
    };
    let titled = json!({"maxLength": MAX_TITLE, "pattern": text});
    let notes = json!({"maxLength": MAX_NOTES, "pattern": NO_NUL});
    for schema in ["RequestBookingBody", "UpdateBookingBody", "TaskBody"] {
        set(doc, schema, "title", titled.clone());
    }
    for (schema, name) in [
        ("RequestBookingBody", "notes"),
        ("UpdateBookingBody", "notes"),
        ("CancelBody", "reason"),
    ] {
        set(doc, schema, name, notes.clone());
    }
    for schema in ["RequestBookingBody", "UpdateBookingBody"] {
        set(doc, schema, "headcount", json!({"maximum": MAX_HEADCOUNT}));
    }
    set(
        doc,
        "RequestBookingBody",
        "reservations",
        json!({"maxItems": muster_domain::booking::MAX_RESERVATIONS}),
    );
    set(doc, "ClientBody", "name", titled.clone());
    set(
        doc,
        "ClientBody",
        "phone",
        json!({"maxLength": MAX_PHONE, "pattern": text}),
    );
    set(
        doc,
        "ClientBody",
        "email",
        json!({"maxLength": MAX_EMAIL, "pattern": email()}),
    );
    set(
        doc,
        "EraseBody",
        "email",
        json!({"maxLength": MAX_EMAIL, "pattern": email()}),
    );
    set(
        doc,
        "ReservationBody",
        "label",
        json!({"maxLength": MAX_LABEL, "pattern": NO_NUL}),
    );
    set(
        doc,
        "ConflictCheckBody",
        "resource_ids",
        json!({"minItems": 1, "maxItems": 50}),
    );
    set(
        doc,
        "ConflictCheckBody",
        "headcount",
        json!({"maximum": u32::MAX}),
    );
    set(
        doc,
        "RecurrenceBody",
        "rule",
        json!({"minLength": 1, "maxLength": 1000, "pattern": NO_NUL}),
    );

    // Time zones: the names the server's database knows.
    let zones: Vec<&str> = muster_domain::time::zone_names().collect();
    for schema in ["RecurrenceBody", "RegisterResourceBody", "QuotaBody"] {
        set(doc, schema, "timezone", json!({"enum": zones}));
    }

    // Quotas: a count or hours, not both; at most 1,000 subjects.
    set(
        doc,
        "QuotaBody",
        "subjects",
        json!({"maxItems": muster_domain::quota::MAX_SUBJECTS,
               "items": {"type": "string", "pattern": NO_NUL}}),
    );
    doc["components"]["schemas"]["QuotaBody"]["oneOf"] = json!([
        {"title": "A count", "required": ["max_bookings"],
         "properties": {"max_bookings": {"type": "integer"}, "max_hours": {"type": "null"}}},
        {"title": "Hours", "required": ["max_hours"],
         "properties": {"max_hours": {"type": "number"}, "max_bookings": {"type": "null"}}},
    ]);

    // Resources.
    for schema in ["RegisterResourceBody", "UpdateResourceBody"] {
        set(
            doc,
            schema,
            "name",
            json!({"maxLength": MAX_NAME, "pattern": text}),
        );
        set(
            doc,
            schema,
            "tags",
            json!({"maxItems": MAX_TAGS, "items": {"type": "string", "maxLength": MAX_TAG, "pattern": text}}),
        );
        set(
            doc,
            schema,
            "working_hours",
            json!({"maxItems": MAX_WINDOWS}),
        );
    }
    set(
        doc,
        "RegisterResourceBody",
        "kind",
        json!({"maxLength": MAX_KIND, "pattern": text}),
    );
    let time_of_day = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";
    for name in ["start", "end"] {
        set(
            doc,
            "WorkingWindowBody",
            name,
            json!({"pattern": time_of_day}),
        );
    }
    doc["components"]["schemas"]["IsoDuration"]["pattern"] = json!(iso);

    // Calendar links: credentials without control characters, and how
    // often to sync as an ISO 8601 duration (PT1M to P7D, said in words).
    let credential =
        json!({"minLength": 1, "maxLength": 500, "pattern": format!("^[^{CONTROL}]+$")});
    for name in ["username", "password"] {
        set(doc, "LinkCalendarBody", name, credential.clone());
    }
    set(
        doc,
        "LinkCalendarBody",
        "sync_every",
        json!({"pattern": iso}),
    );

    // Holds: the ttl is an ISO 8601 duration (at most PT1H, said in words).
    set(doc, "PlaceHoldBody", "ttl", json!({"pattern": iso}));
    set(
        doc,
        "JoinWaitlistBody",
        "offer_ttl",
        json!({"pattern": iso}),
    );
    doc["components"]["schemas"]["JoinWaitlistBody"]["oneOf"] = json!([
        {"title": "A resource", "required": ["resource_id"],
         "properties": {"resource_id": {"type": "string"}, "pool_id": {"type": "null"}}},
        {"title": "Any member of a pool", "required": ["pool_id"],
         "properties": {"resource_id": {"type": "null"}, "pool_id": {"type": "string"}}},
    ]);

    // A reservation is a hold to convert, or a resource for a range.
    let reservation = &mut doc["components"]["schemas"]["ReservationBody"];
    reservation["oneOf"] = json!([
        {"title": "A hold to convert", "required": ["hold_id"],
         "properties": {"hold_id": {"type": "string"}, "resource_id": {"type": "null"},
                        "pool_id": {"type": "null"}, "any_of": {"type": "null"},
                        "count": {"type": "null"},
                        "starts_at": {"type": "null"}, "ends_at": {"type": "null"}}},
        {"title": "A resource for a range", "required": ["resource_id", "starts_at", "ends_at"],
         "properties": {"hold_id": {"type": "null"}, "resource_id": {"type": "string"},
                        "pool_id": {"type": "null"}, "any_of": {"type": "null"},
                        "count": {"type": "null"},
                        "starts_at": {"type": "string"}, "ends_at": {"type": "string"}}},
        {"title": "Free members of a pool for a range", "required": ["pool_id", "starts_at", "ends_at"],
         "properties": {"hold_id": {"type": "null"}, "resource_id": {"type": "null"},
                        "pool_id": {"type": "string"}, "any_of": {"type": "null"},
                        "starts_at": {"type": "string"}, "ends_at": {"type": "string"}}},
        {"title": "Free ones of these resources for a range", "required": ["any_of", "starts_at", "ends_at"],
         "properties": {"hold_id": {"type": "null"}, "resource_id": {"type": "null"},
                        "pool_id": {"type": "null"}, "any_of": {"type": "array"},
                        "starts_at": {"type": "string"}, "ends_at": {"type": "string"}}},
    ]);
    set(
        doc,
        "ReservationBody",
        "count",
        json!({"minimum": 1, "maximum": muster_domain::booking::MAX_RESERVATIONS}),
    );
    set(
        doc,
        "ReservationBody",
        "any_of",
        json!({"minItems": 1, "maxItems": muster_domain::pool::MAX_MEMBERS, "uniqueItems": true}),
    );

    // Pools: members or a selector, one of the two; a selector says
    // something.
    for schema in ["CreatePoolBody", "UpdatePoolBody"] {
        set(
            doc,
            schema,
            "name",
            json!({"maxLength": MAX_NAME, "pattern": text}),
        );
        set(
            doc,
            schema,
            "members",
            json!({"minItems": 1, "maxItems": muster_domain::pool::MAX_MEMBERS, "uniqueItems": true}),
        );
    }
    let one_of = |required: bool| {
        let mut choices = vec![
            json!({"title": "Explicit members", "required": ["members"],
                   "properties": {"members": {"type": "array"}, "selector": {"type": "null"}}}),
            json!({"title": "A selector", "required": ["selector"],
                   "properties": {"selector": {"type": "object"}, "members": {"type": "null"}}}),
        ];
        if !required {
            choices.push(json!({"title": "Neither",
                "properties": {"members": {"type": "null"}, "selector": {"type": "null"}}}));
        }
        json!(choices)
    };
    doc["components"]["schemas"]["CreatePoolBody"]["oneOf"] = one_of(true);
    doc["components"]["schemas"]["UpdatePoolBody"]["oneOf"] = one_of(false);
    doc["components"]["schemas"]["SelectorBody"]["anyOf"] = json!([
        {"required": ["kind"], "properties": {"kind": {"type": "string"}}},
        {"required": ["tags"], "properties": {"tags": {"minItems": 1}}},
        {"required": ["min_seats"], "properties": {"min_seats": {"type": "integer"}}},
        {"required": ["min_capacity"], "properties": {"min_capacity": {"type": "integer"}}},
    ]);
    set(
        doc,
        "SelectorBody",
        "kind",
        json!({"maxLength": MAX_KIND, "pattern": text}),
    );
    set(
        doc,
        "SelectorBody",
        "tags",
        json!({"maxItems": MAX_TAGS, "items": {"type": "string", "maxLength": MAX_TAG, "pattern": text}}),
    );
    set(doc, "SelectorBody", "min_capacity", json!({"minimum": 1}));

    // Finding a time: a requirement names one target; durations as the
    // availability query takes them.
    let minutes_or_iso = format!("^([0-9]{{1,18}}|{})$", &iso[1..iso.len() - 1]);
    for name in ["duration", "granularity"] {
        set(
            doc,
            "FindTimeBody",
            name,
            json!({"pattern": minutes_or_iso}),
        );
    }
    let most = crate::routes::find_time::MAX_REQUIREMENTS;
    set(
        doc,
        "FindTimeBody",
        "requirements",
        json!({"minItems": 1, "maxItems": most}),
    );
    set(doc, "FindTimeBody", "optional", json!({"maxItems": most}));
    set(
        doc,
        "FindTimeBody",
        "min_optional",
        json!({"maximum": most}),
    );
    set(
        doc,
        "FindTimeBody",
        "headcount",
        json!({"maximum": u32::MAX}),
    );
    set(
        doc,
        "RequirementBody",
        "count",
        json!({"minimum": 1, "maximum": muster_domain::pool::MAX_MEMBERS}),
    );
    set(
        doc,
        "RequirementBody",
        "any_of",
        json!({"minItems": 1, "maxItems": muster_domain::pool::MAX_MEMBERS, "uniqueItems": true}),
    );
    doc["components"]["schemas"]["RequirementBody"]["oneOf"] = json!([
        {"title": "A resource", "required": ["resource_id"],
         "properties": {"resource_id": {"type": "string"}, "pool_id": {"type": "null"},
                        "any_of": {"type": "null"}, "count": {"type": "null"}}},
        {"title": "Members of a pool", "required": ["pool_id"],
         "properties": {"resource_id": {"type": "null"}, "pool_id": {"type": "string"},
                        "any_of": {"type": "null"}}},
        {"title": "Some of these resources", "required": ["any_of"],
         "properties": {"resource_id": {"type": "null"}, "pool_id": {"type": "null"},
                        "any_of": {"type": "array"}}},
    ]);

    // Keys.
    set(
        doc,
        "CreateKeyBody",
        "role",
        json!({"enum": ["admin", "planner", "analyst"]}),
    );
    let name = format!(
        "^[{WHITE_SPACE}]*([^{CONTROL}{WHITE_SPACE}]([^{CONTROL}]{{0,{}}}[^{CONTROL}{WHITE_SPACE}])?)?[{WHITE_SPACE}]*$",
        muster_app::keys::MAX_NAME - 2
    );
    set(doc, "CreateKeyBody", "name", json!({"pattern": name}));

    // Reports, webhooks, client messages.
    set(
        doc,
        "RequestReportBody",
        "resource_kind",
        json!({"minLength": 1, "maxLength": 100, "pattern": NO_NUL}),
    );
    set(
        doc,
        "CreateWebhookBody",
        "event_types",
        json!({"minItems": 1, "maxItems": 50,
               "items": {"type": "string", "maxLength": 102,
                         "pattern": r"^(\*|[a-z_]+(\.[a-z_]+)*(\.\*)?)$"}}),
    );
    set(
        doc,
        "CreateWebhookBody",
        "url",
        json!({"maxLength": MAX_URL, "pattern": NO_NUL}),
    );
    let b64 = "[A-Za-z0-9+/]";
    let whsec = format!(
        "^whsec_(({b64}{{4}}){{8,21}}|({b64}{{4}}){{8,21}}{b64}[AQgw]==|({b64}{{4}}){{8,20}}{b64}{{2}}[AEIMQUYcgkosw048]=)$"
    );
    let secret = property(doc, "CreateWebhookBody", "secret");
    if let Some(secret) = secret.as_object_mut() {
        secret.remove("type");
        secret.insert(
            "anyOf".into(),
            json!([
                {"type": "null"},
                {"type": "string", "pattern": whsec},
                {"type": "string", "minLength": 16, "maxLength": 256, "pattern": NO_NUL,
                 "not": {"pattern": "^whsec_"}},
            ]),
        );
    }
    set(
        doc,
        "ClientNotificationSettings",
        "reminders",
        json!({"maxItems": muster_domain::client_message::MAX_REMINDERS,
               "items": {"type": "string", "pattern": iso}}),
    );
    let address = |not: &str| {
        format!(
            "[^{not}{WHITE_SPACE}{CONTROL}]+@[^{not}{WHITE_SPACE}{CONTROL}]*\\.[^{not}{WHITE_SPACE}{CONTROL}]*"
        )
    };
    set(
        doc,
        "ClientNotificationSettings",
        "sender",
        json!({"maxLength": 254,
               "pattern": format!("^[{WHITE_SPACE}]*({}|[^{CONTROL}]*<{}>)?[{WHITE_SPACE}]*$",
                                  address("<>@"), address("<@"))}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, s: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(s)
    }

    #[test]
    fn durations_are_stated_as_the_server_parses_them() {
        let iso = iso_duration();
        for ok in [
            "PT1H",
            "P1D",
            "P2W",
            "PT1H30M",
            "P1DT2H",
            "PT5S",
            "P1W2DT3H4M5S",
        ] {
            assert!(matches(&iso, ok), "{ok}");
            assert!(
                ok.parse::<muster_domain::duration::IsoDuration>().is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "P",
            "PT",
            "P1H",
            "PT1D",
            "P1DT",
            "1H",
            "PT1M1H",
            "P1234567890D",
            "P1D2W",
        ] {
            assert!(!matches(&iso, bad), "{bad}");
            assert!(
                bad.parse::<muster_domain::duration::IsoDuration>().is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn if_match_text_and_emails_are_stated_as_the_server_checks_them() {
        for (value, ok) in [
            ("*", true),
            ("3", true),
            ("\"3\"", true),
            ("W/\"3\"", true),
            ("", false),
            ("W/3", false),
            ("+3", false),
            ("W/W/\"3\"", false),
        ] {
            assert_eq!(matches(IF_MATCH_PATTERN, value), ok, "{value:?}");
        }
        let text = text();
        for (value, ok) in [
            ("Gala", true),
            (" a ", true),
            ("", false),
            (" \t", false),
            ("\u{3000}", false),
            ("a\0b", false),
        ] {
            assert_eq!(matches(&text, value), ok, "{value:?}");
        }
        let email = email();
        for (value, ok) in [
            ("ann@example.com", true),
            ("a@b.", true),
            ("ann@example", false),
            ("a b@c.d", false),
            ("@c.d", false),
        ] {
            assert_eq!(matches(&email, value), ok, "{value:?}");
        }
    }
}
