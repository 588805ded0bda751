//! Slack's request signing, for the posts Slack makes when someone presses
//! a button hoist sent: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing
//! secret, "v0:<X-Slack-Request-Timestamp>:<body>")>`. A post whose
//! signature does not match, or whose timestamp is more than five minutes
//! from now, is refused; refusing a replay within those five minutes needs
//! the signatures already seen, which the caller keeps.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a post's timestamp may be from now, either way (Slack's own
/// recommendation): older posts are refused as stale, so a replay store
/// need only remember this long.
pub const WINDOW_SECS: i64 = 5 * 60;

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
