//! A handler that panics is answered `500` in the JSON error form, counted, and leaves its
//! HTTP worker and its pooled connection usable.

use actix_web::{App, HttpResponse, HttpServer, web};
use deadpool_postgres::Pool;
use latch_api::metrics::ApiMetrics;
use latch_core::config::DatabaseConfig;
use latch_testkit::TestDb;

async fn panics_inside_a_transaction(pool: web::Data<Pool>) -> HttpResponse {
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO idempotency (client, key, request_hash) VALUES ('t', 'k', '\\x00')",
        &[],
    )
    .await
    .unwrap();
    // A time that is year 10000 in UTC: tokio-postgres panics while encoding it, halfway
    // through a message in the connection's shared buffer.
    let at = time::macros::datetime!(9999-12-31 23:59:59 -1);
    tx.execute("SELECT $1::timestamptz", &[&at]).await.unwrap();
    unreachable!("encoding the time panics");
}

async fn counts_keys(pool: web::Data<Pool>) -> HttpResponse {
    let client = pool.get().await.unwrap();
    let row = client
        .query_one("SELECT count(*) FROM idempotency", &[])
        .await
        .unwrap();
    HttpResponse::Ok().json(row.get::<_, i64>(0))
}

#[tokio::test]
async fn a_panicking_handler_is_a_json_500_and_its_connection_survives() {
    let db = TestDb::new().await;
    // One connection: the panicking request and the next one must share it.
    let pool = latch_core::db::pool(&DatabaseConfig {
        pool_size: 1,
        ..DatabaseConfig::with_url(db.app_url())
    })
    .unwrap();
    let metrics = ApiMetrics::new(prometheus::Registry::new());
    let data = web::Data::new(metrics.clone());
    // Wrapped as `Application` wraps the real routes, on one HTTP worker.
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(pool.clone()))
            .app_data(data.clone())
            .wrap(actix_web::middleware::from_fn(
                latch_api::contain::contain_panics,
            ))
            .wrap(actix_web::middleware::from_fn(latch_api::metrics::record))
            .route("/boom", web::get().to(panics_inside_a_transaction))
            .route("/keys", web::get().to(counts_keys))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    let http = reqwest::Client::new();

    for _ in 0..3 {
        let response = http.get(format!("{base}/boom")).send().await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal", "{body}");
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("offset")
        );
    }
    assert_eq!(metrics.panics.get(), 3);
    let counted = metrics
        .requests
        .with_label_values(&["unrouted", "GET", "500"])
        .get();
    assert_eq!(counted, 3);

    // The pool's one connection answers, outside any transaction: the insert was rolled
    // back, and nothing half-encoded was left to send.
    let response = http.get(format!("{base}/keys")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let keys: i64 = response.json().await.unwrap();
    assert_eq!(keys, 0);
    handle.stop(true).await;
}
