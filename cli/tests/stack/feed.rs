//! The event feed: pages from a cursor, Server-Sent Events that resume, slow clients, and
//! who may read what — against the API, the relay, PostgreSQL and nats-server.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use latch_testkit::{NatsServer, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::harness::{Api, Stack, first_admin, token};

const DEADLINE: Duration = Duration::from_secs(120);

/// Doors (the first two at `hq`, the others at `north`) and holders that events name.
pub struct Site {
    pub doors: Vec<Uuid>,
    pub holders: Vec<Uuid>,
}

impl Site {
    pub fn new() -> Site {
        Site {
            doors: (0..4).map(|_| Uuid::now_v7()).collect(),
            holders: (0..20).map(|_| Uuid::now_v7()).collect(),
        }
    }

    /// Records events `from..to` in the registry in one transaction, as the API would one
    /// after another: event `i` happens at door `i % 4`; every tenth is a door alarm without
    /// a holder, the others are check-ins, check-outs and unlocks of holder `i % 20`.
    pub async fn record(&self, stack: &Stack, from: i32, to: i32) {
        self.record_on(&stack.db.owner().await, from, to).await;
    }

    async fn record_on(&self, client: &tokio_postgres::Client, from: i32, to: i32) {
        client
            .execute(
                "INSERT INTO actions (id, kind, site, door_id, holder_id, reader_id, occurred_at)
                 SELECT gen_random_uuid(),
                        CASE WHEN i % 10 = 9 THEN 'door_forced_open'
                             ELSE (ARRAY['check_in', 'check_out', 'unlock_granted'])[1 + i % 3] END,
                        CASE WHEN i % 4 < 2 THEN 'hq' ELSE 'north' END,
                        ($1::uuid[])[1 + i % 4],
                        CASE WHEN i % 10 = 9 THEN NULL ELSE ($2::uuid[])[1 + i % 20] END,
                        ($1::uuid[])[1 + i % 4],
                        now()
                 FROM generate_series($3::int, $4::int - 1) AS i ORDER BY i",
                &[&self.doors, &self.holders, &from, &to],
            )
            .await
            .unwrap();
    }

    /// Records events `from..from + batches * size` in the background, `size` per
    /// transaction, one transaction every `pace`.
    pub fn writer(
        &self,
        stack: &Stack,
        from: i32,
        batches: i32,
        size: i32,
        pace: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let url = stack.db.owner_url();
        let site = Site {
            doors: self.doors.clone(),
            holders: self.holders.clone(),
        };
        tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let mut pace = tokio::time::interval(pace);
            for batch in 0..batches {
                pace.tick().await;
                let start = from + batch * size;
                site.record_on(&client, start, start + size).await;
            }
        })
    }
}

/// Every event the feed gives `token` from the start, page by page.
async fn read_all(api: &Api, token: &str, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let cursor = after
            .as_ref()
            .map(|c| format!("&after={c}"))
            .unwrap_or_default();
        let (status, page) = api
            .get(token, &format!("/v1/events?limit=1000{query}{cursor}"))
            .await;
        assert_eq!(status, 200, "{page}");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        after = Some(page["next_cursor"].as_str().unwrap().to_owned());
        if page["caught_up"] == true {
            return events;
        }
    }
}

/// The cursors of `events` as numbers (the test knows what they are; clients do not).
fn cursors(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Asserts that `events` are in stream order, each once, and that each holder's (or
/// door's, for events without a holder) `sequence` runs 1, 2, 3, … without a gap.
pub fn assert_in_order_once(events: &[Value]) {
    let cursors = cursors(events);
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "cursors not strictly increasing"
    );
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "an event came twice");
    let mut last: HashMap<String, i64> = HashMap::new();
    for event in events {
        let key = event["holder_id"]
            .as_str()
            .or(event["door_id"].as_str())
            .unwrap()
            .to_owned();
        let sequence = event["sequence"].as_i64().expect("a sequence");
        let previous = last.insert(key.clone(), sequence).unwrap_or(0);
        assert_eq!(sequence, previous + 1, "{key}: {sequence} after {previous}");
    }
}

/// The ids of every recorded action, as the registry has them.
async fn recorded(stack: &Stack, condition: &str) -> HashSet<String> {
    stack
        .db
        .owner()
        .await
        .query(
            &format!("SELECT id::text FROM actions WHERE {condition}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the stream holds `n` events.
async fn published(nats: &NatsServer, n: u64) {
    wait_until(&format!("{n} events in the stream"), DEADLINE, || async {
        (crate::harness::stream_messages(nats, "LATCH_EVENTS").await >= n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_give_every_event_once_in_stream_order_with_filters_and_while_writes_go_on() {
    let stack = Stack::new().await;
    let nats = NatsServer::start();
    stack.relay(&nats).await;
    let api = stack.api_with_feed(&nats);
    let admin = first_admin(&stack.db, "ops").await;
    let site = Site::new();

    // An empty stream (before the relay made it): 503; then empty pages, caught up.
    let (status, body) = api.get(&admin, "/v1/events").await;
    assert!(
        status == 503 || (status == 200 && body["events"] == json!([])),
        "{status} {body}"
    );

    site.record(&stack, 0, 10_000).await;
    published(&nats, 10_000).await;

    // Pages while 2,000 more events are written, 100 at a time.
    let writer = site.writer(&stack, 10_000, 20, 100, Duration::from_millis(1));
    let mut events = read_all(&api, &admin, "").await;
    writer.await.unwrap();
    published(&nats, 12_000).await;
    // Caught up earlier, the reader goes on from its last cursor.
    let last = events.last().unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut after = last;
    loop {
        let (status, page) = api
            .get(&admin, &format!("/v1/events?limit=1000&after={after}"))
            .await;
        assert_eq!(status, 200);
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        after = page["next_cursor"].as_str().unwrap().to_owned();
        if page["caught_up"] == true {
            break;
        }
    }
    assert_eq!(events.len(), 12_000);
    assert_in_order_once(&events);
    assert_eq!(ids(&events), recorded(&stack, "true").await);
    assert_eq!(events[0]["schema_version"], 2);

    // Filters: each gives exactly what the registry holds of it, in order.
    let holder = site.holders[3];
    for (query, condition) in [
        ("&kinds=check_in".to_owned(), "kind = 'check_in'".to_owned()),
        (
            "&sites=north&kinds=door_forced_open,check_out".to_owned(),
            "site = 'north' AND kind IN ('door_forced_open', 'check_out')".to_owned(),
        ),
        (
            format!("&holders={holder}"),
            format!("holder_id = '{holder}'"),
        ),
        (
            format!("&doors={},{}", site.doors[1], site.doors[2]),
            format!("door_id IN ('{}', '{}')", site.doors[1], site.doors[2]),
        ),
    ] {
        let filtered = read_all(&api, &admin, &query).await;
        let wanted = recorded(&stack, &condition).await;
        assert_eq!(filtered.len(), wanted.len(), "{query}");
        assert_eq!(ids(&filtered), wanted, "{query}");
        assert!(cursors(&filtered).windows(2).all(|w| w[0] < w[1]));
    }

    // Bad input changes nothing and says what is wrong.
    for (query, code) in [
        ("after=abc", "invalid_cursor"),
        ("kinds=check_in,teleport", "invalid_kind"),
        ("doors=12", "invalid_door"),
        ("sites=HQ!", "invalid_site"),
        ("limit=0", "invalid_limit"),
        ("limit=1001", "invalid_limit"),
        ("cursor=1", "invalid_query"),
    ] {
        let (status, body) = api.get(&admin, &format!("/v1/events?{query}")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{query}: {body}"
        );
    }

    // Retention: the oldest 5,000 are gone. An older cursor answers 410 with the oldest
    // readable one, which reads on from the first event kept.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream("LATCH_EVENTS")
        .await
        .unwrap();
    stream.purge().sequence(5_001).await.unwrap();
    let (status, body) = api.get(&admin, "/v1/events?after=10").await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], "cursor_expired");
    assert_eq!(body["error"]["oldest_cursor"], "5000");
    let (status, body) = api.get(&admin, "/v1/events?after=5000&limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(body["events"][0]["cursor"], "5001");
    let (status, body) = api.get(&admin, "/v1/events?limit=1").await;
    assert_eq!(
        (status, body["events"][0]["cursor"].as_str()),
        (200, Some("5001"))
    );
    // A cursor past the end (from a stream since reset) is no position either.
    let (status, body) = api.get(&admin, "/v1/events?after=99999").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("cursor_expired"))
    );
}

/// One Server-Sent Events connection, read message by message.
pub struct Sse {
    body: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: Vec<u8>,
}

/// One SSE message.
#[derive(Debug, Default)]
pub struct Message {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Sse {
    /// Opens the stream; `last_id` is sent as `Last-Event-ID`.
    pub async fn open(api: &Api, token: &str, query: &str, last_id: Option<&str>) -> Sse {
        let mut request = api
            .http
            .get(format!("{}/v1/events/stream{query}", api.base))
            .bearer_auth(token);
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse {
            body: response
                .bytes_stream()
                .map(|r| r.map(|b| b.to_vec()))
                .boxed(),
            buffer: Vec::new(),
        }
    }

    /// The next message (comments skipped), or `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let mut message = Message::default();
                let mut fields = false;
                for line in text.lines() {
                    if let Some(value) = line.strip_prefix("id: ") {
                        message.id = Some(value.to_owned());
                        fields = true;
                    } else if let Some(value) = line.strip_prefix("event: ") {
                        message.event = Some(value.to_owned());
                        fields = true;
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        message.data.push_str(value);
                        fields = true;
                    }
                }
                if fields {
                    return Some(message);
                }
                continue;
            }
            match tokio::time::timeout(DEADLINE, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Some(Err(_)) | None) => return None,
                Err(_) => panic!("no SSE message for {DEADLINE:?}"),
            }
        }
    }

    /// The next event (`data` parsed), skipping messages without data; `None` at the end.
    pub async fn event(&mut self) -> Option<(String, Value)> {
        loop {
            let message = self.next().await?;
            if let Some(kind) = &message.event {
                panic!("unexpected `{kind}` message: {}", message.data);
            }
            if message.data.is_empty() {
                continue;
            }
            let data: Value = serde_json::from_str(&message.data).unwrap();
            let id = message.id.expect("an event with its id");
            assert_eq!(data["cursor"].as_str(), Some(id.as_str()));
            return Some((id, data));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_from_its_last_event_id_across_replicas_and_a_restart() {
    let stack = Stack::new().await;
    let nats = NatsServer::start();
    stack.relay(&nats).await;
    let first = stack.api_with_feed(&nats);
    let second = stack.api_with_feed(&nats);
    let admin = first_admin(&stack.db, "ops").await;
    let site = Site::new();
    site.record(&stack, 0, 100).await;
    published(&nats, 100).await;

    // A stream from now says where it stands before any event, so that even a client that
    // sees nothing resumes from there.
    let mut from_now = Sse::open(&second, &admin, "", None).await;
    let first_message = from_now.next().await.unwrap();
    assert_eq!(
        (first_message.id.as_deref(), first_message.data.as_str()),
        (Some("100"), "")
    );
    drop(from_now);

    // Beside the client below, a filtered stream from the start on the second API, catching
    // up from pages and switching to the live ring while the writes go on.
    const FILTER: &str = "kinds=check_in,door_forced_open&sites=north";
    let (filtered_tx, mut filtered) = tokio::sync::mpsc::unbounded_channel();
    let mut filtered_stream = Sse::open(&second, &admin, &format!("?after=0&{FILTER}"), None).await;
    let filtered_reader = tokio::spawn(async move {
        while let Some((_, event)) = filtered_stream.event().await {
            if filtered_tx.send(event).is_err() {
                return;
            }
        }
    });

    // Writes go on all along: 10 events every 5 ms, 3,000 in all.
    let writer = site.writer(&stack, 100, 290, 10, Duration::from_millis(5));

    let mut received: Vec<Value> = Vec::new();
    let mut last: Option<String> = None;
    // From the start on the first API, 500 events; on the second, 800 more; on the first
    // again until it stops.
    let mut stream = Sse::open(&first, &admin, "?after=0", None).await;
    while received.len() < 500 {
        let (id, event) = stream.event().await.expect("the stream goes on");
        last = Some(id);
        received.push(event);
    }
    drop(stream);
    let mut stream = Sse::open(&second, &admin, "", last.as_deref()).await;
    while received.len() < 1_300 {
        let (id, event) = stream.event().await.expect("the stream goes on");
        last = Some(id);
        received.push(event);
    }
    drop(stream);
    let mut stream = Sse::open(&first, &admin, "", last.as_deref()).await;
    for _ in 0..200 {
        let (id, event) = stream.event().await.expect("the stream goes on");
        last = Some(id);
        received.push(event);
    }
    // The API stops (a deploy): the stream ends cleanly, and a new API takes over.
    first.stop().await;
    while let Some((id, event)) = stream.event().await {
        last = Some(id);
        received.push(event);
    }
    let third = stack.api_with_feed(&nats);
    let mut stream = Sse::open(&third, &admin, "", last.as_deref()).await;
    writer.await.unwrap();
    while received.len() < 3_000 {
        let (_, event) = stream.event().await.expect("the stream goes on");
        received.push(event);
    }
    assert_eq!(received.len(), 3_000);
    assert_in_order_once(&received);
    assert_eq!(ids(&received), recorded(&stack, "true").await);
    // The filtered stream got exactly what pages with the same filters give.
    let filtered_pages = read_all(&second, &admin, &format!("&{FILTER}")).await;
    let mut streamed = Vec::new();
    while streamed.len() < filtered_pages.len() {
        let event = tokio::time::timeout(DEADLINE, filtered.recv())
            .await
            .expect("the filtered stream goes on")
            .unwrap();
        streamed.push(event);
    }
    filtered_reader.abort();
    assert_eq!(cursors(&streamed), cursors(&filtered_pages));
    assert_eq!(
        ids(&streamed),
        recorded(
            &stack,
            "site = 'north' AND kind IN ('check_in', 'door_forced_open')"
        )
        .await
    );
    let pages = read_all(&second, &admin, "").await;
    assert_eq!(
        cursors(&pages),
        cursors(&received),
        "the stream and the pages agree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_is_cut_off_with_a_reason_and_others_keep_up() {
    let stack = Stack::new().await;
    let nats = NatsServer::start();
    stack.relay(&nats).await;
    let api = stack.api_with(2, |config| {
        config.nats = Some(latch_core::nats::NatsConfig::for_url(nats.url()));
        config.feed.ring_size = 1024;
    });
    let admin = first_admin(&stack.db, "ops").await;
    let site = Site::new();
    site.record(&stack, 0, 1).await;
    published(&nats, 1).await;

    // The slow client: it sends its request, reads the answer's head, and then nothing.
    let port: u16 = api.base.rsplit(':').next().unwrap().parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    slow.write_all(
        format!(
            "GET /v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {admin}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 256];
    let n = slow.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));

    // A client that keeps up, and 20,000 events (about 10 MB of stream): more than the
    // connection's buffers and the ring hold for the slow one.
    let mut fast = Sse::open(&api, &admin, "?after=0", None).await;
    site.record(&stack, 1, 20_001).await;
    let mut received = Vec::new();
    let mut last = None;
    while received.len() < 20_001 {
        match fast.next().await {
            Some(message) if message.event.as_deref() == Some("lagged") => {
                // Allowed, and then it resumes as every client does.
                fast = Sse::open(&api, &admin, "", last.as_deref()).await;
            }
            Some(message) if !message.data.is_empty() => {
                last = message.id.clone();
                received.push(serde_json::from_str::<Value>(&message.data).unwrap());
            }
            Some(_) => {}
            None => panic!("the fast client's stream ended"),
        }
    }
    assert_in_order_once(&received);

    // Now the slow client reads: what was already on its way, then the reason, then the end.
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, slow.read_to_end(&mut rest))
        .await
        .expect("the server closes the slow client's stream")
        .unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("event: lagged"), "no lagged message");
    assert!(
        text.contains("Last-Event-ID"),
        "the reason says how to resume"
    );
    let sent = text.matches("\ndata: {").count();
    assert!(
        sent < 20_000,
        "the slow client was sent everything ({sent})"
    );
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lagged: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("latch_feed_lagged_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(lagged >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sees_only_its_sites_and_only_tokens_and_their_sessions_read() {
    let stack = Stack::new().await;
    let nats = NatsServer::start();
    stack.relay(&nats).await;
    let api = stack.api_with_feed(&nats);
    let admin = first_admin(&stack.db, "ops").await;
    let north = token(&stack.db, "integrator", &["events:read"], Some(&["north"])).await;
    let no_events = token(
        &stack.db,
        "integrator",
        &["sites:read", "registry:read"],
        None,
    )
    .await;
    // A reader key, enrolled through the API.
    let (_, reader_key) = api.door_with_reader(&admin, "north", "Gate").await;
    let site = Site::new();
    site.record(&stack, 0, 400).await;
    published(&nats, 402).await;

    // Pull: only north's events, whatever the filters say.
    let seen = read_all(&api, &north, "").await;
    assert_eq!(ids(&seen), recorded(&stack, "site = 'north'").await);
    assert!(seen.iter().all(|e| e["site"] == "north"));
    // Holder 0 is seen only at hq; holder 2 at north.
    let holder = read_all(&api, &north, &format!("&holders={}", site.holders[0])).await;
    assert!(holder.is_empty());
    let holder = read_all(&api, &north, &format!("&holders={}", site.holders[2])).await;
    assert!(!holder.is_empty() && holder.iter().all(|e| e["site"] == "north"));
    for query in ["?sites=hq", "?sites=north,hq"] {
        let (status, body) = api.get(&north, &format!("/v1/events{query}")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("site_not_allowed"))
        );
    }

    // Stream: the same, from the start until the newest north event.
    let newest = seen.last().unwrap()["cursor"].as_str().unwrap().to_owned();
    let mut stream = Sse::open(&api, &north, "?after=0", None).await;
    let mut streamed = Vec::new();
    loop {
        let (id, event) = stream.event().await.unwrap();
        assert_eq!(event["site"], "north");
        streamed.push(event);
        if id == newest {
            break;
        }
    }
    assert_eq!(ids(&streamed), recorded(&stack, "site = 'north'").await);
    let response = api
        .http
        .get(format!("{}/v1/events/stream?sites=hq", api.base))
        .bearer_auth(&north)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Who is refused, and how.
    for (credential, status, code) in [
        (Some(reader_key.as_str()), 403, "forbidden"),
        (Some(no_events.as_str()), 403, "insufficient_scope"),
        (Some("lat_not-a-token"), 401, "unauthorized"),
        (None, 401, "unauthorized"),
    ] {
        for path in ["/v1/events", "/v1/events/stream"] {
            let mut request = api.http.get(format!("{}{path}", api.base));
            if let Some(credential) = credential {
                request = request.bearer_auth(credential);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{path} {credential:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{path} {credential:?}");
        }
    }

    // A session: the cookie reads with the token's sites, writes only with its CSRF token,
    // and ends.
    let start_session = |credential: String| {
        api.http
            .post(format!("{}/v1/sessions", api.base))
            .bearer_auth(credential)
            .send()
    };
    let with_cookie = |method: reqwest::Method, path: &str, cookie: &str| {
        api.http
            .request(method, format!("{}{path}", api.base))
            .header("Cookie", cookie.to_owned())
            .send()
    };
    let session = start_session(north.clone()).await.unwrap();
    assert_eq!(session.status(), 201);
    let set_cookie = session.headers()["set-cookie"].to_str().unwrap().to_owned();
    let session_body: Value = session.json().await.unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "plain HTTP: no Secure: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page: Value = with_cookie(reqwest::Method::GET, "/v1/events", &cookie)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["site"] == "north")
    );
    // A door made with a cookie and, perhaps, a CSRF token.
    let make_door = |cookie: &str, csrf: Option<&str>, site: &str| {
        let mut request = api
            .http
            .post(format!("{}/v1/doors", api.base))
            .header("Cookie", cookie.to_owned())
            .json(&json!({"site": site, "name": "Side"}));
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf.to_owned());
        }
        request.send()
    };
    let refused = make_door(&cookie, None, "north").await.unwrap();
    assert_eq!(refused.status(), 403, "a cookie alone makes no change");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "csrf_refused");
    let wrong = make_door(&cookie, Some("lss_not-this-sessions"), "north")
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403, "another CSRF token makes no change");
    assert_eq!(stack.count("SELECT count(*) FROM doors").await, 1);
    let csrf_token = session_body["csrf_token"].as_str().unwrap();
    let scoped = make_door(&cookie, Some(csrf_token), "north").await.unwrap();
    assert_eq!(scoped.status(), 403, "with its token's scopes only");
    // With the session's CSRF token, a cookie changes what its token may change.
    let desk = token(&stack.db, "north desk", &["sites:write"], Some(&["north"])).await;
    let desk_session = start_session(desk).await.unwrap();
    let desk_cookie = cookie_of(&desk_session);
    let desk_body: Value = desk_session.json().await.unwrap();
    let csrf_token = desk_body["csrf_token"].as_str().unwrap();
    let made = make_door(&desk_cookie, Some(csrf_token), "north")
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let outside = make_door(&desk_cookie, Some(csrf_token), "south")
        .await
        .unwrap();
    assert_eq!(outside.status(), 403, "within the token's sites only");
    assert_eq!(stack.count("SELECT count(*) FROM doors").await, 2);
    let ended = with_cookie(reqwest::Method::DELETE, "/v1/sessions/current", &cookie)
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    let after_end = with_cookie(reqwest::Method::GET, "/v1/events", &cookie)
        .await
        .unwrap();
    assert_eq!(after_end.status(), 401);

    // A session ends with its token.
    let session = start_session(north.clone()).await.unwrap();
    let cookie = cookie_of(&session);
    stack
        .db
        .owner()
        .await
        .execute(
            "UPDATE admins SET revoked_at = now() WHERE token_hash = $1",
            &[&latch_core::credentials::hash(&north)],
        )
        .await
        .unwrap();
    let revoked = with_cookie(reqwest::Method::GET, "/v1/events", &cookie)
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
    // A reader key cannot start a session either.
    assert_eq!(start_session(reader_key).await.unwrap().status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_holder_get_sequence_numbers_in_commit_order() {
    let stack = Stack::new().await;
    let nats = NatsServer::start();
    stack.relay(&nats).await;
    let api = stack.api_with_feed(&nats);
    let admin = first_admin(&stack.db, "ops").await;
    // Two holders, eight connections recording one event per transaction at once, some of
    // them rolled back: the numbers follow commit order, and a rollback leaves no gap.
    let holders = [uuid::Uuid::now_v7(), uuid::Uuid::now_v7()];
    let door = uuid::Uuid::now_v7();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let url = stack.db.owner_url();
        writers.push(tokio::spawn(async move {
            let (mut client, connection) =
                tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            for n in 0..50 {
                let transaction = client.transaction().await.unwrap();
                transaction
                    .execute(
                        "INSERT INTO actions (id, kind, site, door_id, holder_id, reader_id, occurred_at)
                         VALUES (gen_random_uuid(), 'check_in', 'hq', $1, $2, $1, now())",
                        &[&door, &holders[n % 2]],
                    )
                    .await
                    .unwrap();
                if (writer + n) % 7 == 0 {
                    transaction.rollback().await.unwrap();
                } else {
                    transaction.commit().await.unwrap();
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let committed = stack.count("SELECT count(*) FROM actions").await;
    published(&nats, committed as u64).await;
    let events = read_all(&api, &admin, "").await;
    assert_eq!(events.len() as i64, committed);
    assert_in_order_once(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_holds_at_most_its_share_of_streams() {
    let stack = Stack::new().await;
    let nats = NatsServer::start();
    stack.relay(&nats).await;
    let api = stack.api_with(2, |config| {
        config.nats = Some(latch_core::nats::NatsConfig::for_url(nats.url()));
        config.feed.max_streams_per_token = 2;
    });
    let admin = first_admin(&stack.db, "ops").await;
    let other = token(&stack.db, "integrator", &["events:read"], None).await;
    // Two streams of one token are served; its third is told why and ended, in-band (so
    // that a browser tries again later rather than giving up).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = Sse::open(&api, &admin, "", None).await;
        let first = stream.next().await.unwrap();
        assert_eq!(first.event, None, "{first:?}");
        held.push(stream);
    }
    let mut third = Sse::open(&api, &admin, "", None).await;
    let mut refused = third.next().await.unwrap();
    if refused.event.is_none() {
        refused = third.next().await.unwrap();
    }
    assert_eq!(
        refused.event.as_deref(),
        Some("too_many_streams"),
        "{refused:?}"
    );
    assert!(refused.data.contains("this token"), "{}", refused.data);
    assert!(third.next().await.is_none(), "the refused stream ends");
    // Another token is not held back by it.
    let mut another = Sse::open(&api, &other, "", None).await;
    assert_eq!(another.next().await.unwrap().event, None);
}

/// The `name=value` of the cookie a response sets.
fn cookie_of(response: &reqwest::Response) -> String {
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}
