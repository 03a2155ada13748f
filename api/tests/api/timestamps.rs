//! Times latch cannot store and show again are refused at the boundary, before anything is
//! written, on every endpoint that takes one; the roll-call and the registry stay readable.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::*;

/// Past year 9999 in UTC, and year -1 in UTC.
const UNKEEPABLE: [&str; 3] = [
    "9999-12-31T23:59:59-01:00",
    "0000-01-01T00:00:00+01:00",
    "0000-12-31T23:59:59.999999Z",
];

#[tokio::test]
async fn reader_posts_with_an_unkeepable_time_are_422_and_write_nothing() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    app.grant(holder, door.id).await;
    let before = app.counts().await;

    for at in UNKEEPABLE {
        for (path, body) in [
            ("/v1/unlock", json!({"card_id": "ADA", "occurred_at": at})),
            (
                "/v1/check-ins",
                json!({"card_id": "ADA", "occurred_at": at, "seq": 1}),
            ),
            (
                "/v1/check-outs",
                json!({"card_id": "ADA", "occurred_at": at}),
            ),
            (
                "/v1/doors/alarm",
                json!({"alarm": "forced_open", "occurred_at": at}),
            ),
        ] {
            // With a valid key, and with a key that exists nowhere: neither reaches the database.
            for key in [door.reader_key.as_str(), "lrk_x"] {
                let body = expect_error(
                    app.post(path, key, &body).await,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_timestamp",
                )
                .await;
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .starts_with("occurred_at"),
                    "{body}"
                );
            }
        }
        let upload = expect_status(
            app.upload(
                &door.reader_key,
                &json!([{"seq": 7, "type": "check_in", "card_id": "ADA", "occurred_at": at}]),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(upload["results"][0]["status"], "rejected", "{upload}");
        assert_eq!(
            upload["results"][0]["code"], "invalid_timestamp",
            "{upload}"
        );
    }
    assert_eq!(app.counts().await, before, "nothing was written");
    // The seq the rejected upload carried is still free.
    assert_eq!(app.gaps(door.reader_id).await["last_seq"], Value::Null);

    // The reader, and the API, are fine.
    let unlock = expect_status(app.unlock(&door.reader_key, "ADA").await, StatusCode::OK).await;
    assert_eq!(unlock["decision"], "granted");
}

#[tokio::test]
async fn admin_inputs_with_an_unkeepable_time_are_422_and_write_nothing() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    let before = app.counts().await;
    for at in UNKEEPABLE {
        for field in ["valid_from", "valid_until"] {
            let mut body = json!({"holder_id": holder, "door_id": door.id});
            body[field] = json!(at);
            expect_error(
                app.post("/v1/grants", &app.admin_token, &body).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_timestamp",
            )
            .await;
        }
        for param in ["since", "until"] {
            let at: String = form_urlencoded::byte_serialize(at.as_bytes()).collect();
            let response = app
                .request(
                    Method::GET,
                    &format!("/v1/actions?{param}={at}"),
                    &app.admin_token,
                )
                .send()
                .await
                .unwrap();
            expect_error(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_timestamp",
            )
            .await;
        }
    }
    assert_eq!(app.counts().await, before, "nothing was written");
}

#[tokio::test]
async fn the_edges_of_what_latch_keeps_are_accepted_and_shown_again() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    for (sent, shown) in [
        ("0001-01-01T00:59:00+00:59", "0001-01-01T00:00:00Z"),
        (
            "9999-12-31T23:59:59.9999999Z",
            "9999-12-31T23:59:59.999999Z",
        ),
    ] {
        let recorded = expect_status(
            app.post(
                "/v1/check-ins",
                &door.reader_key,
                &json!({"card_id": "ADA", "occurred_at": sent}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(recorded["occurred_at"], shown);
        assert_eq!(recorded["clock_skewed"], true);
        let page = app.admin_get("/v1/actions?limit=1").await;
        assert_eq!(page["items"][0]["occurred_at"], shown);
        // The roll-call is readable, and shows the holder.
        let presence = app.admin_get("/v1/sites/hq/presence").await;
        assert_eq!(presence["count"], 1, "{presence}");
    }
}

/// Any RFC 3339 time: every year a four-digit year can write (weighted to the ends, where
/// latch's range ends), any offset RFC 3339 allows, 0 to 9 fraction digits, `T` or `t`,
/// `Z`, `z` or a numeric offset.
fn rfc_3339() -> impl Strategy<Value = String> {
    let year = prop_oneof![0..=2u32, 9997..=9999u32, 0..=9999u32];
    let fraction = prop_oneof![
        Just(String::new()),
        "[0-9]{1,9}".prop_map(|d| format!(".{d}"))
    ];
    let offset = prop_oneof![
        Just("Z".to_owned()),
        Just("z".to_owned()),
        (prop::bool::ANY, 0..=23u32, 0..=59u32)
            .prop_map(|(east, h, m)| format!("{}{h:02}:{m:02}", if east { '+' } else { '-' })),
    ];
    (
        year,
        1..=12u32,
        1..=28u32,
        (0..=23u32, 0..=59u32, 0..=59u32),
        prop::sample::select(vec!['T', 't']),
        fraction,
        offset,
    )
        .prop_map(|(y, mo, d, (h, mi, s), t, fraction, offset)| {
            format!("{y:04}-{mo:02}-{d:02}{t}{h:02}:{mi:02}:{s:02}{fraction}{offset}")
        })
}

/// What latch should keep of `text`: the instant in UTC to the microsecond, if its year in
/// UTC is 1 to 9999.
fn kept(text: &str) -> Option<OffsetDateTime> {
    let at = OffsetDateTime::parse(text, &Rfc3339).expect("the strategy writes RFC 3339");
    let utc = at.checked_to_offset(time::UtcOffset::UTC)?;
    (1..=9999).contains(&utc.year()).then(|| {
        utc.replace_nanosecond(utc.nanosecond() / 1000 * 1000)
            .unwrap()
    })
}

fn instant(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a time"), &Rfc3339)
        .unwrap_or_else(|e| panic!("{value} is not RFC 3339: {e}"))
}

#[tokio::test]
async fn any_rfc_3339_time_is_kept_and_shown_exactly_or_refused_with_nothing_written() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let mut runner = TestRunner::new(proptest::test_runner::Config::with_cases(150));
    let strategy = rfc_3339();
    let owner = app.db.owner().await;
    for case in 0..150 {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        let card = format!("P{case}");
        let holder = app.create_holder(&card).await;
        let before = app.counts().await;
        let answer = app
            .post(
                "/v1/check-ins",
                &door.reader_key,
                &json!({"card_id": card, "occurred_at": text}),
            )
            .await;
        let Some(expected) = kept(&text) else {
            expect_error(
                answer,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_timestamp",
            )
            .await;
            assert_eq!(app.counts().await, before, "{text}: refused, yet written");
            continue;
        };
        // Kept: the same instant in the answer, the registry, the event and the roll-call.
        let recorded = expect_status(answer, StatusCode::CREATED).await;
        assert_eq!(
            instant(&recorded["occurred_at"]),
            expected,
            "{text}: the answer"
        );
        let page = app
            .admin_get(&format!("/v1/actions?holder_id={holder}&limit=1"))
            .await;
        assert_eq!(
            instant(&page["items"][0]["occurred_at"]),
            expected,
            "{text}: the registry"
        );
        let event: Value = owner
            .query_one(
                "SELECT payload FROM outbox WHERE event_id = $1",
                &[&uuid(&recorded["action_id"])],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            instant(&event["occurred_at"]),
            expected,
            "{text}: the event"
        );
        let presence = app.admin_get("/v1/sites/hq/presence").await;
        let since = presence["people"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["holder_id"] == json!(holder))
            .map(|p| instant(&p["since"]))
            .unwrap_or_else(|| panic!("{text}: not on the roll-call"));
        let at_server = instant(&recorded["recorded_at"]);
        let ordered_by = if recorded["clock_skewed"] == true {
            at_server
        } else {
            expected.min(at_server)
        };
        assert_eq!(since, ordered_by, "{text}: the roll-call");
    }
}
