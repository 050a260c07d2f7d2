//! Idempotency on the HTTP side: the `Idempotency-Key` header and the
//! request's fingerprint. The protocol itself (replay, recording the
//! answer) is the application's (`muster_app`), the records the store's.

use axum::http::{HeaderMap, Method};
use muster_store::idempotency::IdempotencyClaim;
use sha2::{Digest, Sha256};

use crate::ApiError;

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
