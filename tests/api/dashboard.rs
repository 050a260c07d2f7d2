//! What the dashboard needs from muster: the page itself (compiled in,
//! under a strict CSP), who the key is, and many schedules in one read.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_and_revalidated() {
    let app = spawn_app().await;
    let page = app.send(Method::GET, "/", None, None, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    let header = |answer: &crate::helpers::Answer, name: &str| {
        answer.headers[name].to_str().unwrap().to_owned()
    };
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    let script = app
        .send(Method::GET, "/dashboard/app.js", None, None, &[])
        .await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(header(&script, "content-type").starts_with("text/javascript"));
    let etag = header(&script, "etag");
    let again = app
        .send(
            Method::GET,
            "/dashboard/app.js",
            None,
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    let missing = app
        .send(Method::GET, "/dashboard/nope.js", None, None, &[])
        .await;
    assert_problem(&missing, 404, "not-found");
}

#[tokio::test]
async fn whoami_names_each_role() {
    let app = spawn_app().await;
    for (key, role) in [
        (&app.admin, "admin"),
        (&app.planner, "planner"),
        (&app.analyst, "analyst"),
    ] {
        let me = app.get("/v1/whoami", key).await;
        assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
        assert_eq!(me.body["role"], role);
        assert!(me.body["key_id"].is_string());
    }
    let anonymous = app.send(Method::GET, "/v1/whoami", None, None, &[]).await;
    assert_problem(&anonymous, 401, "unauthorized");
}

#[tokio::test]
async fn many_schedules_come_in_start_order_by_page_with_holds() {
    let app = spawn_app().await;
    let (a, b) = (app.resource(1).await, app.resource(1).await);
    let van = app
        .post("/v1/resources", &json!({"name": "Van", "kind": "vehicle"}))
        .await;
    let van = van.body["id"].as_str().unwrap().to_owned();
    app.book(&a, "2030-05-06T10:00:00Z", "2030-05-06T11:00:00Z")
        .await;
    app.book(&b, "2030-05-06T09:00:00Z", "2030-05-06T12:00:00Z")
        .await;
    app.book(&van, "2030-05-07T09:00:00Z", "2030-05-07T12:00:00Z")
        .await;
    let outside = app
        .book(&a, "2030-05-20T09:00:00Z", "2030-05-20T12:00:00Z")
        .await;
    let position = outside.body["position"].as_i64().unwrap();
    app.post(
        "/v1/holds",
        &json!({"resource_id": b, "starts_at": "2030-05-08T09:00:00Z", "ends_at": "2030-05-08T10:00:00Z"}),
    )
    .await;

    let window = "from=2030-05-06T00:00:00Z&to=2030-05-13T00:00:00Z";
    let all = app
        .get(
            &format!("/v1/schedule?{window}&consistent_with={position}"),
            &app.analyst,
        )
        .await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    let resources: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource_id"].as_str().unwrap())
        .collect();
    assert_eq!(resources, [b.as_str(), a.as_str(), van.as_str()]);
    assert_eq!(all.body["holds"][0]["resource_id"], b.as_str());
    assert_eq!(all.body["holds"][0]["status"], "held");

    let rooms = app
        .get(
            &format!("/v1/schedule?{window}&kind=room&limit=1"),
            &app.analyst,
        )
        .await;
    assert_eq!(rooms.body["items"].as_array().unwrap().len(), 1);
    let cursor = rooms.body["next_cursor"].as_str().unwrap();
    let next = app
        .get(
            &format!("/v1/schedule?{window}&kind=room&limit=1&cursor={cursor}"),
            &app.analyst,
        )
        .await;
    assert_eq!(next.body["items"][0]["resource_id"], a.as_str());
    assert!(next.body["holds"].as_array().unwrap().is_empty());
    let only_a = app
        .get(
            &format!("/v1/schedule?{window}&resource_ids={a}"),
            &app.analyst,
        )
        .await;
    assert_eq!(only_a.body["items"].as_array().unwrap().len(), 1);
    for bad in [
        "from=2030-05-06T00:00:00Z&to=2030-09-06T00:00:00Z",
        "from=x&to=y",
        &format!("{window}&limit=0"),
        &format!("{window}&resource_ids=nope"),
    ] {
        let answer = app.get(&format!("/v1/schedule?{bad}"), &app.analyst).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {:?}",
            answer.body
        );
    }
}
