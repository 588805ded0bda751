//! Text people read to decide on access holds no invisible characters: bidi
//! controls, zero-width characters and line separators are refused, by name,
//! wherever text goes in, and minimum lengths count what a reader sees.

use hoist_api::{CreateRequest, Decision, ErrorCode, RequestState};
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn invisible_characters_are_refused_by_name_in_every_field() {
    let broker = TestBroker::start().await;
    let alice = broker.as_user("alice");
    let cases: Vec<(CreateRequest, StatusCode, ErrorCode, &str)> = vec![
        (
            // Ten of them once met a ten-character minimum.
            CreateRequest {
                justification: "\u{200B}".repeat(10),
                ..db_request()
            },
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            "justification holds U+200B ZERO WIDTH SPACE",
        ),
        (
            CreateRequest {
                justification: "approve this \u{202E}nwod gnirettahs".into(),
                ..db_request()
            },
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            "justification holds U+202E RIGHT-TO-LEFT OVERRIDE",
        ),
        (
            CreateRequest {
                justification: "first line\u{2028}second line".into(),
                ..db_request()
            },
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            "U+2028 LINE SEPARATOR",
        ),
        (
            CreateRequest {
                ticket: Some("INC-42\u{2066}".into()),
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidReference,
            "ticket reference holds U+2066 LEFT-TO-RIGHT ISOLATE",
        ),
        (
            CreateRequest {
                incident: Some("INC\u{200D}-9".into()),
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidReference,
            "incident reference holds U+200D ZERO WIDTH JOINER",
        ),
        // A selector after a letter, or a run after an emoji, shows as
        // nothing: `INC-42` and this look the same.
        (
            CreateRequest {
                ticket: Some("INC-\u{FE0F}42".into()),
                ..db_request()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidReference,
            "ticket reference holds U+FE0F VARIATION SELECTOR WITH NOTHING TO SELECT",
        ),
        (
            CreateRequest {
                justification: "restart ❤\u{FE0F}\u{FE0F}\u{FE0F} the primary".into(),
                ..db_request()
            },
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            "U+FE0F VARIATION SELECTOR WITH NOTHING TO SELECT",
        ),
    ];
    for (body, status, code, needle) in cases {
        let message = refused(alice.file(&body).await, status, code);
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        refused(alice.preview(&body).await, status, code);
    }
    assert!(alice.mine().await.is_empty(), "nothing was filed");

    // Visible text around a variation selector still counts what shows.
    let short = CreateRequest {
        justification: "db ❤\u{FE0F}".into(),
        ..db_request()
    };
    let message = refused(
        alice.file(&short).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::JustificationTooShort,
    );
    assert!(message.contains("is 4 characters"), "{message}");

    // Comments, reasons and extension justifications follow the same rule.
    let filed = alice.file(&db_request()).await.unwrap();
    let bob = broker.as_user("bob");
    let message = refused(
        bob.review(&filed.id, Decision::Deny, Some("no\u{2029}way"))
            .await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidBody,
    );
    assert!(
        message.contains("comment holds U+2029 PARAGRAPH SEPARATOR"),
        "{message}"
    );
    let message = refused(
        alice
            .post::<_, hoist_api::AccessRequest>(
                &format!("/v1/requests/{}/cancel", filed.id),
                &serde_json::json!({ "reason": "oops\u{FEFF}" }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidBody,
    );
    assert!(message.contains("U+FEFF"), "{message}");
    assert_eq!(
        alice.request(&filed.id).await.unwrap().state,
        RequestState::Pending
    );

    let logs = alice.file(&request("logs", "reading")).await.unwrap();
    let grant = logs.grant_id.unwrap();
    let message = refused(
        alice
            .post::<_, hoist_api::AccessRequest>(
                &format!("/v1/grants/{grant}/extend"),
                &serde_json::json!({ "duration_secs": 60, "justification": "more\u{200B}" }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidBody,
    );
    assert!(message.contains("U+200B"), "{message}");
    let message = refused(
        alice.revoke(&grant, "done\u{202A}").await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidBody,
    );
    assert!(
        message.contains("U+202A LEFT-TO-RIGHT EMBEDDING"),
        "{message}"
    );
}
