//! Prometheus `/metrics` on its own listener: the series move with the traffic, and the
//! public port does not serve them.

use std::time::Duration;

use crate::support::{spawn_app_with, wait::eventually};

/// The sum of the samples of `name` whose labels include every one of `labels`
/// (`route="/healthz"`), 0 when there is none.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| rest.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    let resp = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("body")
}

#[tokio::test]
async fn metrics_move_with_traffic_and_stay_off_the_public_port() {
    let app = spawn_app_with(|s| {
        s.server.metrics_addr = Some("127.0.0.1:0".into());
        s.session.refresh_race_window_secs = 0;
    })
    .await;
    let metrics = app.metrics_base.clone().expect("a metrics listener");
    // The recorder is process-wide and other tests run alongside: compare before and after.
    let before = scrape(&app.client, &metrics).await;

    let minted = app.start_session("metrics-user").await;
    let token = minted["client_secret"].as_str().unwrap().to_owned();
    let refreshed = app.refresh(&token).await.ok();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The rotated-away token again, past the race window: reuse, and the family revoked.
    app.refresh(&token)
        .await
        .assert_error(401, "auth.token_reused");
    let token = app.login("metrics-user").await;
    let thread = app.create_thread(&token, "metrics").await;
    let id = thread["id"].as_str().unwrap();
    app.say(&token, id, "add a task to buy milk").await;
    let (status, _) = app
        .stream_message(&token, Some(id), "list my tasks", None)
        .await;
    assert_eq!(status, 200);
    app.get(&format!("/api/chatkit/threads/{id}"), &token)
        .await
        .ok();
    let public = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        404,
        "metrics must not be on the public port"
    );
    app.delete("/api/chatkit/session", &token).await;
    assert!(refreshed["client_secret"].is_string());

    let after = scrape(&app.client, &metrics).await;
    let moved = |name: &str, labels: &[&str]| {
        let delta = sample(&after, name, labels) - sample(&before, name, labels);
        assert!(delta >= 1.0, "{name}{labels:?} did not move:\n{after}");
    };
    moved(
        "http_requests_total",
        &[
            r#"route="/api/chatkit/threads/{id}""#,
            r#"method="GET""#,
            r#"status="200""#,
        ],
    );
    moved(
        "http_request_duration_seconds_count",
        &[r#"route="/api/chatkit/messages""#, r#"status="200""#],
    );
    moved(
        "http_requests_total",
        &[r#"route="unmatched""#, r#"status="404""#],
    );
    moved("chat_turns_total", &[r#"outcome="recorded""#]);
    moved(
        "agent_turn_duration_seconds_count",
        &[r#"provider="local""#],
    );
    // The streamed turn's first text delta.
    moved("agent_first_token_seconds_count", &[r#"provider="local""#]);
    moved("agent_tool_calls_total", &[r#"tool="add_task""#]);
    moved("client_secrets_minted_total", &[]);
    moved("client_secrets_refreshed_total", &[]);
    moved("refresh_reuse_detected_total", &[]);
    moved("session_revocations_total", &[r#"scope="reuse""#]);
    moved("session_revocations_total", &[r#"scope="family""#]);
    assert!(
        after.contains("sse_streams_in_flight"),
        "the stream gauge is exported:\n{after}"
    );
    // Gauges of the last app scraped; on SQLite a read and a write pool, on PostgreSQL one.
    assert!(
        after.contains("db_pool_connections{pool=\"read\",state=\"idle\"}")
            || after.contains("db_pool_connections{pool=\"shared\",state=\"idle\"}"),
        "pool gauges are exported:\n{after}"
    );
    // Ids never become labels: one series per route template, whatever the thread.
    assert!(!after.contains(id), "a thread id leaked into a label");
}

#[tokio::test]
async fn no_metrics_listener_unless_configured() {
    let app = spawn_app_with(|_| {}).await;
    assert!(app.metrics_base.is_none());
    let resp = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
}

#[tokio::test]
async fn jwks_fetches_and_failures_are_counted() {
    use crate::support::jwks::{ed25519, FakeJwks};

    let metrics_for = |jwks: &FakeJwks| {
        let base = jwks.base.clone();
        move |s: &mut chatkit_gateway::Settings| {
            s.server.metrics_addr = Some("127.0.0.1:0".into());
            s.upstream.base_url = base;
        }
    };
    let key = ed25519("k");
    let up = FakeJwks::start(&[&key]).await;
    let down = FakeJwks::start(&[&key]).await;
    down.set_failing(true);
    let first = spawn_app_with(metrics_for(&up)).await;
    let metrics = first.metrics_base.clone().expect("a metrics listener");
    let before = scrape(&first.client, &metrics).await;
    // Each app warms its key cache in the background at start-up: one fetch each, and the
    // one against the failing server fails.
    let _ok = first.another_instance().await;
    let _failing = spawn_app_with(metrics_for(&down)).await;
    eventually("a fetch of each app and the failed one counted", || async {
        let after = scrape(&first.client, &metrics).await;
        let fetched =
            sample(&after, "jwks_fetches_total", &[]) - sample(&before, "jwks_fetches_total", &[]);
        let failed = sample(&after, "jwks_fetch_failures_total", &[])
            - sample(&before, "jwks_fetch_failures_total", &[]);
        (fetched >= 2.0 && failed >= 1.0).then_some(())
    })
    .await;
}

/// How long requests waited for a database connection: sqlx reports it only as a tracing
/// event, which the binary's subscriber turns into `db_pool_acquire_seconds` while the log
/// (`RUST_LOG=warn`) stays quiet.
#[tokio::test]
async fn pool_acquire_waits_are_measured() {
    let db = crate::support::TestDb::new().await;
    let metrics_port = crate::support::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let gateway =
        crate::support::GatewayProcess::start(&db.url, &[("METRICS_ADDR", &metrics_addr)]).await;
    let base = &gateway.base;
    let client = reqwest::Client::new();
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    let before = sample(
        &scrape(&client, &metrics).await,
        "db_pool_acquire_seconds_count",
        &[],
    );
    // Each readiness check takes a connection for its round trip.
    for _ in 0..5 {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let text = scrape(&client, &metrics).await;
    let after = sample(&text, "db_pool_acquire_seconds_count", &[]);
    assert!(after >= before + 5.0, "{before} -> {after}\n{text}");
    assert!(text.contains("db_pool_acquire_seconds_bucket"), "{text}");
}
