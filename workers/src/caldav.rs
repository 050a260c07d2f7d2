//! A CalDAV collection, through `libdav` (the pimsync project's maintained
//! WebDAV/CalDAV client: sync-collection (RFC 6578), calendar-multiget,
//! conditional PUT and DELETE). Its HTTP goes through muster's own
//! outbound client (the webhooks' SSRF rules, timeouts, no redirects):
//! `libdav` takes any `tower` service, and [`Http`] is one over it that
//! adds the link's basic credentials and bounds what it reads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use libdav::caldav::GetCalendarResources;
use libdav::dav::{Delete, ListResources, PutResource, SyncCollection, WebDavClient, WebDavError};
use muster_app::calendars::CalendarAccess;
use url::Url;

use crate::outbound::Outbound;

/// Objects fetched per calendar-multiget.
const FETCH_CHUNK: usize = 200;

/// Why an HTTP exchange with the calendar server failed, in words fit to
/// show (never a credential).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpError(String);

/// `libdav`'s HTTP client: muster's outbound client, with the link's
/// basic credentials.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    basic: Option<(String, String)>,
}

type Answer = Pin<Box<dyn Future<Output = Result<http::Response<Full<Bytes>>, HttpError>> + Send>>;

impl tower_service::Service<http::Request<String>> for Http {
    type Response = http::Response<Full<Bytes>>;
    type Error = HttpError;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), HttpError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<String>) -> Answer {
        let client = self.client.clone();
        let basic = self.basic.clone();
        Box::pin(async move {
            let mut request = reqwest::Request::try_from(request)
                .map_err(|_| HttpError("a CalDAV request could not be built".into()))?;
            if let Some((user, password)) = basic {
                let value = format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("{user}:{password}")
                    )
                );
                let mut value = http::HeaderValue::from_str(&value)
                    .map_err(|_| HttpError("the credentials are not a header".into()))?;
                value.set_sensitive(true);
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, value);
            }
            let mut response = client
                .execute(request)
                .await
                .map_err(|e| HttpError(crate::outbound::describe(&e)))?;
            let mut builder = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = crate::outbound::read_calendar_body(&mut response)
                .await
                .map_err(HttpError)?;
            builder
                .body(Full::new(Bytes::from(body)))
                .map_err(|_| HttpError("the calendar server's answer is not HTTP".into()))
        })
    }
}

/// What changed in a collection since a sync token.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// The collection's token now, if it has sync-collection.
    pub token: Option<String>,
    /// Objects new or changed, with their ETags.
    pub changed: Vec<(String, Option<String>)>,
    /// Objects gone.
    pub deleted: Vec<String>,
    /// Whether `changed` lists the whole collection (no token, a token
    /// the server no longer knows, or a server without sync-collection).
    pub full: bool,
}

/// An object read from a collection.
#[derive(Debug)]
pub(crate) struct Object {
    pub href: String,
    pub etag: String,
    pub ics: String,
}

/// One CalDAV collection.
pub(crate) struct Collection {
    client: WebDavClient<Http>,
    href: String,
}

fn failed<E: std::fmt::Display>(what: &str) -> impl FnOnce(WebDavError<E>) -> String + '_ {
    move |e| match e {
        WebDavError::BadStatusCode(status) => {
            format!("{what}: the calendar server answered {status}")
        }
        WebDavError::Request(e) => format!("{what}: {e}"),
        WebDavError::PreconditionFailed(_) => format!("{what}: the server's precondition failed"),
        _ => format!("{what}: the calendar server's answer could not be read"),
    }
}

impl Collection {
    /// The collection `access` names, reached through `outbound`.
    pub(crate) fn new(outbound: &Outbound, access: &CalendarAccess) -> Result<Self, String> {
        let url = Url::parse(&access.url).map_err(|_| "the URL does not parse".to_owned())?;
        let base: http::Uri = url[..url::Position::BeforePath]
            .parse()
            .map_err(|_| "the URL has no usable host".to_owned())?;
        let mut href = url.path().to_owned();
        if !href.ends_with('/') {
            href.push('/');
        }
        let http = Http {
            client: outbound.client().clone(),
            basic: access.username.clone().zip(access.password.clone()),
        };
        Ok(Self {
            client: WebDavClient::new(base, http),
            href,
        })
    }

    /// What changed since `token` (everything, without one).
    pub(crate) async fn changes(&self, token: Option<&str>) -> Result<Changes, String> {
        let mut request = SyncCollection::new(&self.href);
        if let Some(token) = token {
            request = request.with_sync_token(token);
        }
        match self.client.request(request).await {
            Ok(answer) => Ok(Changes {
                token: Some(answer.new_sync_token),
                changed: answer
                    .changed
                    .into_iter()
                    .filter(|r| r.href != self.href)
                    .map(|r| (r.href, r.etag))
                    .collect(),
                deleted: answer.deleted,
                full: token.is_none(),
            }),
            // The token expired: list from scratch.
            Err(WebDavError::PreconditionFailed(_)) if token.is_some() => {
                Box::pin(self.changes(None)).await
            }
            // No sync-collection: list with ETags.
            Err(WebDavError::BadStatusCode(status))
                if status.is_client_error() && status != http::StatusCode::UNAUTHORIZED =>
            {
                let listed = self
                    .client
                    .request(ListResources::new(&self.href))
                    .await
                    .map_err(failed("listing the calendar"))?;
                Ok(Changes {
                    token: None,
                    changed: listed
                        .resources
                        .into_iter()
                        .filter(|r| r.href != self.href)
                        .map(|r| (r.href, r.etag))
                        .collect(),
                    deleted: Vec::new(),
                    full: true,
                })
            }
            Err(e) => Err(failed("reading the calendar's changes")(e)),
        }
    }

    /// The objects at `hrefs`.
    pub(crate) async fn fetch(&self, hrefs: &[String]) -> Result<Vec<Object>, String> {
        let mut objects = Vec::with_capacity(hrefs.len());
        for chunk in hrefs.chunks(FETCH_CHUNK) {
            let answer = self
                .client
                .request(GetCalendarResources::new(&self.href).with_hrefs(chunk))
                .await
                .map_err(failed("reading the calendar's events"))?;
            objects.extend(answer.resources.into_iter().filter_map(|r| {
                let content = r.content.ok()?;
                Some(Object {
                    href: r.href,
                    etag: content.etag,
                    ics: content.data,
                })
            }));
        }
        Ok(objects)
    }

    /// Where muster writes reservation `id` in this collection.
    pub(crate) fn href_of(&self, id: uuid::Uuid) -> String {
        format!("{}muster-{id}.ics", self.href)
    }

    /// Writes `ics` at `href`: a new object, or over the one with `etag`
    /// (a forced overwrite when the server gave none). Its new ETag.
    pub(crate) async fn put(
        &self,
        href: &str,
        ics: String,
        etag: Option<&str>,
    ) -> Result<Option<String>, String> {
        let request = PutResource::new(href);
        let answer = match etag {
            Some(etag) => {
                self.client
                    .request(request.update(ics, "text/calendar; charset=utf-8", etag))
                    .await
            }
            None => {
                self.client
                    .request(request.create(ics, "text/calendar; charset=utf-8"))
                    .await
            }
        };
        answer
            .map(|a| a.etag)
            .map_err(failed("writing a reservation"))
    }

    /// Deletes the object at `href` (gone already is fine).
    pub(crate) async fn delete(&self, href: &str) -> Result<(), String> {
        match self.client.request(Delete::new(href).force()).await {
            Ok(_) | Err(WebDavError::BadStatusCode(http::StatusCode::NOT_FOUND)) => Ok(()),
            Err(e) => Err(failed("deleting a reservation")(e)),
        }
    }
}
