//! Query endpoints over the read models, and read-your-writes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{api_config, assert_problem, spawn_app, spawn_app_with};

fn position(answer: &crate::helpers::Answer) -> i64 {
    answer.body["position"]
        .as_i64()
        .expect("a command answer carries its position")
}

#[tokio::test]
async fn reads_with_consistent_with_never_see_stale_data() {
    let app = spawn_app().await;
    let resource = app.resource(1).await;
    for i in 0..25 {
        let from = format!("2027-06-{:02}T10:00:00Z", i + 1);
        let to = format!("2027-06-{:02}T12:00:00Z", i + 1);
        let created = app.book(&resource, &from, &to).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let read = app
            .get(
                &format!("/v1/bookings/{id}?consistent_with={}", position(&created)),
                &app.analyst,
            )
            .await;
        assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
        assert_eq!(read.body["status"], "requested");
        assert_eq!(
            read.body["reservations"][0]["resource_id"],
            resource.as_str()
        );

        let confirmed = app
            .post(&format!("/v1/bookings/{id}/confirm"), &json!({}))
            .await;
        assert_eq!(confirmed.status, StatusCode::OK, "{:?}", confirmed.body);
        let read = app
            .get(
                &format!("/v1/bookings/{id}?consistent_with={}", position(&confirmed)),
                &app.analyst,
            )
            .await;
        assert_eq!(read.body["status"], "confirmed", "stale read at step {i}");
        assert_eq!(read.body["version"], confirmed.body["version"]);
        let history: Vec<&str> = read.body["status_history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["status"].as_str().unwrap())
            .collect();
        assert_eq!(history, ["requested", "confirmed"]);

        let schedule = app
            .get(
                &format!(
                    "/v1/resources/{resource}/schedule?from={from}&to={to}&consistent_with={}",
                    position(&confirmed)
                ),
                &app.analyst,
            )
            .await;
        assert_eq!(
            schedule.body["entries"][0]["status"], "confirmed",
            "{:?}",
            schedule.body
        );
    }
}

#[tokio::test]
async fn a_position_not_reached_in_time_is_503_with_retry_after() {
    let mut config = api_config();
    config.consistency_wait = std::time::Duration::from_millis(200);
    let app = spawn_app_with(config).await;
    let beyond = app
        .get("/v1/resources?consistent_with=999999999", &app.analyst)
        .await;
    // A position never handed out: no read model will reach it.
    assert_problem(&beyond, 409, "position-ahead");
    // A position handed out but not yet applied: an append the projector
    // cannot pass (its transaction stays open) holds the projections back.
    let mut blocker = app.db.pool.begin().await.unwrap();
    let held: i64 = sqlx::query_scalar(
        "select position from (select pg_advisory_xact_lock_shared(muster_position_lock_key(nextval('events_position_seq')))) l, lateral (select currval('events_position_seq') as position) p",
    )
    .fetch_one(&mut *blocker)
    .await
    .unwrap();
    let answer = app
        .get(
            &format!("/v1/resources?consistent_with={held}"),
            &app.analyst,
        )
        .await;
    blocker.rollback().await.unwrap();
    assert_problem(&answer, 503, "unavailable");
    assert!(answer.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn lists_page_with_cursors_and_filter() {
    let app = spawn_app().await;
    let resource = app.resource(10).await;
    let mut last = 0;
    for day in 1..=7 {
        let from = format!("2027-07-{day:02}T09:00:00Z");
        let to = format!("2027-07-{day:02}T10:00:00Z");
        let created = app.book(&resource, &from, &to).await;
        last = position(&created);
        if day % 2 == 0 {
            let id = created.body["id"].as_str().unwrap();
            let c = app
                .post(&format!("/v1/bookings/{id}/cancel"), &json!({}))
                .await;
            last = position(&c);
        }
    }
    let mut seen = Vec::new();
    let mut path = format!("/v1/bookings?limit=3&consistent_with={last}");
    loop {
        let page = app.get(&path, &app.analyst).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for b in page.body["items"].as_array().unwrap() {
            seen.push(b["starts_at"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/bookings?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    let cancelled = app.get("/v1/bookings?status=cancelled", &app.analyst).await;
    assert_eq!(cancelled.body["items"].as_array().unwrap().len(), 3);
    let windowed = app
        .get(
            "/v1/bookings?from=2027-07-02T00:00:00Z&to=2027-07-04T00:00:00Z&client=ANN",
            &app.analyst,
        )
        .await;
    assert_eq!(
        windowed.body["items"].as_array().unwrap().len(),
        2,
        "{:?}",
        windowed.body
    );
    let counts = app
        .get(
            "/v1/analytics/bookings-by-status?from=2027-07-01T00:00:00Z&to=2027-08-01T00:00:00Z",
            &app.analyst,
        )
        .await;
    assert_eq!(counts.body["total"], 7, "{:?}", counts.body);

    assert_problem(
        &app.get("/v1/bookings?status=lost", &app.analyst).await,
        422,
        "validation",
    );
    assert_problem(
        &app.get("/v1/bookings?cursor=zz", &app.analyst).await,
        422,
        "validation",
    );
    let resources = app
        .get(
            &format!("/v1/resources?consistent_with={last}"),
            &app.analyst,
        )
        .await;
    assert_eq!(resources.body["items"][0]["capacity"], 10);
    let other = app
        .get(&format!("/v1/resources/{resource}"), &app.other_tenant)
        .await;
    assert_problem(&other, 404, "not-found");
}

#[tokio::test]
async fn availability_and_conflict_check_agree_with_the_write_side() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/resources",
            &json!({"name": "Room", "kind": "room", "capacity": 2, "timezone": "Europe/Berlin",
                    "working_hours": [{"weekday": "mon", "start": "08:00", "end": "18:00"}]}),
        )
        .await;
    let room = created.body["id"].as_str().unwrap().to_owned();
    // Monday 2027-06-07: 08:00-18:00 CEST = 06:00-16:00 UTC.
    let a = app
        .book(&room, "2027-06-07T09:00:00Z", "2027-06-07T11:00:00Z")
        .await;
    let b = app
        .book(&room, "2027-06-07T10:00:00Z", "2027-06-07T12:00:00Z")
        .await;
    assert_eq!(b.status, StatusCode::CREATED);
    let _ = a;

    let slots = app
        .get(
            &format!(
                "/v1/availability?resource_ids={room}&from=2027-06-07T00:00:00Z&to=2027-06-08T00:00:00Z&duration=PT30M&consistent_with={}",
                position(&b)
            ),
            &app.analyst,
        )
        .await;
    assert_eq!(slots.status, StatusCode::OK, "{:?}", slots.body);
    let got: Vec<(String, String)> = slots.body["resources"][0]["slots"]
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
        got,
        [
            (
                "2027-06-07T06:00:00Z".to_owned(),
                "2027-06-07T10:00:00Z".to_owned()
            ),
            (
                "2027-06-07T11:00:00Z".to_owned(),
                "2027-06-07T16:00:00Z".to_owned()
            ),
        ]
    );

    let check = |from: &'static str, to: &'static str| {
        let room = room.clone();
        let app = &app;
        async move {
            app.send(
                reqwest::Method::POST,
                "/v1/conflicts/check",
                Some(&app.analyst),
                Some(&json!({"resource_ids": [room], "starts_at": from, "ends_at": to})),
                &[],
            )
            .await
        }
    };
    let full = check("2027-06-07T10:30:00Z", "2027-06-07T10:45:00Z").await;
    assert_eq!(full.body["available"], false, "{:?}", full.body);
    assert_eq!(
        full.body["resources"][0]["conflicts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let booked = app
        .book(&room, "2027-06-07T10:30:00Z", "2027-06-07T10:45:00Z")
        .await;
    assert_problem(&booked, 409, "reservation-conflict");

    let free = check("2027-06-07T11:00:00Z", "2027-06-07T13:00:00Z").await;
    assert_eq!(free.body["available"], true, "{:?}", free.body);
    let booked = app
        .book(&room, "2027-06-07T11:00:00Z", "2027-06-07T13:00:00Z")
        .await;
    assert_eq!(booked.status, StatusCode::CREATED);

    let unknown = app
        .send(
            reqwest::Method::POST,
            "/v1/conflicts/check",
            Some(&app.analyst),
            Some(&json!({"resource_ids": [uuid::Uuid::now_v7()], "starts_at": "2027-06-07T11:00:00Z", "ends_at": "2027-06-07T10:00:00Z"})),
            &[],
        )
        .await;
    assert_problem(&unknown, 422, "validation");
    let bad = app
        .get(&format!("/v1/availability?resource_ids={room}&from=2027-06-07T00:00:00Z&to=2027-06-08T00:00:00Z&duration=soon"), &app.analyst)
        .await;
    assert_problem(&bad, 422, "validation");

    let utilization = app
        .get(
            &format!("/v1/analytics/utilization?from=2027-06-07T00:00:00Z&to=2027-06-08T00:00:00Z&consistent_with={}", position(&booked)),
            &app.analyst,
        )
        .await;
    let day: &Value = &utilization.body["items"][0]["days"][0];
    // Berlin's day 2027-06-07 starts at 22:00 UTC the day before; the window
    // clips it. Available: 10 working hours x capacity 2; booked 2 + 2 + 2.
    assert_eq!(day["available_hours"], 20.0, "{:?}", utilization.body);
    assert_eq!(day["booked_hours"], 6.0, "{:?}", utilization.body);
}

#[tokio::test]
async fn projections_report_position_and_state_to_admins() {
    let app = spawn_app().await;
    let resource = app.resource(1).await;
    let _ = resource;
    let mut answer = app.get("/v1/projections", &app.admin).await;
    for _ in 0..50 {
        if answer.body["projections"]
            .as_array()
            .is_some_and(|p| p.len() == 3 && p.iter().all(|p| p["lag_events"] == 0))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        answer = app.get("/v1/projections", &app.admin).await;
    }
    let projections = answer.body["projections"].as_array().unwrap();
    assert_eq!(projections.len(), 3, "{:?}", answer.body);
    assert!(
        projections
            .iter()
            .all(|p| p["state"] == "running" && p["lag_events"] == 0),
        "{:?}",
        answer.body
    );
    assert_problem(
        &app.get("/v1/projections", &app.analyst).await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn analysts_read_only_their_tenants_and_only_the_read_schema() {
    let app = spawn_app().await;
    let ours = app.resource(1).await;
    let theirs = app
        .send(
            reqwest::Method::POST,
            "/v1/resources",
            Some(&app.other_tenant),
            Some(&json!({"name": "Theirs", "kind": "room"})),
            &[],
        )
        .await;
    let last = position(&theirs).max(0);
    app.get(
        &format!("/v1/resources?consistent_with={last}"),
        &app.analyst,
    )
    .await;
    app.get(
        &format!("/v1/resources?consistent_with={last}"),
        &app.other_tenant,
    )
    .await;

    let role = format!("muster_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = app.db.pool.acquire().await.unwrap();
    for statement in [
        format!("create role {role} nologin in role muster_analyst"),
        format!("insert into analyst_tenants values ('{role}', 'acme')"),
        format!("set session authorization {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let visible: Vec<(String, String)> =
        sqlx::query_as("select tenant_id, resource_id::text from read.resources")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let denied_events = sqlx::query("select count(*) from events")
        .execute(&mut *conn)
        .await;
    let denied_keys = sqlx::query("select count(*) from api_keys")
        .execute(&mut *conn)
        .await;
    let denied_write = sqlx::query("delete from read.resources")
        .execute(&mut *conn)
        .await;
    sqlx::query("reset session authorization")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("drop role {role}")))
        .execute(&mut *conn)
        .await
        .unwrap();

    assert_eq!(visible, [("acme".to_owned(), ours)]);
    for denied in [denied_events, denied_keys, denied_write] {
        let error = denied.expect_err("analysts may only select from schema read");
        assert!(error.to_string().contains("permission denied"), "{error}");
    }
}
