//! Request extractors: command input (auth, headers, JSON body) and ids.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header};
use muster_domain::FieldError;
use muster_store::{CommandContext, Principal};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::{Auth, WRITERS};
use crate::{ApiError, AppState};

/// The request's correlation id, set by the observability middleware.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// A command request: an authorised writer, its body `T`, and the
/// conditions it runs under (`If-Match`, `Idempotency-Key`).
#[derive(Debug)]
pub struct Command<T> {
    /// The caller.
    pub principal: Principal,
    /// The parsed body.
    pub body: T,
    /// The store's view of the request.
    pub context: CommandContext,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Command<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let auth = Auth::from_request_parts(&mut parts, state).await?;
        let principal = auth.require(WRITERS)?.clone();
        let if_match = if_match(&parts.headers)?;
        let idempotency_key = crate::idempotency::key(&parts.headers)?;
        let correlation_id = parts
            .extensions
            .get::<CorrelationId>()
            .map_or_else(|| Uuid::now_v7().to_string(), |c| c.0.clone());

        let bytes = read_body(Request::from_parts(parts.clone(), body), state).await?;
        let value = parse_json(&parts.headers, &bytes)?;
        let idempotency = idempotency_key
            .map(|key| crate::idempotency::claim(key, &parts.method, parts.uri.path(), &value));
        let body = deserialize(value)?;
        Ok(Command {
            context: CommandContext {
                tenant: principal.tenant.clone(),
                actor: principal.key_id.to_string(),
                correlation_id,
                command_id: Uuid::now_v7(),
                if_match,
                idempotency,
            },
            principal,
            body,
        })
    }
}

/// A query that takes a JSON body (the conflict check): any reader, its
/// body `T`, with the same problem+json answers to bad bodies as commands.
#[derive(Debug)]
pub struct QueryBody<T> {
    /// The caller.
    pub principal: Principal,
    /// The parsed body.
    pub body: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for QueryBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let auth = Auth::from_request_parts(&mut parts, state).await?;
        let principal = auth.require(crate::auth::READERS)?.clone();
        let bytes = read_body(Request::from_parts(parts.clone(), body), state).await?;
        let body = deserialize(parse_json(&parts.headers, &bytes)?)?;
        Ok(QueryBody { principal, body })
    }
}

/// An empty body reads as `{}`, so that body-less commands (confirm) accept
/// both. A non-empty body must be JSON.
fn parse_json(headers: &HeaderMap, bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || mime.to_ascii_lowercase().ends_with("+json")
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// Deserialises a body, naming the offending field on failure.
fn deserialize<T: DeserializeOwned>(mut value: serde_json::Value) -> Result<T, ApiError> {
    whole_numbers_as_integers(&mut value);
    if let Some(path) = nul_in(&value, String::new()) {
        return Err(nul_refused(if path.is_empty() {
            "body".into()
        } else {
            path
        }));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        ApiError::Validation(vec![FieldError::new(field_of(&path, &message), message)])
    })
}

/// JSON does not tell `3` from `3.0`, and JSON Schema's `integer` admits
/// both; serde refuses a float where an integer is declared. A number
/// with no fraction becomes the integer it is, before serde sees it (one
/// with a fraction stays a float, and an integer field refuses it).
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                // Below 2^53 every whole float is exact.
                *value = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// The path of the first string holding a NUL character, which Postgres
/// cannot store in text (and no field has a use for).
fn nul_in(value: &serde_json::Value, path: String) -> Option<String> {
    match value {
        serde_json::Value::String(s) => s.contains('\0').then_some(path),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(v, format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let field = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(field)
            } else {
                nul_in(v, field)
            }
        }),
        _ => None,
    }
}

fn nul_refused(field: String) -> ApiError {
    ApiError::Validation(vec![FieldError::new(
        field,
        "must not contain NUL characters",
    )])
}

/// The field an error is about: the path, or for missing and unknown
/// fields (reported at their parent) the parent path plus the field name.
fn field_of(path: &str, message: &str) -> String {
    let parent = if path == "." { "" } else { path };
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(name) if parent.is_empty() => name.to_owned(),
        Some(name) if !parent.ends_with(name) => format!("{parent}.{name}"),
        _ if parent.is_empty() => "body".to_owned(),
        _ => parent.to_owned(),
    }
}

/// The whole body, within the size limit and the body timeout: a client
/// that stops sending (a body shorter than its `Content-Length`) is
/// answered 408 rather than held until the request timeout.
async fn read_body(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let timeout = state.config.body_timeout;
    match tokio::time::timeout(timeout, Bytes::from_request(request, state)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::PayloadTooLarge(state.config.body_limit)),
        Err(_) => Err(ApiError::BodyTimeout(timeout.as_millis())),
    }
}

/// `If-Match: 3` or `If-Match: "3"` (an ETag); `*` means any version.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    // `N`, `"N"` or `W/"N"` with N of 1 to 18 digits (IF_MATCH_PATTERN):
    // what a version or an ETag of one looks like, nothing looser.
    let quoted = |t: &str| t.strip_prefix('"')?.strip_suffix('"').map(str::to_owned);
    let digits = match text.strip_prefix("W/") {
        Some(weak) => quoted(weak),
        None => quoted(text).or_else(|| Some(text.to_owned())),
    };
    digits
        .filter(|d| (1..=18).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest("If-Match must be a version number, e.g. \"3\"".into()))
}

/// What `If-Match` may be: `*`, or a version as a number or an ETag.
pub const IF_MATCH_PATTERN: &str = r#"^(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})$"#;

/// Parses an id from the path. An id that is not a UUID names nothing, so
/// it is a 404 like any unknown id.
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(what.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_for_every_kind_of_body_error() {
        assert_eq!(field_of(".", "missing field `title`"), "title");
        assert_eq!(field_of("client", "missing field `name`"), "client.name");
        assert_eq!(
            field_of(".", "unknown field `colour`, expected one of"),
            "colour"
        );
        assert_eq!(
            field_of("reservations[0].starts_at", "premature end of input"),
            "reservations[0].starts_at"
        );
        assert_eq!(
            field_of(".", "invalid type: string, expected a map"),
            "body"
        );
    }

    #[test]
    fn whole_floats_read_as_integers_and_fractions_stay() {
        let mut v = serde_json::json!({"a": 866.0, "b": [2.0, 2.5], "c": -3.0, "d": 1e300});
        whole_numbers_as_integers(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": 866, "b": [2, 2.5], "c": -3, "d": 1e300})
        );
    }

    #[test]
    fn if_match_accepts_numbers_and_etags_only() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h).unwrap(), None);
        h.insert(header::IF_MATCH, "\"3\"".parse().unwrap());
        assert_eq!(if_match(&h).unwrap(), Some(3));
        h.insert(header::IF_MATCH, "7".parse().unwrap());
        assert_eq!(if_match(&h).unwrap(), Some(7));
        h.insert(header::IF_MATCH, "abc".parse().unwrap());
        assert!(if_match(&h).is_err());
        h.insert(header::IF_MATCH, "*".parse().unwrap());
        assert_eq!(if_match(&h).unwrap(), None);
        h.insert(header::IF_MATCH, "W/\"12\"".parse().unwrap());
        assert_eq!(if_match(&h).unwrap(), Some(12));
        for looser in [
            "",
            "W/W/\"3\"",
            "\"3",
            "+3",
            "W/3",
            "-1",
            "1234567890123456789",
        ] {
            h.insert(header::IF_MATCH, looser.parse().unwrap());
            assert!(if_match(&h).is_err(), "{looser:?}");
        }
    }
}

/// The ids in the request path, in order. An undecodable path names
/// nothing, so it is a 404 like any unknown id.
#[derive(Debug)]
pub struct PathIds(pub Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("path".into()))?;
        Ok(PathIds(params.iter().map(|(_, v)| v.to_owned()).collect()))
    }
}

impl PathIds {
    /// The `i`-th id as a UUID, or 404 for `what`.
    pub fn id(&self, i: usize, what: &str) -> Result<Uuid, ApiError> {
        parse_id(self.0.get(i).map_or("", String::as_str), what)
    }
}

/// Query-string parameters, with a problem+json 400 when they do not parse.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        if let Some((name, _)) = form_urlencoded::parse(query.as_bytes())
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(nul_refused(name.replace('\0', "")));
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(QueryParams)
            .map_err(|e| {
                ApiError::Validation(vec![FieldError::new(
                    field_of(&e.path().to_string(), &e.inner().to_string()),
                    e.inner().to_string(),
                )])
            })
    }
}
