//! HTTPS with a private CA: HTTP/2 and HTTP/1.1 chosen by ALPN, stalled
//! handshakes closed like stalled requests, and the real binary reading a
//! renewed certificate on SIGHUP while its open connections carry on.

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use hoistd::http::serve::Limits;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::helpers::*;

/// Far longer than any timeout these tests set.
const BOUND: Duration = Duration::from_secs(30);

/// The certificate the server presented on this response's connection.
fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("a TLS connection")
        .to_vec()
}

#[tokio::test]
async fn https_speaks_h2_and_http1_by_alpn_with_the_same_api() {
    let mut broker = TestBroker::builder().tls().start().await;
    assert!(broker.url().starts_with("https://localhost:"));
    let alice = broker.as_user("alice");
    let filed = alice.file(&db_request()).await.unwrap();

    let h2 = broker
        .http()
        .get(format!("{}/v1/requests/{}", broker.url(), filed.id))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(h2.status(), 200);
    assert_eq!(peer_certificate(&h2), broker.ca().cert_der().unwrap());

    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(broker.ca().ca_file()).unwrap()).unwrap();
    let http1 = reqwest::Client::builder()
        .tls_certs_only([ca])
        .http1_only()
        .build()
        .unwrap();
    let answer = http1
        .get(format!("{}/v1/requests/{}", broker.url(), filed.id))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_11);
    assert_eq!(answer.status(), 200);

    // Errors keep the broker's body over HTTP/2 too.
    let missing = broker
        .http()
        .get(format!("{}/v1/requests/nope", broker.url()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let error: hoist_api::ApiError = missing.json().await.unwrap();
    assert_eq!(error.code, hoist_api::ErrorCode::NotFound);

    // A client that does not trust the CA is refused at the handshake.
    let untrusting = reqwest::Client::new()
        .get(format!("{}/v1/health", broker.url()))
        .send()
        .await;
    assert!(untrusting.is_err());
}

/// An event stream over HTTP/2 delivers, and ends cleanly (END_STREAM, not
/// a reset) when the broker stops.
#[tokio::test]
async fn an_event_stream_over_h2_delivers_and_ends_at_stop() {
    let mut broker = TestBroker::builder().tls().start().await;
    let response = broker
        .http()
        .get(format!("{}/v1/events", broker.url()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: hello") {
        let chunk = tokio::time::timeout(BOUND, stream.next()).await.unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    let filed = broker
        .as_user("alice")
        .file(&request("logs", "over h2"))
        .await
        .unwrap();
    while !seen.contains(&filed.id) {
        let chunk = tokio::time::timeout(BOUND, stream.next()).await.unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    let stopping = tokio::spawn(async move {
        broker.stop().await;
        broker
    });
    loop {
        match tokio::time::timeout(BOUND, stream.next()).await.unwrap() {
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("the stream was cut, not ended: {err}"),
            None => break,
        }
    }
    tokio::time::timeout(BOUND, stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_connection_that_never_starts_its_handshake_is_closed() {
    let broker = TestBroker::builder()
        .tls()
        .limits(Limits {
            header_timeout: Duration::from_secs(1),
            ..Limits::default()
        })
        .start()
        .await;
    let mut silent = TcpStream::connect(broker.addr()).await.unwrap();
    let mut buf = [0_u8; 64];
    let read = tokio::time::timeout(BOUND, silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was not closed: {read:?}"
    );
}

/// A broker over TLS with every timeout 1 s and at most `max_connections`,
/// and the CA its certificate chains to.
async fn quick_tls_broker(max_connections: usize) -> (TestBroker, reqwest::Certificate) {
    let mut broker = TestBroker::builder()
        .tls()
        .limits(Limits {
            max_connections,
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        })
        .start()
        .await;
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(broker.ca().ca_file()).unwrap()).unwrap();
    (broker, ca)
}

/// `count` HTTP/2 clients that open no flow-control window, each holding
/// the head of an answer to `path` whose body it will never take.
async fn clients_taking_nothing(
    broker: &TestBroker,
    ca: &reqwest::Certificate,
    path: &str,
    count: usize,
) -> Vec<(reqwest::Client, reqwest::Response)> {
    let mut stalled = Vec::new();
    for _ in 0..count {
        let closed = reqwest::Client::builder()
            .tls_certs_only([ca.clone()])
            .http2_prior_knowledge()
            .http2_initial_stream_window_size(0)
            .build()
            .unwrap();
        let head = closed
            .get(format!("{}{path}", broker.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(head.version(), reqwest::Version::HTTP_2);
        stalled.push((closed, head));
    }
    stalled
}

/// Asks for `/v1/health` until a new connection is let in, for at most
/// [`BOUND`].
async fn served_once_there_is_room(broker: &TestBroker, ca: reqwest::Certificate) {
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        match http.get(format!("{}/v1/health", broker.url())).send().await {
            Ok(health) => {
                assert_eq!(health.status(), 200);
                return;
            }
            Err(err) => assert!(
                started.elapsed() < BOUND,
                "still no room after {BOUND:?}: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// HTTP/2 clients that open no flow-control window take no byte of any
/// body, so their responses stay in flight; with the cap full of them, a
/// newcomer is still served once they are closed, past the idle timeout.
#[tokio::test]
async fn clients_that_take_no_response_cannot_hold_every_slot() {
    let (broker, ca) = quick_tls_broker(4).await;
    let stalled = clients_taking_nothing(&broker, &ca, "/v1/health", 4).await;
    served_once_there_is_room(&broker, ca).await;
    for (_, head) in stalled {
        assert!(head.bytes().await.is_err(), "a stalled response was sent");
    }
}

/// With the cap full of HTTP/2 clients that take no answer (which needs
/// no token), a newcomer is served once their answers have gone untaken
/// for a few seconds, long before the idle timeout (120 s here) would
/// close them: the broker's own health check and break-glass are not
/// locked out for minutes at a time.
#[tokio::test]
async fn a_newcomer_takes_the_slot_of_a_client_that_takes_no_answer() {
    let mut broker = TestBroker::builder()
        .tls()
        .limits(Limits {
            max_connections: 4,
            idle_timeout: Duration::from_secs(120),
            ..Limits::default()
        })
        .start()
        .await;
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(broker.ca().ca_file()).unwrap()).unwrap();
    let mut stalled = clients_taking_nothing(&broker, &ca, "/openapi.json", 4).await;
    served_once_there_is_room(&broker, ca).await;
    let (_, head) = stalled.remove(0);
    let taken = tokio::time::timeout(BOUND, head.bytes()).await;
    assert!(
        matches!(taken, Ok(Err(_))),
        "the oldest was not closed: {taken:?}"
    );
}

/// A request body that sends its first bytes, then nothing more.
struct Stalled(Option<hyper::body::Bytes>);

impl hyper::body::Body for Stalled {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.0.take() {
            Some(first) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(first)))),
            None => std::task::Poll::Pending,
        }
    }
}

/// A body that stops arriving over HTTP/2 gets 408, and its connection is
/// closed, as over HTTP/1.1: not only its stream, with the connection left
/// open until the idle timeout (120 s here).
#[tokio::test]
async fn a_stalled_body_over_h2_is_refused_and_its_connection_closed() {
    let mut broker = TestBroker::builder()
        .tls()
        .limits(Limits {
            body_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(120),
            ..Limits::default()
        })
        .start()
        .await;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(broker.ca().ca_file()).unwrap();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(broker.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);

    let request = hyper::Request::post(format!("{}/v1/requests", broker.url()))
        .header("authorization", "Bearer t-alice")
        .header("content-type", "application/json")
        .header("content-length", "4096")
        .body(Stalled(Some(hyper::body::Bytes::from_static(b"{\"role\""))))
        .unwrap();
    let answer = tokio::time::timeout(BOUND, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 408);

    let ended = tokio::time::timeout(BOUND, connection).await;
    assert!(
        ended.is_ok(),
        "the connection was still open {BOUND:?} after a body timed out"
    );
}

/// An event stream over HTTP/2 whose client opens no flow-control window
/// is never read from after its first event: its connection is closed
/// once the stream has gone unread for 30 s (twice its keep-alive), so it
/// cannot hold its slot past its token's end or a stop.
#[tokio::test]
async fn an_event_stream_nobody_reads_is_closed() {
    let (broker, ca) = quick_tls_broker(64).await;
    let closed = reqwest::Client::builder()
        .tls_certs_only([ca])
        .http2_prior_knowledge()
        .http2_initial_stream_window_size(0)
        .build()
        .unwrap();
    let mut stream = closed
        .get(format!("{}/v1/events", broker.url()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.version(), reqwest::Version::HTTP_2);
    let ended = tokio::time::timeout(Duration::from_secs(45), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the unread stream was never closed");
}

/// The real binary: SIGHUP serves a renewed certificate to new connections,
/// an event stream opened before carries on, and a broken file leaves the
/// certificate in use.
#[tokio::test]
async fn sighup_serves_a_renewed_certificate_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(&dir.path().join("tls")).unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy_text("")).unwrap();
    let mut hoistd = Served::start(dir.path(), |command| {
        command
            .arg("--tls-cert")
            .arg(ca.cert())
            .arg("--tls-key")
            .arg(ca.key());
    });
    assert!(hoistd.serving.contains("https"), "{}", hoistd.serving);
    let url = format!("https://localhost:{}", hoistd.port);
    let first = ca.cert_der().unwrap();

    let streaming = ca.client().unwrap();
    let events = streaming
        .get(format!("{url}/v1/events"))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(peer_certificate(&events), first);
    let mut events = events.bytes_stream();
    assert!(events.next().await.is_some(), "hello");

    ca.issue().unwrap();
    let renewed = ca.cert_der().unwrap();
    assert_ne!(first, renewed);
    hoistd.signal("HUP");
    // The certificate first: checking the policy's targets may wait.
    let line = hoistd.line();
    assert!(line.contains("TLS certificate reloaded"), "{line}");
    let line = hoistd.line();
    assert!(line.contains("policy reloaded"), "{line}");

    let fresh = ca.client().unwrap();
    let health = fresh.get(format!("{url}/v1/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(peer_certificate(&health), renewed);

    // The stream opened before the reload still delivers.
    let alice = Client {
        base: url.clone(),
        token: "t-alice".into(),
        http: fresh.clone(),
    };
    let filed = alice
        .file(&request("logs", "after the renewal"))
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains(&filed.id) {
        let chunk = tokio::time::timeout(BOUND, events.next()).await.unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }

    // A half-written renewal is refused, whether its first certificate is
    // cut short or only a later one is; the renewed certificate stays.
    let whole = std::fs::read_to_string(ca.cert()).unwrap();
    for (written, refusal) in [
        (
            "-----BEGIN CERTIFICATE-----\ntruncated".to_string(),
            "has no -----END line",
        ),
        (
            format!("{whole}-----BEGIN CERTIFICATE-----\nMIIB"),
            "cannot be read, so the chain would be incomplete: a block has no -----END line",
        ),
    ] {
        std::fs::write(ca.cert(), written).unwrap();
        hoistd.signal("HUP");
        let line = hoistd.line();
        assert!(line.contains("TLS certificate not reloaded"), "{line}");
        assert!(line.contains(refusal), "{line}");
        let line = hoistd.line();
        assert!(line.contains("policy reloaded"), "{line}");
    }
    let health = ca
        .client()
        .unwrap()
        .get(format!("{url}/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(peer_certificate(&health), renewed);

    hoistd.signal("TERM");
    // Off the runtime: the client's connections run on it, and the broker
    // waits for them to take in its goodbye (HTTP/2 GOAWAY) at stop.
    let exit = tokio::task::spawn_blocking(move || hoistd.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");
}

#[test]
fn serve_refuses_a_key_anyone_can_read_and_a_key_not_of_the_certificate() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(&dir.path().join("tls")).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_text("")).unwrap();
    let serve = |cert: &std::path::Path, key: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_hoistd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("hoistd.db"))
            .arg("--policy")
            .arg(&policy)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap()
    };
    std::fs::set_permissions(ca.key(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve(&ca.cert(), &ca.key());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("can be read by anyone (mode 644)"),
        "{stderr}"
    );

    let old_cert = dir.path().join("old.pem");
    std::fs::copy(ca.cert(), &old_cert).unwrap();
    ca.issue().unwrap();
    let out = serve(&old_cert, &ca.key());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot be used together"), "{stderr}");
    assert!(!dir.path().join("hoistd.db").exists(), "nothing written");
}
