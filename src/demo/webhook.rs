//! The demo's webhook receiver, for machines without PostgreSQL's server:
//! an in-process endpoint on a loopback port that checks each call's
//! signature and timestamp as the README's contract asks of a receiver,
//! keeps which grants hold access, and hands the holder a command to try.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinHandle;

/// A call older or newer than this is refused: a captured call cannot be replayed.
const CLOCK_SKEW_SECS: i64 = 300;

#[derive(Debug, Deserialize)]
struct Call {
    action: String,
    grant: CallGrant,
}

#[derive(Debug, Deserialize)]
struct CallGrant {
    id: String,
    role: String,
    holder: String,
}

#[derive(Clone)]
struct Receiver {
    secret: Arc<Vec<u8>>,
    /// Grants that hold access here.
    present: Arc<Mutex<BTreeSet<String>>>,
}

/// A running receiver; stops when dropped.
pub struct WebhookReceiver {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookReceiver {
    pub async fn start(secret: Vec<u8>) -> anyhow::Result<WebhookReceiver> {
        let receiver = Receiver {
            secret: Arc::new(secret),
            present: Arc::default(),
        };
        let app = Router::new()
            .route("/hoist", axum::routing::post(receive))
            .with_state(receiver);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(WebhookReceiver { port, task })
    }
}

/// Equal in constant time, so timing tells an attacker nothing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(status: StatusCode, message: &str) -> axum::response::Response {
    (status, Json(json!({ "message": message }))).into_response()
}

async fn receive(
    axum::extract::State(receiver): axum::extract::State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) =
        (header("x-hoist-timestamp"), header("x-hoist-signature"))
    else {
        return refuse(StatusCode::UNAUTHORIZED, "unsigned call");
    };
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= CLOCK_SKEW_SECS);
    if !fresh {
        return refuse(StatusCode::UNAUTHORIZED, "timestamp too far off");
    }
    let expected = format!(
        "v1={}",
        hoistd::target::webhook::sign(&receiver.secret, timestamp, &body)
    );
    if !same(expected.as_bytes(), signature.as_bytes()) {
        return refuse(StatusCode::UNAUTHORIZED, "bad signature");
    }
    let Ok(call) = serde_json::from_slice::<Call>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "not a hoist call");
    };
    let Ok(mut present) = receiver.present.lock() else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "receiver state lost");
    };
    match call.action.as_str() {
        "provision" => {
            present.insert(call.grant.id);
            Json(json!({ "status": "ok" })).into_response()
        }
        "deprovision" => {
            present.remove(&call.grant.id);
            Json(json!({ "status": "ok" })).into_response()
        }
        "inspect" => {
            let here = present.contains(&call.grant.id);
            // What a real receiver would hand over: how to use the access.
            let message = format!(
                "{} holds {} at the demo receiver (grant {})",
                call.grant.holder, call.grant.role, call.grant.id
            );
            Json(json!({
                "present": here,
                "credential": {
                    "env": { "DEMO_GRANT": call.grant.id },
                    "command": format!("echo '{}'", message.replace('\'', "")),
                }
            }))
            .into_response()
        }
        _ => refuse(StatusCode::BAD_REQUEST, "unknown action"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn call(port: u16, secret: &[u8], timestamp: i64, body: &str) -> reqwest::StatusCode {
        let timestamp = timestamp.to_string();
        let signature = format!(
            "v1={}",
            hoistd::target::webhook::sign(secret, &timestamp, body.as_bytes())
        );
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/hoist"))
            .header("x-hoist-timestamp", timestamp)
            .header("x-hoist-signature", signature)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn only_signed_fresh_calls_are_taken() {
        let receiver = WebhookReceiver::start(b"right".to_vec()).await.unwrap();
        let body = r#"{"action":"provision","grant":{"id":"gr_1","role":"r","holder":"alice"}}"#;
        let now = chrono::Utc::now().timestamp();
        assert_eq!(
            call(receiver.port, b"right", now, body).await,
            StatusCode::OK
        );
        assert_eq!(
            call(receiver.port, b"wrong", now, body).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(receiver.port, b"right", now - 3600, body).await,
            StatusCode::UNAUTHORIZED,
            "a replayed call"
        );
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
