//! Grants that reach a real PostgreSQL server, started by the test itself
//! (initdb + pg_ctl on a free loopback port): a login role per grant, used
//! with the credential hoist hands over, gone after revoke, expiry, a
//! broker killed mid-grant, and drift made by hand; a server that is down
//! at activation or at revoke; policies that name what does not exist.
//!
//! Long because each scenario is a whole lifecycle against its own cluster;
//! the helpers they share are at the top.

use std::time::Duration;

use hoist_api::{AccessState, AuditKind, ErrorCode, Grant, GrantState};
use reqwest::StatusCode;

use crate::helpers::*;

const LONG: Duration = Duration::from_secs(30);

/// A cluster with `app_admin` (owner of table `orders`) and `app_reader`.
async fn cluster() -> Postgres {
    let pg = Postgres::start()
        .await
        .unwrap_or_else(|err| panic!("{err} (scripts/test installs postgresql)"));
    pg.admin()
        .await
        .unwrap()
        .batch_execute(
            "CREATE ROLE app_admin NOLOGIN; CREATE ROLE app_reader NOLOGIN; \
             CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2); \
             GRANT SELECT ON orders TO app_admin;",
        )
        .await
        .unwrap();
    pg
}

/// The test policy with `pg` as target `db1` and role `pgdb` there.
fn policy(pg: &Postgres, access: &str) -> String {
    format!(
        "{}\n{}\n{}",
        policy_text(""),
        pg.target_toml("db1"),
        target_role("pgdb", "db1", access)
    )
}

/// `text` with `lines` added to the target's settings.
fn with_target_settings(text: &str, lines: &str) -> String {
    text.replace(
        "connect_timeout = \"2s\"\n",
        &format!("connect_timeout = \"2s\"\n{lines}"),
    )
}

/// The access alice's credential hands over for `grant`.
async fn access_of(broker: &TestBroker, grant: &Grant) -> hoist_api::AccessCredential {
    broker
        .as_user("alice")
        .credential(&grant.id)
        .await
        .unwrap()
        .access
        .unwrap()
}

async fn broker(pg: &Postgres) -> TestBroker {
    let broker = TestBroker::builder()
        .policy(&policy(pg, "member_of = [\"app_admin\"]"))
        .start()
        .await;
    // The tests run their own passes.
    broker.reconciled().await;
    broker
}

/// alice asks for `pgdb` for `secs` (default when None), bob approves: the grant.
async fn granted(broker: &TestBroker, secs: Option<u64>) -> Grant {
    let mut body = request("pgdb", "vacuum the orders table");
    body.duration_secs = secs;
    let filed = broker.as_user("alice").file(&body).await.unwrap();
    let approved = broker.as_user("bob").approve(&filed.id).await.unwrap();
    let id = approved.grant_id.unwrap();
    broker.as_user("alice").grant(&id).await.unwrap()
}

/// Alice's grant, live, its role made a member of `to` by the cluster's
/// admin, and a session of `login` (password `pw`) that switched to
/// `app_admin` through it: the grant, its role, that session.
async fn lent(
    pg: &Postgres,
    broker: &TestBroker,
    to: &str,
    login: &str,
) -> (Grant, String, tokio_postgres::Client) {
    let grant = granted(broker, None).await;
    until_access(broker, &grant.id, AccessState::Live).await;
    let role = role_of(&grant);
    pg.admin()
        .await
        .unwrap()
        .batch_execute(&format!("GRANT \"{role}\" TO {to}"))
        .await
        .unwrap();
    let switched = pg.connect_as(login, "pw").await.unwrap();
    switched.batch_execute("SET ROLE app_admin").await.unwrap();
    (grant, role, switched)
}

/// Alice revokes `grant`: once its access is removed, its role is gone.
async fn revoked_and_gone(pg: &Postgres, broker: &TestBroker, grant: &Grant) {
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(broker, &grant.id, AccessState::Removed).await;
    assert!(!role_exists(pg, &role_of(grant)).await);
}

async fn role_exists(pg: &Postgres, role: &str) -> bool {
    pg.admin()
        .await
        .unwrap()
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .is_some()
}

async fn kinds(broker: &TestBroker, grant: &str) -> Vec<AuditKind> {
    broker
        .as_user("erin")
        .audit()
        .await
        .into_iter()
        .filter(|e| e.grant_id.as_deref() == Some(grant))
        .map(|e| e.kind)
        .collect()
}

fn role_of(grant: &Grant) -> String {
    hoistd::target::postgres::role_name(&grant.holder, &grant.id)
}

#[tokio::test]
async fn a_grant_is_a_login_role_usable_with_its_credential_and_revoking_removes_it() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    let grant = granted(&broker, None).await;
    assert_eq!(grant.state, GrantState::Active);
    let access = grant.access.clone().unwrap();
    assert_eq!(
        (access.target.as_str(), access.kind.as_str()),
        ("db1", "postgres")
    );
    until_access(&broker, &grant.id, AccessState::Live).await;

    let credential = broker.as_user("alice").credential(&grant.id).await.unwrap();
    let access = credential.access.clone().unwrap();
    let role = role_of(&grant);
    assert_eq!(access.env["PGUSER"], role);
    assert_eq!(access.env["PGPORT"], pg.port().to_string());
    assert!(access.expires_at <= grant.expires_at);
    assert!(
        access
            .uri
            .as_deref()
            .unwrap()
            .starts_with("postgresql://hoist_alice_")
    );
    // The psql line gives the password in psql's environment, never in
    // its arguments, which every user of the machine can read.
    let command = access.command.as_deref().unwrap();
    let (env, argument) = command.split_once(" psql ").unwrap();
    assert_eq!(env, format!("PGPASSWORD={}", access.env["PGPASSWORD"]));
    assert!(
        argument.starts_with("'postgresql://hoist_alice_"),
        "{command}"
    );
    assert!(
        !argument.contains(access.env["PGPASSWORD"].as_str()),
        "{command}"
    );
    assert!(!format!("{credential:?}").contains(&access.env["PGPASSWORD"]));

    let session = pg
        .connect_as(&role, &access.env["PGPASSWORD"])
        .await
        .unwrap();
    let who: String = session
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, role);
    // Member of app_admin: it reads what app_admin may.
    let orders: i64 = session
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 2);
    let limit: i32 = pg
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, 5);

    // A second fetch sets a new password; the open session keeps running.
    let second = broker.as_user("alice").credential(&grant.id).await.unwrap();
    let password = second.access.unwrap().env["PGPASSWORD"].clone();
    assert_ne!(password, access.env["PGPASSWORD"]);
    assert!(
        pg.connect_as(&role, &access.env["PGPASSWORD"])
            .await
            .is_err()
    );
    session.query_one("SELECT 1", &[]).await.unwrap();

    let revoked = broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    assert_eq!(revoked.state, GrantState::Revoked, "ended in hoist at once");
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert!(
        session.query_one("SELECT 1", &[]).await.is_err(),
        "the session opened during the grant is terminated"
    );
    assert!(
        pg.connect_as(&role, &password).await.is_err(),
        "no new login"
    );
    assert!(!role_exists(&pg, &role).await, "the role is dropped");
    let kinds = kinds(&broker, &grant.id).await;
    for kind in [
        AuditKind::Provisioned,
        AuditKind::Revoked,
        AuditKind::Deprovisioned,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} in {kinds:?}");
    }
}

/// A target reached through the server's Unix socket (its directory as
/// the URL's host, percent-encoded, as libpq writes it) provisions, and
/// hands over a URI and host that reach the same socket.
#[tokio::test]
async fn a_target_on_a_unix_socket_provisions_and_hands_the_socket_over() {
    let pg = cluster().await;
    let socket = pg.socket_dir().display().to_string();
    let encoded =
        percent_encoding::utf8_percent_encode(&socket, percent_encoding::NON_ALPHANUMERIC);
    let text = policy(&pg, "member_of = [\"app_admin\"]").replace(
        &pg.admin_url(),
        &format!("postgres://postgres@{encoded}:{}/postgres", pg.port()),
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let access = access_of(&broker, &grant).await;
    assert_eq!(access.env["PGHOST"], socket);
    let uri = access.uri.clone().unwrap();
    let config: tokio_postgres::Config = uri.parse().unwrap();
    assert_eq!(
        config.get_hosts(),
        [tokio_postgres::config::Host::Unix(socket.clone().into())],
        "{uri}"
    );
    let (session, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let who: String = session
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, role_of(&grant));
}

#[tokio::test]
async fn at_expiry_new_logins_fail_and_open_sessions_are_terminated() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    let grant = granted(&broker, Some(4)).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let credential = broker.as_user("alice").credential(&grant.id).await.unwrap();
    let password = credential.access.unwrap().env["PGPASSWORD"].clone();
    let role = role_of(&grant);
    let session = pg.connect_as(&role, &password).await.unwrap();
    let until: Option<String> = pg
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS') \
             FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        until.unwrap(),
        grant.expires_at.format("%Y-%m-%dT%H:%M:%S%.3f").to_string(),
        "VALID UNTIL is the grant's end"
    );

    until_access(&broker, &grant.id, AccessState::Removed).await;
    let ended = broker.as_user("alice").grant(&grant.id).await.unwrap();
    assert_eq!(ended.state, GrantState::Expired);
    assert_eq!(ended.expires_at, grant.expires_at, "the end never moved");
    assert!(session.query_one("SELECT 1", &[]).await.is_err());
    assert!(pg.connect_as(&role, &password).await.is_err());
    assert!(!role_exists(&pg, &role).await);
}

#[tokio::test]
async fn a_target_down_at_activation_keeps_the_grant_provisioning_until_it_answers() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    pg.stop();
    let grant = granted(&broker, None).await;
    assert_eq!(grant.state, GrantState::Active);
    eventually(LONG, || async {
        let grant = broker.as_user("alice").grant(&grant.id).await.unwrap();
        let access = grant.access.unwrap();
        access.state == AccessState::Failed && access.next_attempt_at.is_some()
    })
    .await;
    let failed = broker.as_user("alice").grant(&grant.id).await.unwrap();
    let reason = failed.access.unwrap().reason.unwrap();
    assert!(reason.contains("db1 unreachable"), "{reason}");
    // The approvers see it too.
    let seen = broker.as_user("bob").grant(&grant.id).await.unwrap();
    assert_eq!(seen.access.unwrap().reason.unwrap(), reason);
    let refusal = refused(
        broker.as_user("alice").credential(&grant.id).await,
        StatusCode::CONFLICT,
        ErrorCode::InvalidState,
    );
    assert!(refusal.contains("provisioning failed"), "{refusal}");
    assert!(refusal.contains("unreachable"), "{refusal}");
    assert!(
        kinds(&broker, &grant.id)
            .await
            .contains(&AuditKind::ProvisionFailed)
    );

    pg.restart().unwrap();
    until_access(&broker, &grant.id, AccessState::Live).await;
    let credential = broker.as_user("alice").credential(&grant.id).await.unwrap();
    let password = credential.access.unwrap().env["PGPASSWORD"].clone();
    pg.connect_as(&role_of(&grant), &password).await.unwrap();
}

/// A provision the target refuses (a `member_of` role dropped after the
/// policy loaded) leaves the admin connection usable: the grant's removal
/// on the same connection still goes through.
#[tokio::test]
async fn a_refused_provision_leaves_the_target_usable() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    pg.admin()
        .await
        .unwrap()
        .batch_execute("DROP OWNED BY app_admin; DROP ROLE app_admin")
        .await
        .unwrap();
    let grant = granted(&broker, None).await;
    eventually(LONG, || async {
        let grant = broker.as_user("alice").grant(&grant.id).await.unwrap();
        grant.access.unwrap().state == AccessState::Failed
    })
    .await;
    let failed = broker.as_user("alice").grant(&grant.id).await.unwrap();
    let reason = failed.access.unwrap().reason.unwrap();
    assert!(reason.contains("app_admin"), "{reason}");
    broker
        .as_user("bob")
        .revoke(&grant.id, "cannot be provisioned")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert!(!role_exists(&pg, &role_of(&grant)).await);
}

#[tokio::test]
async fn a_target_down_at_revoke_ends_the_grant_at_once_and_removes_it_when_back() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    pg.stop();
    let revoked = broker
        .as_user("bob")
        .revoke(&grant.id, "incident over")
        .await
        .unwrap();
    assert_eq!(revoked.state, GrantState::Revoked);
    assert_eq!(revoked.access.unwrap().state, AccessState::Removing);
    eventually(LONG, || async {
        let grant = broker.as_user("alice").grant(&grant.id).await.unwrap();
        let access = grant.access.unwrap();
        access.state == AccessState::Removing && access.reason.is_some()
    })
    .await;
    assert!(
        kinds(&broker, &grant.id)
            .await
            .contains(&AuditKind::DeprovisionFailed)
    );

    pg.restart().unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert!(!role_exists(&pg, &role_of(&grant)).await);
}

#[tokio::test]
async fn a_role_made_by_hand_under_hoists_names_is_removed_and_audited() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    let live = granted(&broker, None).await;
    until_access(&broker, &live.id, AccessState::Live).await;
    pg.admin()
        .await
        .unwrap()
        .batch_execute(
            "CREATE ROLE hoist_mallory_0123456789ab LOGIN PASSWORD 'x'; \
             CREATE ROLE hoist_operator LOGIN; \
             CREATE ROLE sneaky LOGIN; COMMENT ON ROLE sneaky IS 'hoist grant gr_abcdefghjkmn';",
        )
        .await
        .unwrap();

    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!(pass.drift_removed, 1, "{pass:?}");
    assert_eq!(pass.checked, 1, "{pass:?}");
    assert!(!role_exists(&pg, "hoist_mallory_0123456789ab").await);
    assert!(
        role_exists(&pg, "sneaky").await,
        "a label alone, which anyone who may comment on a role can write, is not hoist's"
    );
    assert!(
        role_exists(&pg, "hoist_operator").await,
        "not a name hoist makes"
    );
    assert!(role_exists(&pg, "app_admin").await);
    assert!(
        role_exists(&pg, &role_of(&live)).await,
        "the live grant's role stays"
    );
    let drift: Vec<_> = broker
        .as_user("erin")
        .audit()
        .await
        .into_iter()
        .filter(|e| e.kind == AuditKind::DriftRemoved)
        .collect();
    assert_eq!(drift.len(), 1);
    assert!(
        drift
            .iter()
            .any(|e| e.details["name"] == "hoist_mallory_0123456789ab")
    );
    assert!(drift.iter().all(|e| e.details["target"] == "db1"));
}

/// A removal recorded before its call and never audited (the instance
/// stopped, or lost its lease, between the call and the entry) is audited
/// at the next pass, once the listing shows the role gone; one recorded
/// whose role is still there is removed and audited once.
#[tokio::test]
async fn a_drift_removal_left_unaudited_is_audited_at_the_next_pass() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    pg.admin()
        .await
        .unwrap()
        .batch_execute("CREATE ROLE hoist_mallory_0123456789ab LOGIN PASSWORD 'x'")
        .await
        .unwrap();
    {
        let store = hoistd::store::SqliteStore::open(&broker.db()).unwrap();
        let mut tx = hoistd::Store::transaction(&store).unwrap();
        let at = chrono::Utc::now();
        tx.insert_drift_removal("db1", "hoist_gone_0123456789ab", Some("gr_gone"), at)
            .unwrap();
        tx.insert_drift_removal("db1", "hoist_mallory_0123456789ab", None, at)
            .unwrap();
        tx.commit().unwrap();
    }
    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!((pass.drift_removed, pass.failures), (1, 0), "{pass:?}");
    assert!(!role_exists(&pg, "hoist_mallory_0123456789ab").await);
    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!((pass.drift_removed, pass.failures), (0, 0), "{pass:?}");
    let drift: Vec<String> = broker
        .as_user("erin")
        .audit()
        .await
        .into_iter()
        .filter(|e| e.kind == AuditKind::DriftRemoved)
        .map(|e| e.details["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(drift.len(), 2, "{drift:?}");
    assert!(drift.contains(&"hoist_gone_0123456789ab".to_string()));
    assert!(drift.contains(&"hoist_mallory_0123456789ab".to_string()));
    let store = hoistd::store::SqliteStore::open(&broker.db()).unwrap();
    let left = hoistd::Store::read(&store)
        .unwrap()
        .drift_removals("db1")
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Two targets on one cluster (whose roles are the whole cluster's): a
/// reconciler pass over either leaves the other's live grants alone.
#[tokio::test]
async fn targets_sharing_a_cluster_leave_each_others_roles_alone() {
    let pg = cluster().await;
    let policy = format!(
        "{}\n{}\n{}\n{}\n{}",
        policy_text(""),
        pg.target_toml("db1"),
        pg.target_toml("db2"),
        target_role("pgdb", "db1", "member_of = [\"app_admin\"]"),
        target_role("pgdb2", "db2", "member_of = [\"app_reader\"]")
    );
    let broker = TestBroker::builder().policy(&policy).start().await;
    broker.reconciled().await;
    let filed = broker
        .as_user("alice")
        .file(&request("pgdb2", "read the orders"))
        .await
        .unwrap();
    let approved = broker.as_user("bob").approve(&filed.id).await.unwrap();
    let grant = broker
        .as_user("alice")
        .grant(&approved.grant_id.unwrap())
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Live).await;

    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!(pass.drift_removed, 0, "{pass:?}");
    assert_eq!(pass.checked, 1, "{pass:?}");
    assert!(
        role_exists(&pg, &role_of(&grant)).await,
        "db1's pass removed db2's live role"
    );
    let label = pg
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&role_of(&grant)],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    let issuer = broker.broker().policy().settings.issuer.clone();
    assert_eq!(
        label,
        format!("hoist grant {} of {issuer} at db2", grant.id)
    );

    // Left behind with no grant: each removed by the target that made it,
    // with that target's settings, whichever comes first; one made by a
    // target the policy no longer has, by the first of this cluster's.
    let admin = pg.admin().await.unwrap();
    for (role, id, target) in [
        ("hoist_left_0123456789ab", "gr_0123456789ab", "db2"),
        ("hoist_left_abcdefghjkmn", "gr_abcdefghjkmn", "db1"),
        ("hoist_left_pqrstvwxyz23", "gr_pqrstvwxyz23", "db9"),
    ] {
        admin
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN;                  COMMENT ON ROLE {role} IS 'hoist grant {id} of {issuer} at {target}';"
            ))
            .await
            .unwrap();
    }
    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!(pass.drift_removed, 3, "{pass:?}");
    let removed_by: Vec<(String, String)> = broker
        .as_user("erin")
        .audit()
        .await
        .into_iter()
        .filter(|e| e.kind == AuditKind::DriftRemoved)
        .map(|e| {
            (
                e.details["name"].as_str().unwrap().to_string(),
                e.details["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        removed_by.contains(&("hoist_left_0123456789ab".into(), "db2".into()))
            && removed_by.contains(&("hoist_left_abcdefghjkmn".into(), "db1".into()))
            && removed_by.contains(&("hoist_left_pqrstvwxyz23".into(), "db1".into())),
        "{removed_by:?}"
    );
}

/// Two deployments (each its own `settings.issuer`) on one cluster: a
/// reconciler pass of one leaves the other's live roles alone, though they
/// are named as its own are.
#[tokio::test]
async fn deployments_sharing_a_cluster_leave_each_others_roles_alone() {
    let pg = cluster().await;
    let deployment = |issuer: &str| {
        format!(
            "{}\n{}\n{}",
            policy_text(&format!("issuer = \"{issuer}\"")),
            pg.target_toml("db1"),
            target_role("pgdb", "db1", "member_of = [\"app_admin\"]")
        )
    };
    let staging = TestBroker::builder()
        .policy(&deployment("https://hoist-staging.test"))
        .start()
        .await;
    let prod = TestBroker::builder()
        .policy(&deployment("https://hoist.test"))
        .start()
        .await;
    staging.reconciled().await;
    prod.reconciled().await;
    let theirs = granted(&staging, None).await;
    until_access(&staging, &theirs.id, AccessState::Live).await;
    let ours = granted(&prod, None).await;
    until_access(&prod, &ours.id, AccessState::Live).await;

    let pass = hoistd::target::reconcile::pass(prod.broker()).await;
    assert_eq!(pass.drift_removed, 0, "{pass:?}");
    assert_eq!(pass.checked, 1, "{pass:?}");
    assert!(role_exists(&pg, &role_of(&theirs)).await);
    let pass = hoistd::target::reconcile::pass(staging.broker()).await;
    assert_eq!(pass.drift_removed, 0, "{pass:?}");
    assert!(role_exists(&pg, &role_of(&ours)).await);

    // A live role labelled before labels named the deployment is every
    // deployment's: its own reconciler labels it anew (naming its target
    // too), and from then on the other leaves it alone.
    let admin = pg.admin().await.unwrap();
    admin
        .batch_execute(&format!(
            "COMMENT ON ROLE {} IS 'hoist grant {}'",
            role_of(&theirs),
            theirs.id
        ))
        .await
        .unwrap();
    hoistd::target::reconcile::pass(staging.broker()).await;
    let label: String = admin
        .query_one(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&role_of(&theirs)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        label,
        format!(
            "hoist grant {} of https://hoist-staging.test at db1",
            theirs.id
        )
    );
    let pass = hoistd::target::reconcile::pass(prod.broker()).await;
    assert_eq!(pass.drift_removed, 0, "{pass:?}");
    assert!(role_exists(&pg, &role_of(&theirs)).await);
}

#[tokio::test]
async fn access_removed_by_hand_from_a_live_grant_is_provisioned_again() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    pg.admin()
        .await
        .unwrap()
        .batch_execute(&format!("DROP ROLE {}", role_of(&grant)))
        .await
        .unwrap();
    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!(pass.missing, 1, "{pass:?}");
    until_access(&broker, &grant.id, AccessState::Live).await;
    assert!(role_exists(&pg, &role_of(&grant)).await);
}

/// alice asks for 10 more minutes of `grant`, bob approves: the grant,
/// its end moved.
async fn extended(broker: &TestBroker, grant: &Grant) -> Grant {
    let extension = broker
        .as_user("alice")
        .extend(&grant.id, 600)
        .await
        .unwrap();
    broker.as_user("bob").approve(&extension.id).await.unwrap();
    let extended = broker.as_user("alice").grant(&grant.id).await.unwrap();
    assert!(extended.expires_at > grant.expires_at);
    extended
}

/// The roles `role` is a member of, by name.
async fn memberships(pg: &Postgres, role: &str) -> Vec<String> {
    pg.admin()
        .await
        .unwrap()
        .query(
            "SELECT r.rolname::text FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid \
             JOIN pg_roles m ON m.oid = a.member WHERE m.rolname = $1 ORDER BY 1",
            &[&role],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// A grant live with `app_admin` and `app_reader`, and a session of its
/// role that switched to `app_reader`: the broker, the grant, its role
/// and password, and that session.
async fn switched_to_reader(
    pg: &Postgres,
) -> (TestBroker, Grant, String, String, tokio_postgres::Client) {
    let broker = TestBroker::builder()
        .policy(&policy(pg, "member_of = [\"app_admin\", \"app_reader\"]"))
        .start()
        .await;
    broker.reconciled().await;
    let grant = granted(&broker, Some(600)).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let role = role_of(&grant);
    assert_eq!(memberships(pg, &role).await, ["app_admin", "app_reader"]);
    let password = access_of(&broker, &grant).await.env["PGPASSWORD"].clone();
    let session = pg.connect_as(&role, &password).await.unwrap();
    session.batch_execute("SET ROLE app_reader").await.unwrap();
    (broker, grant, role, password, session)
}

/// Reloads `broker` with a policy that takes `app_reader` from the role.
async fn narrowed_to_admin(pg: &Postgres, broker: &TestBroker) {
    std::fs::write(
        broker.policy_path(),
        policy(pg, "member_of = [\"app_admin\"]"),
    )
    .unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
}

/// A narrowing whose attempt failed once its revokes had run (the
/// membership gone, the grant's `sessions owed` handle left) ends the
/// sessions at its next attempt: one that switched to the role taken away
/// does not keep it, though nothing is left to revoke.
#[tokio::test]
async fn sessions_a_failed_narrowing_owed_are_ended_at_its_next_attempt() {
    let pg = cluster().await;
    let (broker, grant, role, _, session) = switched_to_reader(&pg).await;
    pg.admin()
        .await
        .unwrap()
        .batch_execute(&format!("REVOKE app_reader FROM {role}"))
        .await
        .unwrap();
    let mut tx = broker.broker().store().transaction().unwrap();
    tx.insert_handle("db1", &grant.id, "sessions owed", chrono::Utc::now())
        .unwrap();
    tx.commit().unwrap();

    narrowed_to_admin(&pg, &broker).await;
    eventually(LONG, || async {
        session.query_one("SELECT 1", &[]).await.is_err()
    })
    .await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    eventually(LONG, || async {
        let tx = broker.broker().store().transaction().unwrap();
        tx.handles("db1", Some(&grant.id)).unwrap().is_empty()
    })
    .await;
    assert_eq!(memberships(&pg, &role).await, ["app_admin"]);
}

/// A reload that takes a `member_of` out of a role takes it from the roles
/// of grants already live: revoked at the server, with the sessions that
/// could have switched to it (SET ROLE) ended; and neither an extension nor
/// access provisioned again after it went missing gives it back.
#[tokio::test]
async fn a_reload_that_narrows_a_role_narrows_its_live_grants() {
    let pg = cluster().await;
    let (broker, grant, role, password, session) = switched_to_reader(&pg).await;

    narrowed_to_admin(&pg, &broker).await;
    eventually(LONG, || async {
        memberships(&pg, &role).await == ["app_admin"]
    })
    .await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    assert!(
        session.query_one("SELECT 1", &[]).await.is_err(),
        "the session that switched to app_reader is ended"
    );
    let again = pg.connect_as(&role, &password).await.unwrap();
    assert!(
        again.batch_execute("SET ROLE app_reader").await.is_err(),
        "a new session cannot switch to it"
    );
    let orders: i64 = again
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 2, "what app_admin gives stays");
    let reloaded = broker
        .as_user("erin")
        .audit()
        .await
        .into_iter()
        .rfind(|e| e.kind == AuditKind::PolicyReloaded)
        .unwrap();
    assert_eq!(
        reloaded.details["grants_narrowed"], 1,
        "{:?}",
        reloaded.details
    );

    // The role given app_reader back by hand: an extension takes it away
    // again, as it moves the end.
    pg.admin()
        .await
        .unwrap()
        .batch_execute(&format!("GRANT app_reader TO {role}"))
        .await
        .unwrap();
    extended(&broker, &grant).await;
    eventually(LONG, || async {
        memberships(&pg, &role).await == ["app_admin"]
    })
    .await;

    // Gone by hand, it is made again as the role gives it now.
    drop(again);
    pg.admin()
        .await
        .unwrap()
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
    let pass = hoistd::target::reconcile::pass(broker.broker()).await;
    assert_eq!(pass.missing, 1, "{pass:?}");
    until_access(&broker, &grant.id, AccessState::Live).await;
    assert_eq!(memberships(&pg, &role).await, ["app_admin"]);

    // A role that no longer gives access here at all: no membership left.
    let bare = policy(&pg, "member_of = []")
        .replace("target = \"db1\"\n\n[roles.access]\nmember_of = []\n", "");
    assert!(!bare.contains("[roles.access]"), "{bare}");
    std::fs::write(broker.policy_path(), bare).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    eventually(LONG, || async { memberships(&pg, &role).await.is_empty() }).await;
}

/// PostgreSQL weighs a role's connection limit only as a session starts: a
/// reload that lowers a role's `connection_limit` below the sessions a
/// live grant has open ends them, and its holder opens again as many as
/// the new limit lets them.
#[tokio::test]
async fn a_reload_lowering_a_connection_limit_ends_the_sessions_beyond_it() {
    lowering_a_connection_limit(false).await;
}

/// The same with an admin that is not a superuser, which sees of another
/// role's sessions neither when each began nor what kind it is.
#[tokio::test]
async fn an_admin_not_a_superuser_ends_the_sessions_beyond_a_lowered_limit() {
    lowering_a_connection_limit(true).await;
}

/// `policy` for `access`, with, when `createrole`, an admin that is not a
/// superuser (CREATEROLE, ADMIN OPTION on `app_admin`, pg_signal_backend),
/// whose password is in the file returned with it.
async fn admin_policy(
    pg: &Postgres,
    access: &str,
    createrole: bool,
) -> (String, Option<tempfile::NamedTempFile>) {
    let text = policy(pg, access);
    if !createrole {
        return (text, None);
    }
    pg.admin()
        .await
        .unwrap()
        .batch_execute(
            "CREATE ROLE hoist_admin LOGIN CREATEROLE PASSWORD 'adminpw'; \
             GRANT app_admin TO hoist_admin WITH ADMIN OPTION; \
             GRANT pg_signal_backend TO hoist_admin",
        )
        .await
        .unwrap();
    let password = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password.path(), "adminpw").unwrap();
    let text = text
        .replace(
            &pg.admin_url(),
            &pg.admin_url().replace("postgres@", "hoist_admin@"),
        )
        .replace(
            &pg.password_file().display().to_string(),
            &password.path().display().to_string(),
        );
    (text, Some(password))
}

/// A membership of the grant's role that its admin may not revoke (in a
/// superuser role, granted by the superuser) keeps the removal failing,
/// but not the memberships it lends to others: bob, made a member of the
/// grant's role, loses it, and his session is ended.
#[tokio::test]
async fn a_refused_revoke_of_its_own_membership_still_takes_back_what_it_lends() {
    let pg = cluster().await;
    let (text, _password) = admin_policy(&pg, "member_of = [\"app_admin\"]", true).await;
    let broker = TestBroker::builder().policy(&text).start().await;
    broker.reconciled().await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let role = role_of(&grant);
    let admin = pg.admin().await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE su_role SUPERUSER NOLOGIN; GRANT su_role TO \"{role}\"; \
             CREATE ROLE bob LOGIN PASSWORD 'pw'; GRANT \"{role}\" TO bob;"
        ))
        .await
        .unwrap();
    let bob = pg.connect_as("bob", "pw").await.unwrap();
    bob.batch_execute("SELECT 1").await.unwrap();

    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    let member = |of: &str| {
        let (admin, of) = (&admin, of.to_string());
        async move {
            admin
                .query_one("SELECT pg_has_role('bob', $1, 'MEMBER')", &[&of])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    eventually(LONG, || async { !member(&role).await }).await;
    assert!(
        bob.batch_execute("SELECT 1").await.is_err(),
        "bob's session was not ended"
    );
    let access = broker
        .as_user("alice")
        .grant(&grant.id)
        .await
        .unwrap()
        .access
        .unwrap();
    assert_ne!(access.state, AccessState::Removed, "{access:?}");
    assert!(
        role_exists(&pg, &role).await,
        "the role stays until its revoke goes through"
    );
}

async fn lowering_a_connection_limit(createrole: bool) {
    let pg = cluster().await;
    let access = "member_of = [\"app_admin\"]\nconnection_limit = 3";
    let (text, _password) = admin_policy(&pg, access, createrole).await;
    let broker = TestBroker::builder().policy(&text).start().await;
    broker.reconciled().await;
    let grant = granted(&broker, Some(600)).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let role = role_of(&grant);
    let password = access_of(&broker, &grant).await.env["PGPASSWORD"].clone();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(pg.connect_as(&role, &password).await.unwrap());
    }

    let lowered = text.replace("connection_limit = 3", "connection_limit = 1");
    std::fs::write(broker.policy_path(), lowered).unwrap();
    broker.server().reload(&broker.policy_path()).await.unwrap();
    eventually(LONG, || async {
        let mut ended = 0;
        for session in &sessions {
            ended += usize::from(session.query_one("SELECT 1", &[]).await.is_err());
        }
        ended == 3
    })
    .await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let again = pg.connect_as(&role, &password).await.unwrap();
    again.query_one("SELECT 1", &[]).await.unwrap();
    assert!(
        pg.connect_as(&role, &password).await.is_err(),
        "one session at most"
    );
}

#[tokio::test]
async fn hostile_text_in_a_justification_never_reaches_sql() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    let hostile = "x'); DROP ROLE app_admin; -- \"; DROP TABLE orders; $$ \\";
    let filed = broker
        .as_user("alice")
        .file(&request("pgdb", hostile))
        .await
        .unwrap();
    let approved = broker.as_user("bob").approve(&filed.id).await.unwrap();
    let id = approved.grant_id.unwrap();
    until_access(&broker, &id, AccessState::Live).await;
    broker.as_user("alice").revoke(&id, hostile).await.unwrap();
    until_access(&broker, &id, AccessState::Removed).await;
    assert!(role_exists(&pg, "app_admin").await);
    let orders: i64 = pg
        .admin()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 2);
}

#[tokio::test]
async fn a_member_of_role_that_does_not_exist_is_refused_at_load_with_file_and_line() {
    let pg = cluster().await;
    let text = policy(&pg, "member_of = [\"app_admin\", \"no_such_role\"]");
    let err = TestBroker::builder()
        .policy(&text)
        .try_start()
        .await
        .err()
        .expect("refused");
    let message = format!("{err:#}");
    let line = text.lines().position(|l| l == "id = \"pgdb\"").unwrap();
    assert!(
        message.contains(&format!("policy.toml:{line}:")),
        "{message}"
    );
    assert!(
        message.contains("no PostgreSQL role `no_such_role`"),
        "{message}"
    );
}

#[tokio::test]
async fn a_target_down_at_load_is_no_reason_to_refuse_the_policy() {
    let pg = cluster().await;
    let text = policy(&pg, "member_of = [\"app_admin\"]");
    pg.stop();
    let broker = TestBroker::builder().policy(&text).start().await;
    let roles: Vec<hoist_api::Role> = broker.as_user("alice").get("/v1/roles").await.unwrap();
    let pgdb = roles.iter().find(|r| r.id == "pgdb").unwrap();
    let target = pgdb.target.as_ref().unwrap();
    assert_eq!(
        (target.name.as_str(), target.kind.as_str()),
        ("db1", "postgres")
    );
}

#[tokio::test]
async fn a_broker_killed_mid_grant_removes_the_role_when_it_is_back() {
    let pg = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        policy(&pg, "member_of = [\"app_admin\"]"),
    )
    .unwrap();
    let mut hoistd = Served::start(dir.path(), |_| {});
    hoistd.drain();
    let client = |hoistd: &Served, user: &str| Client {
        base: hoistd.url(),
        token: format!("t-{user}"),
        http: reqwest::Client::new(),
    };
    let mut body = request("pgdb", "vacuum the orders table");
    body.duration_secs = Some(3);
    let filed = client(&hoistd, "alice").file(&body).await.unwrap();
    let id = client(&hoistd, "bob")
        .approve(&filed.id)
        .await
        .unwrap()
        .grant_id
        .unwrap();
    eventually(LONG, || async {
        let grant = client(&hoistd, "alice").grant(&id).await.unwrap();
        grant.access.unwrap().state == AccessState::Live
    })
    .await;
    let grant = client(&hoistd, "alice").grant(&id).await.unwrap();
    let role = role_of(&grant);
    let password = client(&hoistd, "alice")
        .credential(&id)
        .await
        .unwrap()
        .access
        .unwrap()
        .env["PGPASSWORD"]
        .clone();
    let session = pg.connect_as(&role, &password).await.unwrap();

    hoistd.signal("KILL");
    hoistd.wait();
    // The grant ends while the broker is down.
    let past_end = (grant.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default()
        + Duration::from_millis(500);
    tokio::time::sleep(past_end).await;
    assert!(
        role_exists(&pg, &role).await,
        "nothing removed it while hoistd was down"
    );

    let mut hoistd = Served::start(dir.path(), |_| {});
    hoistd.drain();
    eventually(LONG, || async {
        let grant = client(&hoistd, "alice").grant(&id).await.unwrap();
        grant.access.unwrap().state == AccessState::Removed
    })
    .await;
    assert!(!role_exists(&pg, &role).await);
    assert!(session.query_one("SELECT 1", &[]).await.is_err());
    let ended = client(&hoistd, "alice").grant(&id).await.unwrap();
    assert_eq!(ended.state, GrantState::Expired);
    let kinds: Vec<AuditKind> = client(&hoistd, "erin")
        .audit()
        .await
        .into_iter()
        .filter(|e| e.grant_id.as_deref() == Some(&id))
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&AuditKind::Expired), "{kinds:?}");
    assert!(kinds.contains(&AuditKind::Deprovisioned), "{kinds:?}");
}

#[tokio::test]
async fn with_tls_configured_the_admin_connection_is_encrypted_and_checks_the_server() {
    let pg = Postgres::start_with_tls()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    pg.admin()
        .await
        .unwrap()
        .batch_execute("CREATE ROLE app_admin NOLOGIN")
        .await
        .unwrap();
    let with_ca = |ca: &std::path::Path| {
        format!(
            "{}\n{}sslmode = \"verify-full\"\nca_file = \"{}\"\n{}",
            policy_text(""),
            pg.target_toml("db1"),
            ca.display(),
            target_role("pgdb", "db1", "member_of = [\"app_admin\"]")
        )
    };
    let broker = TestBroker::builder()
        .policy(&with_ca(&pg.ca_file()))
        .start()
        .await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let encrypted: i64 = pg
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE starts_with(application_name, 'hoistd') AND ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "hoistd's admin connection uses TLS");
    let credential = broker.as_user("alice").credential(&grant.id).await.unwrap();
    assert_eq!(credential.access.unwrap().env["PGSSLMODE"], "verify-full");
    // `require` is checked by hoistd as verify-full is; libpq's `require`
    // checks nothing, so the holder is handed verify-full too.
    let requiring = TestBroker::builder()
        .policy(
            &with_ca(&pg.ca_file())
                .replace("sslmode = \"verify-full\"", "sslmode = \"require\"")
                .replace("[settings]\n", "[settings]\nissuer = \"hoistd-require\"\n"),
        )
        .start()
        .await;
    let grant = granted(&requiring, None).await;
    until_access(&requiring, &grant.id, AccessState::Live).await;
    let access = access_of(&requiring, &grant).await;
    assert_eq!(access.env["PGSSLMODE"], "verify-full");
    assert!(
        access
            .uri
            .as_deref()
            .unwrap()
            .contains("sslmode=verify-full"),
        "{:?}",
        access.uri
    );

    // A CA that did not sign the server's certificate: nothing is provisioned.
    let other = Postgres::start_with_tls().await.unwrap();
    let refused = TestBroker::builder()
        .policy(&with_ca(&other.ca_file()))
        .start()
        .await;
    let grant = granted(&refused, None).await;
    eventually(LONG, || async {
        let access = access_state(&refused, &grant.id).await;
        access == Some(AccessState::Failed)
    })
    .await;
    let reason = refused
        .as_user("alice")
        .grant(&grant.id)
        .await
        .unwrap()
        .access
        .unwrap()
        .reason
        .unwrap();
    assert!(reason.contains("certificate"), "{reason}");
}

/// Every byte hoistd keeps: its database and write-ahead log.
fn stored_bytes(broker: &TestBroker) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(broker.dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("hoistd.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_password_is_kept_in_hoistds_database_or_audit_log() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let mut passwords = Vec::new();
    for _ in 0..3 {
        let credential = broker.as_user("alice").credential(&grant.id).await.unwrap();
        passwords.push(credential.access.unwrap().env["PGPASSWORD"].clone());
    }
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    let stored = stored_bytes(&broker);
    assert!(
        holds(&stored, &grant.id),
        "the scan reads what hoistd wrote"
    );
    for secret in passwords.iter().chain([&pg.admin_password().to_string()]) {
        assert!(!holds(&stored, secret), "a secret in hoistd's database");
    }
    let audit = serde_json::to_string(&broker.as_user("erin").audit().await).unwrap();
    assert!(passwords.iter().all(|p| !audit.contains(p.as_str())));
}

#[tokio::test]
async fn what_a_grants_role_created_is_reassigned_as_configured_or_dropped() {
    let pg = cluster().await;
    pg.admin()
        .await
        .unwrap()
        .batch_execute("CREATE ROLE app_owner NOLOGIN; GRANT CREATE ON SCHEMA public TO app_admin;")
        .await
        .unwrap();
    for (reassign, kept) in [(true, true), (false, false)] {
        let mut text = policy(&pg, "member_of = [\"app_admin\"]");
        if reassign {
            text = with_target_settings(&text, "reassign_owned_to = \"app_owner\"\n");
        }
        let broker = TestBroker::builder().policy(&text).start().await;
        let grant = granted(&broker, None).await;
        until_access(&broker, &grant.id, AccessState::Live).await;
        let password = access_of(&broker, &grant).await.env["PGPASSWORD"].clone();
        let table = format!("made_{reassign}");
        pg.connect_as(&role_of(&grant), &password)
            .await
            .unwrap()
            .batch_execute(&format!("CREATE TABLE {table} (id int)"))
            .await
            .unwrap();
        broker
            .as_user("alice")
            .revoke(&grant.id, "done")
            .await
            .unwrap();
        until_access(&broker, &grant.id, AccessState::Removed).await;
        let owner: Option<String> = pg
            .admin()
            .await
            .unwrap()
            .query_opt(
                "SELECT tableowner::text FROM pg_tables WHERE tablename = $1",
                &[&table],
            )
            .await
            .unwrap()
            .map(|row| row.get(0));
        if kept {
            assert_eq!(owner.as_deref(), Some("app_owner"));
        } else {
            assert_eq!(owner, None, "dropped with the role");
        }
        assert!(!role_exists(&pg, &role_of(&grant)).await);
    }
}

/// `reassign_owned_to` must be a quarantine: what a holder leaves runs as
/// it afterwards (a `SECURITY DEFINER` function granted to PUBLIC, say). A
/// privileged one is refused at load; one granted something since makes the
/// removal wait, failing with why, while the holder's role holds nothing.
#[tokio::test]
async fn what_a_holder_leaves_goes_only_to_a_role_with_no_privileges() {
    let pg = cluster().await;
    let admin = pg.admin().await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE app_owner NOLOGIN; GRANT app_admin TO app_owner; \
             CREATE ROLE quarantine NOLOGIN; GRANT CREATE ON SCHEMA public TO app_admin; \
             GRANT SELECT ON orders TO app_admin WITH GRANT OPTION;",
        )
        .await
        .unwrap();
    let text = policy(&pg, "member_of = [\"app_admin\"]");
    let err = TestBroker::builder()
        .policy(&with_target_settings(
            &text,
            "reassign_owned_to = \"app_owner\"\n",
        ))
        .try_start()
        .await
        .err()
        .expect("refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("reassign_owned_to `app_owner` is a member of app_admin"),
        "{message}"
    );

    let broker = TestBroker::builder()
        .policy(&with_target_settings(
            &text,
            "reassign_owned_to = \"quarantine\"\n",
        ))
        .start()
        .await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let password = access_of(&broker, &grant).await.env["PGPASSWORD"].clone();
    // The way back in: a definer's function anyone may call, and the
    // quarantine given the app's data by the holder acting as app_admin.
    pg.connect_as(&role_of(&grant), &password)
        .await
        .unwrap()
        .batch_execute(
            "CREATE FUNCTION peek() RETURNS bigint LANGUAGE sql SECURITY DEFINER \
             AS 'SELECT count(*) FROM orders'; \
             GRANT EXECUTE ON FUNCTION peek() TO PUBLIC; \
             SET ROLE app_admin; GRANT SELECT ON orders TO quarantine;",
        )
        .await
        .unwrap();
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    eventually(LONG, || async {
        let access = target_access(&broker, &grant.id).await;
        access.state == AccessState::Removing
            && access.reason.as_deref().is_some_and(|why| {
                why.contains("reassign_owned_to `quarantine` is granted privileges on objects")
            })
    })
    .await;
    let held: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.member \
             WHERE r.rolname = $1",
            &[&role_of(&grant)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "the holder's role keeps no membership meanwhile");
    assert!(pg.connect_as(&role_of(&grant), &password).await.is_err());
    // What a holder granted cannot keep hoistd from loading its policy.
    let again = TestBroker::builder()
        .policy(&with_target_settings(
            &text,
            "reassign_owned_to = \"quarantine\"\n",
        ))
        .try_start()
        .await;
    assert!(again.is_ok(), "{:#}", again.err().unwrap());

    admin
        .batch_execute("SET ROLE app_admin; REVOKE SELECT ON orders FROM quarantine; RESET ROLE")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert!(!role_exists(&pg, &role_of(&grant)).await);
    let owner: String = admin
        .query_one(
            "SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'peek'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "quarantine");
    let anyone = "CREATE ROLE anyone LOGIN PASSWORD 'pw'";
    admin.batch_execute(anyone).await.unwrap();
    let err = pg
        .connect_as("anyone", "pw")
        .await
        .unwrap()
        .query_one("SELECT peek()", &[])
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("permission denied for table orders"),
        "{err:?}"
    );
}

/// A grant's role handed to another role (PostgreSQL 14 and before let a
/// role logged in as itself grant itself; here the admin does it) and a
/// table its holder left in a database the target does not list: after
/// revoke the membership is gone, the other role's session that switched
/// to it ended, the table dropped, the role gone.
#[tokio::test]
async fn a_holder_who_shares_the_role_or_builds_elsewhere_keeps_nothing_after_revoke() {
    let pg = cluster().await;
    let admin = pg.admin().await.unwrap();
    admin
        .batch_execute("CREATE DATABASE elsewhere")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE ROLE accomplice LOGIN PASSWORD 'pw'")
        .await
        .unwrap();
    pg.admin_in("elsewhere")
        .await
        .unwrap()
        .batch_execute("GRANT CREATE ON SCHEMA public TO app_admin")
        .await
        .unwrap();
    let broker = broker(&pg).await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let role = role_of(&grant);
    let password = access_of(&broker, &grant).await.env["PGPASSWORD"].clone();
    admin
        .batch_execute(&format!("GRANT \"{role}\" TO accomplice"))
        .await
        .unwrap();
    pg.connect_to("elsewhere", &role, &password)
        .await
        .unwrap()
        .batch_execute("CREATE TABLE stash (id int)")
        .await
        .unwrap();
    let accomplice = pg.connect_as("accomplice", "pw").await.unwrap();
    accomplice
        .batch_execute(&format!("SET ROLE \"{role}\""))
        .await
        .unwrap();
    assert_eq!(
        accomplice
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2,
        "the accomplice reads what the grant allows"
    );

    revoked_and_gone(&pg, &broker, &grant).await;
    assert!(
        accomplice.query_one("SELECT 1", &[]).await.is_err(),
        "the session that switched to the role was ended"
    );
    let members: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member \
             WHERE m.rolname = 'accomplice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(members, 0, "the accomplice is a member of nothing");
    let stash = pg
        .admin_in("elsewhere")
        .await
        .unwrap()
        .query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'stash'", &[])
        .await
        .unwrap();
    assert!(stash.is_none(), "the table left elsewhere was dropped");
}

/// A member of a group the grant's role was granted to (by an admin, or by
/// its holder before PostgreSQL 16) that switched through it to what the
/// role holds has that session ended at the removal, as a direct member's
/// is.
#[tokio::test]
async fn a_member_of_a_group_the_role_was_granted_to_keeps_nothing() {
    let pg = cluster().await;
    let admin = pg.admin().await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE team NOLOGIN; CREATE ROLE teammate LOGIN PASSWORD 'pw'; \
             GRANT team TO teammate",
        )
        .await
        .unwrap();
    let broker = broker(&pg).await;
    let (grant, _, switched) = lent(&pg, &broker, "team", "teammate").await;
    switched
        .query_one("SELECT 1 FROM orders LIMIT 1", &[])
        .await
        .unwrap();

    revoked_and_gone(&pg, &broker, &grant).await;
    assert!(
        switched.query_one("SELECT 1", &[]).await.is_err(),
        "the session that switched to app_admin through the group was ended"
    );
    let after = pg.connect_as("teammate", "pw").await.unwrap();
    assert!(after.batch_execute("SET ROLE app_admin").await.is_err());
    assert!(
        after.batch_execute("SET ROLE team").await.is_ok(),
        "the teammate keeps its own group"
    );
}

/// A role made a member of a grant's role that keeps reconnecting (each
/// session ended at once opens another, and switches to what the grant
/// holds) does not hold the removal up: the revokes run, the session that
/// switched to what the grant held before them is ended, and none opened
/// after holds anything once the removal is done.
#[tokio::test]
async fn a_member_that_keeps_reconnecting_does_not_keep_the_grants_access() {
    member_that_keeps_reconnecting(false).await;
}

/// The same with an admin that is not a superuser, which sees of another
/// role's sessions neither when each began nor what kind it is.
#[tokio::test]
async fn a_member_that_keeps_reconnecting_keeps_nothing_from_an_admin_not_a_superuser() {
    member_that_keeps_reconnecting(true).await;
}

async fn member_that_keeps_reconnecting(createrole: bool) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let pg = std::sync::Arc::new(cluster().await);
    let admin = pg.admin().await.unwrap();
    admin
        .batch_execute("CREATE ROLE accomplice LOGIN PASSWORD 'pw'")
        .await
        .unwrap();
    let (text, _password) = admin_policy(&pg, "member_of = [\"app_admin\"]", createrole).await;
    let broker = TestBroker::builder().policy(&text).start().await;
    broker.reconciled().await;
    let (grant, role, switched) = lent(&pg, &broker, "accomplice", "accomplice").await;
    // Three sessions of the accomplice at all times, each switching to
    // app_admin as it opens: each one ended is opened again. One still
    // reading the orders once the removal is done kept the grant's access.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let removed = std::sync::Arc::new(AtomicBool::new(false));
    let kept = std::sync::Arc::new(AtomicBool::new(false));
    let mut reconnecting = Vec::new();
    for _ in 0..3 {
        let (pg, stop, removed, kept) = (pg.clone(), stop.clone(), removed.clone(), kept.clone());
        reconnecting.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(client) = pg.connect_as("accomplice", "pw").await else {
                    continue;
                };
                if client.batch_execute("SET ROLE app_admin").await.is_err() {
                    continue;
                }
                while !stop.load(Ordering::Relaxed) {
                    let done = removed.load(Ordering::Relaxed);
                    if client
                        .query_one("SELECT count(*) FROM orders", &[])
                        .await
                        .is_err()
                    {
                        break;
                    }
                    if done {
                        kept.store(true, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }

    // The revokes held up for a moment, as by any transaction of the
    // cluster's that holds a lock on the memberships: sessions opened
    // meanwhile switch before them.
    let blocker = pg.admin().await.unwrap();
    blocker
        .batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_auth_members IN SHARE MODE")
        .await
        .unwrap();
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    removed.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in reconnecting {
        task.await.unwrap();
    }
    assert!(
        !kept.load(Ordering::Relaxed),
        "a session of the accomplice read the orders as app_admin after the removal"
    );
    assert!(!role_exists(&pg, &role).await);
    assert!(
        switched.query_one("SELECT 1", &[]).await.is_err(),
        "the session that switched to app_admin through the grant was ended"
    );
    let after = pg.connect_as("accomplice", "pw").await.unwrap();
    assert!(
        after.batch_execute("SET ROLE app_admin").await.is_err(),
        "the accomplice holds nothing of the grant"
    );
}

/// With an admin that is not a superuser (CREATEROLE, ADMIN OPTION on
/// `app_admin`, pg_signal_backend), a superuser made a member of a grant's
/// role, whose session the admin may not end, does not keep the removal
/// from running: a superuser gains nothing from the role.
#[tokio::test]
async fn a_superuser_member_does_not_keep_an_admin_from_removing_the_role() {
    let pg = cluster().await;
    let admin = pg.admin().await.unwrap();
    admin
        .batch_execute("CREATE ROLE root2 LOGIN SUPERUSER PASSWORD 'pw'")
        .await
        .unwrap();
    let (text, _password) = admin_policy(&pg, "member_of = [\"app_admin\"]", true).await;
    let broker = TestBroker::builder().policy(&text).start().await;
    broker.reconciled().await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let role = role_of(&grant);
    admin
        .batch_execute(&format!("GRANT \"{role}\" TO root2"))
        .await
        .unwrap();
    let root2 = pg.connect_as("root2", "pw").await.unwrap();

    revoked_and_gone(&pg, &broker, &grant).await;
    assert_eq!(
        root2
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1,
        "the superuser's session was left"
    );
}

/// The admin's own membership in a grant's role (PostgreSQL 16 makes a
/// CREATEROLE admin one of each role it creates) is left for the role's
/// drop, and its sessions, hoistd's own among them, are never ended as
/// the role's members'.
#[tokio::test]
async fn the_admins_hold_on_a_grants_role_is_left_and_its_sessions_live_on() {
    admins_hold(false).await;
}

/// The same with an admin that is not a superuser, whose sessions the
/// sweep would end if it took the admin for a member.
#[tokio::test]
async fn the_hold_of_an_admin_not_a_superuser_is_left_and_its_sessions_live_on() {
    admins_hold(true).await;
}

async fn admins_hold(createrole: bool) {
    let pg = cluster().await;
    let (text, _password) = admin_policy(&pg, "member_of = [\"app_admin\"]", createrole).await;
    let broker = TestBroker::builder().policy(&text).start().await;
    broker.reconciled().await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let role = role_of(&grant);
    let (admin_role, bystander) = if createrole {
        (
            "hoist_admin",
            pg.connect_as("hoist_admin", "adminpw").await.unwrap(),
        )
    } else {
        ("postgres", pg.admin().await.unwrap())
    };
    pg.admin()
        .await
        .unwrap()
        .batch_execute(&format!("GRANT \"{role}\" TO {admin_role}"))
        .await
        .unwrap();

    revoked_and_gone(&pg, &broker, &grant).await;
    assert_eq!(
        bystander
            .query_one("SELECT 1", &[])
            .await
            .expect("the admin's other session lives on")
            .get::<_, i32>(0),
        1
    );
}

/// What a holder creates in the database they connect to is cleaned up
/// even when `databases` does not name it: the role can be dropped.
#[tokio::test]
async fn what_a_grants_role_created_where_holders_connect_is_dropped_with_it() {
    let pg = cluster().await;
    let admin = pg.admin().await.unwrap();
    admin.batch_execute("CREATE DATABASE app").await.unwrap();
    pg.admin_in("app")
        .await
        .unwrap()
        .batch_execute("GRANT CREATE ON SCHEMA public TO app_admin")
        .await
        .unwrap();
    let text = with_target_settings(
        &policy(&pg, "member_of = [\"app_admin\"]"),
        "database = \"app\"\ndatabases = [\"postgres\"]\n",
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let access = access_of(&broker, &grant).await;
    assert_eq!(access.env["PGDATABASE"], "app");
    pg.connect_to("app", &role_of(&grant), &access.env["PGPASSWORD"])
        .await
        .unwrap()
        .batch_execute("CREATE TABLE scratch (id int)")
        .await
        .unwrap();
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    assert!(!role_exists(&pg, &role_of(&grant)).await);
}

/// A database `databases` lists that was dropped since is left out of a
/// removal, which would otherwise fail at every attempt for good.
#[tokio::test]
async fn a_listed_database_dropped_since_does_not_keep_a_role() {
    let pg = cluster().await;
    let admin = pg.admin().await.unwrap();
    admin
        .batch_execute("CREATE DATABASE reporting")
        .await
        .unwrap();
    let text = with_target_settings(
        &policy(&pg, "member_of = [\"app_admin\"]"),
        "databases = [\"reporting\"]\n",
    );
    let broker = TestBroker::builder().policy(&text).start().await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    admin
        .batch_execute("DROP DATABASE reporting")
        .await
        .unwrap();
    revoked_and_gone(&pg, &broker, &grant).await;
}

#[tokio::test]
async fn an_extension_moves_valid_until_at_the_target() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    let grant = granted(&broker, Some(600)).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let until = || async {
        let at: String = pg
            .admin()
            .await
            .unwrap()
            .query_one(
                "SELECT to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS') \
                 FROM pg_roles WHERE rolname = $1",
                &[&role_of(&grant)],
            )
            .await
            .unwrap()
            .get(0);
        at
    };
    assert_eq!(
        until().await,
        grant.expires_at.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
    );
    let extended = extended(&broker, &grant).await;
    let wanted = extended
        .expires_at
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string();
    eventually(LONG, || async { until().await == wanted }).await;
    assert_eq!(
        access_state(&broker, &grant.id).await,
        Some(AccessState::Live)
    );
}

/// A TCP proxy to the server that, once armed with `mark`, holds what the
/// next connection to send it sends, from those bytes on (the server gets
/// none of them), until released: a statement delayed on its way, as one
/// queued behind slow ones is.
struct Holding {
    port: u16,
    mark: std::sync::Arc<std::sync::Mutex<Option<&'static [u8]>>>,
    released: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Holding {
    fn start(upstream: u16) -> Holding {
        use std::io::{Read, Write};
        use std::sync::{Arc, Condvar, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mark: Arc<Mutex<Option<&'static [u8]>>> = Arc::default();
        let released = Arc::new((Mutex::new(false), Condvar::new()));
        let (marked, releasing) = (Arc::clone(&mark), Arc::clone(&released));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut server = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let (mut from_server, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
                let (marked, releasing) = (Arc::clone(&marked), Arc::clone(&releasing));
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let n = match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        let hold = {
                            let mut mark = marked.lock().unwrap();
                            let found =
                                mark.is_some_and(|m| chunk.windows(m.len()).any(|w| w == m));
                            if found {
                                *mark = None;
                            }
                            found
                        };
                        if hold {
                            let (lock, released) = &*releasing;
                            let _held = released
                                .wait_while(lock.lock().unwrap(), |released| !*released)
                                .unwrap();
                        }
                        if server.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Holding {
            port,
            mark,
            released,
        }
    }

    fn hold_at(&self, mark: &'static [u8]) {
        *self.mark.lock().unwrap() = Some(mark);
    }

    fn release(&self) {
        let (lock, released) = &*self.released;
        *lock.lock().unwrap() = true;
        released.notify_all();
    }
}

/// A provision whose `CREATE ROLE` is held up past the operation's
/// deadline, then revoked (after a reload): its removal finds no role and
/// is confirmed, and the held statement, let through after, must not make
/// the role then. The session it was sent on is ended on the server before
/// anything else runs.
#[tokio::test]
async fn a_statement_given_up_on_never_runs_after_the_removal() {
    let pg = cluster().await;
    let proxy = Holding::start(pg.port());
    let text = policy(&pg, "member_of = [\"app_admin\"]")
        .replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port))
        .replace("statement_timeout = \"2s\"", "statement_timeout = \"1s\"")
        .replace("connect_timeout = \"2s\"", "connect_timeout = \"1s\"");
    let broker = TestBroker::builder().policy(&text).start().await;
    broker.reconciled().await;
    proxy.hold_at(b"CREATE ROLE");
    let grant = granted(&broker, None).await;
    eventually(LONG, || async {
        let access = target_access(&broker, &grant.id).await;
        access
            .reason
            .is_some_and(|reason| reason.contains("no answer within"))
    })
    .await;
    // A reload between builds the target anew: what the old one gave up on
    // is still ended first.
    broker.server().reload(&broker.policy_path()).await.unwrap();
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    proxy.release();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !role_exists(&pg, &role_of(&grant)).await,
        "the held CREATE ROLE ran after the removal"
    );
}

/// A leader stopped or killed mid-call can leave a statement queued on its
/// admin session, to run whenever the server reaches it: here a
/// `CREATE ROLE` behind a sleep, on a session named as an earlier term's.
/// The next term's first connection ends that session before its removal
/// runs, so the role is not made again after the removal found nothing.
#[tokio::test]
async fn a_statement_left_by_an_earlier_leader_never_runs_after_the_removal() {
    let pg = cluster().await;
    let broker = broker(&pg).await;
    let grant = granted(&broker, None).await;
    until_access(&broker, &grant.id, AccessState::Live).await;
    let role = role_of(&grant);
    assert!(role_exists(&pg, &role).await);

    let earlier = pg.admin().await.unwrap();
    let name = hoistd::target::postgres::term_application_name("hoistd", 1);
    earlier
        .batch_execute(&format!("SET application_name = '{name}'"))
        .await
        .unwrap();
    let queued = tokio::spawn(async move {
        earlier
            .batch_execute(&format!("SELECT pg_sleep(4); CREATE ROLE \"{role}\" LOGIN"))
            .await
    });
    // A reload builds the target anew: its first call opens a connection
    // under this leader's term, as a new leader's does.
    broker.server().reload(&broker.policy_path()).await.unwrap();
    broker
        .as_user("alice")
        .revoke(&grant.id, "done")
        .await
        .unwrap();
    until_access(&broker, &grant.id, AccessState::Removed).await;
    let ended = queued
        .await
        .unwrap()
        .expect_err("the earlier session ran on");
    assert_eq!(
        ended.code(),
        Some(&tokio_postgres::error::SqlState::ADMIN_SHUTDOWN),
        "{ended}"
    );
    assert!(
        !role_exists(&pg, &role_of(&grant)).await,
        "the queued CREATE ROLE ran after the removal"
    );
}
