//! Slow and numerous clients, over raw TCP: request heads and bodies
//! have deadlines, and connections beyond `server.max_connections` wait for a free slot.
//! And the accept loop's own duties (src/http/server.rs): HTTP/2 by prior knowledge beside
//! HTTP/1, the idle timeout, and a shutdown that lets requests in flight finish.
//!
//! The tests of the server's deadlines run on a paused clock ([`paused`]): the deadlines, the
//! client's pauses and the test's waits all count virtual time, which moves only when every
//! task is waiting. So "cut off after the one-second deadline, not before" is exact however
//! busy the machine is, and nothing waits a real second for it.

use std::time::Duration;

use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{tcp::OwnedWriteHalf, TcpStream},
    task::JoinHandle,
    time::{timeout, Instant},
};

use crate::support::{spawn_app_with, spawn_on_with, TestApp, TestDb};

/// The service with `edit` applied, then the clock paused. Virtual time jumps ahead
/// whenever every task of this process is waiting, so a paused test must not wait on
/// anything outside it: its requests never reach the database, and the database is an
/// SQLite file whatever TEST_DATABASE_URL says (the transport under test is the same on
/// both; PostgreSQL's pool does I/O with another process in the background).
async fn paused(edit: impl FnOnce(&mut chatkit_gateway::Settings)) -> TestApp {
    let app = spawn_on_with(TestDb::sqlite(), edit).await;
    tokio::time::pause();
    app
}

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Everything the server sends until it closes the connection (or `limit` passes).
async fn read_to_close(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    out
}

/// One response on a kept-alive connection: the head, then `Content-Length` bytes.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "connection closed mid-response: {out:?}");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// Status and JSON body of a whole response.
fn parse(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, serde_json::from_str(body).expect("a JSON body"))
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

/// A request in flight: its head and the first chunk of its body, the rest to follow
/// ([`REST_OF_THE_POST`]; answered 401, having no bearer).
const HALF_A_POST: &[u8] = b"POST /api/chatkit/session HTTP/1.1\r\nHost: test\r\n\
    Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n";
const REST_OF_THE_POST: &[u8] = b"1\r\n}\r\n0\r\n\r\n";

/// A header line every 200 ms: never idle, never done (until the server hangs up).
fn trickle_header_lines(mut tx: OwnedWriteHalf) -> JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tx
                .write_all(format!("x-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    })
}

#[tokio::test]
async fn a_head_trickled_past_the_header_timeout_is_answered_408_and_closed() {
    let app = paused(|s| s.server.header_read_timeout_secs = 1).await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (mut rx, tx) = slow.into_split();
    let trickle = trickle_header_lines(tx);
    // Meanwhile the server answers everyone else.
    let ok = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let raw = read_to_close(&mut rx, Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    assert!(!trickle.is_finished(), "the head was still coming");
    trickle.abort();
    // Virtual time: at the deadline, although the head never paused for long.
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "cut off after {elapsed:?}"
    );
    let (status, body) = parse(&raw);
    assert_eq!(status, 408);
    assert_eq!(body["error"]["code"], "request.timeout");
    assert!(body["error"]["message"].as_str().unwrap().contains("head"));
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_silently() {
    let app = paused(|s| s.server.header_read_timeout_secs = 1).await;
    let mut silent = connect(&app).await;
    let started = Instant::now();
    let raw = read_to_close(&mut silent, Duration::from_secs(5)).await;
    assert!(raw.is_empty(), "{:?}", String::from_utf8_lossy(&raw));
    // Virtual time: closed by the header deadline.
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_keep_alive_connection_is_timed_per_head_not_between_requests() {
    let app = paused(|s| s.server.header_read_timeout_secs = 1).await;
    let mut conn = connect(&app).await;
    conn.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
    // Idle between requests for longer than the header timeout: not a slow head.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    conn.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
    // A second head trickled past the timeout is cut off (without a 408: something was
    // already written on this connection).
    conn.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let (mut rx, tx) = conn.into_split();
    let trickle = trickle_header_lines(tx);
    let raw = read_to_close(&mut rx, Duration::from_secs(5)).await;
    assert!(!trickle.is_finished(), "the head was still coming");
    trickle.abort();
    assert!(raw.is_empty(), "{:?}", String::from_utf8_lossy(&raw));
    // Virtual time: cut off by the second head's own deadline.
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_body_trickled_past_the_body_timeout_is_answered_408_with_the_envelope() {
    let app = paused(|s| s.server.body_read_timeout_secs = 1).await;
    let mut conn = connect(&app).await;
    // A chunked body is read before anything else looks at the request.
    conn.write_all(
        b"POST /api/chatkit/session HTTP/1.1\r\nHost: test\r\n\
          Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (mut rx, mut tx) = conn.into_split();
    // A byte of body every 200 ms: never idle, never done.
    let trickle = tokio::spawn(async move {
        while tx.write_all(b"1\r\n \r\n").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let raw = read_to_close(&mut rx, Duration::from_secs(5)).await;
    trickle.abort();
    // Virtual time: at the body's deadline.
    assert!(started.elapsed() < Duration::from_secs(3));
    let (status, body) = parse(&raw);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(body["error"]["code"], "request.timeout");
    assert!(body["error"]["message"].as_str().unwrap().contains("body"));
}

#[tokio::test]
async fn a_slow_body_within_the_timeout_is_served() {
    let app = paused(|s| s.server.body_read_timeout_secs = 3).await;
    let mut conn = connect(&app).await;
    let body = br#"{"x":1}"#;
    conn.write_all(
        b"POST /api/chatkit/session HTTP/1.1\r\nHost: test\r\n\
          Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    for b in body {
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.write_all(format!("1\r\n{}\r\n", char::from(*b)).as_bytes())
            .await
            .unwrap();
    }
    conn.write_all(b"0\r\n\r\n").await.unwrap();
    let text = timeout(Duration::from_secs(5), read_response(&mut conn))
        .await
        .expect("answered");
    // Past the body: no bearer, so 401; anything but a timeout.
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = paused(|s| s.server.max_connections = 2).await;
    let mut first = connect(&app).await;
    let mut second = connect(&app).await;
    for conn in [&mut first, &mut second] {
        conn.write_all(HEALTH).await.unwrap();
        assert!(read_response(conn).await.starts_with("HTTP/1.1 200"));
    }
    // The third is queued by the kernel, not served (virtual time: everything else has
    // been done before the wait runs out).
    let mut third = connect(&app).await;
    third.write_all(HEALTH).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        timeout(Duration::from_millis(800), third.read(&mut buf))
            .await
            .is_err(),
        "served beyond the cap"
    );
    // The two kept-alive connections still work.
    second.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));
    // Closing one frees its slot for the waiting connection.
    drop(first);
    let text = timeout(Duration::from_secs(5), read_response(&mut third))
        .await
        .expect("served once a slot is free");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn http2_prior_knowledge_is_served_beside_http1() {
    let app = spawn_app_with(|_| {}).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..2 {
        let resp = h2
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
    }
    let resp = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_head_whose_first_byte_comes_alone_is_read_as_http1() {
    // "P" could begin HTTP/2's preface or a POST: the server waits for enough to tell.
    let app = spawn_app_with(|_| {}).await;
    let mut conn = connect(&app).await;
    conn.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.write_all(b"OST /api/chatkit/session HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let text = timeout(Duration::from_secs(5), read_response(&mut conn))
        .await
        .expect("answered");
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = paused(|s| s.server.idle_timeout_secs = 1).await;
    let mut conn = connect(&app).await;
    // Traffic keeps it open past the timeout...
    for _ in 0..3 {
        conn.write_all(HEALTH).await.unwrap();
        assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // ...silence closes it (virtual time: at the idle timeout, counted from the last
    // request).
    let started = Instant::now();
    let raw = read_to_close(&mut conn, Duration::from_secs(5)).await;
    assert!(raw.is_empty(), "{:?}", String::from_utf8_lossy(&raw));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_closes_idle_and_silent_connections() {
    let app = paused(|s| s.server.body_read_timeout_secs = 10).await;
    let base = app.base.clone();
    let mut idle = connect(&app).await;
    idle.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    // A request whose body is still coming when the shutdown begins.
    let mut busy = connect(&app).await;
    // And one that has sent nothing yet, as browsers open them ahead of need.
    let mut silent = connect(&app).await;
    busy.write_all(HALF_A_POST).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(app.stop());
    // The idle and the silent connections are closed at once, without waiting out the grace
    // period (2 s) or the silent one's header timeout (10 s).
    for conn in [&mut idle, &mut silent] {
        let raw = read_to_close(conn, Duration::from_millis(1_500)).await;
        assert!(raw.is_empty(), "{:?}", String::from_utf8_lossy(&raw));
    }
    // No new connections.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = TcpStream::connect(base.trim_start_matches("http://")).await;
    assert!(refused.is_err(), "still accepting");
    // The busy one gets its answer, then the server is done.
    busy.write_all(REST_OF_THE_POST).await.unwrap();
    let text = timeout(Duration::from_secs(5), read_response(&mut busy))
        .await
        .expect("answered");
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    // Closing the database waits on another thread: on the real clock again.
    tokio::time::resume();
    timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the server stops")
        .unwrap();
}

#[tokio::test]
async fn the_idle_timeout_lets_a_silent_request_in_flight_finish() {
    let app = paused(|s| {
        s.server.idle_timeout_secs = 1;
        s.server.body_read_timeout_secs = 10;
    })
    .await;
    let mut conn = connect(&app).await;
    conn.write_all(HALF_A_POST).await.unwrap();
    // No byte either way for longer than the idle timeout, mid-request.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    conn.write_all(REST_OF_THE_POST).await.unwrap();
    let text = timeout(Duration::from_secs(5), read_response(&mut conn))
        .await
        .expect("answered");
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    // Then the connection, idle past its timeout, is closed.
    let raw = read_to_close(&mut conn, Duration::from_secs(5)).await;
    assert!(raw.is_empty(), "{:?}", String::from_utf8_lossy(&raw));
}
