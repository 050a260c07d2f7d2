//! External calendars over CalDAV (SPEC §12) against a real Radicale,
//! started by the test on loopback: the collection's busy time blocks the
//! resource, an edit on the server moves a block after a sync, and a
//! publishing link writes the resource's bookings into the collection (UID
//! the reservation id), moves them with a reschedule (SEQUENCE one higher),
//! deletes them on cancel, and never reads them back as busy.
//!
//! Radicale comes from PyPI: `.ci/run` installs it into
//! `target/radicale-venv`; `MUSTER_TEST_RADICALE_PYTHON` names another
//! Python that has it. Without one the test fails and says how to get it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::calendars::{barber, calendar_events, document, free, wait_for_link};
use crate::helpers::{TestApp, spawn_app_with_workers, worker_config};

const USER: &str = "ana";

/// Radicale on a port of its own, with storage in a directory of its own;
/// stopped on drop.
struct Radicale {
    child: Child,
    base: String,
    _storage: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn radicale_python() -> PathBuf {
    if let Ok(python) = std::env::var("MUSTER_TEST_RADICALE_PYTHON") {
        return PathBuf::from(python);
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/radicale-venv/bin/python");
    assert!(
        venv.exists(),
        "the CalDAV tests need Radicale: python3 -m venv target/radicale-venv && \
         target/radicale-venv/bin/pip install 'radicale==3.*' (or set MUSTER_TEST_RADICALE_PYTHON)"
    );
    venv
}

impl Radicale {
    async fn start() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let storage =
            std::env::temp_dir().join(format!("muster-radicale-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&storage).unwrap();
        let child = Command::new(radicale_python())
            .args(["-m", "radicale", "--server-hosts"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--auth-type", "none", "--storage-filesystem-folder"])
            .arg(&storage)
            .args(["--logging-level", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Radicale starts");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "Radicale never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            base,
            _storage: tempdir::Dir(storage),
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    /// Makes the calendar collection `path` (under the user's home).
    async fn make_calendar(&self, path: &str) -> String {
        let url = format!("{}/{USER}/{path}/", self.base);
        let made = Self::client()
            .request(Method::from_bytes(b"MKCALENDAR").unwrap(), &url)
            .basic_auth(USER, Some("any"))
            .send()
            .await
            .unwrap();
        assert!(made.status().is_success(), "MKCALENDAR: {}", made.status());
        url
    }

    async fn put(&self, collection: &str, name: &str, ics: String) {
        let put = Self::client()
            .put(format!("{collection}{name}.ics"))
            .basic_auth(USER, Some("any"))
            .header("content-type", "text/calendar")
            .body(ics)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "PUT {name}: {}", put.status());
    }

    /// The object at `url`, if there is one.
    async fn get(&self, url: &str) -> Option<String> {
        let got = Self::client()
            .get(url)
            .basic_auth(USER, Some("any"))
            .send()
            .await
            .unwrap();
        (got.status() == StatusCode::OK).then_some(got.text().await.unwrap())
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `url` on the server until `done(object)`.
async fn wait_for_object(
    server: &Radicale,
    url: &str,
    done: impl Fn(Option<&str>) -> bool,
) -> Option<String> {
    let started = Instant::now();
    loop {
        let object = server.get(url).await;
        if done(object.as_deref()) {
            return object;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{url} never got there: {object:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sync_now(app: &TestApp, id: &str) -> serde_json::Value {
    let before = wait_for_link(app, id, |_| true).await["last_synced_at"].clone();
    let asked = app
        .send(
            Method::POST,
            &format!("/v1/calendars/{id}/sync"),
            Some(&app.planner),
            None,
            &[],
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{:?}", asked.body);
    wait_for_link(app, id, |l| {
        l["last_synced_at"] != before && l["last_error"].is_null()
    })
    .await
}

#[tokio::test]
async fn a_caldav_collection_blocks_the_resource_and_receives_its_bookings() {
    let server = Radicale::start().await;
    let collection = server.make_calendar("work").await;
    for (name, vevents) in calendar_events("1400") {
        server.put(&collection, name, document(&vevents)).await;
    }
    let app = spawn_app_with_workers(worker_config()).await;
    let ana = barber(&app).await;
    let linked = app
        .send(
            Method::POST,
            &format!("/v1/resources/{ana}/calendars"),
            Some(&app.admin),
            Some(
                &json!({"kind": "caldav", "url": collection, "username": USER, "password": "any",
                         "publish": true, "show_titles": true}),
            ),
            &[],
        )
        .await;
    assert_eq!(linked.status, StatusCode::CREATED, "{:?}", linked.body);
    let id = linked.body["id"].as_str().unwrap().to_owned();
    let synced = wait_for_link(&app, &id, |l| l["blocks"] == 40).await;
    assert!(synced["last_error"].is_null(), "{synced}");

    // The same instants as the ICS link: across DST, EXDATE and override.
    assert!(!free(&app, &ana, "2027-03-09T15:00:00Z", "2027-03-09T15:30:00Z").await);
    assert!(!free(&app, &ana, "2027-03-16T14:00:00Z", "2027-03-16T14:30:00Z").await);
    assert!(!free(&app, &ana, "2027-11-09T15:00:00Z", "2027-11-09T15:30:00Z").await);
    assert!(free(&app, &ana, "2027-03-23T14:00:00Z", "2027-03-23T15:00:00Z").await);
    assert!(!free(&app, &ana, "2027-03-30T18:00:00Z", "2027-03-30T18:30:00Z").await);
    assert!(free(&app, &ana, "2027-04-06T13:00:00Z", "2027-04-06T14:00:00Z").await);
    assert!(free(&app, &ana, "2027-04-07T13:00:00Z", "2027-04-07T14:00:00Z").await);
    // Titles show where the link allows them.
    let blocks = app
        .get(
            &format!(
                "/v1/resources/{ana}/blocks?from=2027-03-30T00:00:00Z&to=2027-03-31T00:00:00Z"
            ),
            &app.planner,
        )
        .await;
    assert_eq!(
        blocks.body["items"][0]["title"], "Dentist (moved)",
        "{:?}",
        blocks.body
    );

    // An edit on the server, then a sync: the old instant frees, the new
    // one blocks.
    let (_, weekly) = calendar_events("1600").remove(0);
    server.put(&collection, "weekly", document(&weekly)).await;
    let resynced = sync_now(&app, &id).await;
    assert_eq!(resynced["blocks"], 40, "{resynced}");
    assert!(free(&app, &ana, "2027-03-30T18:00:00Z", "2027-03-30T19:00:00Z").await);
    assert!(!free(&app, &ana, "2027-03-30T20:00:00Z", "2027-03-30T20:30:00Z").await);

    // A booking made in muster appears in the collection, UID its
    // reservation's id.
    let booked = app
        .book(&ana, "2027-03-10T15:00:00Z", "2027-03-10T16:00:00Z")
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{:?}", booked.body);
    let booking = booked.body["id"].as_str().unwrap().to_owned();
    let reservation = booked.body["reservations"][0]["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let object_url = format!("{collection}muster-{reservation}.ics");
    let written = wait_for_object(&server, &object_url, |o| o.is_some())
        .await
        .unwrap();
    assert!(written.contains(&format!("UID:{reservation}")), "{written}");
    assert!(written.contains("SEQUENCE:0"), "{written}");
    assert!(written.contains("DTSTART:20270310T150000Z"), "{written}");

    // It is never read back as busy: a sync leaves the blocks as they
    // were, and the booking may move within its own time.
    let after = sync_now(&app, &id).await;
    assert_eq!(after["blocks"], 40, "{after}");
    let own = app
        .post(
            "/v1/conflicts/check",
            &json!({"resource_ids": [ana], "starts_at": "2027-03-10T15:00:00Z",
                    "ends_at": "2027-03-10T16:00:00Z", "exclude_booking_id": booking}),
        )
        .await;
    assert_eq!(own.body["available"], true, "{:?}", own.body);

    // A reschedule moves it, one SEQUENCE higher; a cancel deletes it.
    let moved = app
        .post(
            &format!("/v1/bookings/{booking}/reschedule"),
            &json!({"starts_at": "2027-03-11T15:00:00Z", "ends_at": "2027-03-11T16:00:00Z"}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let rewritten = wait_for_object(&server, &object_url, |o| {
        o.is_some_and(|o| o.contains("DTSTART:20270311T150000Z"))
    })
    .await
    .unwrap();
    assert!(rewritten.contains("SEQUENCE:1"), "{rewritten}");
    assert!(
        rewritten.contains(&format!("UID:{reservation}")),
        "{rewritten}"
    );
    let cancelled = app
        .post(
            &format!("/v1/bookings/{booking}/cancel"),
            &json!({"reason": "moved away"}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    wait_for_object(&server, &object_url, |o| o.is_none()).await;
}
