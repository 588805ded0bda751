//! Slow and stalled clients over real sockets: each kind of stall is closed,
//! event streams are not, and a flood of half-sent requests leaves room for
//! health checks and normal calls.

use std::net::SocketAddr;
use std::time::Duration;

use hoistd::http::serve::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Far longer than any timeout these tests set: a connection still open
/// after this was never going to be closed.
const BOUND: Duration = Duration::from_secs(30);

fn short_limits() -> Limits {
    Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
    }
}

async fn quick_broker() -> TestBroker {
    TestBroker::builder().limits(short_limits()).start().await
}

/// Reads until the broker closes the connection; returns what it sent.
/// Fails if it is still open after [`BOUND`].
async fn closed_by_broker(stream: &mut TcpStream) -> String {
    let mut said = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0_u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => said.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the connection was still open after {BOUND:?}; it had said {:?}",
        String::from_utf8_lossy(&said)
    );
    String::from_utf8_lossy(&said).into_owned()
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed() {
    let broker = quick_broker().await;
    let mut idle = TcpStream::connect(broker.addr()).await.unwrap();
    assert_eq!(closed_by_broker(&mut idle).await, "");
}

#[tokio::test]
async fn half_sent_headers_are_closed() {
    let broker = quick_broker().await;
    let mut half = TcpStream::connect(broker.addr()).await.unwrap();
    half.write_all(b"GET /v1/health HTTP/1.1\r\nHost: hoistd\r\n")
        .await
        .unwrap();
    closed_by_broker(&mut half).await;
}

/// Headers trickled a byte at a time, faster than any one timeout, are
/// closed all the same: on a new connection and on a kept-alive one.
#[tokio::test]
async fn trickled_headers_are_closed() {
    let broker = quick_broker().await;
    let head = b"GET /v1/health HTTP/1.1\r\nHost: hoistd\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let trickle = |mut stream: TcpStream| async move {
        for byte in head {
            if stream.write_all(&[*byte]).await.is_err() {
                return (stream, true);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (stream, false)
    };

    let fresh = TcpStream::connect(broker.addr()).await.unwrap();
    let (mut fresh, cut_short) = trickle(fresh).await;
    let said = closed_by_broker(&mut fresh).await;
    assert!(
        cut_short || !said.contains("200 OK"),
        "the trickled request was served: {said}"
    );

    let mut kept = TcpStream::connect(broker.addr()).await.unwrap();
    kept.write_all(b"GET /v1/health HTTP/1.1\r\nHost: hoistd\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0_u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let (mut kept, _) = trickle(kept).await;
    closed_by_broker(&mut kept).await;
}

/// A body trickled a byte at a time gets 408 in the broker's error body,
/// and the connection is closed; nothing is filed.
#[tokio::test]
async fn a_trickled_body_is_refused_and_closed() {
    let broker = quick_broker().await;
    let mut slow = TcpStream::connect(broker.addr()).await.unwrap();
    let body = serde_json::to_vec(&db_request()).unwrap();
    slow.write_all(
        format!(
            "POST /v1/requests HTTP/1.1\r\nHost: hoistd\r\nAuthorization: Bearer t-alice\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let writer = tokio::spawn(async move {
        for byte in body {
            if slow.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        slow
    });
    // The broker answers, then closes, while the body is still trickling.
    let mut slow = tokio::time::timeout(BOUND, writer).await.unwrap().unwrap();
    let said = closed_by_broker(&mut slow).await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains(r#""code":"request_timeout""#), "{said}");
    assert!(broker.as_user("alice").mine().await.is_empty());
}

/// A kept-alive connection with nothing in flight is closed after the idle
/// timeout; an event stream, a request in flight for as long as it lasts,
/// still delivers events well after it.
#[tokio::test]
async fn idle_connections_close_but_event_streams_stay() {
    let broker = quick_broker().await;
    let mut kept = TcpStream::connect(broker.addr()).await.unwrap();
    kept.write_all(b"GET /v1/health HTTP/1.1\r\nHost: hoistd\r\n\r\n")
        .await
        .unwrap();
    let said = closed_by_broker(&mut kept).await;
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");

    let mut events = TcpStream::connect(broker.addr()).await.unwrap();
    events
        .write_all(
            b"GET /v1/events HTTP/1.1\r\nHost: hoistd\r\nAuthorization: Bearer t-alice\r\n\
              Accept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0_u8; 4096];
    while !seen.contains("event: hello") {
        let n = tokio::time::timeout(BOUND, events.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(n, 0, "the stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Three idle timeouts pass with nothing to say on the stream.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let filed = broker
        .as_user("alice")
        .file(&request("logs", "reading the logs"))
        .await
        .unwrap();
    while !seen.contains(&filed.id) {
        let n = tokio::time::timeout(BOUND, events.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(n, 0, "the stream closed before the event: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its head.
async fn one_response(stream: &mut TcpStream) -> String {
    let mut said = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&said).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|n| n.trim().parse::<usize>().unwrap())
                })
                .expect("a Content-Length");
            if body.len() >= length {
                return head.to_string();
            }
        }
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("no answer in time")
            .unwrap();
        assert_ne!(n, 0, "closed mid-answer: {text}");
        said.extend_from_slice(&buf[..n]);
    }
}

/// A kept-alive HTTP/1.1 connection waits for its next request for the
/// idle timeout, not the (shorter) header timeout: a client reusing it
/// between the two is answered, not cut off.
#[tokio::test]
async fn a_kept_alive_connection_waits_the_idle_timeout_for_its_next_request() {
    let broker = TestBroker::builder()
        .limits(Limits {
            idle_timeout: Duration::from_secs(5),
            ..short_limits()
        })
        .start()
        .await;
    let mut kept = TcpStream::connect(broker.addr()).await.unwrap();
    let health = b"GET /v1/health HTTP/1.1\r\nHost: hoistd\r\n\r\n";
    kept.write_all(health).await.unwrap();
    let head = one_response(&mut kept).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Past the header timeout, well within the idle timeout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    kept.write_all(health).await.unwrap();
    let head = one_response(&mut kept).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Idle past the idle timeout, it is closed.
    assert_eq!(closed_by_broker(&mut kept).await, "");

    // A head that takes longer than the header timeout to arrive on a
    // kept-alive connection is closed, though well within the idle one.
    let mut kept = TcpStream::connect(broker.addr()).await.unwrap();
    kept.write_all(health).await.unwrap();
    let head = one_response(&mut kept).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (start, rest) = health.split_at(10);
    for byte in start {
        if kept.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = kept.write_all(rest).await;
    let said = closed_by_broker(&mut kept).await;
    assert!(!said.contains("200 OK"), "served after 3 s of head: {said}");
}

/// With the cap full of connections that sent half a request, a new
/// connection still gets served: it takes the slot of the oldest one.
#[tokio::test]
async fn half_sent_requests_cannot_hold_every_slot() {
    let broker = TestBroker::builder()
        .limits(Limits {
            max_connections: 64,
            ..Limits::default()
        })
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
        let _ = stream
            .write_all(b"GET /v1/health HTTP/1.1\r\nHost: hoistd\r\n")
            .await;
        held.push(stream);
    }
    let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    let health = http
        .get(format!("{}/v1/health", broker.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let me = http
        .get(format!("{}/v1/me", broker.url()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), reqwest::StatusCode::OK);
    // The oldest half-sent connections were closed to make room.
    let mut first = held.swap_remove(0);
    closed_by_broker(&mut first).await;
}

/// With the cap full of connections that each sent a request's head and
/// only part of its body (on a route that reads the body before it knows
/// the caller), a new connection still gets served: it takes the slot of
/// the oldest, which is closed at once rather than wait out the body
/// timeout.
#[tokio::test]
async fn half_sent_bodies_cannot_hold_every_slot() {
    let broker = TestBroker::builder()
        .limits(Limits {
            max_connections: 64,
            body_timeout: std::time::Duration::from_secs(600),
            ..Limits::default()
        })
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
        stream
            .write_all(
                b"POST /v1/token HTTP/1.1\r\nHost: hoistd\r\n\
                  Content-Type: application/x-www-form-urlencoded\r\n\
                  Content-Length: 60000\r\n\r\ngrant_type=",
            )
            .await
            .unwrap();
        held.push(stream);
    }
    // Every one of them is in flight, waiting for its body.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    let health = http
        .get(format!("{}/v1/health", broker.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let mut first = held.swap_remove(0);
    closed_by_broker(&mut first).await;
}

/// The real binary, started with a soft limit of 1,024 open files (a
/// common default), under 1,100 connections that each sent half a request
/// and wait: `/v1/health` and an authenticated call still answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_half_sent_requests_leaves_room_for_health_and_callers() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let flood = 1_100;
    // This process holds the flood's 1,100 client ends.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= 2_048,
        "this test needs a hard open-file limit of 2,048 or more (it is {hard})"
    );
    if soft < 2_048 {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_text("")).unwrap();
    let addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut hoistd = std::process::Command::new("bash")
        .args(["-c", r#"ulimit -Sn 1024 && exec "$@""#, "hoistd"])
        .arg(env!("CARGO_BIN_EXE_hoistd"))
        .args(["serve", "--listen", &addr.to_string(), "--db"])
        .arg(dir.path().join("hoistd.db"))
        .arg("--policy")
        .arg(&policy)
        .env("HOISTD_LOG", "hoistd=warn")
        .spawn()
        .unwrap();
    let _stop = KillOnDrop(&mut hoistd);
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    eventually(BOUND, || async {
        http.get(format!("{base}/v1/health")).send().await.is_ok()
    })
    .await;

    let mut held = Vec::with_capacity(flood);
    for _ in 0..flood {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Connecting can outpace a closed slot; a write to a closed one may fail.
        let _ = stream
            .write_all(b"GET /v1/health HTTP/1.1\r\nHost: hoistd\r\n")
            .await;
        held.push(stream);
    }

    // New connections, not one kept alive from the wait above.
    let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    let health = http.get(format!("{base}/v1/health")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let me = http
        .get(format!("{base}/v1/me"))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), reqwest::StatusCode::OK);
    let me: hoist_api::Me = me.json().await.unwrap();
    assert_eq!(me.user, "alice");
    drop(held);
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Opens `GET /v1/events` as `user` over a raw connection; returns the
/// connection once the stream's `hello` arrived.
async fn raw_stream(broker: &TestBroker, user: &str) -> TcpStream {
    let mut events = TcpStream::connect(broker.addr()).await.unwrap();
    events
        .write_all(
            format!(
                "GET /v1/events HTTP/1.1\r\nHost: hoistd\r\nAuthorization: Bearer t-{user}\r\n\
                 Accept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0_u8; 4096];
    while !seen.contains("event: hello") {
        let n = tokio::time::timeout(BOUND, events.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(n, 0, "the stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    events
}

/// Event streams are capped per identity and in total, each refusal with
/// 429, Retry-After and a message naming the cap; a closed stream gives
/// its place back.
#[tokio::test]
async fn event_streams_are_capped_per_identity_and_in_total() {
    use hoistd::http::serve::StreamLimits;
    let broker = TestBroker::builder()
        .streams(StreamLimits {
            total: 3,
            per_identity: 2,
        })
        .start()
        .await;
    let first = raw_stream(&broker, "alice").await;
    let _second = raw_stream(&broker, "alice").await;
    let third = broker
        .as_user("alice")
        .raw(reqwest::Method::GET, "/v1/events")
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "10");
    let error: hoist_api::ApiError = third.json().await.unwrap();
    assert_eq!(error.code, hoist_api::ErrorCode::RateLimited);
    assert!(
        error
            .message
            .contains("alice already has 2 event streams open"),
        "{}",
        error.message
    );

    let _bobs = raw_stream(&broker, "bob").await;
    let carols = broker
        .as_user("carol")
        .raw(reqwest::Method::GET, "/v1/events")
        .send()
        .await
        .unwrap();
    assert_eq!(carols.status(), 429);
    let error: hoist_api::ApiError = carols.json().await.unwrap();
    assert!(
        error.message.contains("already serves 3 event streams"),
        "{}",
        error.message
    );
    // Other calls are not held up by the cap.
    assert!(broker.as_user("carol").mine().await.is_empty());

    drop(first);
    let carol = broker.as_user("carol");
    eventually(BOUND, || async {
        carol
            .raw(reqwest::Method::GET, "/v1/events")
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
}

/// At stop, an event stream over HTTP/1.1 ends with the chunked body's
/// last chunk: the client reads a finished response, not a cut one.
#[tokio::test]
async fn a_stop_ends_event_streams_with_a_finished_response() {
    let mut broker = TestBroker::start().await;
    let mut events = raw_stream(&broker, "alice").await;
    tokio::time::timeout(BOUND, broker.stop()).await.unwrap();
    let rest = closed_by_broker(&mut events).await;
    assert!(rest.ends_with("0\r\n\r\n"), "{rest:?}");
}

/// A stop waits for the calls in flight (here one whose body never comes),
/// for up to 20 s; a second SIGTERM or Ctrl-C ends that wait at once, as
/// an operator who sends it means.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_ends_the_wait_for_calls_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy_text("")).unwrap();
    for signal in ["TERM", "INT"] {
        let mut hoistd = Served::start(dir.path(), |_| {});
        let mut stuck = TcpStream::connect(("127.0.0.1", hoistd.port))
            .await
            .unwrap();
        stuck
            .write_all(
                b"POST /v1/requests HTTP/1.1\r\nHost: hoistd\r\nAuthorization: Bearer t-alice\r\n\
                  Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"role\":",
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        hoistd.signal(signal);
        let stopping = hoistd.line();
        assert!(stopping.contains("stopping"), "{stopping}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            hoistd.child.try_wait().unwrap().is_none(),
            "{signal}: stopped without waiting for the call in flight"
        );
        hoistd.signal(signal);
        let exit = hoistd
            .exited_within(
                Duration::from_secs(10),
                &format!("{signal}: a second signal did not end the wait"),
            )
            .await;
        assert!(exit.success(), "{signal}: {exit}");
        drop(stuck);
    }
}

/// With `--drain-for`, a stop first fails `/readyz` while every call is
/// still served, so a load balancer takes the instance out of rotation
/// before its listener closes; a second signal stops it at once. Under the
/// default log filter, each probe's 503 is recorded by its access line
/// alone (no ERROR line for each), no line holds a query string (a
/// filter's value may be a person's), and a log written to a pipe holds
/// no colour escapes.
#[tokio::test(flavor = "multi_thread")]
async fn a_drain_fails_readiness_while_it_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy_text("")).unwrap();
    let mut hoistd = Served::start(dir.path(), |command| {
        command
            .args(["--drain-for", "60s"])
            .env_remove("HOISTD_LOG");
    });
    let http = reqwest::Client::new();
    let url = hoistd.url();
    let readyz = || http.get(format!("{url}/readyz")).send();
    assert_eq!(readyz().await.unwrap().status(), reqwest::StatusCode::OK);
    let audit = http
        .get(format!("{url}/v1/audit?subject=secret-subject"))
        .bearer_auth("t-erin")
        .send()
        .await
        .unwrap();
    assert_eq!(audit.status(), reqwest::StatusCode::OK);

    hoistd.signal("TERM");
    let mut lines = Vec::new();
    while !lines
        .last()
        .is_some_and(|l: &String| l.contains("draining"))
    {
        lines.push(hoistd.line());
    }
    for _ in 0..3 {
        let drained = readyz().await.unwrap();
        assert_eq!(drained.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = drained.json().await.unwrap();
        assert!(
            body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("draining")),
            "{body}"
        );
    }
    let me = http
        .get(format!("{url}/v1/me"))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.status(),
        reqwest::StatusCode::OK,
        "calls are still served"
    );
    assert!(hoistd.child.try_wait().unwrap().is_none());

    hoistd.signal("TERM");
    let exit = hoistd
        .exited_within(
            Duration::from_secs(10),
            "a second signal did not end the drain",
        )
        .await;
    assert!(exit.success(), "{exit}");
    lines.extend(std::iter::from_fn(|| hoistd.next_line()));
    assert!(lines.iter().any(|l| l.contains("/readyz")), "{lines:#?}");
    assert!(
        lines.iter().all(|l| !l.contains("ERROR")
            && !l.contains("secret-subject")
            && !l.contains('\u{1b}')),
        "{lines:#?}"
    );
}

/// Under a filter that turns the requests' spans and tower-http's events on,
/// the spans name the path and never the query (a filter's value may be a
/// person's).
#[tokio::test(flavor = "multi_thread")]
async fn request_spans_name_the_path_never_the_query() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy_text("")).unwrap();
    let mut hoistd = Served::start(dir.path(), |command| {
        command.env(
            "HOISTD_LOG",
            "hoistd=info,hoistd::http=debug,tower_http=debug",
        );
    });
    let audit = reqwest::Client::new()
        .get(format!("{}/v1/audit?subject=secret-subject", hoistd.url()))
        .bearer_auth("t-erin")
        .send()
        .await
        .unwrap();
    assert_eq!(audit.status(), reqwest::StatusCode::OK);
    hoistd.signal("TERM");
    let lines: Vec<String> = std::iter::from_fn(|| hoistd.next_line()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("request{") && l.contains("path=/v1/audit")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains("secret-subject")),
        "{lines:#?}"
    );
}

/// A stop asked for while a SIGHUP's policy reload waits on a target that
/// does not answer (here a listener that never speaks, which holds the
/// check for its connect timeout, 5 s) is acted on at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_does_not_wait_for_a_reload_checking_a_silent_target() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy_text("")).unwrap();
    let mut hoistd = Served::start(dir.path(), |_| {});
    hoistd.drain();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::fs::write(dir.path().join("db.password"), "not-a-secret-here").unwrap();
    let roles: String = (0..3)
        .map(|n| {
            format!(
                "\n[[roles]]\nid = \"silent{n}\"\nname = \"Silent {n}\"\n\
                 eligible_groups = [\"eng\"]\ndefault_duration = \"10m\"\n\
                 max_duration = \"1h\"\ntarget = \"silent\"\n\
                 [roles.access]\nmember_of = [\"app_admin\"]\n"
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("policy.toml"),
        format!(
            "{}\n[[targets]]\nname = \"silent\"\nkind = \"postgres\"\n\
             url = \"postgres://hoist_admin@127.0.0.1:{port}/app\"\n\
             password_file = \"{}\"\nsslmode = \"disable\"\n{roles}",
            policy_text(""),
            dir.path().join("db.password").display()
        ),
    )
    .unwrap();
    hoistd.signal("HUP");
    // The reload is waiting on the silent target by now.
    let (_held, _) = tokio::task::spawn_blocking(move || silent.accept())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    hoistd.signal("TERM");
    // Under one check of the silent target (its 5 s connect timeout).
    let exit = hoistd
        .exited_within(Duration::from_secs(3), "the stop waited for the reload")
        .await;
    assert!(exit.success(), "{exit}");
}

/// A SIGHUP (a certificate renewal's `systemctl reload`) while hoistd is
/// still starting, here held by a target that never answers its check,
/// does not end it: it starts serving, and stops cleanly when asked.
/// A second `serve` on a SQLite file one already serves is refused, naming
/// the file: nothing would fence two leaders on it. Once the first has
/// stopped, it starts.
#[tokio::test]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy_text("")).unwrap();
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let serve = |port: u16| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
            .arg(dir.path().join("hoistd.db"))
            .arg("--policy")
            .arg(dir.path().join("policy.toml"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first_port = port();
    let mut first = serve(first_port);
    let health = format!("http://127.0.0.1:{first_port}/v1/health");
    eventually(BOUND, || async { reqwest::get(&health).await.is_ok() }).await;

    let second = serve(port()).wait_with_output().unwrap();
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("another hoistd serves") && said.contains("hoistd.db"),
        "{said}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(first.wait().unwrap().success());
    let third_port = port();
    let mut third = serve(third_port);
    let health = format!("http://127.0.0.1:{third_port}/v1/health");
    eventually(BOUND, || async { reqwest::get(&health).await.is_ok() }).await;
    third.kill().unwrap();
    let _ = third.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hangup_while_starting_does_not_end_hoistd() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::fs::write(dir.path().join("db.password"), "not-a-secret-here").unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        format!(
            "{}\n[[targets]]\nname = \"silent\"\nkind = \"postgres\"\n\
             url = \"postgres://hoist_admin@127.0.0.1:{silent_port}/app\"\n\
             password_file = \"{}\"\nsslmode = \"disable\"\n\
             \n[[roles]]\nid = \"silent\"\nname = \"Silent\"\n\
             eligible_groups = [\"eng\"]\ndefault_duration = \"10m\"\n\
             max_duration = \"1h\"\ntarget = \"silent\"\n\
             [roles.access]\nmember_of = [\"app_admin\"]\n",
            policy_text(""),
            dir.path().join("db.password").display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("hoistd.db"))
        .arg("--policy")
        .arg(dir.path().join("policy.toml"))
        .env("HOISTD_LOG", "hoistd=info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::io::BufReader::new(child.stderr.take().unwrap());
    // Starting, it checks the target: the check is held here.
    let (_held, _) = tokio::task::spawn_blocking(move || silent.accept())
        .await
        .unwrap()
        .unwrap();
    let hang_up = |signal: &str| {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hang_up("HUP");
    let (serving, log) = tokio::task::spawn_blocking(move || {
        let mut lines = log.lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let serving = line.contains("hoistd serving");
            seen.push(line);
            if serving {
                return (seen, lines);
            }
        }
        (seen, lines)
    })
    .await
    .unwrap();
    assert!(
        serving.last().is_some_and(|l| l.contains("hoistd serving")),
        "ended before serving: {serving:?}"
    );
    std::thread::spawn(move || for _ in log {});
    let health = reqwest::get(format!("http://127.0.0.1:{port}/v1/health"))
        .await
        .unwrap();
    assert!(health.status().is_success());
    hang_up("TERM");
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit}");
}

/// An accepted connection has TCP keepalives on, so a peer that vanished
/// without a reset (an event stream's laptop asleep) is noticed within
/// minutes and its slot freed. The kernel's own table says so: the idle
/// connection's timer is the keepalive timer (`tr` 2 in /proc/net/tcp).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn accepted_connections_keep_watch_on_their_peer() {
    let broker = TestBroker::start().await;
    let client = tokio::net::TcpStream::connect(broker.addr()).await.unwrap();
    let (local, remote) = (client.local_addr().unwrap(), broker.addr());
    let entry = |port: u16| format!("0100007F:{port:04X}");
    let mut timer = None;
    for _ in 0..50 {
        let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
        // The server's end: its local address the broker's, its remote ours.
        timer = table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&entry(remote.port()).as_str())
                && fields.get(2) == Some(&entry(local.port()).as_str()))
            .then(|| fields[5].split(':').next().unwrap().to_string())
        });
        // (Set as the connection is accepted: look again until then.)
        if timer.as_deref() == Some("02") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(timer.as_deref(), Some("02"), "the keepalive timer runs");
    drop(client);
}
