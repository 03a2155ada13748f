//! Tokens with scopes, sites and an expiry: every administrative endpoint against every
//! kind of token, and a token refused at its first request after expiry or revocation.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

/// Declares [`Endpoint`] and [`ENDPOINTS`], every one of its values.
macro_rules! endpoints {
    ($($name:ident),+ $(,)?) => {
        /// Every endpoint a token can call.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Endpoint { $($name),+ }
        const ENDPOINTS: &[Endpoint] = &[$(Endpoint::$name),+];
    };
}

endpoints! {
    CreateDoor,
    ListDoors,
    CreateHolder,
    UpdateHolder,
    ListHolders,
    EnrolReader,
    DisableReader,
    RotateReaderKey,
    ListReaders,
    ReaderGaps,
    CreateGrant,
    RevokeGrant,
    ListGrants,
    ListActions,
    Presence,
    Unlock,
}

use Endpoint::*;

/// What a probe touches: a door, a holder, a reader and a grant on site `hq`, made for it
/// with the full admin token (so that a change a probe makes never depends on another's).
struct Fixture {
    door: Uuid,
    holder: Uuid,
    reader: Uuid,
    grant: Uuid,
}

async fn fixture(app: &TestApp) -> Fixture {
    let n = Uuid::now_v7().simple().to_string();
    let door = app.create_door("hq", &format!("Door {n}")).await;
    let holder = app.create_holder(&format!("CARD-{n}")).await;
    let grant = app.grant(holder, door.id).await;
    Fixture {
        door: door.id,
        holder,
        reader: door.reader_id,
        grant,
    }
}

/// Calls `endpoint` with `token` on fresh things of site `hq`; answers the status.
async fn probe(app: &TestApp, token: &str, endpoint: Endpoint) -> StatusCode {
    let f = fixture(app).await;
    let n = Uuid::now_v7().simple().to_string();
    let (method, path, body): (Method, String, Option<Value>) = match endpoint {
        CreateDoor => (
            Method::POST,
            "/v1/doors".into(),
            Some(json!({"site": "hq", "name": format!("New {n}")})),
        ),
        ListDoors => (Method::GET, "/v1/doors".into(), None),
        CreateHolder => (
            Method::POST,
            "/v1/holders".into(),
            Some(json!({"card_id": format!("NEW-{n}"), "name": "New"})),
        ),
        UpdateHolder => (
            Method::PATCH,
            format!("/v1/holders/{}", f.holder),
            Some(json!({"name": "Renamed"})),
        ),
        ListHolders => (Method::GET, "/v1/holders".into(), None),
        EnrolReader => (
            Method::POST,
            "/v1/readers".into(),
            Some(json!({"door_id": f.door, "name": "Another"})),
        ),
        DisableReader => (
            Method::POST,
            format!("/v1/readers/{}/disable", f.reader),
            None,
        ),
        RotateReaderKey => (
            Method::POST,
            format!("/v1/readers/{}/keys:rotate", f.reader),
            Some(json!({"grace_secs": 60})),
        ),
        ListReaders => (Method::GET, "/v1/readers".into(), None),
        ReaderGaps => (Method::GET, format!("/v1/readers/{}/gaps", f.reader), None),
        CreateGrant => (
            Method::POST,
            "/v1/grants".into(),
            Some(json!({"holder_id": f.holder, "door_id": f.door})),
        ),
        RevokeGrant => (Method::DELETE, format!("/v1/grants/{}", f.grant), None),
        ListGrants => (Method::GET, "/v1/grants".into(), None),
        ListActions => (Method::GET, "/v1/actions".into(), None),
        Presence => (Method::GET, "/v1/sites/hq/presence".into(), None),
        Unlock => (
            Method::POST,
            "/v1/unlock".into(),
            Some(json!({"card_id": "X"})),
        ),
    };
    let before = app.counts().await;
    let mut request = app.request(method, &path, token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    if !status.is_success() {
        let body: Value = response.json().await.expect("JSON error");
        assert!(body["error"]["code"].is_string(), "{endpoint:?}: {body}");
        assert_eq!(
            app.counts().await,
            before,
            "{endpoint:?} was refused ({status}) but wrote something"
        );
    }
    status
}

/// The status a token holding `scopes` for `sites` should get from `endpoint` on site hq.
fn expected(endpoint: Endpoint, scopes: &[&str], sites: Option<&[&str]>) -> StatusCode {
    let holds = |scope: &str| scopes.contains(&"admin") || scopes.contains(&scope);
    let reads_sites = holds("sites:read") || holds("sites:write") || holds("access:write");
    let covers_hq = sites.is_none_or(|s| s.contains(&"hq"));
    let every_site = sites.is_none();
    let ok = |created: bool| {
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        }
    };
    let forbidden = StatusCode::FORBIDDEN;
    let need = |held: bool, site_ok: bool, created: bool| match (held, site_ok) {
        (false, _) => forbidden,
        (true, false) => forbidden,
        (true, true) => ok(created),
    };
    match endpoint {
        CreateDoor | EnrolReader => need(holds("sites:write"), covers_hq, true),
        DisableReader | RotateReaderKey => need(holds("sites:write"), covers_hq, false),
        CreateHolder => need(holds("access:write"), every_site, true),
        UpdateHolder => need(holds("access:write"), every_site, false),
        CreateGrant => need(holds("access:write"), covers_hq, true),
        RevokeGrant => need(holds("access:write"), covers_hq, false),
        // Lists answer what the token's sites hold.
        ListDoors | ListHolders | ListReaders | ListGrants => need(reads_sites, true, false),
        ReaderGaps => need(reads_sites, covers_hq, false),
        ListActions => need(holds("registry:read"), true, false),
        Presence => need(holds("registry:read"), covers_hq, false),
        // No token acts as a card reader.
        Unlock => forbidden,
    }
}

#[tokio::test]
async fn every_endpoint_answers_every_scope_as_the_table_says_and_refusals_write_nothing() {
    let app = spawn_app().await;
    let tokens: [(&[&str], Option<&[&str]>); 10] = [
        (&["admin"], None),
        (&["sites:read"], None),
        (&["sites:write"], None),
        (&["access:write"], None),
        (&["registry:read"], None),
        (&["events:read"], None),
        (&["sites:write", "registry:read"], None),
        (&["admin"], Some(&["hq"])),
        (&["admin"], Some(&["north"])),
        (&["access:write", "registry:read"], Some(&["hq", "north"])),
    ];
    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for (scopes, sites) in tokens {
        let (_, token) = app.token(scopes, sites).await;
        for &endpoint in ENDPOINTS {
            let want = expected(endpoint, scopes, sites);
            let got = probe(&app, &token, endpoint).await;
            table.push(format!(
                "{scopes:?} sites {sites:?} {endpoint:?}: {}",
                got.as_u16()
            ));
            if got != want {
                wrong.push(format!(
                    "{scopes:?} sites {sites:?} {endpoint:?}: got {got}, want {want}"
                ));
            }
        }
    }
    println!("{}", table.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_token_for_some_sites_reads_only_those_sites() {
    let app = spawn_app().await;
    let hq = app.create_door("hq", "Main").await;
    let north = app.create_door("north", "Gate").await;
    let holder = app.create_holder("ADA").await;
    app.grant(holder, hq.id).await;
    app.grant(holder, north.id).await;
    let (_, token) = app.token(&["admin"], Some(&["north"])).await;

    let get = |path: &'static str| {
        let token = token.clone();
        let app = &app;
        async move { expect_status(app.get(path, &token).await, StatusCode::OK).await }
    };
    let doors = get("/v1/doors").await;
    assert_eq!(doors.as_array().map(Vec::len), Some(1), "{doors}");
    assert_eq!(doors[0]["site"], "north");
    let readers = get("/v1/readers").await;
    assert_eq!(readers.as_array().map(Vec::len), Some(1), "{readers}");
    assert_eq!(uuid(&readers[0]["id"]), north.reader_id);
    let grants = get("/v1/grants").await;
    assert_eq!(grants.as_array().map(Vec::len), Some(1), "{grants}");
    assert_eq!(uuid(&grants[0]["door_id"]), north.id);
    let actions = get("/v1/actions?limit=200").await;
    let items = actions["items"].as_array().expect("items");
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|a| a["site"] == "north"),
        "only north's actions: {actions}"
    );
    // Asking for another site by name does not widen it.
    let hq_doors = get("/v1/doors?site=hq").await;
    assert_eq!(hq_doors, json!([]));
    expect_error(
        app.get("/v1/sites/hq/presence", &token).await,
        StatusCode::FORBIDDEN,
        "site_not_allowed",
    )
    .await;
    expect_error(
        app.get(&format!("/v1/readers/{}/gaps", hq.reader_id), &token)
            .await,
        StatusCode::FORBIDDEN,
        "site_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn a_token_is_refused_at_its_first_request_after_expiry_or_revocation() {
    let app = spawn_app().await;
    let owner = app.db.owner().await;
    let (expiring, token) = app.token(&["sites:read"], None).await;
    expect_status(app.get("/v1/doors", &token).await, StatusCode::OK).await;

    owner
        .execute(
            "UPDATE admins SET expires_at = now() + interval '1 hour' WHERE id = $1",
            &[&expiring],
        )
        .await
        .expect("set an expiry");
    expect_status(app.get("/v1/doors", &token).await, StatusCode::OK).await;
    owner
        .execute(
            "UPDATE admins SET expires_at = now() - interval '1 millisecond' WHERE id = $1",
            &[&expiring],
        )
        .await
        .expect("expire it");
    let body = expect_error(
        app.get("/v1/doors", &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{body}"
    );

    // An expired token cannot change anything either, even through the database
    // function directly (the API's login checks nothing the function does not).
    let (writer, write_token) = app.token(&["sites:write"], None).await;
    let before = app.counts().await;
    owner
        .execute(
            "UPDATE admins SET expires_at = now() - interval '1 second' WHERE id = $1",
            &[&writer],
        )
        .await
        .expect("expire it");
    expect_error(
        app.post(
            "/v1/doors",
            &write_token,
            &json!({"site": "hq", "name": "Late"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let answer: String = app
        .db
        .login(latch_testkit::APP_LOGIN)
        .await
        .query_one(
            "SELECT latch_create_door(token_hash, gen_random_uuid(), NULL, gen_random_uuid(),
                                      'hq', 'Late') FROM admins WHERE id = $1",
            &[&writer],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or_else(|_| "refused".into());
    assert!(
        answer == "unauthorized" || answer == "refused",
        "the database function accepted an expired token: {answer}"
    );
    assert_eq!(app.counts().await, before);

    // Revocation: the next request is refused.
    let (revoked, revoked_token) = app.token(&["admin"], None).await;
    expect_status(app.get("/v1/doors", &revoked_token).await, StatusCode::OK).await;
    let outcome: String = owner
        .query_one(
            "SELECT latch_revoke_admin(gen_random_uuid(), $1)",
            &[&revoked],
        )
        .await
        .expect("revoke")
        .get(0);
    assert_eq!(outcome, "done");
    expect_error(
        app.get("/v1/doors", &revoked_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn the_database_refuses_a_change_outside_the_tokens_scope_or_sites() {
    // What the API checks first, the database functions check again: a narrow token used
    // with the API's own login directly still cannot change what it may not.
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let (reader_only, _) = app.token(&["sites:read"], None).await;
    let (north_only, _) = app.token(&["admin"], Some(&["north"])).await;
    let api = app.db.login(latch_testkit::APP_LOGIN).await;
    let before = app.counts().await;
    for (token, sql) in [
        (
            reader_only,
            "SELECT latch_create_door(token_hash, gen_random_uuid(), NULL, gen_random_uuid(),
                                      'hq', 'X') FROM admins WHERE id = $1",
        ),
        (
            north_only,
            "SELECT latch_create_door(token_hash, gen_random_uuid(), NULL, gen_random_uuid(),
                                      'hq', 'X') FROM admins WHERE id = $1",
        ),
        (
            north_only,
            "SELECT latch_create_holder(token_hash, gen_random_uuid(), NULL, gen_random_uuid(),
                                        'C-1', 'X') FROM admins WHERE id = $1",
        ),
    ] {
        let answer: String = api.query_one(sql, &[&token]).await.expect("call").get(0);
        assert_eq!(answer, "forbidden", "{sql}");
    }
    let answer: String = api
        .query_one(
            "SELECT latch_disable_reader(token_hash, gen_random_uuid(), NULL, $2)
             FROM admins WHERE id = $1",
            &[&north_only, &door.reader_id],
        )
        .await
        .expect("call")
        .get(0);
    assert_eq!(answer, "forbidden");
    assert_eq!(app.counts().await, before);
}
