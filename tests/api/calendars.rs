//! External calendars (SPEC §12) against a real HTTP server on loopback
//! serving an iCalendar document, with ETags and basic auth: the busy
//! instants block bookings, the conflict check and free time exactly,
//! across both DST changes of America/New_York; an edit moves a block; a
//! new block meeting a booking records `calendar.conflict` and delivers
//! it; credentials never come back; a server that fails never blocks
//! commands.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, assert_problem, spawn_app_with_workers, worker_config};
use crate::receiver::Receiver;

const USER: &str = "barber";
const PASSWORD: &str = "s3cret-calendar-pass";

/// What the calendar server answers.
#[derive(Clone)]
enum Serve {
    Document(String),
    Status(u16),
}

/// A calendar server on loopback: `GET /cal.ics` answers the current
/// document with an ETag (304 to a matching If-None-Match), and only with
/// the right basic credentials.
#[derive(Clone)]
struct IcsServer {
    url: String,
    serve: Arc<Mutex<Serve>>,
    not_modified: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl IcsServer {
    async fn start(document: &str) -> Self {
        let server = Self {
            url: String::new(),
            serve: Arc::new(Mutex::new(Serve::Document(document.to_owned()))),
            not_modified: Arc::default(),
            requests: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/cal.ics", get(answer))
            .with_state(server.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{address}/cal.ics?token=feed-secret-token"),
            ..server
        }
    }

    fn set(&self, serve: Serve) {
        *self.serve.lock().unwrap() = serve;
    }
}

async fn answer(State(server): State<IcsServer>, headers: HeaderMap) -> Response {
    server.requests.fetch_add(1, Ordering::SeqCst);
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return AxumStatus::UNAUTHORIZED.into_response();
    }
    let serve = server.serve.lock().unwrap().clone();
    match serve {
        Serve::Status(code) => AxumStatus::from_u16(code).unwrap().into_response(),
        Serve::Document(body) => {
            let etag = format!(
                "\"{:x}\"",
                body.len() * 31 + body.bytes().map(usize::from).sum::<usize>()
            );
            if headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                == Some(&etag)
            {
                server.not_modified.fetch_add(1, Ordering::SeqCst);
                return AxumStatus::NOT_MODIFIED.into_response();
            }
            (
                [
                    (header::CONTENT_TYPE, "text/calendar".to_owned()),
                    (header::ETAG, etag),
                ],
                body,
            )
                .into_response()
        }
    }
}

const VTIMEZONE: &str = "BEGIN:VTIMEZONE\r\nTZID:America/New_York\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\nDTSTART:19700308T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\nTZNAME:EDT\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\nDTSTART:19701101T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nTZNAME:EST\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n";

/// A barber's own calendar, as its objects (name, VEVENTs of one UID):
/// every Tuesday 10:00–11:00 New York time from March to November 2027
/// (across both DST changes) but 23 March, the 30 March one moved to
/// `moved_to` local; an all-day day off on 5 April; a transparent and a
/// cancelled event on 6 and 7 April.
pub(crate) fn calendar_events(moved_to: &str) -> Vec<(&'static str, String)> {
    let event = |body: &str| format!("BEGIN:VEVENT\r\n{body}END:VEVENT\r\n");
    let weekly = event(
        "UID:weekly-dentist@example.com\r\nDTSTAMP:20261201T000000Z\r\nSUMMARY:Dentist\r\n\
         DTSTART;TZID=America/New_York:20270302T100000\r\nDTEND;TZID=America/New_York:20270302T110000\r\n\
         RRULE:FREQ=WEEKLY;UNTIL=20271130T235959Z\r\nEXDATE;TZID=America/New_York:20270323T100000\r\n",
    ) + &event(&format!(
        "UID:weekly-dentist@example.com\r\nDTSTAMP:20261201T000000Z\r\nSUMMARY:Dentist (moved)\r\n\
         RECURRENCE-ID;TZID=America/New_York:20270330T100000\r\n\
         DTSTART;TZID=America/New_York:20270330T{moved_to}00\r\nDTEND;TZID=America/New_York:20270330T{}00\r\n",
        format_args!(
            "{:02}{}",
            moved_to[..2].parse::<u32>().unwrap() + 1,
            &moved_to[2..]
        )
    ));
    vec![
        ("weekly", weekly),
        (
            "day-off",
            event(
                "UID:day-off@example.com\r\nDTSTAMP:20261201T000000Z\r\nSUMMARY:Day off\r\n\
                 DTSTART;VALUE=DATE:20270405\r\nDTEND;VALUE=DATE:20270406\r\n",
            ),
        ),
        (
            "lunch",
            event(
                "UID:free-lunch@example.com\r\nDTSTAMP:20261201T000000Z\r\nSUMMARY:Lunch (free)\r\n\
                 DTSTART:20270406T130000Z\r\nDTEND:20270406T140000Z\r\nTRANSP:TRANSPARENT\r\n",
            ),
        ),
        (
            "cancelled",
            event(
                "UID:cancelled@example.com\r\nDTSTAMP:20261201T000000Z\r\nSUMMARY:Cancelled\r\n\
                 DTSTART:20270407T130000Z\r\nDTEND:20270407T140000Z\r\nSTATUS:CANCELLED\r\n",
            ),
        ),
    ]
}

/// VEVENTs as one iCalendar document, with the zone they use.
pub(crate) fn document(vevents: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//muster tests//EN\r\n{VTIMEZONE}{vevents}END:VCALENDAR\r\n"
    )
}

/// The whole calendar as one ICS document.
fn calendar(moved_to: &str) -> String {
    let all: String = calendar_events(moved_to)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    document(&all)
}

pub(crate) async fn barber(app: &TestApp) -> String {
    let answer = app
        .post(
            "/v1/resources",
            &json!({"name": "Ana", "kind": "staff", "capacity": 1, "timezone": "America/New_York"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

async fn link(app: &TestApp, resource: &str, url: &str) -> String {
    let answer = app
        .send(
            Method::POST,
            &format!("/v1/resources/{resource}/calendars"),
            Some(&app.admin),
            Some(&json!({"kind": "ics", "url": url, "username": USER, "password": PASSWORD})),
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

/// Polls the link until `done`.
pub(crate) async fn wait_for_link(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let answer = app.get(&format!("/v1/calendars/{id}"), &app.admin).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        if done(&answer.body) {
            return answer.body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the link never got there: {:?}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the conflict check finds `resource` free over [from, to).
pub(crate) async fn free(app: &TestApp, resource: &str, from: &str, to: &str) -> bool {
    let answer = app
        .post(
            "/v1/conflicts/check",
            &json!({"resource_ids": [resource], "starts_at": from, "ends_at": to}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let check = &answer.body["resources"][0];
    if let Some(conflicts) = check["conflicts"].as_array()
        && !conflicts.is_empty()
    {
        assert!(
            conflicts.iter().all(|c| c["calendar_id"].is_string()),
            "only blocks stand in the way here: {check}"
        );
    }
    check["available"].as_bool().unwrap()
}

#[tokio::test]
async fn an_ics_calendar_blocks_exactly_its_busy_instants_across_dst_and_follows_edits() {
    let app = spawn_app_with_workers(worker_config()).await;
    let hook = Receiver::ok().await;
    let subscribed = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&app.admin),
            Some(&json!({"url": hook.url, "event_types": ["calendar.conflict"], "secret": "calendar-hook-secret-0123"})),
            &[],
        )
        .await;
    assert_eq!(
        subscribed.status,
        StatusCode::CREATED,
        "{:?}",
        subscribed.body
    );
    let server = IcsServer::start(&calendar("1400")).await;
    let ana = barber(&app).await;
    // Booked before the calendar knows of it: 30 March 16:00–17:00 New
    // York, which the moved dentist visit will meet after the edit.
    let early = app
        .book(
            &ana,
            "2027-03-30T16:00:00-04:00",
            "2027-03-30T17:00:00-04:00",
        )
        .await;
    assert_eq!(early.status, StatusCode::CREATED, "{:?}", early.body);
    let early_id = early.body["id"].as_str().unwrap().to_owned();

    let id = link(&app, &ana, &server.url).await;
    let linked = wait_for_link(&app, &id, |l| l["last_synced_at"].is_string()).await;
    assert!(linked["last_error"].is_null(), "{linked}");
    // 40 weekly visits from 2 March to 30 November, less one EXDATE, plus
    // the day off.
    assert_eq!(linked["blocks"], 40, "{linked}");

    // Before the spring change (EST, UTC-5) and after it (EDT, UTC-4),
    // asked in UTC and in New York time alike.
    assert!(!free(&app, &ana, "2027-03-09T15:00:00Z", "2027-03-09T15:30:00Z").await);
    assert!(free(&app, &ana, "2027-03-09T14:00:00Z", "2027-03-09T15:00:00Z").await);
    assert!(
        !free(
            &app,
            &ana,
            "2027-03-16T10:30:00-04:00",
            "2027-03-16T12:00:00-04:00"
        )
        .await
    );
    assert!(free(&app, &ana, "2027-03-16T15:00:00Z", "2027-03-16T16:00:00Z").await);
    // After the autumn change: EST again.
    assert!(
        !free(
            &app,
            &ana,
            "2027-11-09T10:00:00-05:00",
            "2027-11-09T10:15:00-05:00"
        )
        .await
    );
    assert!(free(&app, &ana, "2027-11-09T14:00:00Z", "2027-11-09T15:00:00Z").await);
    // The EXDATE is free; the moved visit frees 10:00 and blocks 14:00.
    assert!(free(&app, &ana, "2027-03-23T14:00:00Z", "2027-03-23T15:00:00Z").await);
    assert!(
        free(
            &app,
            &ana,
            "2027-03-30T10:00:00-04:00",
            "2027-03-30T11:00:00-04:00"
        )
        .await
    );
    assert!(
        !free(
            &app,
            &ana,
            "2027-03-30T14:30:00-04:00",
            "2027-03-30T15:00:00-04:00"
        )
        .await
    );
    // The day off is the resource's local day; transparent and cancelled
    // events block nothing.
    assert!(!free(&app, &ana, "2027-04-05T04:00:00Z", "2027-04-05T04:30:00Z").await);
    assert!(
        !free(
            &app,
            &ana,
            "2027-04-05T23:30:00-04:00",
            "2027-04-06T00:00:00-04:00"
        )
        .await
    );
    assert!(free(&app, &ana, "2027-04-05T03:00:00Z", "2027-04-05T04:00:00Z").await);
    assert!(free(&app, &ana, "2027-04-06T13:00:00Z", "2027-04-06T14:00:00Z").await);
    assert!(free(&app, &ana, "2027-04-07T13:00:00Z", "2027-04-07T14:00:00Z").await);

    // A booking on a block is refused by the write side, naming the block.
    let refused = app
        .book(&ana, "2027-03-16T14:30:00Z", "2027-03-16T15:30:00Z")
        .await;
    assert_problem(&refused, 409, "external-busy");
    assert_eq!(refused.body["conflicts"][0]["calendar_id"], id.as_str());
    // Free time agrees: Tuesday 16 March is free but for 10:00–11:00 EDT.
    let slots = app
        .get(
            &format!(
                "/v1/availability?resource_ids={ana}&from=2027-03-16T13:00:00Z&to=2027-03-16T16:00:00Z&duration=30"
            ),
            &app.planner,
        )
        .await;
    assert_eq!(slots.status, StatusCode::OK, "{:?}", slots.body);
    let ranges: Vec<(String, String)> = slots.body["resources"][0]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["starts_at"].as_str().unwrap().to_owned(),
                s["ends_at"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ranges,
        [
            (
                "2027-03-16T13:00:00Z".to_owned(),
                "2027-03-16T14:00:00Z".to_owned()
            ),
            (
                "2027-03-16T15:00:00Z".to_owned(),
                "2027-03-16T16:00:00Z".to_owned()
            )
        ],
        "{:?}",
        slots.body
    );
    // The blocks show without titles (the link does not allow them).
    let blocks = app
        .get(
            &format!(
                "/v1/resources/{ana}/blocks?from=2027-03-30T00:00:00Z&to=2027-03-31T00:00:00Z"
            ),
            &app.planner,
        )
        .await;
    assert_eq!(blocks.status, StatusCode::OK, "{:?}", blocks.body);
    assert_eq!(blocks.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(blocks.body["items"][0]["starts_at"], "2027-03-30T18:00:00Z");
    assert!(blocks.body["items"][0].get("title").is_none());

    // A sync of an unchanged calendar is a 304 and records nothing.
    let before = crate::helpers::event_count(&app).await;
    let first_sync = linked["last_synced_at"].clone();
    let answer = app
        .send(
            Method::POST,
            &format!("/v1/calendars/{id}/sync"),
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    wait_for_link(&app, &id, |l| l["last_synced_at"] != first_sync).await;
    assert_eq!(server.not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(crate::helpers::event_count(&app).await, before);

    // The moved visit moves again on the server, onto the early booking:
    // its old time frees, its new time blocks, the booking stays, and the
    // conflict is recorded and delivered.
    server.set(Serve::Document(calendar("1600")));
    let second_sync = wait_for_link(&app, &id, |_| true).await["last_synced_at"].clone();
    app.send(
        Method::POST,
        &format!("/v1/calendars/{id}/sync"),
        Some(&app.planner),
        None,
        &[],
    )
    .await;
    wait_for_link(&app, &id, |l| {
        l["last_synced_at"] != second_sync && l["last_changed_at"].is_string()
    })
    .await;
    assert!(
        free(
            &app,
            &ana,
            "2027-03-30T14:00:00-04:00",
            "2027-03-30T15:00:00-04:00"
        )
        .await
    );
    let check = app
        .post(
            "/v1/conflicts/check",
            &json!({"resource_ids": [ana], "starts_at": "2027-03-30T16:00:00-04:00", "ends_at": "2027-03-30T16:30:00-04:00"}),
        )
        .await;
    assert_eq!(
        check.body["resources"][0]["available"], false,
        "{:?}",
        check.body
    );
    let types = crate::helpers::feed_types(&app, &id).await;
    assert_eq!(
        types,
        [
            "calendar.linked",
            "calendar.synced",
            "calendar.synced",
            "calendar.conflict"
        ],
        "{types:?}"
    );
    let still = app
        .get(
            &format!("/v1/bookings/{early_id}?consistent_with=0"),
            &app.planner,
        )
        .await;
    assert_eq!(still.status, StatusCode::OK, "{:?}", still.body);
    assert_ne!(still.body["status"], "cancelled", "{:?}", still.body);
    let started = Instant::now();
    while hook.arrivals() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the conflict was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = &hook.requests()[0];
    assert_eq!(delivered.header("x-muster-event"), "calendar.conflict");
    let body = delivered.json();
    assert_eq!(body["event"]["stream_id"], id.as_str(), "{body}");
    assert_eq!(
        body["event"]["payload"]["booking"]["booking_id"],
        early_id.as_str(),
        "{body}"
    );

    // Credentials never come back: not in answers, nor in events.
    let listed = app
        .get(&format!("/v1/resources/{ana}/calendars"), &app.admin)
        .await;
    let one = app.get(&format!("/v1/calendars/{id}"), &app.admin).await;
    let events = app.get("/v1/events?limit=1000", &app.admin).await;
    for body in [&listed.body, &one.body, &events.body] {
        let text = body.to_string();
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!text.contains("feed-secret-token"), "{text}");
    }
    assert_eq!(one.body["location"], server.url.split('?').next().unwrap());
    let stored: Vec<String> = sqlx::query_scalar("select payload::text from events")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|p| !p.contains(PASSWORD) && !p.contains(USER))
    );

    // Unlinking frees every block at once.
    let gone = app
        .send(
            Method::DELETE,
            &format!("/v1/calendars/{id}"),
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(gone.status, StatusCode::OK, "{:?}", gone.body);
    assert!(free(&app, &ana, "2027-03-09T15:00:00Z", "2027-03-09T15:30:00Z").await);
}

#[tokio::test]
async fn a_calendar_server_that_fails_never_blocks_commands_and_the_link_shows_why() {
    let app = spawn_app_with_workers(worker_config()).await;
    let server = IcsServer::start(&calendar("1400")).await;
    let ana = barber(&app).await;
    let id = link(&app, &ana, &server.url).await;
    wait_for_link(&app, &id, |l| l["blocks"] == 40).await;

    // Down: the link keeps its blocks and says why; retries back off.
    server.set(Serve::Status(500));
    app.send(
        Method::POST,
        &format!("/v1/calendars/{id}/sync"),
        Some(&app.planner),
        None,
        &[],
    )
    .await;
    let failing = wait_for_link(&app, &id, |l| l["failures"].as_i64() >= Some(3)).await;
    assert_eq!(
        failing["last_error"], "the calendar server answered 500 Internal Server Error",
        "{failing}"
    );
    assert_eq!(failing["blocks"], 40, "{failing}");
    assert!(!free(&app, &ana, "2027-03-09T15:00:00Z", "2027-03-09T15:30:00Z").await);
    let booked = app
        .book(&ana, "2027-03-09T17:00:00Z", "2027-03-09T18:00:00Z")
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{:?}", booked.body);

    // Garbage: the same.
    server.set(Serve::Document("<html>not a calendar</html>".into()));
    let failures = failing["failures"].as_i64().unwrap();
    app.send(
        Method::POST,
        &format!("/v1/calendars/{id}/sync"),
        Some(&app.planner),
        None,
        &[],
    )
    .await;
    let garbage = wait_for_link(&app, &id, |l| l["failures"].as_i64() > Some(failures)).await;
    assert!(
        garbage["last_error"]
            .as_str()
            .unwrap()
            .starts_with("not an iCalendar document"),
        "{garbage}"
    );
    assert_eq!(garbage["blocks"], 40);

    // Back: the error clears.
    server.set(Serve::Document(calendar("1400")));
    app.send(
        Method::POST,
        &format!("/v1/calendars/{id}/sync"),
        Some(&app.planner),
        None,
        &[],
    )
    .await;
    let healed = wait_for_link(&app, &id, |l| l["last_error"].is_null()).await;
    assert_eq!(healed["failures"], 0, "{healed}");
    assert!(server.requests.load(Ordering::SeqCst) >= 5);

    // The periodic sync comes by itself once due, and is due again a
    // period later.
    let due_at = chrono::Utc::now();
    sqlx::query("update calendar_links set next_sync_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let at = |l: &Value, field: &str| {
        l[field]
            .as_str()
            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
    };
    wait_for_link(&app, &id, |l| {
        at(l, "last_synced_at") > Some(due_at)
            && at(l, "next_sync_at") > Some(due_at + chrono::Duration::seconds(250))
    })
    .await;
}

#[tokio::test]
async fn bad_links_are_refused_and_write_nothing() {
    let mut config = crate::helpers::api_config();
    config.allow_private_webhooks = false;
    let app = crate::helpers::spawn_app_with(config).await;
    let ana = barber(&app).await;
    let path = format!("/v1/resources/{ana}/calendars");
    let before = crate::helpers::event_count(&app).await;
    for (body, field) in [
        (
            json!({"kind": "ics", "url": "http://127.0.0.1:9/cal.ics"}),
            "url",
        ),
        (
            json!({"kind": "ics", "url": "http://10.1.2.3/cal.ics"}),
            "url",
        ),
        (
            json!({"kind": "ics", "url": "https://ana:pw@calendar.example.com/cal.ics"}),
            "url",
        ),
        (
            json!({"kind": "ics", "url": "ftp://calendar.example.com/cal.ics"}),
            "url",
        ),
        (
            json!({"kind": "ics", "url": "mailto:ana@example.com"}),
            "url",
        ),
        (
            json!({"kind": "ics", "url": "https://calendar.example.com/cal.ics", "password": "x"}),
            "password",
        ),
        (
            json!({"kind": "ics", "url": "https://calendar.example.com/cal.ics", "sync_every": "PT10S"}),
            "sync_every",
        ),
        (
            json!({"kind": "ics", "url": "https://calendar.example.com/cal.ics", "sync_every": "soon"}),
            "sync_every",
        ),
        (
            json!({"kind": "ics", "url": "https://calendar.example.com/cal.ics", "publish": true}),
            "publish",
        ),
    ] {
        let answer = app
            .send(Method::POST, &path, Some(&app.admin), Some(&body), &[])
            .await;
        assert_problem(&answer, 422, "validation");
        assert_eq!(
            crate::helpers::fields(&answer),
            [field],
            "{body}: {:?}",
            answer.body
        );
    }
    let unknown_kind = app
        .send(
            Method::POST,
            &path,
            Some(&app.admin),
            Some(&json!({"kind": "exchange", "url": "https://x.example.com/"})),
            &[],
        )
        .await;
    assert_eq!(unknown_kind.status.as_u16(), 422, "{:?}", unknown_kind.body);
    let planner = app
        .send(
            Method::POST,
            &path,
            Some(&app.planner),
            Some(&json!({"kind": "ics", "url": "https://calendar.example.com/cal.ics"})),
            &[],
        )
        .await;
    assert_problem(&planner, 403, "forbidden");
    let nowhere = app
        .send(
            Method::POST,
            &format!("/v1/resources/{}/calendars", uuid::Uuid::now_v7()),
            Some(&app.admin),
            Some(&json!({"kind": "ics", "url": "https://calendar.example.com/cal.ics"})),
            &[],
        )
        .await;
    assert!(
        matches!(nowhere.status.as_u16(), 404 | 422),
        "{:?}",
        nowhere.body
    );
    assert_eq!(
        crate::helpers::event_count(&app).await,
        before,
        "nothing was written"
    );
    let missing = app
        .send(
            Method::POST,
            &format!("/v1/calendars/{}/sync", uuid::Uuid::now_v7()),
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_problem(&missing, 404, "not-found");
}
