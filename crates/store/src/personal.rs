//! Personal data in events (SPEC §12): the fields the domain names as
//! personal ([`muster_domain::personal`]) are sealed with a data key of
//! their client's own on the way into the event store, and opened on every
//! way out. Each data key is stored only sealed with the server's key
//! (`MUSTER_SECRET_KEY`) in `personal_keys`; erasing a client deletes its
//! keys, and its fields then read as erased wherever the events are read,
//! a projection rebuild included.
//!
//! A stream's personal fields are sealed with one key per client: the key
//! of the stream's last sealed event while its client stays the same, a
//! new one when the client changes (or the stream is new). Every read of
//! events brings each sealed event's data key along in the same statement
//! ([`DATA_KEY`]), so opening costs no round trip, and a key deleted by an
//! erasure is gone for every reader at once: nothing caches it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use muster_domain::personal::{client_email, erased_value, personal_fields};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::StoreError;
use crate::secret::SecretKey;

/// The payload field that holds the sealed personal fields.
pub const SEALED: &str = "sealed_personal";

/// The sealed personal fields of one payload.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    /// The data key (`personal_keys.key_id`).
    key: Uuid,
    /// Which fields it holds (so that they read as erased without it).
    fields: Vec<String>,
    /// Nonce, ciphertext and tag of the fields as a JSON object, base64.
    data: String,
}

/// A stream's data key, opened.
#[derive(Debug, Clone)]
pub(crate) struct StreamKey {
    /// Its id.
    pub key_id: Uuid,
    /// The client it belongs to: a lower-case email, or none (a client
    /// known by name alone has a key per stream).
    pub subject: Option<String>,
    /// The key itself.
    pub key: SecretKey,
}

/// A data key made by a command, to be stored with its events.
#[derive(Debug, Clone)]
pub(crate) struct NewKey {
    /// Its id.
    pub key_id: Uuid,
    /// The client it belongs to.
    pub subject: Option<String>,
    /// The key, sealed with the server's key for its id.
    pub sealed: Vec<u8>,
}

/// The client `payload` (of `event_type`) names, if it names one: their
/// lower-case email, or `Some(None)` for a client without one.
pub(crate) fn named_client(event_type: &str, payload: &Value) -> Option<Option<String>> {
    (!payload["client"].is_null() && !personal_fields(event_type).is_empty())
        .then(|| client_email(event_type, payload))
}

/// The key a command's events are sealed with: the stream's `current` one
/// while the client stays the same (`named`: the client the events name
/// last, if any), a new one otherwise, returned to be stored with them.
pub(crate) fn key_for(
    named: Option<Option<String>>,
    current: Option<StreamKey>,
    secret: &SecretKey,
) -> (StreamKey, Option<NewKey>) {
    match (named, current) {
        (None, Some(current)) => (current, None),
        (Some(subject), Some(current)) if subject.is_some() && subject == current.subject => {
            (current, None)
        }
        (named, _) => {
            let (key, bytes) = SecretKey::generate_raw();
            let key_id = Uuid::now_v7();
            let subject = named.flatten();
            let new = NewKey {
                key_id,
                subject: subject.clone(),
                sealed: secret.seal_for(&bytes, key_id.as_bytes()),
            };
            (
                StreamKey {
                    key_id,
                    subject,
                    key,
                },
                Some(new),
            )
        }
    }
}

/// Moves the personal fields of `payload` into its sealed field.
pub(crate) fn seal_payload(event_type: &str, payload: &mut Value, key: &StreamKey) {
    let Value::Object(fields) = payload else {
        return;
    };
    let mut personal = Map::new();
    for &field in personal_fields(event_type) {
        if let Some(value) = fields.remove(field) {
            personal.insert(field.to_owned(), value);
        }
    }
    if personal.is_empty() {
        return;
    }
    let names = personal.keys().cloned().collect();
    let plain = serde_json::to_vec(&Value::Object(personal)).expect("JSON values serialise");
    let sealed = Sealed {
        key: key.key_id,
        fields: names,
        data: STANDARD.encode(key.key.seal_for(&plain, key.key_id.as_bytes())),
    };
    fields.insert(
        SEALED.to_owned(),
        serde_json::to_value(sealed).expect("plain data serialises"),
    );
}

/// What opening a stored payload found.
#[derive(Debug)]
pub(crate) enum Opened {
    /// It has no sealed fields.
    Plain,
    /// Its key is gone: its fields now read as erased.
    Erased,
    /// Its fields are back in place, opened with this key; `client` is the
    /// client they name, if they name one.
    With {
        /// The data key's id.
        key_id: Uuid,
        /// The data key.
        key: SecretKey,
        /// The lower-case email of the client the fields name (`Some(None)`:
        /// a client without one), if they name a client at all.
        client: Option<Option<String>>,
    },
}

impl Opened {
    /// The stream's key after an event that opened as `self`, given its
    /// key before: the event's own, the same while none is named, none
    /// once erased.
    pub(crate) fn next_key(self, before: Option<StreamKey>) -> Option<StreamKey> {
        match self {
            Opened::Plain => before,
            Opened::Erased => None,
            Opened::With {
                key_id,
                key,
                client,
            } => {
                let subject = match client {
                    Some(subject) => subject,
                    None => before
                        .filter(|b| b.key_id == key_id)
                        .and_then(|b| b.subject),
                };
                Some(StreamKey {
                    key_id,
                    subject,
                    key,
                })
            }
        }
    }
}

/// Opens `payload` as stored at `position`: its sealed fields back in
/// place with `data_key` (the sealed data key the read brought along), or
/// as erased when the key is gone.
pub(crate) fn open(
    position: i64,
    payload: &mut Value,
    data_key: Option<&[u8]>,
    secret: Option<&SecretKey>,
) -> Result<Opened, StoreError> {
    let Value::Object(fields) = payload else {
        return Ok(Opened::Plain);
    };
    if data_key.is_none() && !fields.contains_key(SEALED) {
        return Ok(Opened::Plain);
    }
    let Some(sealed) = fields.remove(SEALED) else {
        return Ok(Opened::Plain);
    };
    let unreadable = |why: &str| StoreError::CorruptRow(format!("event {position}: {why}"));
    let sealed: Sealed = serde_json::from_value(sealed)
        .map_err(|_| unreadable("its sealed personal data is malformed"))?;
    let Some(data_key) = data_key else {
        // Erased: the fields read as erased, the rest of the event as it is.
        for field in &sealed.fields {
            if let Some(erased) = erased_value(field) {
                fields.insert(field.clone(), erased);
            }
        }
        return Ok(Opened::Erased);
    };
    let secret = secret.ok_or_else(|| {
        unreadable("it holds sealed personal data and this process has no MUSTER_SECRET_KEY")
    })?;
    let context = sealed.key.as_bytes();
    let bytes = secret
        .open_for(data_key, context)
        .map_err(|_| unreadable("its data key does not open with this MUSTER_SECRET_KEY"))?;
    let key = SecretKey::from_bytes(&bytes).map_err(|_| unreadable("its data key is malformed"))?;
    let data = STANDARD
        .decode(&sealed.data)
        .map_err(|_| unreadable("its sealed personal data is malformed"))?;
    let plain = key
        .open_for(&data, context)
        .map_err(|_| unreadable("its personal data does not open with its key"))?;
    let Ok(Value::Object(personal)) = serde_json::from_slice(&plain) else {
        return Err(unreadable("its personal data is not a JSON object"));
    };
    let client = personal
        .get("client")
        .map(|c| c["email"].as_str().map(|e| e.trim().to_lowercase()));
    fields.extend(personal);
    Ok(Opened::With {
        key_id: sealed.key,
        key,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sealed(event_type: &str, payload: &Value, key: &StreamKey) -> Value {
        let mut payload = payload.clone();
        seal_payload(event_type, &mut payload, key);
        payload
    }

    fn opened(payload: &Value, data_key: Option<&[u8]>, secret: &SecretKey) -> (Value, Opened) {
        let mut payload = payload.clone();
        let opened = open(1, &mut payload, data_key, Some(secret)).unwrap();
        (payload, opened)
    }

    #[test]
    fn personal_fields_are_sealed_opened_and_erased_with_their_key() {
        let (secret, _) = SecretKey::generate();
        let requested = json!({"title": "Gala", "client": {"name": "Ann", "email": "Ann@Example.com"},
                               "notes": "nut allergy", "headcount": 3});
        let named = named_client("booking.requested", &requested);
        assert_eq!(named, Some(Some("ann@example.com".to_owned())));
        let (key, new) = key_for(named, None, &secret);
        let new = new.expect("a new stream gets a key");
        assert_eq!(new.subject.as_deref(), Some("ann@example.com"));
        let stored = sealed("booking.requested", &requested, &key);
        assert!(!stored.to_string().contains("Ann"), "{stored}");
        assert!(!stored.to_string().contains("nut allergy"));
        assert_eq!(stored["title"], "Gala");
        assert_eq!(
            sealed("booking.confirmed", &json!({}), &key),
            json!({}),
            "no personal fields, nothing sealed"
        );

        // With its key, the event reads as written; the key comes back.
        let (payload, how) = opened(&stored, Some(&new.sealed), &secret);
        assert_eq!(payload, requested);
        let current = how.next_key(None).expect("the stream's key");
        assert_eq!(current.key_id, new.key_id);
        assert_eq!(current.subject.as_deref(), Some("ann@example.com"));

        // Notes changed alone: the same key; a new client: a new key.
        let notes = json!({"notes": "none"});
        let (same, none) = key_for(
            named_client("booking.updated", &notes),
            Some(current.clone()),
            &secret,
        );
        assert!(none.is_none() && same.key_id == new.key_id);
        let bob = json!({"client": {"name": "Bob", "email": "bob@example.com"}});
        let (_, other) = key_for(
            named_client("booking.updated", &bob),
            Some(current),
            &secret,
        );
        assert_eq!(other.unwrap().subject.as_deref(), Some("bob@example.com"));

        // Without its key (erased), the fields read as erased.
        let (payload, how) = opened(&stored, None, &secret);
        assert_eq!(
            payload,
            json!({"title": "Gala", "client": {"erased": true}, "headcount": 3})
        );
        assert!(matches!(how, Opened::Erased));
        // Under another server key, or with no key at all, it fails loudly.
        let (wrong, _) = SecretKey::generate();
        let mut p = stored.clone();
        assert!(open(1, &mut p, Some(&new.sealed), Some(&wrong)).is_err());
        let mut p = stored.clone();
        assert!(open(1, &mut p, Some(&new.sealed), None).is_err());
        // A calendar link's own `sealed` field is none of this.
        let mut link = json!({"sealed": "abc"});
        assert!(matches!(
            open(1, &mut link, None, Some(&secret)).unwrap(),
            Opened::Plain
        ));
        assert_eq!(link, json!({"sealed": "abc"}));
    }
}
