//! Grants at targets: a grant's access kept as part of the grant, the
//! outbox of effects (rule 9) and the webhook delivery log.

use hoist_api::{AccessState, GrantState, TargetAccess};

use super::{at, bare_request, grant, insert_requests};
use crate::store::{Delivery, Effect, EffectAction, GrantQuery, Store, StoreError};

fn access(target: &str, state: AccessState) -> TargetAccess {
    TargetAccess {
        target: target.into(),
        kind: "postgres".into(),
        state,
        reason: Some("db1 unreachable: « connection refused »".into()),
        attempts: 3,
        next_attempt_at: Some(at(9_000)),
        updated_at: at(8_000),
        live_until: None,
    }
}

pub(super) fn effect(id: &str, grant_id: &str, action: EffectAction, next_ms: i64) -> Effect {
    Effect {
        id: id.into(),
        grant_id: grant_id.into(),
        target: "db1".into(),
        action,
        attempts: 0,
        next_attempt_at: at(next_ms),
        last_error: None,
        created_at: at(1),
        done_at: None,
        access: Some(serde_json::json!({ "databases": ["app"], "privileges": "« read »" })),
        system: Some("postgres db1.example:5432".into()),
    }
}

/// A grant's access is written with it, read back with it, changed with
/// it, never lost by an update without it, and filters grant queries.
pub fn grant_access_round_trip_and_queries(store: &dyn Store) {
    insert_requests(
        store,
        &[
            bare_request("req_a", "alice", "db", 1),
            bare_request("req_b", "bob", "db", 2),
            bare_request("req_c", "carol", "db", 3),
        ],
    );
    let mut live = grant("gr_live", "req_a", "alice", 10);
    live.access = Some(TargetAccess {
        live_until: Some(at(7_000)),
        ..access("db1", AccessState::Live)
    });
    let mut elsewhere = grant("gr_else", "req_b", "bob", 20);
    elsewhere.access = Some(TargetAccess {
        reason: None,
        next_attempt_at: None,
        ..access("hook", AccessState::Provisioning)
    });
    let plain = grant("gr_plain", "req_c", "carol", 30);
    let mut tx = store.transaction().unwrap();
    for g in [&live, &elsewhere, &plain] {
        tx.insert_grant(g).unwrap();
    }
    tx.commit().unwrap();

    let tx = store.transaction().unwrap();
    assert_eq!(tx.grant("gr_live").unwrap().as_ref(), Some(&live));
    assert_eq!(tx.grant("gr_else").unwrap().as_ref(), Some(&elsewhere));
    assert_eq!(tx.grant("gr_plain").unwrap().unwrap().access, None);
    let at_db1 = tx
        .grants(&GrantQuery {
            target: Some("db1".into()),
            ..GrantQuery::default()
        })
        .unwrap();
    assert_eq!(at_db1, vec![live.clone()], "by target");
    let provisioning = tx
        .grants(&GrantQuery {
            access_states: vec![AccessState::Provisioning, AccessState::Failed],
            ..GrantQuery::default()
        })
        .unwrap();
    assert_eq!(provisioning, vec![elsewhere.clone()], "by access state");
    drop(tx);

    // Ended: the access changes with the grant, in one write.
    let mut ended = live.clone();
    ended.state = GrantState::Revoked;
    ended.ended_at = Some(at(50));
    ended.access = Some(TargetAccess {
        reason: None,
        attempts: 0,
        next_attempt_at: None,
        ..access("db1", AccessState::Removing)
    });
    // A grant first given access by an update.
    let mut given = plain.clone();
    given.access = Some(access("db1", AccessState::Failed));
    let mut tx = store.transaction().unwrap();
    tx.update_grant(&ended).unwrap();
    tx.update_grant(&given).unwrap();
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(tx.grant("gr_live").unwrap().as_ref(), Some(&ended));
    assert_eq!(tx.grant("gr_plain").unwrap().as_ref(), Some(&given));
    drop(tx);

    // An update that carries no access leaves the stored access as it was.
    let mut bare = ended.clone();
    bare.access = None;
    bare.revoke_reason = Some("changed".into());
    let mut tx = store.transaction().unwrap();
    tx.update_grant(&bare).unwrap();
    tx.commit().unwrap();
    let read = store
        .transaction()
        .unwrap()
        .grant("gr_live")
        .unwrap()
        .unwrap();
    assert_eq!(read.revoke_reason.as_deref(), Some("changed"));
    assert_eq!(read.access, ended.access);
}

/// A read of due effects leaves out the targets named, and only those, in
/// the same read as the others (the outbox names its targets running all
/// they may).
pub fn effects_skipped_by_target(store: &dyn Store) {
    insert_requests(store, &[bare_request("req_a", "alice", "db", 1)]);
    let mut tx = store.transaction().unwrap();
    tx.insert_grant(&grant("gr_a", "req_a", "alice", 10))
        .unwrap();
    let at_db2 = |id: &str, next_ms| Effect {
        target: "db2".into(),
        ..effect(id, "gr_a", EffectAction::Provision, next_ms)
    };
    for e in [
        effect("fx_1", "gr_a", EffectAction::Provision, 10),
        at_db2("fx_2", 20),
        effect("fx_3", "gr_a", EffectAction::Deprovision, 30),
        at_db2("fx_4", 40),
    ] {
        tx.insert_effect(&e).unwrap();
    }
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    let ids = |skip: &[&str]| {
        let skip: Vec<String> = skip.iter().map(|s| s.to_string()).collect();
        let due: Vec<(String, String)> = tx
            .due_effects(at(100), 10, &skip)
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.grant_id))
            .collect();
        assert_eq!(
            tx.due_effect_ids(at(100), 10, &skip).unwrap(),
            due,
            "the same ids, in the same order"
        );
        due.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
    };
    assert_eq!(ids(&[]), ["fx_1", "fx_2", "fx_3", "fx_4"]);
    assert_eq!(ids(&["db1"]), ["fx_2", "fx_4"]);
    assert_eq!(ids(&["db2"]), ["fx_1", "fx_3"]);
    assert_eq!(ids(&["db1", "db2"]), Vec::<String>::new());
    assert_eq!(ids(&["it's", "db2"]), ["fx_1", "fx_3"], "a name quoted");
}

/// Effects are kept until done: due ones come soonest first, done ones
/// never; updates keep every field; ids are unique (rule 9).
pub fn effects_outbox(store: &dyn Store) {
    insert_requests(store, &[bare_request("req_a", "alice", "db", 1)]);
    let mut tx = store.transaction().unwrap();
    tx.insert_grant(&grant("gr_a", "req_a", "alice", 10))
        .unwrap();
    let provision = effect("fx_1", "gr_a", EffectAction::Provision, 100);
    // One queued before effects kept their access and system.
    let later = Effect {
        access: None,
        system: None,
        ..effect("fx_2", "gr_a", EffectAction::Deprovision, 500)
    };
    let sooner = effect("fx_3", "gr_a", EffectAction::Deprovision, 50);
    for e in [&provision, &later, &sooner] {
        tx.insert_effect(e).unwrap();
    }
    tx.commit().unwrap();

    let tx = store.transaction().unwrap();
    let ids = |effects: Vec<Effect>| effects.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(tx.due_effects(at(100), 10, &[]).unwrap()),
        ["fx_3", "fx_1"]
    );
    assert_eq!(
        ids(tx.due_effects(at(49), 10, &[]).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(tx.due_effects(at(1_000), 1, &[]).unwrap()),
        ["fx_3"],
        "limit"
    );
    let pair = |id: &str| (id.to_string(), "gr_a".to_string());
    assert_eq!(
        tx.due_effect_ids(at(100), 10, &[]).unwrap(),
        [pair("fx_3"), pair("fx_1")]
    );
    assert_eq!(tx.due_effect_ids(at(49), 10, &[]).unwrap(), []);
    assert_eq!(
        tx.due_effect_ids(at(1_000), 1, &[]).unwrap(),
        [pair("fx_3")],
        "limit"
    );
    assert_eq!(
        ids(tx
            .due_effects(at(100), 10, &["db2".into(), "db1".into()])
            .unwrap()),
        Vec::<String>::new(),
        "a target skipped"
    );
    assert_eq!(
        ids(tx.due_effects(at(100), 10, &["db2".into()]).unwrap()),
        ["fx_3", "fx_1"],
        "only the targets skipped"
    );
    assert_eq!(tx.next_effect_due().unwrap(), Some(at(50)));
    assert_eq!(tx.effect("fx_2").unwrap().as_ref(), Some(&later));
    assert_eq!(tx.effect("fx_9").unwrap(), None);
    assert_eq!(
        tx.grant_effects("gr_a").unwrap(),
        vec![provision.clone(), later.clone(), sooner.clone()],
        "oldest first, every field"
    );
    drop(tx);

    let mut failed = sooner.clone();
    failed.attempts = 4;
    failed.next_attempt_at = at(700);
    failed.last_error = Some("db1 refused: « role busy »".into());
    let mut done = provision.clone();
    done.done_at = Some(at(120));
    let mut tx = store.transaction().unwrap();
    tx.update_effect(&failed).unwrap();
    tx.update_effect(&done).unwrap();
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(
        ids(tx.due_effects(at(1_000), 10, &[]).unwrap()),
        ["fx_2", "fx_3"]
    );
    assert_eq!(tx.next_effect_due().unwrap(), Some(at(500)));
    assert_eq!(
        tx.effect("fx_1").unwrap().as_ref(),
        Some(&done),
        "done, and kept"
    );
    let kept = tx.grant_effects("gr_a").unwrap();
    assert_eq!(kept, vec![done, later, failed], "done effects are kept");
    drop(tx);

    // Refused at the call or, held back (rule 6), at the next that sends.
    let mut tx = store.transaction().unwrap();
    assert!(matches!(
        tx.insert_effect(&provision).and_then(|()| tx.flush()),
        Err(StoreError::Conflict(_))
    ));
    drop(tx);
    let mut tx = store.transaction().unwrap();
    assert!(matches!(
        tx.update_effect(&effect("fx_ghost", "gr_a", EffectAction::Provision, 1)),
        Err(StoreError::NotFound(_))
    ));
}

/// The delivery log keeps every field, newest first, and forgets the
/// oldest first, only those made before the moment given.
pub fn webhook_deliveries(store: &dyn Store) {
    let first = Delivery {
        id: "0b7e0d3e-0000-4000-8000-000000000001".into(),
        target: "hook".into(),
        action: "provision".into(),
        grant_id: Some("gr_a".into()),
        status: None,
        duration_ms: 1_000,
        error: Some("hook unreachable: no answer within 1s".into()),
        at: at(10),
    };
    let second = Delivery {
        id: "0b7e0d3e-0000-4000-8000-000000000002".into(),
        status: Some(200),
        duration_ms: 3,
        error: None,
        at: at(20),
        ..first.clone()
    };
    let mut tx = store.transaction().unwrap();
    tx.insert_delivery(&first).unwrap();
    tx.insert_delivery(&second).unwrap();
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(tx.deliveries(10).unwrap(), vec![second.clone(), first]);
    assert_eq!(tx.deliveries(1).unwrap(), vec![second.clone()]);
    drop(tx);

    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.purge_deliveries(at(10), 10).unwrap(), 0);
    assert_eq!(tx.purge_deliveries(at(30), 1).unwrap(), 1);
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(tx.deliveries(10).unwrap(), vec![second]);
}

/// Handles are kept per target and grant, once each, listed by grant then
/// handle, and forgotten one at a time; forgetting one not kept is no error.
pub fn target_handles(store: &dyn Store) {
    insert_requests(
        store,
        &[
            bare_request("req_a", "alice", "db", 1),
            bare_request("req_b", "bob", "db", 2),
        ],
    );
    let mut tx = store.transaction().unwrap();
    tx.insert_grant(&grant("gr_a", "req_a", "alice", 10))
        .unwrap();
    tx.insert_grant(&grant("gr_b", "req_b", "bob", 20)).unwrap();
    tx.insert_handle("bao", "gr_b", "acc-2", at(30)).unwrap();
    tx.insert_handle("bao", "gr_a", "acc-1", at(30)).unwrap();
    tx.insert_handle("bao", "gr_a", "*", at(30)).unwrap();
    tx.insert_handle("other", "gr_a", "acc-9", at(30)).unwrap();
    tx.commit().unwrap();

    let mut tx = store.transaction().unwrap();
    // Recorded again (a fetch retried): kept once, not refused.
    tx.insert_handle("bao", "gr_a", "acc-1", at(40)).unwrap();
    assert_eq!(
        tx.handles("bao", None).unwrap(),
        vec![
            ("gr_a".to_string(), "*".to_string()),
            ("gr_a".to_string(), "acc-1".to_string()),
            ("gr_b".to_string(), "acc-2".to_string()),
        ]
    );
    assert_eq!(
        tx.handles("bao", Some("gr_b")).unwrap(),
        vec![("gr_b".to_string(), "acc-2".to_string())]
    );
    assert_eq!(tx.handles("nowhere", None).unwrap(), vec![]);
    tx.delete_handle("bao", "gr_a", "acc-1").unwrap();
    tx.delete_handle("bao", "gr_a", "acc-never").unwrap();
    tx.commit().unwrap();

    let tx = store.transaction().unwrap();
    assert_eq!(
        tx.handles("bao", Some("gr_a")).unwrap(),
        vec![("gr_a".to_string(), "*".to_string())]
    );
    assert_eq!(
        tx.handles("other", None).unwrap(),
        vec![("gr_a".to_string(), "acc-9".to_string())]
    );
}

/// The reconciler's removals in progress: kept once each by target and
/// name, read back by target, forgotten one at a time; a rolled-back one
/// is not kept.
pub fn drift_removals(store: &dyn Store) {
    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.drift_removals("db").unwrap(), vec![]);
    tx.insert_drift_removal("db", "hoist_b", None, at(10))
        .unwrap();
    tx.insert_drift_removal("db", "hoist_a", Some("gr_a"), at(10))
        .unwrap();
    tx.insert_drift_removal("other", "hoist_a", None, at(10))
        .unwrap();
    tx.commit().unwrap();

    let mut tx = store.transaction().unwrap();
    // Recorded again (a later pass): kept as it was.
    tx.insert_drift_removal("db", "hoist_a", None, at(20))
        .unwrap();
    assert_eq!(
        tx.drift_removals("db").unwrap(),
        vec![
            ("hoist_a".to_string(), Some("gr_a".to_string())),
            ("hoist_b".to_string(), None),
        ]
    );
    tx.delete_drift_removal("db", "hoist_a").unwrap();
    tx.delete_drift_removal("db", "never").unwrap();
    tx.commit().unwrap();

    let mut tx = store.transaction().unwrap();
    assert_eq!(
        tx.drift_removals("db").unwrap(),
        vec![("hoist_b".to_string(), None)]
    );
    assert_eq!(
        tx.drift_removals("other").unwrap(),
        vec![("hoist_a".to_string(), None)]
    );
    tx.insert_drift_removal("db", "hoist_c", None, at(30))
        .unwrap();
    drop(tx);
    assert_eq!(store.read().unwrap().drift_removals("db").unwrap().len(), 1);
}
