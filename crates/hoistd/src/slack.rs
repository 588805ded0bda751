//! Slack's request signing, for the posts Slack makes when someone presses
//! a button hoist sent: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing
//! secret, "v0:<X-Slack-Request-Timestamp>:<body>")>`. A post whose
//! signature does not match, or whose timestamp is more than five minutes
//! from now, is refused; refusing a replay within those five minutes needs
//! the signatures already seen, which the broker keeps in the store.
//!
//! Also what a button press says (an [`Action`], read from the post's
//! `payload` field only after its signature was checked), and the answer
//! hoist posts back to the press's `response_url`, which is text from the
//! post and so is only ever sent to Slack's own origin ([`Settings`]).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use hoist_api::Decision;
use serde::Deserialize;
use sha2::Sha256;
use url::Url;

/// How far a post's timestamp may be from now, either way (Slack's own
/// recommendation): older posts are refused as stale, so a replay store
/// need only remember this long.
pub const WINDOW_SECS: i64 = 5 * 60;

/// The header carrying the post's signature.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The header carrying the post's Unix time, in seconds.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// The `action_id`s of the Approve and Deny buttons the notifications send.
pub use crate::notify::format::{
    SLACK_APPROVE as APPROVE_ACTION, SLACK_DENY as DENY_ACTION, SLACK_OPEN as OPEN_ACTION,
};
/// The denial reason a press of Deny gives: a review through the API must
/// say why, a button cannot ask.
pub const DENIAL_REASON: &str = "denied from Slack";
/// Where answers to a press go: `response_url` must be under it.
pub const RESPONSE_ORIGIN: &str = "https://hooks.slack.com/";
/// How long posting an answer to `response_url` may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// What hoistd needs to take Slack's posts: the app's signing secret
/// (never shown, not even by `Debug`) and where answers may be posted.
#[derive(Clone)]
pub struct Settings {
    secret: Arc<[u8]>,
    replies: Url,
    http: reqwest::Client,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("secret", &"<redacted>")
            .field("replies", &self.replies.as_str())
            .finish()
    }
}

impl Settings {
    /// Settings with this signing secret (App Credentials > Signing Secret).
    pub fn new(secret: &str) -> Result<Settings, String> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err("the Slack signing secret is empty".into());
        }
        let replies = Url::parse(RESPONSE_ORIGIN).map_err(|err| err.to_string())?;
        let http = crate::outbound::client_for(&replies)
            .timeout(REPLY_TIMEOUT)
            .connect_timeout(REPLY_TIMEOUT)
            .user_agent(concat!("hoistd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| format!("cannot make the Slack answer client: {err}"))?;
        Ok(Settings {
            secret: Arc::from(secret.as_bytes()),
            replies,
            http,
        })
    }

    /// Posts answers under `origin` instead of Slack's, for tests with a
    /// receiver on loopback: set by code, never by a post or a flag, and
    /// only to a loopback address over plain HTTP.
    #[cfg(feature = "testing")]
    pub fn answer_to_loopback(mut self, origin: &str) -> Result<Settings, String> {
        let url = Url::parse(origin).map_err(|err| format!("{origin}: {err}"))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            _ => false,
        };
        if url.scheme() != "http" || !loopback {
            return Err(format!("{origin} is not a loopback http:// origin"));
        }
        self.replies = url;
        Ok(self)
    }

    /// Checks a post's signature at Unix time `now` (see [`verify`]).
    pub fn verify(
        &self,
        timestamp: &str,
        body: &[u8],
        signature: &str,
        now: i64,
    ) -> Result<(), Refusal> {
        verify(&self.secret, timestamp, body, signature, now)
    }

    /// `response_url` as a URL hoist may post to: under Slack's origin
    /// (scheme, host and port alike), with no user name or password.
    pub fn answer_url(&self, response_url: &str) -> Option<Url> {
        let url = Url::parse(response_url).ok()?;
        let allowed = url.scheme() == self.replies.scheme()
            && url.host_str() == self.replies.host_str()
            && url.port_or_known_default() == self.replies.port_or_known_default()
            && url.username().is_empty()
            && url.password().is_none()
            && url.path().starts_with(self.replies.path());
        allowed.then_some(url)
    }

    /// Posts `answer` to `url` (from [`Settings::answer_url`]): an
    /// ephemeral message to whoever pressed the button. Never follows a
    /// redirect; a failure is logged without the URL, which lets anyone
    /// holding it post into the conversation for a while.
    pub async fn post_answer(&self, url: Url, answer: &serde_json::Value) {
        match self.http.post(url).json(answer).send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::warn!(
                status = %response.status(),
                "Slack refused hoist's answer to a button press"
            ),
            Err(err) => tracing::warn!(
                error = %err.without_url(),
                "hoist's answer to a Slack button press did not arrive"
            ),
        }
    }
}

/// The answer to a press, as Slack reads it from the HTTP response or from
/// a post to `response_url`: a message only the presser sees, leaving the
/// message with the buttons as it is.
pub fn answer(text: &str) -> serde_json::Value {
    serde_json::json!({
        "response_type": "ephemeral",
        "replace_original": false,
        "text": text,
    })
}

/// Text for Slack's `mrkdwn`: `&`, `<` and `>` are its control characters
/// (links and mentions), so text that came from people is escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What pressing one of hoist's buttons asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The Slack workspace (team) the press came from.
    pub team: String,
    /// The person's own team where the payload names another (a guest
    /// from another workspace in a shared channel; an Enterprise Grid
    /// member, whose `user.team_id` is the organisation's `E…` id): the
    /// policy may name them under it.
    pub home_team: Option<String>,
    /// Their Slack user id.
    pub user: String,
    pub decision: Decision,
    pub request_id: String,
    /// Where an answer may be posted, as the post gave it (unchecked).
    pub response_url: Option<String>,
}

impl Action {
    /// The teams the policy is searched under for the presser, in order
    /// ([`account_teams`]).
    pub fn account_teams(&self) -> Vec<&str> {
        account_teams(&self.team, self.home_team.as_deref(), &self.user)
    }
}

/// The teams a Slack account is looked up under, in order: the workspace
/// the press came from; for an Enterprise Grid member id (`W…`, one person
/// across the organisation), their own team after it (the organisation's
/// `E…` id). A `U…` id whose own team is another workspace (`T…`: a guest
/// in a shared channel) is looked up under that team alone: the host's
/// mapping is for the host's members, and a guest is mapped, if at all,
/// under their own workspace (the policy maps one id to one user,
/// whatever the team).
pub fn account_teams<'a>(team: &'a str, home_team: Option<&'a str>, user: &str) -> Vec<&'a str> {
    match home_team {
        Some(home) if user.starts_with('W') => vec![team, home],
        Some(home) if home.starts_with('T') => vec![home],
        _ => vec![team],
    }
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: Option<PayloadUser>,
    team: Option<PayloadTeam>,
    #[serde(default)]
    actions: Vec<PayloadAction>,
    response_url: Option<String>,
}

#[derive(Deserialize)]
struct PayloadUser {
    id: String,
    team_id: Option<String>,
}

#[derive(Deserialize)]
struct PayloadTeam {
    id: String,
}

#[derive(Deserialize)]
struct PayloadAction {
    action_id: String,
    value: Option<String>,
}

/// Whether `id` looks like a Slack id (`T0123ABCD`): upper-case letters
/// and digits, at most 32.
fn slack_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Reads a button press from a post's body (form-encoded, one `payload`
/// field of JSON), or says what is wrong with it; `None` for a press of the
/// link button that opens the request, which Slack posts too and which asks
/// nothing of hoist. Call it only on a body whose signature was checked.
pub fn parse_action(body: &[u8]) -> Result<Option<Action>, String> {
    let payload = url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or("the post has no `payload` field")?;
    let payload: Payload = serde_json::from_str(&payload)
        .map_err(|err| format!("the payload is not the JSON Slack sends: {err}"))?;
    if payload.kind != "block_actions" {
        return Err(format!(
            "hoist takes only `block_actions` payloads, not `{}`",
            payload.kind.chars().take(40).collect::<String>()
        ));
    }
    let user = payload.user.ok_or("the payload names no user")?;
    let team = payload
        .team
        .map(|team| team.id)
        .or(user.team_id.clone())
        .ok_or("the payload names no team")?;
    let home_team = user.team_id.filter(|home| *home != team);
    if !slack_id(&user.id) || !slack_id(&team) || !home_team.as_deref().is_none_or(slack_id) {
        return Err("the payload's user or team is not a Slack id".into());
    }
    let [action] = payload.actions.as_slice() else {
        return Err(format!(
            "the payload carries {} actions; hoist's buttons send one",
            payload.actions.len()
        ));
    };
    let decision = match action.action_id.as_str() {
        APPROVE_ACTION => Decision::Approve,
        DENY_ACTION => Decision::Deny,
        OPEN_ACTION => return Ok(None),
        _ => {
            return Err(format!(
                "the action is not one of hoist's buttons ({APPROVE_ACTION}, {DENY_ACTION})"
            ));
        }
    };
    let request_id = action
        .value
        .clone()
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .ok_or("the button's value is not a request id")?;
    Ok(Some(Action {
        team,
        home_team,
        user: user.id,
        decision,
        request_id,
        response_url: payload.response_url,
    }))
}

/// Why a post that claims to come from Slack is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the Slack request timestamp is missing or not a number")]
    BadTimestamp,
    #[error("the Slack request is {0} s from now: too old or too far ahead to trust")]
    Stale(i64),
    #[error("the Slack signature is missing or not `v0=` and 64 hex digits")]
    BadSignature,
    #[error("the Slack signature does not match the body")]
    Forged,
}

/// Checks a post's signature against the signing secret at Unix time `now`.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: i64,
) -> Result<(), Refusal> {
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Refusal::BadTimestamp)?;
    let skew = now.saturating_sub(at);
    if skew.abs() > WINDOW_SECS {
        return Err(Refusal::Stale(skew));
    }
    let given = signature
        .strip_prefix("v0=")
        .filter(|hex| hex.len() == 64)
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(Refusal::BadSignature)?;
    // Compared in constant time by the MAC itself.
    mac(secret, timestamp, body)
        .verify_slice(&given)
        .map_err(|_| Refusal::Forged)
}

/// The signature Slack would send for this timestamp and body.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_account_is_looked_up_under_its_own_teams() {
        assert_eq!(account_teams("T1", None, "U1"), ["T1"]);
        assert_eq!(account_teams("T1", Some("E1"), "W1"), ["T1", "E1"]);
        assert_eq!(account_teams("T1", Some("T2"), "W1"), ["T1", "T2"]);
        assert_eq!(account_teams("T1", Some("T2"), "U1"), ["T2"]);
        assert_eq!(account_teams("T1", Some("E1"), "U1"), ["T1"]);
    }

    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"payload=%7B%22type%22%3A%22block_actions%22%7D";

    #[test]
    fn slacks_documented_example_verifies() {
        // The example of Slack's "Verifying requests from Slack" page.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(SECRET, "1531420618", body), signature);
        assert_eq!(
            verify(SECRET, "1531420618", body, signature, 1531420618 + 10),
            Ok(())
        );
    }

    #[test]
    fn forged_stale_and_malformed_posts_are_refused() {
        let now = 1_800_000_000;
        let ts = now.to_string();
        let good = sign(SECRET, &ts, BODY);
        assert_eq!(verify(SECRET, &ts, BODY, &good, now), Ok(()));
        // Another secret, another body, another timestamp: forged.
        let other = sign(b"another secret", &ts, BODY);
        assert_eq!(verify(SECRET, &ts, BODY, &other, now), Err(Refusal::Forged));
        assert_eq!(
            verify(SECRET, &ts, b"payload=x", &good, now),
            Err(Refusal::Forged)
        );
        let later = (now + 1).to_string();
        assert_eq!(
            verify(SECRET, &later, BODY, &good, now),
            Err(Refusal::Forged)
        );
        // Older or further ahead than five minutes: stale, whatever the signature.
        let old = (now - WINDOW_SECS - 1).to_string();
        let signed_old = sign(SECRET, &old, BODY);
        assert_eq!(
            verify(SECRET, &old, BODY, &signed_old, now),
            Err(Refusal::Stale(WINDOW_SECS + 1))
        );
        let ahead = (now + WINDOW_SECS + 1).to_string();
        let signed_ahead = sign(SECRET, &ahead, BODY);
        assert!(matches!(
            verify(SECRET, &ahead, BODY, &signed_ahead, now),
            Err(Refusal::Stale(_))
        ));
        // Just inside the window: accepted.
        let edge = (now - WINDOW_SECS).to_string();
        let signed_edge = sign(SECRET, &edge, BODY);
        assert_eq!(verify(SECRET, &edge, BODY, &signed_edge, now), Ok(()));
        // Malformed.
        assert_eq!(
            verify(SECRET, "soon", BODY, &good, now),
            Err(Refusal::BadTimestamp)
        );
        for bad in ["", "v1=00", &good[3..], "v0=zz", &format!("{good}00")] {
            assert_eq!(
                verify(SECRET, &ts, BODY, bad, now),
                Err(Refusal::BadSignature),
                "{bad}"
            );
        }
    }

    fn form(payload: &serde_json::Value) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    fn press(action_id: &str, value: &str) -> serde_json::Value {
        serde_json::json!({
            "type": "block_actions",
            "user": {"id": "U024BE7LH", "username": "bob", "team_id": "T9TK3CUKW"},
            "team": {"id": "T9TK3CUKW", "domain": "example"},
            "actions": [{"action_id": action_id, "value": value, "type": "button"}],
            "response_url": "https://hooks.slack.com/actions/T9TK3CUKW/1/abc",
        })
    }

    #[test]
    fn a_press_of_either_button_is_read() {
        let action = parse_action(&form(&press(APPROVE_ACTION, "req_42"))).unwrap();
        assert_eq!(
            action,
            Some(Action {
                team: "T9TK3CUKW".into(),
                home_team: None,
                user: "U024BE7LH".into(),
                decision: Decision::Approve,
                request_id: "req_42".into(),
                response_url: Some("https://hooks.slack.com/actions/T9TK3CUKW/1/abc".into()),
            })
        );
        let action = parse_action(&form(&press(DENY_ACTION, "req_42"))).unwrap();
        assert_eq!(action.unwrap().decision, Decision::Deny);
        // Enterprise Grid leaves `team` null; the user's team stands in.
        let mut grid = press(APPROVE_ACTION, "req_42");
        grid["team"] = serde_json::Value::Null;
        assert_eq!(
            parse_action(&form(&grid)).unwrap().unwrap().team,
            "T9TK3CUKW"
        );
        // A member of an Enterprise Grid organisation pressing in one of
        // its workspaces: the workspace first, the organisation beside it.
        grid["team"] = serde_json::json!({"id": "T0WORKSPC", "domain": "example"});
        grid["user"]["team_id"] = serde_json::json!("E0ORG1234");
        let action = parse_action(&form(&grid)).unwrap().unwrap();
        assert_eq!(action.team, "T0WORKSPC");
        assert_eq!(action.home_team.as_deref(), Some("E0ORG1234"));
        grid["user"]["team_id"] = serde_json::json!("e0;drop");
        assert!(parse_action(&form(&grid)).is_err());
        // The link button that opens the request asks nothing of hoist.
        assert_eq!(parse_action(&form(&press(OPEN_ACTION, "req_42"))), Ok(None));
    }

    #[test]
    fn anything_else_is_refused_with_what_is_wrong() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"text=hello".to_vec(), "no `payload`"),
            (b"payload=%7Bnot".to_vec(), "not the JSON"),
            (
                form(&serde_json::json!({"type": "view_submission"})),
                "only `block_actions`",
            ),
            (form(&press("other_button", "req_42")), "not one of hoist's"),
            (form(&press(APPROVE_ACTION, "")), "not a request id"),
            (form(&press(APPROVE_ACTION, "../etc")), "not a request id"),
            (
                form(&{
                    let mut p = press(APPROVE_ACTION, "req_42");
                    p["user"]["id"] = "<@here>".into();
                    p
                }),
                "not a Slack id",
            ),
            (
                form(&{
                    let mut p = press(APPROVE_ACTION, "req_42");
                    p["actions"] = serde_json::json!([]);
                    p
                }),
                "0 actions",
            ),
        ];
        for (body, said) in cases {
            let err = parse_action(&body).unwrap_err();
            assert!(err.contains(said), "{err}");
        }
    }

    #[test]
    fn answers_go_to_slacks_origin_only() {
        let settings = Settings::new("s3cr3t-value").unwrap();
        assert!(
            settings
                .answer_url("https://hooks.slack.com/actions/T1/2/abc")
                .is_some()
        );
        for elsewhere in [
            "http://hooks.slack.com/actions/T1/2/abc",
            "https://hooks.slack.com.evil.example/actions",
            "https://evil.example/?https://hooks.slack.com/",
            "https://user:pw@hooks.slack.com/actions",
            "https://hooks.slack.com:8443/actions",
            "http://127.0.0.1:9/actions",
            "not a url",
        ] {
            assert!(settings.answer_url(elsewhere).is_none(), "{elsewhere}");
        }
        assert!(Settings::new("  ").is_err());
        assert!(!format!("{settings:?}").contains("s3cr3t"));
    }

    #[test]
    fn text_for_slack_is_escaped() {
        assert_eq!(escape("<!channel> & co"), "&lt;!channel&gt; &amp; co");
    }

    /// Held to Slack's own verifier (`slack-sdk` from PyPI, which
    /// `scripts/test` installs for `HOIST_TEST_PYTHON`): every case gets
    /// the same answer from both.
    #[test]
    fn slack_sdks_verifier_agrees_on_every_case() {
        let now = 1_800_000_000i64;
        let mut cases = Vec::new();
        for (i, body) in [&b""[..], BODY, "payload=caf\u{e9} \u{1f511}".as_bytes()]
            .into_iter()
            .enumerate()
        {
            for offset in [
                0,
                -WINDOW_SECS,
                WINDOW_SECS,
                -WINDOW_SECS - 1,
                WINDOW_SECS + 1,
            ] {
                let ts = (now + offset).to_string();
                let good = sign(SECRET, &ts, body);
                let forged = sign(format!("other-{i}").as_bytes(), &ts, body);
                for signature in [good, forged] {
                    let ours = verify(SECRET, &ts, body, &signature, now).is_ok();
                    cases.push(serde_json::json!({
                        "body": String::from_utf8(body.to_vec()).unwrap(),
                        "timestamp": ts,
                        "signature": signature,
                        "ours": ours,
                    }));
                }
            }
        }
        let script = r#"
import json, sys
from slack_sdk.signature import SignatureVerifier
class Clock:
    def now(self): return float(sys.argv[2])
verifier = SignatureVerifier(sys.argv[1], clock=Clock())
cases = json.load(sys.stdin)
print(json.dumps([verifier.is_valid(c["body"], c["timestamp"], c["signature"]) for c in cases]))
"#;
        let python = std::env::var("HOIST_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = std::process::Command::new(&python)
            .args([
                "-c",
                script,
                std::str::from_utf8(SECRET).unwrap(),
                &now.to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {python}: {e}; run the tests with scripts/test")
            });
        let input = serde_json::to_vec(&cases).unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &input).unwrap();
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "slack-sdk is not installed for {python}? scripts/test installs it: {said}"
        );
        let theirs: Vec<bool> = serde_json::from_slice(&out.stdout).unwrap();
        let ours: Vec<bool> = cases.iter().map(|c| c["ours"].as_bool().unwrap()).collect();
        assert_eq!(ours, theirs);
        // Both ways are exercised: 3 bodies x 3 timestamps in the window.
        assert_eq!(ours.iter().filter(|ok| **ok).count(), 9);
    }
}
