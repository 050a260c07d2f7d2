//! Schema evolution of stored events: payloads are upcast on read, step by
//! step, so that events written by any earlier version stay readable while
//! the code only knows the current shape.

use serde_json::{Map, Value};

use crate::event::EventDecodeError;

/// The schema version this build writes for `event_type`.
pub fn current_version(event_type: &str) -> i32 {
    match event_type {
        // v2 (2026-11): the client became an object with name, email and phone.
        "booking.requested" => 2,
        _ => 1,
    }
}

/// Brings a stored payload of `version` up to [`current_version`].
pub fn upcast(
    event_type: &str,
    version: i32,
    mut payload: Value,
) -> Result<Value, EventDecodeError> {
    let target = current_version(event_type);
    if version > target {
        return Err(EventDecodeError::FutureVersion {
            event_type: event_type.to_owned(),
            version,
            known: target,
        });
    }
    for from in version..target {
        payload = upcast_step(event_type, from, payload);
    }
    Ok(payload)
}

/// One step from `from` to `from + 1`.
fn upcast_step(event_type: &str, from: i32, payload: Value) -> Value {
    match (event_type, from) {
        ("booking.requested", 1) => booking_requested_v1_to_v2(payload),
        _ => payload,
    }
}

/// v1 kept the client flat (`client_name`, `client_email`); v2 nests it as
/// `client: {name, email, phone}`.
fn booking_requested_v1_to_v2(payload: Value) -> Value {
    let Value::Object(mut fields) = payload else {
        return payload;
    };
    let mut client = Map::new();
    client.insert(
        "name".into(),
        fields
            .remove("client_name")
            .unwrap_or(Value::String(String::new())),
    );
    if let Some(email) = fields.remove("client_email") {
        client.insert("email".into(), email);
    }
    fields.insert("client".into(), Value::Object(client));
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booking_requested_v1_gains_a_client_object() {
        let v1 = json!({"title": "Gala", "client_name": "Ann", "client_email": "ann@example.com",
                        "starts_at": "2027-01-01T10:00:00Z", "ends_at": "2027-01-01T12:00:00Z",
                        "headcount": 3});
        let v2 = upcast("booking.requested", 1, v1).unwrap();
        assert_eq!(
            v2["client"],
            json!({"name": "Ann", "email": "ann@example.com"})
        );
        assert!(v2.get("client_name").is_none());
        assert_eq!(v2["title"], "Gala");
    }

    #[test]
    fn current_payloads_pass_through_and_future_ones_are_refused() {
        let p = json!({"x": 1});
        assert_eq!(upcast("booking.confirmed", 1, p.clone()).unwrap(), p);
        assert!(matches!(
            upcast("booking.requested", 3, p),
            Err(EventDecodeError::FutureVersion { .. })
        ));
    }
}
