//! Notifications: real receivers on loopback that check every post's
//! signature, for each event, each format and each channel's routing; a
//! receiver that fails first; a broker stopped with a notification unsent;
//! the Slack blocks checked by Slack's own SDK; and the policy's refusals.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::TimeZone;
use hoist_api::{AuditKind, CreateRequest, Decision};
use hoistd::notify::format::{SLACK_APPROVE, SLACK_DENY, render};
use hoistd::notify::{Event, Format, Notice, Notifier};
use hoistd::target::webhook::{self, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

use crate::helpers::*;

const LONG: Duration = Duration::from_secs(30);
const SECRET: &str = "notify-secret-0123456789";

/// One post the receiver took: its path, delivery id and body.
#[derive(Debug, Clone)]
struct Receipt {
    channel: String,
    delivery: String,
    body: serde_json::Value,
}

/// A receiver on loopback: checks each post's signature and freshness,
/// answers with the status its channel is set to (200 unless told), and
/// keeps what it accepted and every delivery id it saw.
#[derive(Clone, Default)]
struct Receiver {
    accepted: Arc<Mutex<Vec<Receipt>>>,
    /// Every post's delivery id, accepted or not, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// Statuses to answer with, per channel, before answering 200.
    failures: Arc<Mutex<BTreeMap<String, Vec<u16>>>>,
    /// Posts whose signature did not hold.
    forged: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route("/{channel}", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, base)
    }

    fn fail(&self, channel: &str, statuses: &[u16]) {
        self.failures
            .lock()
            .unwrap()
            .insert(channel.into(), statuses.to_vec());
    }

    fn accepted(&self) -> Vec<Receipt> {
        self.accepted.lock().unwrap().clone()
    }

    fn on(&self, channel: &str) -> Vec<serde_json::Value> {
        self.accepted()
            .into_iter()
            .filter(|r| r.channel == channel)
            .map(|r| r.body)
            .collect()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    UrlPath(channel): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let timestamp = header(TIMESTAMP_HEADER);
    let expected = format!("v1={}", webhook::sign(SECRET.as_bytes(), &timestamp, &body));
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|at| (chrono::Utc::now().timestamp() - at).abs() < 300);
    let delivery = header(DELIVERY_HEADER);
    if header(SIGNATURE_HEADER) != expected || !fresh || uuid::Uuid::parse_str(&delivery).is_err() {
        *receiver.forged.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    receiver.seen.lock().unwrap().push(delivery.clone());
    let failure = {
        let mut failures = receiver.failures.lock().unwrap();
        failures
            .get_mut(&channel)
            .and_then(|queue| (!queue.is_empty()).then(|| queue.remove(0)))
    };
    if let Some(status) = failure {
        return StatusCode::from_u16(status).unwrap();
    }
    receiver.accepted.lock().unwrap().push(Receipt {
        channel,
        delivery,
        body: serde_json::from_slice(&body).unwrap(),
    });
    StatusCode::OK
}

/// A `[[notify]]` channel posting to `base/name`, its URL and secret in
/// files under `dir`, with `extra` TOML lines.
fn channel(dir: &Path, base: &str, name: &str, format: &str, extra: &str) -> String {
    let url_file = dir.join(format!("{name}.url"));
    std::fs::write(&url_file, format!("{base}/{name}\n")).unwrap();
    let secret_file = dir.join("notify.secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    format!(
        "\n[[notify]]\nname = \"{name}\"\nformat = \"{format}\"\nurl_file = \"{}\"\n\
         secret_file = \"{}\"\n{extra}\n",
        url_file.display(),
        secret_file.display()
    )
}

/// The test policy with one JSON channel, `ops`, told of filings only.
fn filings_to_ops(dir: &Path, base: &str) -> String {
    format!(
        "{}{}",
        policy_text(""),
        channel(dir, base, "ops", "json", "events = [\"request_filed\"]")
    )
}

/// Waits until every notification written so far is delivered or given up.
async fn settled(broker: &TestBroker) {
    eventually(LONG, || async {
        let far = chrono::Utc::now() + chrono::TimeDelta::days(2);
        broker.broker().route().unwrap();
        broker
            .broker()
            .store()
            .transaction()
            .unwrap()
            .due_notifications(far, 10, &[])
            .unwrap()
            .is_empty()
    })
    .await;
}

fn db(justification: &str) -> CreateRequest {
    CreateRequest {
        ticket: Some("INC-42".into()),
        ..request("db", justification)
    }
}

/// Every event reaches a JSON channel that takes everything, signed, once
/// each, with its facts and the people it is for.
#[tokio::test]
async fn every_event_arrives_signed_and_once() {
    let (receiver, base) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Nothing answers on port 9: the target's provisioning fails.
    std::fs::write(dir.path().join("hook.secret"), "hook-secret").unwrap();
    let policy = format!(
        "{}{}\n[[targets]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\
         secret_file = \"{}\"\ntimeout = \"1s\"\n{}",
        policy_text(
            "pending_ttl = \"40m\"\nrequest_url = \"https://hoist.example.com/requests/{id}\"\nticket_url = \"https://tracker.example/browse/{ticket}\""
        ),
        channel(dir.path(), &base, "all", "json", "remind_before = \"50m\""),
        dir.path().join("hook.secret").display(),
        target_role("k8s-admin", "hook", "cluster = \"prod\""),
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    let (alice, bob, carol) = (
        broker.as_user("alice"),
        broker.as_user("bob"),
        broker.as_user("carol"),
    );

    // Filed, then approved: filed, decided, and its grant ending within
    // the 50 minutes the channel reminds before (the grant lasts 30).
    let approved = alice
        .file(&db("rotate the replication slot"))
        .await
        .unwrap();
    bob.review(&approved.id, Decision::Approve, Some("go ahead"))
        .await
        .unwrap();
    // Filed and left pending: it lapses in 40 minutes, inside the 50.
    let pending = alice
        .file(&request("k8s", "scale the ingress pool"))
        .await
        .unwrap();
    // Denied (frank's: alice holds db already).
    let denied = broker
        .as_user("frank")
        .file(&db("drop the old partitions"))
        .await
        .unwrap();
    broker
        .as_user("dave")
        .review(&denied.id, Decision::Deny, Some("not during the freeze"))
        .await
        .unwrap();
    // Break glass.
    let glass = carol
        .file(&CreateRequest {
            break_glass: true,
            incident: Some("INC-7".into()),
            ..db("primary is down, failing over")
        })
        .await
        .unwrap();
    // Approved at a target that does not answer: provisioning fails.
    let failing = alice
        .file(&request("k8s-admin", "drain node pool 3"))
        .await
        .unwrap();
    bob.approve(&failing.id).await.unwrap();
    // Revoked once its provisioning failed: removing its access fails too.
    eventually(LONG, || async {
        receiver
            .on("all")
            .iter()
            .any(|b| b["event"] == "provision_failed" && b["request_id"] == failing.id.as_str())
    })
    .await;
    let failing_grant = alice.request(&failing.id).await.unwrap().grant_id.unwrap();
    alice
        .revoke(&failing_grant, "done with the pool")
        .await
        .unwrap();

    let wanted: Vec<(&str, &str)> = vec![
        ("request_filed", approved.id.as_str()),
        ("request_decided", approved.id.as_str()),
        ("grant_ending", approved.id.as_str()),
        ("request_filed", pending.id.as_str()),
        ("request_lapsing", pending.id.as_str()),
        ("request_filed", denied.id.as_str()),
        ("request_decided", denied.id.as_str()),
        ("break_glass", glass.id.as_str()),
        ("grant_ending", glass.id.as_str()),
        ("request_filed", failing.id.as_str()),
        ("request_decided", failing.id.as_str()),
        ("provision_failed", failing.id.as_str()),
        ("removal_failed", failing.id.as_str()),
    ];
    eventually(LONG, || async {
        let got = receiver.on("all");
        wanted.iter().all(|(event, id)| {
            got.iter()
                .any(|b| b["event"] == *event && b["request_id"] == *id)
        })
    })
    .await;
    // A second removal of the grant failing at its first attempt (queued
    // twice when a hand-over races the grant's end) tells no one again.
    {
        let store = broker.broker().store();
        let mut tx = store.transaction().unwrap();
        let first = tx
            .audit(&hoistd::store::AuditQuery {
                request_id: Some(failing.id.clone()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .find(|e| e.kind == AuditKind::DeprovisionFailed)
            .expect("its removal failed");
        let mut again = hoistd::audit::NewAuditEvent::new(
            AuditKind::DeprovisionFailed,
            first.actor.clone(),
            chrono::Utc::now(),
        );
        again.subject = first.subject.clone();
        again.role = first.role.clone();
        again.request_id = first.request_id.clone();
        again.grant_id = first.grant_id.clone();
        again.reason = first.reason.clone();
        again.details = first.details.clone();
        hoistd::audit::append(tx.as_mut(), again).unwrap();
        tx.commit().unwrap();
    }
    settled(&broker).await;

    let got = receiver.on("all");
    // Once each: no event about one request arrives twice (a reminder of
    // the failing grant's end, or of its request's lapse before bob
    // approved it, may arrive as well, once).
    let mut counted: BTreeMap<(String, String), usize> = BTreeMap::new();
    for body in &got {
        let key = (
            body["event"].as_str().unwrap().to_string(),
            body["request_id"].as_str().unwrap().to_string(),
        );
        *counted.entry(key).or_default() += 1;
    }
    assert!(counted.values().all(|n| *n == 1), "{counted:?}");
    for (event, id) in &wanted {
        assert!(
            counted.contains_key(&(event.to_string(), id.to_string())),
            "{event} {id}: {counted:?}"
        );
    }
    let delivery_ids: std::collections::BTreeSet<String> = receiver
        .accepted()
        .into_iter()
        .map(|r| r.delivery)
        .collect();
    assert_eq!(delivery_ids.len(), got.len(), "one delivery id each");
    for receipt in receiver.accepted() {
        assert_eq!(
            receipt.body["delivery"],
            receipt.delivery.as_str(),
            "signed, in the body"
        );
        assert_eq!(receipt.body["channel"], "all", "signed, in the body");
    }
    assert_eq!(*receiver.forged.lock().unwrap(), 0);

    let find = |event: &str, id: &str| {
        got.iter()
            .find(|b| b["event"] == event && b["request_id"] == id)
            .unwrap()
            .clone()
    };
    let filed = find("request_filed", approved.id.as_str());
    assert_eq!(filed["requester"], "alice");
    assert_eq!(filed["role"], "db");
    assert_eq!(filed["role_name"], "Prod DB");
    assert_eq!(filed["justification"], "rotate the replication slot");
    assert_eq!(filed["ticket"], "INC-42");
    assert_eq!(filed["ticket_url"], "https://tracker.example/browse/INC-42");
    assert_eq!(
        filed["url"],
        format!("https://hoist.example.com/requests/{}", approved.id)
    );
    assert_eq!(filed["to"], serde_json::json!(["bob", "dave"]));
    let decided = find("request_decided", approved.id.as_str());
    assert_eq!(decided["decision"], "approved");
    assert_eq!(decided["decided_by"], "bob");
    assert_eq!(decided["comment"], "go ahead");
    assert_eq!(decided["to"], serde_json::json!(["alice"]));
    let refusal = find("request_decided", denied.id.as_str());
    assert_eq!(refusal["decision"], "denied");
    assert_eq!(refusal["decided_by"], "dave");
    assert_eq!(refusal["comment"], "not during the freeze");
    assert_eq!(refusal["to"], serde_json::json!(["frank"]));
    let ending = find("grant_ending", approved.id.as_str());
    assert_eq!(ending["to"], serde_json::json!(["alice"]));
    assert!(ending["expires_at"].is_string());
    let lapsing = find("request_lapsing", pending.id.as_str());
    assert_eq!(lapsing["to"], serde_json::json!(["bob", "dave"]));
    assert!(lapsing["lapses_at"].is_string());
    let glass_notice = find("break_glass", glass.id.as_str());
    assert_eq!(glass_notice["requester"], "carol");
    assert_eq!(glass_notice["incident"], "INC-7");
    assert_eq!(
        glass_notice["to"],
        serde_json::json!(["alice", "bob", "dave"])
    );
    let failed = find("provision_failed", failing.id.as_str());
    assert_eq!(failed["target"], "hook");
    assert_eq!(failed["to"], serde_json::json!(["alice"]));
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("hook unreachable"),
        "{failed}"
    );

    let unremoved = find("removal_failed", failing.id.as_str());
    assert_eq!(unremoved["target"], "hook");
    assert_eq!(unremoved["to"], serde_json::json!(["alice"]));
    assert_eq!(unremoved["grant_id"], failing_grant.as_str());
    assert!(
        unremoved["error"]
            .as_str()
            .unwrap()
            .contains("hook unreachable"),
        "{unremoved}"
    );

    // Routing and reminding again writes nothing new.
    let before = got.len();
    broker.broker().route().unwrap();
    broker.broker().remind().unwrap();
    settled(&broker).await;
    assert_eq!(receiver.on("all").len(), before);

    // The delivery log: one line per post, never the URL, secret or body.
    let log = broker
        .broker()
        .store()
        .transaction()
        .unwrap()
        .notification_deliveries(100)
        .unwrap();
    assert_eq!(log.len(), before);
    assert!(
        log.iter()
            .all(|d| d.status == Some(200) && d.error.is_none())
    );
    assert!(log.iter().all(|d| d.channel == "all" && d.attempt == 1));
}

/// Each channel gets the events of the roles, approver groups and events
/// it lists, and nothing else; Slack and Teams channels get their formats.
#[tokio::test]
async fn channels_get_only_the_roles_groups_and_events_they_cover() {
    let (receiver, base) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        "{}\n[[roles]]\nid = \"pager\"\nname = \"Pager\"\nscope = \"pager://\"\n\
         eligible_groups = [\"eng\"]\ndefault_duration = \"10m\"\nmax_duration = \"1h\"\n\
         approvals = 1\napprover_groups = [\"oncall\"]\n{}{}{}{}",
        policy_text(""),
        channel(
            dir.path(),
            &base,
            "dba",
            "slack",
            "roles = [\"db\"]\nevents = [\"request_filed\", \"request_decided\"]"
        ),
        channel(
            dir.path(),
            &base,
            "platform",
            "teams",
            "roles = [\"k8s\"]\nevents = [\"request_filed\"]"
        ),
        channel(
            dir.path(),
            &base,
            "oncall",
            "json",
            "groups = [\"oncall\"]\nevents = [\"request_filed\"]"
        ),
        channel(
            dir.path(),
            &base,
            "decisions",
            "json",
            "events = [\"request_decided\"]"
        ),
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    let alice = broker.as_user("alice");
    let db_request = alice
        .file(&db("rotate the replication slot"))
        .await
        .unwrap();
    let k8s_request = alice
        .file(&request("k8s", "scale the ingress pool"))
        .await
        .unwrap();
    let pager_request = alice
        .file(&request("pager", "silence the flapping alert"))
        .await
        .unwrap();
    // Delivered while it waits for a decision, the filed request's notice
    // carries the buttons; one that goes out after it (held up) says it
    // was decided instead.
    eventually(LONG, || async { !receiver.on("dba").is_empty() }).await;
    broker.as_user("bob").approve(&db_request.id).await.unwrap();

    eventually(LONG, || async {
        receiver.on("dba").len() == 2
            && receiver.on("platform").len() == 1
            && receiver.on("oncall").len() == 1
            && receiver.on("decisions").len() == 1
    })
    .await;
    settled(&broker).await;
    assert_eq!(receiver.accepted().len(), 5, "{:?}", receiver.accepted());

    // Slack: the filed one asks for a decision, with the buttons the Slack
    // endpoint takes; the decision does not.
    let dba = receiver.on("dba");
    let buttons = |body: &serde_json::Value| -> Vec<(String, String)> {
        body["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap().clone())
            .map(|e| {
                (
                    e["action_id"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let filed = dba
        .iter()
        .find(|b| b["text"].as_str().unwrap().starts_with("Access requested"))
        .unwrap();
    assert_eq!(
        buttons(filed),
        vec![
            (SLACK_APPROVE.to_string(), db_request.id.clone()),
            (SLACK_DENY.to_string(), db_request.id.clone()),
        ]
    );
    let decided = dba
        .iter()
        .find(|b| b["text"].as_str().unwrap().starts_with("Request approved"))
        .unwrap();
    assert!(buttons(decided).is_empty());
    assert!(decided.to_string().contains(&db_request.id));

    // Teams: one Adaptive Card naming the k8s request.
    let platform = &receiver.on("platform")[0];
    assert_eq!(platform["type"], "message");
    let card = &platform["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert!(card.to_string().contains(&k8s_request.id));

    // By approver group, and by event alone.
    assert_eq!(receiver.on("oncall")[0]["request_id"], pager_request.id);
    assert_eq!(receiver.on("oncall")[0]["to"], serde_json::json!(["carol"]));
    assert_eq!(receiver.on("decisions")[0]["request_id"], db_request.id);
    assert_eq!(receiver.on("decisions")[0]["event"], "request_decided");
}

/// A receiver that fails twice gets the notification the third time,
/// once, under the same delivery id; the log shows every attempt.
#[tokio::test]
async fn a_failing_receiver_is_retried_and_gets_it_once() {
    let (receiver, base) = Receiver::start().await;
    receiver.fail("ops", &[500, 503]);
    let dir = tempfile::tempdir().unwrap();
    let policy = filings_to_ops(dir.path(), &base);
    let broker = TestBroker::builder().policy(&policy).start().await;
    let filed = broker
        .as_user("alice")
        .file(&db("rotate the replication slot"))
        .await
        .unwrap();
    eventually(LONG, || async { receiver.on("ops").len() == 1 }).await;
    settled(&broker).await;
    assert_eq!(receiver.on("ops")[0]["request_id"], filed.id);
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|id| *id == seen[0]), "{seen:?}");

    let mut log = broker
        .broker()
        .store()
        .transaction()
        .unwrap()
        .notification_deliveries(10)
        .unwrap();
    log.reverse();
    let attempts: Vec<(u32, Option<u16>)> = log.iter().map(|d| (d.attempt, d.status)).collect();
    assert_eq!(attempts, [(1, Some(500)), (2, Some(503)), (3, Some(200))]);
    let first = log[0].error.as_deref().unwrap();
    assert!(first.contains("answered 500"), "{first}");
    // The channel's URL is a secret: its path is never in the log.
    assert!(!first.contains("/ops"), "{first}");
    assert!(log[2].error.is_none());
    assert!(
        log.iter()
            .all(|d| d.notification_id == log[0].notification_id)
    );
}

/// An audit entry whose request the router cannot read any more (its
/// row, as an edit outside hoistd leaves it) keeps no later entry from its
/// notice: it is passed over.
#[tokio::test]
async fn an_entry_the_router_cannot_read_holds_up_no_later_notice() {
    let (receiver, base) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = filings_to_ops(dir.path(), &base);
    let broker = TestBroker::builder().policy(&policy).start().await;
    let first = broker
        .as_user("alice")
        .file(&db("rotate the replication slot"))
        .await
        .unwrap();
    eventually(LONG, || async { receiver.on("ops").len() == 1 }).await;
    settled(&broker).await;
    // Routed again from the start, the first filing's request unreadable.
    let mut conn = rusqlite::Connection::open(broker.db()).unwrap();
    let edit = conn.transaction().unwrap();
    let changed = edit
        .execute(
            "UPDATE requests SET updated_at = 'not a time' WHERE id = ?1",
            [&first.id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(
        edit.execute("UPDATE notification_cursor SET seq = 0", [])
            .unwrap(),
        1
    );
    edit.commit().unwrap();

    let second = broker
        .as_user("bob")
        .file(&db("vacuum the audit table"))
        .await
        .unwrap();
    eventually(LONG, || async {
        receiver
            .on("ops")
            .iter()
            .any(|notice| notice["request_id"] == second.id)
    })
    .await;
    // Routed to the head of the log, past the entry it could not read.
    eventually(LONG, || async {
        let conn = rusqlite::Connection::open(broker.db()).unwrap();
        let at = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap();
        at("SELECT seq FROM notification_cursor") == at("SELECT max(seq) FROM audit")
    })
    .await;
}

/// A notification the worker cannot read (its row, as an edit outside
/// hoistd leaves it) keeps no other from going out.
#[tokio::test]
async fn a_notification_the_worker_cannot_read_holds_up_no_other() {
    let (receiver, base) = Receiver::start().await;
    // `ops` keeps failing, so its notifications stay to be sent.
    receiver.fail("ops", &[500; 1_000]);
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        "{}{}",
        filings_to_ops(dir.path(), &base),
        channel(
            dir.path(),
            &base,
            "desk",
            "json",
            "events = [\"request_filed\"]"
        )
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    let alice = broker.as_user("alice");
    alice
        .file(&db("rotate the replication slot"))
        .await
        .unwrap();
    eventually(LONG, || async { receiver.on("desk").len() == 1 }).await;
    let conn = rusqlite::Connection::open(broker.db()).unwrap();
    let changed = conn
        .execute(
            "UPDATE notifications SET created_at = 'not a time', next_attempt_at = 0 \
             WHERE channel = 'ops'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);

    let second = broker
        .as_user("bob")
        .file(&db("vacuum the audit table"))
        .await
        .unwrap();
    eventually(LONG, || async {
        receiver
            .on("desk")
            .iter()
            .any(|notice| notice["request_id"] == second.id)
    })
    .await;
    assert!(receiver.on("ops").is_empty());
}

/// A filing's Slack notice held up by its receiver goes out after the
/// request was approved: it says so, and carries no Approve or Deny
/// button (a press would only be refused).
#[tokio::test]
async fn a_late_slack_notice_of_a_request_decided_since_offers_no_buttons() {
    let (receiver, base) = Receiver::start().await;
    receiver.fail("approvals", &[500, 500]);
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        "{}{}",
        policy_text(""),
        channel(
            dir.path(),
            &base,
            "approvals",
            "slack",
            "events = [\"request_filed\"]"
        )
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    let filed = broker
        .as_user("alice")
        .file(&db("rotate the replication slot"))
        .await
        .unwrap();
    eventually(LONG, || async { !receiver.seen.lock().unwrap().is_empty() }).await;
    broker.as_user("bob").approve(&filed.id).await.unwrap();
    eventually(LONG, || async { receiver.on("approvals").len() == 1 }).await;
    let posted = receiver.on("approvals").remove(0).to_string();
    assert!(posted.contains("No longer pending"), "{posted}");
    assert!(posted.contains("the request is active now"), "{posted}");
    assert!(!posted.contains("hoist_approve"), "{posted}");
    assert!(!posted.contains("hoist_deny"), "{posted}");
}

/// A notification whose channel leaves the policy while its receiver fails
/// is given up: audited as its own event (what it was about, where it
/// went, why it failed), once, and counted in `/metrics` for operators to
/// alert on.
#[tokio::test]
async fn a_notification_given_up_is_audited_and_counted_in_the_metrics() {
    use crate::operations::{sample, scrape};
    let (receiver, base) = Receiver::start().await;
    receiver.fail("ops", &[503; 1000]);
    let dir = tempfile::tempdir().unwrap();
    let policy = filings_to_ops(dir.path(), &base);
    let broker = TestBroker::builder().policy(&policy).start().await;
    let text = scrape(&broker).await;
    assert_eq!(sample(&text, "hoistd_notifications_given_up"), 0.0);
    let filed = broker
        .as_user("alice")
        .file(&db("rotate the replication slot"))
        .await
        .unwrap();
    eventually(LONG, || async { !receiver.seen.lock().unwrap().is_empty() }).await;
    std::fs::write(broker.policy_path(), policy_text("")).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    settled(&broker).await;
    assert!(receiver.on("ops").is_empty(), "delivered, not given up");
    // The store's figures are read at most every 5 seconds.
    eventually(LONG, || async {
        sample(&scrape(&broker).await, "hoistd_notifications_given_up") == 1.0
    })
    .await;
    let log = broker.as_user("erin").audit().await;
    let given_up: Vec<_> = log
        .iter()
        .filter(|e| e.kind == AuditKind::NotificationGivenUp)
        .collect();
    assert_eq!(given_up.len(), 1, "{log:#?}");
    let event = given_up[0];
    assert_eq!(event.actor, hoist_api::SYSTEM_ACTOR);
    assert!(event.is_system(), "{event:?}");
    assert_eq!(event.subject.as_deref(), Some("alice"));
    assert_eq!(event.request_id.as_ref(), Some(&filed.id));
    assert_eq!(event.role.as_deref(), Some("db"));
    assert_eq!(event.details["channel"], "ops");
    assert_eq!(event.details["event"], "request_filed");
    assert!(event.details["attempts"].as_u64().unwrap() >= 1);
    assert!(
        event.reason.as_deref().is_some_and(|r| !r.is_empty()),
        "{event:?}"
    );
}

/// A notification not yet delivered when the broker stops is delivered
/// after it starts again, under the delivery id it had.
#[tokio::test]
async fn a_notification_left_unsent_is_delivered_after_a_restart() {
    let (receiver, base) = Receiver::start().await;
    // Fails until told otherwise (more failures than a test waits for).
    receiver.fail("ops", &[503; 1000]);
    let dir = tempfile::tempdir().unwrap();
    let policy = filings_to_ops(dir.path(), &base);
    let mut broker = TestBroker::builder().policy(&policy).start().await;
    let filed = broker
        .as_user("alice")
        .file(&db("rotate the replication slot"))
        .await
        .unwrap();
    eventually(LONG, || async { !receiver.seen.lock().unwrap().is_empty() }).await;
    broker.stop().await;
    let tried = receiver.seen.lock().unwrap().clone();
    assert!(receiver.on("ops").is_empty());

    receiver.fail("ops", &[]);
    broker.restart().await;
    eventually(LONG, || async { receiver.on("ops").len() == 1 }).await;
    settled(&broker).await;
    let delivered = &receiver.accepted()[0];
    assert_eq!(delivered.body["request_id"], filed.id);
    assert_eq!(delivered.delivery, tried[0], "the same delivery id");
    assert_eq!(receiver.on("ops").len(), 1);
}

/// In a rolling upgrade, an instance meets audit entries of a kind only
/// a newer one knows: it serves them by name, verifies the chain through
/// them, and goes on notifying about the entries after them.
#[tokio::test]
async fn an_entry_of_a_kind_from_a_newer_broker_is_served_verified_and_passed_over() {
    let (receiver, base) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = filings_to_ops(dir.path(), &base);
    let broker = TestBroker::builder().policy(&policy).start().await;
    let newer = AuditKind::parse("access_paused");
    let mut tx = broker.broker().store().transaction().unwrap();
    hoistd::audit::append(
        tx.as_mut(),
        hoistd::audit::NewAuditEvent {
            at: chrono::Utc::now(),
            kind: newer.clone(),
            actor: "alice".into(),
            subject: Some("alice".into()),
            role: Some("db".into()),
            request_id: None,
            grant_id: None,
            incident: None,
            reason: Some("a newer broker's entry".into()),
            details: serde_json::json!({ "paused_for_secs": 60 }),
        },
    )
    .unwrap();
    tx.commit().unwrap();

    let filed = broker
        .as_user("alice")
        .file(&db("rotate the replication slot"))
        .await
        .unwrap();
    eventually(LONG, || async { receiver.on("ops").len() == 1 }).await;
    assert_eq!(receiver.on("ops")[0]["request_id"], filed.id);

    let log = broker.as_user("erin").audit().await;
    let entry = log.iter().find(|e| e.kind == newer).expect("served");
    assert_eq!(entry.details["paused_for_secs"], 60);
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_hoistd"))
        .args(["audit", "verify", "--db"])
        .arg(broker.db())
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// A notice with every field, at a fixed time, for the format snapshots.
fn sample(event: Event) -> Notice {
    let at = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 9, 40, 0).unwrap();
    Notice {
        event,
        at,
        to: vec!["bob".into(), "dave".into()],
        request_id: "req_0123456789abcdefghjk".into(),
        kind: "access".into(),
        role: "prod-db".into(),
        role_name: "Production database".into(),
        tier: Some(0),
        requester: "alice".into(),
        justification:
            "Rotate the replication slot <!channel> & *now*\n[click](https://evil.example)".into(),
        ticket: Some("INC-42".into()),
        ticket_url: Some("https://tracker.example/browse/INC-42".into()),
        incident: Some("INC-7".into()),
        duration_secs: 1800,
        break_glass: false,
        approvals_required: 1,
        url: Some("https://hoist.example.com/requests/req_0123456789abcdefghjk".into()),
        lapses_at: Some(at + chrono::TimeDelta::hours(1)),
        decision: None,
        decided_by: None,
        comment: None,
        grant_id: None,
        expires_at: None,
        target: None,
        error: None,
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

#[test]
fn formats_as_snapshots() {
    let filed = sample(Event::RequestFiled);
    insta::assert_snapshot!("slack_filed", pretty(&render(Format::Slack, &filed)));
    insta::assert_snapshot!("teams_filed", pretty(&render(Format::Teams, &filed)));
    insta::assert_snapshot!("json_filed", pretty(&render(Format::Json, &filed)));
    let failed = Notice {
        event: Event::ProvisionFailed,
        to: vec!["alice".into()],
        grant_id: Some("gr_0123456789abcdefghjk".into()),
        expires_at: Some(filed.at + chrono::TimeDelta::minutes(30)),
        target: Some("db1".into()),
        error: Some("db1 unreachable: connection refused".into()),
        ..filed.clone()
    };
    insta::assert_snapshot!(
        "slack_provision_failed",
        pretty(&render(Format::Slack, &failed))
    );
    insta::assert_snapshot!(
        "teams_provision_failed",
        pretty(&render(Format::Teams, &failed))
    );
    let unremoved = Notice {
        event: Event::RemovalFailed,
        ..failed
    };
    insta::assert_snapshot!(
        "slack_removal_failed",
        pretty(&render(Format::Slack, &unremoved))
    );
}

/// A workload's name holds its token's `sub`, which may be markdown: on a
/// Teams card it is only ever a run of text, never in a `TextBlock` or a
/// fact, which render markdown (a link to follow).
#[test]
fn a_requesters_markdown_is_never_rendered_on_a_teams_card() {
    let filed = Notice {
        requester: "workload:ci:[Approve](https://evil.example)".into(),
        ..sample(Event::RequestFiled)
    };
    let card = render(Format::Teams, &filed);
    let body = card["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap();
    let mut runs = 0;
    for element in body {
        match element["type"].as_str().unwrap() {
            "TextBlock" => assert!(
                !element["text"].as_str().unwrap().contains("]("),
                "{element}"
            ),
            "FactSet" => {
                for fact in element["facts"].as_array().unwrap() {
                    assert!(!fact["value"].as_str().unwrap().contains("]("), "{fact}");
                }
            }
            "RichTextBlock" => {
                runs += element["inlines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|run| {
                        run["type"] == "TextRun"
                            && run["text"].as_str().unwrap().contains("[Approve](https")
                    })
                    .count();
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(runs, 2, "the summary and the requester's row: {card}");
}

/// What Slack's SDK makes of a message's blocks: `Ok` if it parses each
/// block, validates it, and writes back exactly what was sent.
fn slack_sdk_check(message: &serde_json::Value) -> Result<(), String> {
    use std::io::Write;
    let python = std::env::var("HOIST_TEST_PYTHON")
        .expect("HOIST_TEST_PYTHON names the python with slack-sdk (scripts/test sets it)");
    let script = r#"
import json, sys
from slack_sdk.models.blocks import Block
blocks = json.load(sys.stdin)["blocks"]
parsed = Block.parse_all(blocks)
if any(b is None for b in parsed):
    sys.exit("a block Slack does not know")
written = [b.to_dict() for b in parsed]
if written != blocks:
    sys.exit("blocks changed in the SDK's hands:\n" + json.dumps(written, indent=1))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn slack_blocks_pass_slacks_own_sdk() {
    for event in Event::ALL {
        let mut notice = sample(event);
        notice.justification = "x".repeat(5000);
        notice.decision = Some("denied".into());
        notice.decided_by = Some("bob".into());
        notice.comment = Some("y".repeat(3000));
        notice.error = Some("z".repeat(3000));
        notice.expires_at = Some(notice.at);
        notice.role_name = "R".repeat(300);
        for notice in [sample(event), notice] {
            let message = render(Format::Slack, &notice);
            if let Err(why) = slack_sdk_check(&message) {
                panic!("{event}: {why}\n{}", pretty(&message));
            }
        }
    }
    // The check can fail: a header longer than Slack takes is refused.
    let mut message = render(Format::Slack, &sample(Event::RequestFiled));
    message["blocks"][0]["text"]["text"] = serde_json::Value::String("h".repeat(151));
    let refused = slack_sdk_check(&message).unwrap_err();
    assert!(refused.contains("150"), "{refused}");
}

#[test]
fn the_policy_refuses_inline_urls_unknown_formats_and_events_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("url");
    std::fs::write(
        &url_file,
        "https://hooks.slack.com/services/T0/B0/s3cr3tpath",
    )
    .unwrap();
    let plain_file = dir.path().join("plain");
    std::fs::write(&plain_file, "http://hooks.example/s3cr3tpath").unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let base = policy_text("");
    let first = base.lines().count() + 2;
    let files = format!(
        "url_file = \"{}\"\nsecret_file = \"{}\"",
        url_file.display(),
        secret_file.display()
    );
    for (extra, line, column, said) in [
        (
            format!(
                "format = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/s3cr3tpath\"\nsecret_file = \"{}\"",
                secret_file.display()
            ),
            first + 3,
            7,
            "writes its url inline",
        ),
        (
            format!(
                "format = \"slack\"\nurl_file = \"{}\"\nsecret = \"s3cr3tpath\"",
                url_file.display()
            ),
            first + 4,
            10,
            "writes its secret inline",
        ),
        (
            format!("format = \"discord\"\n{files}"),
            first + 2,
            10,
            "format `discord`; known formats: slack, teams, json",
        ),
        (
            format!("format = \"slack\"\n{files}\nevents = [\"request_filed\", \"granted\"]"),
            first + 5,
            28,
            "event `granted`; known events: request_filed",
        ),
        (
            format!("format = \"slack\"\n{files}\nroles = [\"nope\"]"),
            first + 5,
            10,
            "unknown role `nope`",
        ),
        (
            format!("format = \"slack\"\n{files}\ngroups = [\"nobody\"]"),
            first + 5,
            11,
            "unknown group `nobody`",
        ),
        (
            format!("format = \"slack\"\n{files}\ntiers = [4]"),
            first + 5,
            10,
            "tier 4; tiers run from 0 to 3",
        ),
        (
            format!("format = \"slack\"\n{files}\nremind_before = \"soon\""),
            first + 5,
            17,
            "remind_before: invalid duration \"soon\"",
        ),
        (
            format!(
                "format = \"slack\"\nurl_file = \"{}\"\nsecret_file = \"{}\"",
                plain_file.display(),
                secret_file.display()
            ),
            first,
            1,
            "must use https",
        ),
        (
            format!(
                "format = \"slack\"\nsecret_file = \"{}\"",
                secret_file.display()
            ),
            first,
            1,
            "needs url_env or url_file",
        ),
        (
            format!("format = \"json\"\n{files}\ncolour = \"red\""),
            first + 5,
            1,
            "unknown field `colour`",
        ),
    ] {
        let text = format!("{base}\n[[notify]]\nname = \"ops\"\n{extra}\n");
        let err = hoistd::Policy::parse("p.toml", &text)
            .err()
            .unwrap_or_else(|| panic!("accepted: {extra}"))
            .to_string();
        assert!(err.contains(said), "{said}: {err}");
        assert!(
            err.starts_with(&format!("p.toml:{line}:{column}:")),
            "{said}: want {line}:{column}: {err}"
        );
        assert!(!err.contains("s3cr3tpath"), "{err}");
    }
    // And one that is right.
    let text = format!("{base}\n[[notify]]\nname = \"ops\"\nformat = \"teams\"\n{files}\n");
    let policy = hoistd::Policy::parse("p.toml", &text).unwrap();
    let ops = policy.notify.get("ops").unwrap();
    assert_eq!(ops.events.len(), Event::ALL.len(), "every event by default");
    assert!(!format!("{ops:?}").contains("s3cr3tpath"));
    assert!(!format!("{ops:?}").contains(SECRET));
}

/// Three instances on one PostgreSQL database, requests filed and decided
/// on each, the leader killed halfway: every event reaches the channel,
/// each under one delivery id (a post the killed leader made but did not
/// record may come again, with the same id, for the receiver to drop).
#[tokio::test]
async fn several_instances_notify_each_event_under_one_delivery_id() {
    let (receiver, base) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        "{}{}",
        policy_text(""),
        channel(
            dir.path(),
            &base,
            "all",
            "json",
            "events = [\"request_filed\", \"request_decided\"]"
        )
    );
    let mut cluster =
        Cluster::start_with_policy(env!("CARGO_BIN_EXE_hoistd").as_ref(), 3, &policy).await;
    eventually(LONG, || async { cluster.leader().is_some() }).await;
    let leader = cluster.leader().unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    let mut filed = Vec::new();
    for (round, user) in ["alice", "frank", "carol"].into_iter().enumerate() {
        let at = round % 3;
        let request = cluster
            .as_user(at, user)
            .file(&request("k8s", "scale the ingress pool"))
            .await
            .unwrap();
        filed.push(request.id);
    }
    eventually(LONG, || async { receiver.on("all").len() >= 3 }).await;
    cluster.kill(leader);
    // Decided on the instances left, while leadership changes hands.
    for id in &filed {
        for approver in ["bob", "dave"] {
            cluster
                .as_user(others[0], approver)
                .approve(id)
                .await
                .unwrap();
        }
    }
    let wanted: Vec<(&str, &str)> = filed
        .iter()
        .flat_map(|id| {
            [
                ("request_filed", id.as_str()),
                ("request_decided", id.as_str()),
            ]
        })
        .collect();
    eventually(Duration::from_secs(60), || async {
        let got = receiver.accepted();
        wanted.iter().all(|(event, id)| {
            got.iter()
                .any(|r| r.body["event"] == *event && r.body["request_id"] == *id)
        })
    })
    .await;
    let mut ids: BTreeMap<(String, String), std::collections::BTreeSet<String>> = BTreeMap::new();
    for receipt in receiver.accepted() {
        ids.entry((
            receipt.body["event"].as_str().unwrap().to_string(),
            receipt.body["request_id"].as_str().unwrap().to_string(),
        ))
        .or_default()
        .insert(receipt.delivery);
    }
    assert_eq!(ids.len(), wanted.len(), "{ids:?}");
    assert!(ids.values().all(|set| set.len() == 1), "{ids:?}");
    assert_eq!(*receiver.forged.lock().unwrap(), 0);
    let written = cluster.sql("SELECT count(*) FROM notifications");
    assert_eq!(
        written.trim(),
        wanted.len().to_string(),
        "one row per event"
    );
}

/// A reminder is written once its window opens, not before; an extension
/// moves a grant's end, and its holder is reminded of the new one too.
#[tokio::test]
async fn reminders_wait_for_their_window_and_follow_an_extension() {
    let (receiver, base) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        "{}{}{}",
        policy_text("pending_ttl = \"3s\""),
        channel(
            dir.path(),
            &base,
            "lapsing",
            "json",
            "events = [\"request_lapsing\"]\nremind_before = \"2s\""
        ),
        channel(
            dir.path(),
            &base,
            "ending",
            "json",
            "events = [\"grant_ending\"]\nremind_before = \"2h\""
        ),
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    let (alice, bob) = (broker.as_user("alice"), broker.as_user("bob"));

    let pending = alice
        .file(&request("k8s", "scale the ingress pool"))
        .await
        .unwrap();
    let lapses_at = pending.lapses_at.unwrap();
    eventually(LONG, || async {
        receiver
            .on("lapsing")
            .iter()
            .any(|n| n["request_id"] == pending.id.as_str())
    })
    .await;
    let lapsing = receiver
        .on("lapsing")
        .into_iter()
        .find(|n| n["request_id"] == pending.id.as_str())
        .unwrap();
    let written: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(lapsing["at"].clone()).unwrap();
    assert!(
        written >= lapses_at - chrono::TimeDelta::seconds(2),
        "written at {written}, the window opened at {}",
        lapses_at - chrono::TimeDelta::seconds(2)
    );

    let filed = alice
        .file(&db("rotate the replication slot"))
        .await
        .unwrap();
    let approved = bob.approve(&filed.id).await.unwrap();
    let grant_id = approved.grant_id.unwrap();
    eventually(LONG, || async { receiver.on("ending").len() == 1 }).await;
    let extension = alice.extend(&grant_id, 600).await.unwrap();
    bob.approve(&extension.id).await.unwrap();
    eventually(LONG, || async { receiver.on("ending").len() == 2 }).await;
    settled(&broker).await;
    let ends: Vec<String> = receiver
        .on("ending")
        .iter()
        .map(|n| {
            assert_eq!(n["grant_id"], grant_id.as_str());
            n["expires_at"].as_str().unwrap().to_string()
        })
        .collect();
    assert_ne!(ends[0], ends[1], "the new end: {ends:?}");
    let extended = alice.grant(&grant_id).await.unwrap().expires_at;
    assert_eq!(
        serde_json::to_value(extended).unwrap(),
        serde_json::Value::String(ends[1].clone())
    );
    assert_eq!(receiver.on("ending").len(), 2);
    // (The others may have been reminded of too, had bob been slow.)
    let about_pending = receiver
        .on("lapsing")
        .iter()
        .filter(|n| n["request_id"] == pending.id.as_str())
        .count();
    assert_eq!(about_pending, 1);
}

/// A filing is told to the approvers the provider last named, as the
/// store keeps it, though the leader that routes it heard otherwise or
/// nothing; so do the leader's review queue, preview and roles. Each change
/// at the provider below reaches only the other instance (a token there),
/// and each check on the leader comes first after it.
#[tokio::test]
async fn a_filing_is_told_to_the_approvers_the_provider_last_named() {
    let (receiver, base) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"
[users.frank]
token_sha256 = "{}"

[groups]
engineers = []
prod-approvers = ["frank"]

[[roles]]
id = "prod-db"
eligible_groups = ["engineers"]
default_duration = "30m"
max_duration = "1h"
approvals = 1
approver_groups = ["prod-approvers"]
{}"#,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"t-frank")),
        channel(
            dir.path(),
            &base,
            "all",
            "json",
            "events = [\"request_filed\"]"
        )
    );
    let (provider, cluster) = crate::instances::with_provider(2, &body).await;
    eventually(LONG, || async { cluster.leader().is_some() }).await;
    let leader = cluster.leader().unwrap();
    let other = 1 - leader;
    let id_token = |login: &'static str| provider.id_token(login);
    let signs_in = |at: usize, login: &'static str| {
        let cluster = &cluster;
        async move {
            let token = id_token(login).await;
            cluster
                .with_token(at, &token)
                .get::<hoist_api::Me>("/v1/me")
                .await
                .unwrap();
        }
    };
    let alice = id_token("alice").await;

    // The leader saw bob as an approver; dave signed in only at the other.
    signs_in(leader, "bob").await;
    signs_in(other, "dave").await;
    provider.set_groups("bob", &["engineers"]).await;
    signs_in(other, "bob").await;
    let filed = cluster
        .with_token(leader, &alice)
        .file(&request("prod-db", "vacuum the orders table"))
        .await
        .unwrap();
    eventually(LONG, || async { !receiver.on("all").is_empty() }).await;
    let notice = &receiver.on("all")[0];
    assert_eq!(notice["request_id"], filed.id.as_str());
    assert_eq!(notice["to"], serde_json::json!(["dave", "frank"]));

    // dave leaves the group: the leader's queue no longer names him.
    provider.set_groups("dave", &["engineers"]).await;
    signs_in(other, "dave").await;
    let queue: Vec<hoist_api::AccessRequest> = cluster
        .as_user(leader, "frank")
        .get("/v1/reviews")
        .await
        .unwrap();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0].approvers, ["frank"]);

    // erin joins it: the leader's preview of a filing names her (alice's
    // request withdrawn first: a preview, as a filing, is refused while
    // one is open for the role).
    provider
        .set_groups("erin", &["auditors", "prod-approvers"])
        .await;
    signs_in(other, "erin").await;
    cluster
        .with_token(leader, &alice)
        .cancel(&filed.id)
        .await
        .unwrap();
    let preview: hoist_api::RequestPreview = cluster
        .with_token(leader, &alice)
        .post(
            "/v1/requests/validate",
            &request("prod-db", "vacuum the orders table"),
        )
        .await
        .unwrap();
    assert_eq!(preview.approvers, ["erin", "frank"]);

    // carol joins it: the leader's roles name her as an approver.
    provider
        .set_groups("carol", &["engineers", "prod-approvers"])
        .await;
    signs_in(other, "carol").await;
    let roles: Vec<hoist_api::Role> = cluster
        .with_token(leader, &alice)
        .get("/v1/roles")
        .await
        .unwrap();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0].approval.approvers, ["carol", "erin", "frank"]);
}
