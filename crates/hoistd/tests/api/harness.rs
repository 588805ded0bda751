//! The test broker itself: a policy from text, tokens of its own, the same
//! address and database after a restart, the broker behind the API.

use hoist_api::{AccessRequest, RequestState};

use crate::helpers::*;

const POLICY: &str = r#"
[users.zoe]
token_sha256 = "TOKEN"

[groups]
eng = ["zoe"]

[[roles]]
id = "logs"
eligible_groups = ["eng"]
default_duration = "10m"
max_duration = "1h"
"#;

#[tokio::test]
async fn a_policy_from_text_with_its_own_tokens_survives_a_restart() {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest("demo-zoe".as_bytes()));
    let mut broker = TestBroker::builder()
        .policy(&POLICY.replace("TOKEN", &hash))
        .token_prefix("demo-")
        .start()
        .await;
    let url = broker.url();
    let zoe = broker.as_user("zoe");
    let filed: AccessRequest = zoe.file(&request("logs", "read the logs")).await.unwrap();
    assert_eq!(filed.state, RequestState::Active);
    // The broker behind the API sees what the API wrote.
    let seen = broker.broker().my_requests("zoe", Vec::new(), 10).unwrap();
    assert_eq!(seen.len(), 1);

    broker.restart().await;
    assert_eq!(broker.url(), url, "a restart keeps the address");
    let again = broker.as_user("zoe").request(&filed.id).await.unwrap();
    assert_eq!(again.id, filed.id, "a restart keeps the database");
    // The old client still reaches it: same address, same token.
    assert_eq!(zoe.mine().await.len(), 1);
    assert!(broker.db().exists());
}
