//! Personal data in events (SPEC §12): which fields of which events hold a
//! client's personal data, and how they read once the client is erased.
//!
//! The store seals exactly these fields with a key of the client's own and
//! opens them on every read; erasing the client deletes the key, and the
//! fields then read as [`erased_value`] says. Everything else in an event
//! (its type, its stream, its times, the resources it holds) is the
//! schedule's own record and is kept.

use serde_json::{Value, json};

/// The fields of a payload of `event_type` (at its current schema version)
/// that hold a client's personal data; empty for events without any.
pub fn personal_fields(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "booking.requested" | "booking.updated" => &["client", "notes"],
        "waitlist.joined" => &["client"],
        _ => &[],
    }
}

/// Whether payloads of `event_type` may hold personal data.
pub fn has_personal_fields(event_type: &str) -> bool {
    !personal_fields(event_type).is_empty()
}

/// What personal field `field` reads as once its client is erased: a
/// client is `{"erased":true}`; free text is gone (`None`).
pub fn erased_value(field: &str) -> Option<Value> {
    (field == "client").then(|| json!({"erased": true}))
}

/// Replaces the personal fields of `payload` (of `event_type`, at its
/// current schema version) by what they read as once erased; whether
/// there was any to replace.
pub fn redact(event_type: &str, payload: &mut Value) -> bool {
    let Value::Object(fields) = payload else {
        return false;
    };
    let mut redacted = false;
    for &field in personal_fields(event_type) {
        let Some(value) = fields.remove(field) else {
            continue;
        };
        let erased = erased_value(field);
        redacted |= erased.as_ref() != Some(&value);
        if let Some(erased) = erased {
            fields.insert(field.to_owned(), erased);
        }
    }
    redacted
}

/// The lower-case email of the client named in `payload` (of
/// `event_type`), if it names one: whom the event's personal data is about.
pub fn client_email(event_type: &str, payload: &Value) -> Option<String> {
    if !has_personal_fields(event_type) {
        return None;
    }
    payload["client"]["email"]
        .as_str()
        .map(|e| e.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::Client;

    #[test]
    fn redaction_leaves_the_shape_and_an_erased_client() {
        let mut p = json!({"title": "Gala", "client": {"name": "Ann", "email": "ann@example.com"},
                           "notes": "allergic to nuts", "headcount": 3});
        assert!(redact("booking.requested", &mut p));
        assert_eq!(
            p,
            json!({"title": "Gala", "client": {"erased": true}, "headcount": 3})
        );
        let client: Client = serde_json::from_value(p["client"].clone()).unwrap();
        assert_eq!(client, Client::erased());
        assert!(
            !redact("booking.requested", &mut p),
            "a second redaction finds nothing"
        );
        let mut confirmed = json!({});
        assert!(!redact("booking.confirmed", &mut confirmed));
    }

    #[test]
    fn the_client_of_an_event_is_its_lower_case_email() {
        let p = json!({"client": {"name": "Ann", "email": " Ann@Example.com"}});
        assert_eq!(
            client_email("booking.requested", &p).as_deref(),
            Some("ann@example.com")
        );
        assert_eq!(
            client_email("booking.updated", &json!({"notes": "x"})),
            None
        );
        assert_eq!(client_email("booking.confirmed", &p), None);
    }
}
