//! Bad input gets a 4xx naming the problem, and nothing is half-written.

use hoist_api::{ApiError, CreateRequest, ErrorCode, SERVER_TIME_HEADER};
use reqwest::{Method, StatusCode};

use crate::helpers::*;

/// Each refused request leaves no request and no audit event behind.
async fn nothing_written(broker: &TestBroker) {
    assert!(broker.as_user("alice").mine().await.is_empty());
    assert!(broker.as_user("erin").audit().await.is_empty());
}

#[tokio::test]
async fn each_rule_of_a_role_is_checked_and_named() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let cases: Vec<(CreateRequest, StatusCode, ErrorCode, &str)> = vec![
        (
            request("nope", "some long reason"),
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::UnknownRole,
            "nope",
        ),
        (
            CreateRequest {
                duration_secs: Some(7200),
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::DurationTooLong,
            "maximum of 1h",
        ),
        (
            CreateRequest {
                duration_secs: Some(0),
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidDuration,
            "longer than zero",
        ),
        (
            CreateRequest {
                ticket: None,
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TicketRequired,
            "ticket",
        ),
        (
            CreateRequest {
                ticket: Some("JIRA-1".into()),
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TicketInvalid,
            "JIRA-1",
        ),
        (
            CreateRequest {
                ticket: Some("INC-1 2".into()),
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidReference,
            "spaces",
        ),
        (
            CreateRequest {
                justification: "too short".into(),
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::JustificationTooShort,
            "at least 10",
        ),
        (
            CreateRequest {
                justification: "x".repeat(5000),
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::JustificationTooLong,
            "4096",
        ),
        (
            CreateRequest {
                justification: "clear \x1b[2J the screen".into(),
                ..db_request()
            },
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            "U+001B",
        ),
        (
            CreateRequest {
                starts_at: Some(chrono::Utc::now() - chrono::TimeDelta::hours(1)),
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidStart,
            "past",
        ),
    ];
    for (body, status, code, needle) in cases {
        let message = refused(alice.file(&body).await, status, code);
        assert!(
            message.contains(needle),
            "{code:?}: {message:?} should mention {needle:?}"
        );
    }
    let frank = broker.as_user("frank");
    let message = refused(
        frank.file(&request("secret", "let me in")).await,
        StatusCode::FORBIDDEN,
        ErrorCode::NotEligible,
    );
    assert!(message.contains("secret"), "{message}");
    nothing_written(&broker).await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let send = |body: String| {
        alice.call::<hoist_api::AccessRequest>(
            alice
                .raw(Method::POST, "/v1/requests")
                .header("content-type", "application/json")
                .body(body),
        )
    };
    let message = refused(
        send("{not json".into()).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidBody,
    );
    assert!(!message.is_empty());
    let message = refused(
        send(r#"{"role":"db","justification":"long enough text","breakglass":true}"#.into()).await,
        StatusCode::UNPROCESSABLE_ENTITY.min(StatusCode::BAD_REQUEST),
        ErrorCode::InvalidBody,
    );
    assert!(message.contains("breakglass"), "{message}");
    let message = refused(
        send(format!(
            r#"{{"role":"db","justification":"{}"}}"#,
            "x".repeat(100_000)
        ))
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
    );
    assert!(message.contains("65536"), "{message}");
    refused(
        alice
            .call::<Vec<hoist_api::AccessRequest>>(
                alice.raw(Method::GET, "/v1/requests?state=bogus"),
            )
            .await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidParameter,
    );
    // Forms too, introspection's and the workload exchange's: 413, as the
    // contract says, not a 400 about the form.
    for path in ["/v1/introspect", "/v1/token"] {
        let answer = alice
            .raw(Method::POST, path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}", "x".repeat(100_000)))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let body: ApiError = answer.json().await.unwrap();
        assert_eq!(body.code, ErrorCode::PayloadTooLarge, "{path}");
    }
    nothing_written(&broker).await;
}

#[tokio::test]
async fn missing_or_wrong_tokens_are_refused() {
    let broker = TestBroker::start().await;
    let http = reqwest::Client::new();
    let anonymous = http
        .get(format!("{}/v1/me", broker.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let body: ApiError = anonymous.json().await.unwrap();
    assert_eq!(body.code, ErrorCode::Unauthenticated);
    assert!(body.message.contains("missing bearer token"));

    let wrong = broker.as_user("mallory");
    refused(
        wrong.get::<hoist_api::Me>("/v1/me").await,
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
    );
    let basic = http
        .get(format!("{}/v1/me", broker.url()))
        .basic_auth("alice", Some("t-alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    let me: hoist_api::Me = broker.as_user("bob").get("/v1/me").await.unwrap();
    assert_eq!(me.user, "bob");
    assert!(me.groups.contains(&"approvers".to_string()));
    assert_eq!(me.approver_for, ["db", "k8s"]);
}

#[tokio::test]
async fn roles_list_only_what_the_caller_is_eligible_for() {
    let broker = TestBroker::start().await;
    let ids = |roles: Vec<hoist_api::Role>| roles.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let alice: Vec<hoist_api::Role> = broker.as_user("alice").get("/v1/roles").await.unwrap();
    let db = alice.iter().find(|r| r.id == "db").unwrap();
    assert_eq!(db.max_duration_secs, 3600);
    assert_eq!(db.approval.approvals, 1);
    assert!(db.ticket.required);
    assert_eq!(db.ticket.pattern.as_deref(), Some("^(?:INC-[0-9]+)$"));
    assert!(!db.break_glass, "alice is not on call");
    assert_eq!(ids(alice), ["db", "k8s", "logs", "secret"]);
    let carol: Vec<hoist_api::Role> = broker.as_user("carol").get("/v1/roles").await.unwrap();
    assert!(carol.iter().find(|r| r.id == "db").unwrap().break_glass);
    assert_eq!(
        ids(broker.as_user("erin").get("/v1/roles").await.unwrap()),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn impossible_state_changes_and_unknown_ids_are_refused() {
    let broker = TestBroker::start().await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));
    refused(
        bob.approve("req_nothing").await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    refused(
        alice.revoke("gr_nothing", "x").await,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
    );
    let unknown = alice.raw(Method::GET, "/v2/anything").send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json::<ApiError>().await.unwrap().code,
        ErrorCode::NotFound
    );

    let filed = alice.file(&request("logs", "reading")).await.unwrap();
    let message = refused(
        alice.cancel(&filed.id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(message.contains("active"), "{message}");
}

#[tokio::test]
async fn every_response_carries_the_brokers_clock() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    for path in ["/v1/health", "/v1/me", "/v1/requests/nothing", "/nowhere"] {
        let response = alice.raw(Method::GET, path).send().await.unwrap();
        assert!(
            response.headers().contains_key("date"),
            "{path}: no Date header"
        );
        let stamp = response.headers()[SERVER_TIME_HEADER].to_str().unwrap();
        let at: chrono::DateTime<chrono::Utc> = stamp.parse().unwrap();
        assert!(
            (chrono::Utc::now() - at).num_seconds().abs() < 5,
            "{path}: {stamp}"
        );
    }
}

/// Sends `head` as it is, then reads the whole answer (each request asks
/// for the connection to close, and hyper closes it after a parse error).
async fn exchange(broker: &TestBroker, head: &[u8]) -> (u16, String, ApiError) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(broker.addr()).await.unwrap();
    // The broker may answer and close before it has read all of a long head.
    let _ = stream.write_all(head).await;
    let mut said = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut said),
    )
    .await
    .expect("the broker neither answered nor closed");
    let said = String::from_utf8_lossy(&said).into_owned();
    let (head, body) = said
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {said:?}"));
    let status = head[9..12].parse().unwrap();
    let error = serde_json::from_str(body)
        .unwrap_or_else(|err| panic!("not the error body ({err}): {said:?}"));
    (status, head.to_ascii_lowercase(), error)
}

/// Every error is `{code, message}`, including those the HTTP framework and
/// parser produce by themselves, with the status that names the problem.
#[tokio::test]
async fn errors_from_below_the_handlers_have_the_error_body() {
    let broker = TestBroker::start().await;

    // A method the path does not take: 405, with the methods it does.
    let (status, head, error) = exchange(
        &broker,
        b"DELETE /v1/health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        (status, error.code),
        (405, ErrorCode::MethodNotAllowed),
        "{head}"
    );
    assert!(head.contains("allow: get"), "{head}");
    assert!(error.message.contains("DELETE"), "{}", error.message);
    assert!(head.contains(SERVER_TIME_HEADER), "{head}");

    // A long URI, refused by the broker, and a very long one, by the parser.
    for length in [10_000, 100_000] {
        let head = format!(
            "GET /v1/requests/{} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "a".repeat(length)
        );
        let (status, _, error) = exchange(&broker, head.as_bytes()).await;
        assert_eq!(
            (status, error.code),
            (414, ErrorCode::UriTooLong),
            "{length}"
        );
    }

    // Headers larger than the broker reads.
    let head = format!(
        "GET /v1/health HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(200_000)
    );
    let (status, _, error) = exchange(&broker, head.as_bytes()).await;
    assert_eq!((status, error.code), (431, ErrorCode::HeadersTooLarge));

    // A path that is not UTF-8: percent-encoded, and as raw bytes.
    let (status, _, error) = exchange(
        &broker,
        b"GET /v1/requests/%FF%FE HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t-alice\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, error.code), (400, ErrorCode::InvalidParameter));
    let (status, _, error) = exchange(
        &broker,
        b"GET /v1/requests/\xff\xfe HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, error.code), (400, ErrorCode::BadRequest));

    // A control character, percent-encoded, in a path or a query: refused
    // as such before any store sees it (PostgreSQL refuses a NUL in text).
    for (target, status_code, code) in [
        ("/v1/grants/%00", 404, ErrorCode::NotFound),
        ("/v1/grants/gr_1%0a/credential", 404, ErrorCode::NotFound),
        ("/v1/audit?request_id=%7F", 400, ErrorCode::InvalidParameter),
    ] {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t-alice\r\n\
             Connection: close\r\n\r\n"
        );
        let (status, _, error) = exchange(&broker, head.as_bytes()).await;
        assert_eq!(
            (status, error.code),
            (status_code, code),
            "{target}: {error:?}"
        );
        assert!(
            error.message.contains("encoded control character"),
            "{error:?}"
        );
    }

    // Not HTTP at all.
    let (status, _, error) = exchange(&broker, b"HELLO\r\n\r\n").await;
    assert_eq!((status, error.code), (400, ErrorCode::BadRequest));
    assert!(!error.message.is_empty());

    // The broker still serves on a fresh connection.
    let me: hoist_api::Me = broker.as_user("alice").get("/v1/me").await.unwrap();
    assert_eq!(me.user, "alice");
}
