//! Sign-in through a real OpenID provider (`tests/oidc-provider`): a
//! provider identity is its issuer and subject, bound to one user on its
//! first sign-in; a token claiming a name held by someone else, or a user the
//! policy defines, is refused unless the policy links that identity; and a
//! token's groups never extend a user the policy defines.

use hoist_api::{AuditKind, ErrorCode, Me};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::helpers::*;
use crate::oidc::Provider;

/// Provider people get their groups from their tokens; `bob` also exists in
/// the policy with a static token, in no approver group.
fn policy(issuers: &[&str], bob: &str) -> String {
    let hash = hex::encode(Sha256::digest(b"t-bob"));
    let oidc: String = issuers
        .iter()
        .map(|issuer| {
            format!("[[oidc]]\nissuer = \"{issuer}\"\nclient_id = \"hoist\"\nleeway = \"0s\"\n")
        })
        .collect();
    format!(
        r#"
[users.bob]
token_sha256 = "{hash}"
{bob}

[groups]
engineers = ["bob"]
prod-approvers = []
auditors = []

[settings]
auditor_groups = ["auditors"]

[[roles]]
id = "prod-db"
eligible_groups = ["engineers"]
default_duration = "30m"
max_duration = "1h"
approvals = 1
approver_groups = ["prod-approvers"]

{oidc}
"#
    )
}

async fn id_token(provider: &Provider, login: &str) -> String {
    let tokens = provider.device_flow_tokens(login, "hoist").await;
    tokens["id_token"].as_str().unwrap().to_string()
}

/// Reloads the policy without `bob` (whose entry goes on with `bob_rest`
/// after its token), as an administrator removing him would write it.
async fn drop_bob(broker: &TestBroker, bob_rest: &str) {
    let text = std::fs::read_to_string(broker.policy_path()).unwrap();
    let hash = hex::encode(Sha256::digest(b"t-bob"));
    let without_bob = text
        .replace(
            &format!("[users.bob]\ntoken_sha256 = \"{hash}\"\n{bob_rest}"),
            "",
        )
        .replace(r#"engineers = ["bob"]"#, "engineers = []");
    assert!(!without_bob.contains("users.bob"), "{without_bob}");
    std::fs::write(broker.policy_path(), without_bob).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
}

async fn refusal(client: &Client) -> String {
    refused(
        client.get::<Me>("/v1/me").await,
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
    )
}

#[tokio::test]
async fn a_token_claiming_a_name_held_by_another_subject_is_refused() {
    let provider = Provider::start().await;
    let mut broker = TestBroker::builder()
        .policy(&policy(&[&provider.issuer], ""))
        .start()
        .await;
    let dave = broker.with_token(&id_token(&provider, "dave").await);
    let me = dave.get::<Me>("/v1/me").await.unwrap();
    assert_eq!(me.user, "dave");
    assert!(me.groups.contains(&"prod-approvers".to_string()));

    // Someone else whose preferred_username is dave: another `sub`.
    let impostor = broker.with_token(&id_token(&provider, "dave#2").await);
    let message = refusal(&impostor).await;
    assert!(
        message.contains("user `dave` belongs to another subject at this provider"),
        "{message}"
    );
    assert!(message.contains("dave#2"), "{message}");
    // It cannot approve as dave either: every call is refused.
    let filed = broker
        .with_token(&id_token(&provider, "alice").await)
        .file(&request("prod-db", "vacuum the big table"))
        .await
        .unwrap();
    refused(
        impostor.approve(&filed.id).await,
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
    );

    // The binding is the store's: a restart forgets nothing.
    broker.restart().await;
    refusal(&impostor).await;
    assert_eq!(dave.get::<Me>("/v1/me").await.unwrap().user, "dave");
    let log = broker
        .broker()
        .store()
        .transaction()
        .unwrap()
        .audit(&hoistd::store::AuditQuery::default())
        .unwrap();
    let bindings: Vec<_> = log
        .iter()
        .filter(|e| e.kind == AuditKind::IdentityBound)
        .map(|e| (e.actor.as_str(), e.details["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(bindings, [("dave", "dave"), ("alice", "alice")]);
}

#[tokio::test]
async fn a_token_naming_a_policy_user_is_refused_and_adds_no_groups() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&[&provider.issuer], ""))
        .start()
        .await;
    // The provider says bob is in prod-approvers; the policy's bob is not.
    let token = broker.with_token(&id_token(&provider, "bob").await);
    let message = refusal(&token).await;
    assert!(
        message.contains("`bob` is a user of the policy"),
        "{message}"
    );
    assert!(message.contains("links that identity"), "{message}");

    let statically = broker.as_user("bob").get::<Me>("/v1/me").await.unwrap();
    assert_eq!(statically.groups, ["engineers"]);
    assert!(statically.approver_for.is_empty());

    // Nor may a sign-in take the name but for case, which would pass for
    // bob's in queues and the audit log.
    let message = refusal(&broker.with_token(&id_token(&provider, "Bob").await)).await;
    assert!(
        message.contains("`Bob` differs only in case from `bob`"),
        "{message}"
    );
}

#[tokio::test]
async fn the_policy_links_an_identity_to_its_user_without_its_groups() {
    let provider = Provider::start().await;
    let link = format!(
        "identities = [{{ issuer = \"{0}\", subject = \"bob\" }}, {{ issuer = \"{0}\", subject = \"bob#laptop\" }}]",
        provider.issuer
    );
    let broker = TestBroker::builder()
        .policy(&policy(&[&provider.issuer], &link))
        .start()
        .await;
    for login in ["bob", "bob#laptop"] {
        let me = broker
            .with_token(&id_token(&provider, login).await)
            .get::<Me>("/v1/me")
            .await
            .unwrap();
        assert_eq!(me.user, "bob", "{login}");
        assert_eq!(me.groups, ["engineers"], "the token's groups do not count");
        assert!(me.approver_for.is_empty());
    }
    // An identity the policy does not link is still refused.
    let message = refusal(&broker.with_token(&id_token(&provider, "bob#3").await)).await;
    assert!(message.contains("is a user of the policy"), "{message}");
}

#[tokio::test]
async fn the_same_name_from_another_issuer_is_someone_else() {
    let (first, second) = (Provider::start().await, Provider::start().await);
    let broker = TestBroker::builder()
        .policy(&policy(&[&first.issuer, &second.issuer], ""))
        .start()
        .await;
    let alice = broker.with_token(&id_token(&first, "alice").await);
    assert_eq!(alice.get::<Me>("/v1/me").await.unwrap().user, "alice");
    let message = refusal(&broker.with_token(&id_token(&second, "alice").await)).await;
    assert!(
        message.contains(&format!("belongs to an identity at `{}`", first.issuer)),
        "{message}"
    );
}

#[tokio::test]
async fn no_token_may_name_the_broker_itself() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&[&provider.issuer], ""))
        .start()
        .await;
    let message = refusal(&broker.with_token(&id_token(&provider, "hoistd").await)).await;
    assert!(message.contains("the broker's own name"), "{message}");
}

/// What a provider last said of a user is kept with their identity: after a
/// restart (or on another instance) a user who is not the caller is weighed
/// by their latest sign-in, not taken for a stranger, so an approval grants
/// their request and a policy reload keeps their access.
#[tokio::test]
async fn a_restart_still_knows_a_provider_users_groups() {
    let provider = Provider::start().await;
    let text = format!(
        "{}\n[[roles]]\nid = \"logs\"\neligible_groups = [\"engineers\"]\n\
         default_duration = \"30m\"\nmax_duration = \"1h\"\napprovals = 0\n",
        policy(&[&provider.issuer], "")
    );
    let mut broker = TestBroker::builder().policy(&text).start().await;
    let alice = id_token(&provider, "alice").await;
    let logs = broker
        .with_token(&alice)
        .file(&request("logs", "read the logs for INC-9"))
        .await
        .unwrap();
    let grant_id = logs.grant_id.clone().expect("granted at once");
    let pending = broker
        .with_token(&alice)
        .file(&request("prod-db", "vacuum the orders table"))
        .await
        .unwrap();

    broker.restart().await;
    let dave = id_token(&provider, "dave").await;
    let approved = broker.with_token(&dave).approve(&pending.id).await.unwrap();
    assert_eq!(
        approved.state,
        hoist_api::RequestState::Active,
        "{:?}",
        approved.reason
    );
    let revoked = broker.server().reload(&broker.policy_path()).await.unwrap();
    assert_eq!(revoked, 0, "alice is still an engineer");
    let grant = broker.with_token(&alice).grant(&grant_id).await.unwrap();
    assert_eq!(grant.state, hoist_api::GrantState::Active);
}

/// A name that acted here before (a token user since removed from the
/// policy) is not handed to the first sign-in that claims it: that
/// newcomer would inherit its requests, grants and audit entries.
#[tokio::test]
async fn a_removed_users_name_is_not_handed_to_a_newcomer() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&[&provider.issuer], ""))
        .start()
        .await;
    broker
        .as_user("bob")
        .file(&request("prod-db", "vacuum the big table"))
        .await
        .unwrap();
    drop_bob(&broker, "").await;

    let newcomer = broker.with_token(&id_token(&provider, "bob").await);
    let message = refusal(&newcomer).await;
    assert!(
        message.contains("user `bob` has acted here before"),
        "{message}"
    );
    // A name with no past still binds.
    let carol = broker.with_token(&id_token(&provider, "carol").await);
    assert_eq!(carol.get::<Me>("/v1/me").await.unwrap().user, "carol");
}

/// An identity that signed in as a provider user before the policy linked
/// it to a policy user under another name is refused, saying how to mend
/// it: one person would otherwise be two here, their approvals counted
/// twice.
#[tokio::test]
async fn an_identity_bound_to_one_name_is_not_linked_to_another() {
    let provider = Provider::start().await;
    let broker = TestBroker::builder()
        .policy(&policy(&[&provider.issuer], ""))
        .start()
        .await;
    let zed = broker.with_token(&id_token(&provider, "zed").await);
    assert_eq!(zed.get::<Me>("/v1/me").await.unwrap().user, "zed");

    let linked = std::fs::read_to_string(broker.policy_path())
        .unwrap()
        .replacen(
            "[users.bob]\n",
            &format!(
                "[users.bob]\nidentities = [{{ issuer = \"{}\", subject = \"zed\" }}]\n",
                provider.issuer
            ),
            1,
        );
    std::fs::write(broker.policy_path(), linked).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    let again = broker.with_token(&id_token(&provider, "zed").await);
    let message = refusal(&again).await;
    assert!(
        message.contains("signed in here as `zed`") && message.contains("linked it to `bob`"),
        "{message}"
    );
}

/// A person the policy linked to a user keeps that name when the policy
/// stops defining the user (moved to the provider's groups, say): their
/// identity was bound at their first sign-in, so their past is theirs.
#[tokio::test]
async fn a_linked_identity_keeps_its_name_once_the_policy_drops_the_user() {
    let provider = Provider::start().await;
    let link = format!(
        "identities = [{{ issuer = \"{}\", subject = \"bob\" }}]",
        provider.issuer
    );
    let broker = TestBroker::builder()
        .policy(&policy(&[&provider.issuer], &link))
        .start()
        .await;
    let bob = broker.with_token(&id_token(&provider, "bob").await);
    assert_eq!(bob.get::<Me>("/v1/me").await.unwrap().user, "bob");
    bob.file(&request("prod-db", "vacuum the big table"))
        .await
        .unwrap();

    drop_bob(&broker, &format!("{link}\n")).await;

    let again = broker.with_token(&id_token(&provider, "bob").await);
    let me = again.get::<Me>("/v1/me").await.unwrap();
    assert_eq!(me.user, "bob");
    // Now a provider user: groups from the token count.
    assert!(!me.groups.is_empty(), "{me:?}");
}

/// Two identities linked to one user both act as them while the policy
/// links them; the store binds the first, and neither's requests write to
/// it again (or wait for a writer). Once the policy drops the user,
/// the second is what it claims, and the name it claims is the first's:
/// refused, on the instance that saw it linked as on any other.
#[tokio::test]
async fn a_second_identity_linked_to_a_user_is_not_kept_as_bound() {
    let provider = Provider::start().await;
    let link = format!(
        "identities = [{{ issuer = \"{0}\", subject = \"bob\" }}, \
         {{ issuer = \"{0}\", subject = \"bob#work\" }}]",
        provider.issuer
    );
    let broker = TestBroker::builder()
        .policy(&policy(&[&provider.issuer], &link))
        .start()
        .await;
    for login in ["bob", "bob#work"] {
        let client = broker.with_token(&id_token(&provider, login).await);
        assert_eq!(client.get::<Me>("/v1/me").await.unwrap().user, "bob");
    }
    // Neither looks for a binding again: both answer while another
    // transaction holds the writers' lock.
    let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let holder = {
        let (held, inner) = (held.0, std::sync::Arc::clone(broker.broker()));
        let release = release.1;
        std::thread::spawn(move || {
            let tx = inner.store().transaction().unwrap();
            held.send(()).unwrap();
            release.recv().ok();
            drop(tx);
        })
    };
    held.1.recv().unwrap();
    for login in ["bob", "bob#work"] {
        let client = broker.with_token(&id_token(&provider, login).await);
        let me = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.get::<Me>("/v1/me"),
        )
        .await;
        assert_eq!(
            me.expect("answered with the writers' lock held")
                .unwrap()
                .user,
            "bob",
            "{login}"
        );
    }
    release.0.send(()).unwrap();
    holder.join().unwrap();

    drop_bob(&broker, &format!("{link}\n")).await;

    let first = broker.with_token(&id_token(&provider, "bob").await);
    assert_eq!(first.get::<Me>("/v1/me").await.unwrap().user, "bob");
    let second = broker.with_token(&id_token(&provider, "bob#work").await);
    let message = refusal(&second).await;
    assert!(message.contains("bob"), "{message}");
}

/// A person the policy linked to a user, who holds a grant only the
/// policy's groups gave them, loses it when the policy stops defining them:
/// at a reload, and at a start with the policy changed while hoistd was
/// down. Their provider has said nothing of them that could stand behind
/// it.
#[tokio::test]
async fn a_linked_user_dropped_from_the_policy_loses_their_grants() {
    let provider = Provider::start().await;
    let link = format!(
        "identities = [{{ issuer = \"{}\", subject = \"bob\" }}]",
        provider.issuer
    );
    let text = format!(
        "{}\n[[roles]]\nid = \"logs\"\neligible_groups = [\"engineers\"]\n\
         default_duration = \"30m\"\nmax_duration = \"1h\"\napprovals = 0\n",
        policy(&[&provider.issuer], &link)
    );
    for at_start in [false, true] {
        let mut broker = TestBroker::builder().policy(&text).start().await;
        let bob = broker.with_token(&id_token(&provider, "bob").await);
        let grant = bob
            .file(&request("logs", "read the logs for INC-9"))
            .await
            .unwrap()
            .grant_id
            .expect("granted at once");
        if at_start {
            let without = std::fs::read_to_string(broker.policy_path())
                .unwrap()
                .replace(&format!("{link}\n"), "")
                .replace("[users.bob]\n", "")
                .replace(r#"engineers = ["bob"]"#, "engineers = []");
            let hash = hex::encode(Sha256::digest(b"t-bob"));
            let without = without.replace(&format!("token_sha256 = \"{hash}\"\n"), "");
            assert!(!without.contains("bob"), "{without}");
            std::fs::write(broker.policy_path(), without).unwrap();
            broker.restart().await;
        } else {
            drop_bob(&broker, &format!("{link}\n")).await;
        }
        // Bob signs in again, now a provider user, to see it.
        let bob = broker.with_token(&id_token(&provider, "bob").await);
        let ended = bob.grant(&grant).await.unwrap();
        assert_eq!(
            ended.state,
            hoist_api::GrantState::Revoked,
            "at start: {at_start}"
        );
    }
}

/// A responder the provider takes off call loses what they broke glass
/// for at their next call, as the policy's own groups do at a reload: the
/// grant's credential and extension are refused, and a credential issued
/// before is no longer active (as for any eligibility the provider takes
/// away), though they may still ask for the role the usual way.
#[tokio::test]
async fn a_responder_the_provider_takes_off_call_can_no_longer_use_their_break_glass() {
    let provider = Provider::start().await;
    let text = format!(
        r#"{}
[[roles]]
id = "db"
eligible_groups = ["engineers"]
default_duration = "30m"
max_duration = "1h"
approvals = 1
approver_groups = ["prod-approvers"]
break_glass = true
break_glass_groups = ["oncall"]
"#,
        policy(&[&provider.issuer], "").replace("auditors = []", "auditors = []\noncall = []")
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let carol = id_token(&provider, "carol").await;
    let carol_client = broker.with_token(&carol);
    let broke = carol_client
        .file(&hoist_api::CreateRequest {
            break_glass: true,
            incident: Some("INC-7".into()),
            ..request("db", "primary is down, failing over")
        })
        .await
        .unwrap();
    let grant = broke.grant_id.expect("granted at once");
    let credential = carol_client.credential(&grant).await.unwrap();
    assert!(carol_client.introspect(&credential.token).await.active);
    // An extension filed while on call, approved once off it, is not made.
    let ends = carol_client.grant(&grant).await.unwrap().expires_at;
    let extension = carol_client.extend(&grant, 600).await.unwrap();

    provider.set_groups("carol", &["engineers"]).await;
    // A later `iat` than the first token's, so the later word is known.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let token = id_token(&provider, "carol").await;
    let off_call = broker.with_token(&token);
    let message = refused(
        off_call.credential(&grant).await,
        StatusCode::FORBIDDEN,
        ErrorCode::NotEligible,
    );
    assert!(message.contains("break glass"), "{message}");
    let dave = broker.with_token(&id_token(&provider, "dave").await);
    let decided = dave.approve(&extension.id).await.unwrap();
    assert_eq!(
        decided.state,
        hoist_api::RequestState::Cancelled,
        "{decided:?}"
    );
    assert!(
        decided
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("break glass")),
        "{decided:?}"
    );
    assert_eq!(off_call.grant(&grant).await.unwrap().expires_at, ends);
    refused(
        off_call.extend(&grant, 600).await,
        StatusCode::FORBIDDEN,
        ErrorCode::NotEligible,
    );
    assert!(!off_call.introspect(&credential.token).await.active);
    off_call.revoke(&grant, "off call").await.unwrap();
    let usual = off_call
        .file(&request("db", "vacuum the orders table"))
        .await;
    assert!(usual.is_ok(), "still eligible the usual way: {usual:?}");
}
