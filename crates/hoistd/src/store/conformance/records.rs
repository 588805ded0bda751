//! Requests, reviews, grants, due work, idempotency keys and signing keys:
//! every field back as written, and each query's filters, order and limit.

use chrono::DateTime;
use hoist_api::{Decision, Grant, GrantState, RequestState, Review};

use super::{at, bare_request, full_request, grant, ids, insert_requests};
use crate::store::{GrantQuery, Remembered, RequestQuery, Store, StoreError, Tx};

fn review(reviewer: &str, decision: Decision, at_ms: i64) -> Review {
    Review {
        reviewer: reviewer.into(),
        decision,
        comment: (decision == Decision::Deny).then(|| format!("{reviewer} says no: ¿por qué?")),
        at: at(at_ms),
    }
}

/// Every field of a request and its reviews comes back as written, and so
/// does every field an update may change, in every state.
pub fn requests_round_trip(store: &dyn Store) {
    let mut full = full_request("req_full");
    let bare = bare_request("req_bare", "bob", "logs", 7);
    insert_requests(store, &[full.clone(), bare.clone()]);
    // Reviews come back oldest first, then by reviewer.
    let reviews = [
        review("carol", Decision::Deny, 10),
        review("bob", Decision::Approve, 10),
        review("zed", Decision::Approve, 5),
    ];
    let mut tx = store.transaction().unwrap();
    for review in &reviews {
        tx.insert_review(&full.id, review).unwrap();
    }
    tx.commit().unwrap();
    full.reviews = vec![reviews[2].clone(), reviews[1].clone(), reviews[0].clone()];

    let tx = store.transaction().unwrap();
    assert_eq!(tx.request("req_full").unwrap().as_ref(), Some(&full));
    assert_eq!(tx.request("req_bare").unwrap().as_ref(), Some(&bare));
    assert_eq!(tx.request("req_none").unwrap(), None);
    drop(tx);

    for state in RequestState::ALL {
        full.state = state;
        full.updated_at = at(1_000 + state as i64);
        full.lapses_at = Some(at(2_000 + state as i64));
        full.grant_id = Some(format!("gr_{}", state.as_str()));
        full.reason = Some(format!("now {state}"));
        full.approvals_required = 3 + state as u32;
        let mut tx = store.transaction().unwrap();
        tx.update_request(&full).unwrap();
        tx.commit().unwrap();
        let tx = store.transaction().unwrap();
        assert_eq!(
            tx.request(&full.id).unwrap().as_ref(),
            Some(&full),
            "{state}"
        );
    }
    // And every changeable field back to empty.
    full.state = RequestState::Cancelled;
    full.lapses_at = None;
    full.grant_id = None;
    full.reason = None;
    full.claim = None;
    full.acknowledgement = None;
    let mut tx = store.transaction().unwrap();
    tx.update_request(&full).unwrap();
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(tx.request(&full.id).unwrap().as_ref(), Some(&full));
}

/// Request lists filter by each field, come oldest first (newest first on
/// request, ties in the order inserted) with their reviews, and stop at
/// the limit.
pub fn request_queries(store: &dyn Store) {
    let r1 = bare_request("r1", "alice", "db", 10);
    let mut r2 = bare_request("r2", "alice", "k8s", 20);
    r2.state = RequestState::Pending;
    r2.lapses_at = Some(at(9_000));
    let r3 = bare_request("r3", "bob", "db", 20);
    let mut r4 = bare_request("r4", "alice", "db", 30);
    r4.state = RequestState::Active;
    r4.incident = Some("INC-1".into());
    r4.grant_id = Some("gr_1".into());
    let mut r5 = bare_request("r5", "carol", "db", 40);
    r5.break_glass = true;
    let mut r6 = full_request("r6");
    r6.requester = "carol".into();
    r6.role = "db".into();
    r6.state = RequestState::Active;
    r6.created_at = at(50);
    insert_requests(store, &[r1, r2, r3, r4, r5, r6]);
    let approve = review("bob", Decision::Approve, 25);
    let mut tx = store.transaction().unwrap();
    tx.insert_review("r2", &approve).unwrap();
    tx.commit().unwrap();

    let tx = store.transaction().unwrap();
    let list = |query: RequestQuery| tx.requests(&query).unwrap();
    let all = list(RequestQuery::default());
    assert_eq!(ids(&all), ["r1", "r2", "r3", "r4", "r5", "r6"]);
    assert_eq!(all[1].reviews, [approve]);
    let newest = RequestQuery {
        newest_first: true,
        ..RequestQuery::default()
    };
    assert_eq!(
        ids(&list(newest.clone())),
        ["r6", "r5", "r4", "r3", "r2", "r1"]
    );
    let cases = [
        (
            RequestQuery {
                requester: Some("alice".into()),
                ..RequestQuery::default()
            },
            vec!["r1", "r2", "r4"],
        ),
        (
            RequestQuery {
                roles: vec!["db".into()],
                ..RequestQuery::default()
            },
            vec!["r1", "r3", "r4", "r5", "r6"],
        ),
        (
            RequestQuery {
                roles: vec!["k8s".into(), "db".into()],
                ..RequestQuery::default()
            },
            vec!["r1", "r2", "r3", "r4", "r5", "r6"],
        ),
        (
            RequestQuery {
                states: vec![RequestState::Pending],
                ..RequestQuery::default()
            },
            vec!["r2"],
        ),
        (
            RequestQuery {
                states: vec![RequestState::Active, RequestState::Pending],
                ..RequestQuery::default()
            },
            vec!["r2", "r4", "r6"],
        ),
        (
            RequestQuery {
                incident: Some("INC-1".into()),
                ..RequestQuery::default()
            },
            vec!["r4"],
        ),
        (
            RequestQuery {
                grant_id: Some("gr_1".into()),
                ..RequestQuery::default()
            },
            vec!["r4"],
        ),
        // r6 is break-glass but acknowledged.
        (
            RequestQuery {
                unacknowledged_break_glass: true,
                ..RequestQuery::default()
            },
            vec!["r5"],
        ),
        (
            RequestQuery {
                requester: Some("alice".into()),
                roles: vec!["db".into()],
                states: vec![RequestState::Approved, RequestState::Active],
                ..RequestQuery::default()
            },
            vec!["r1", "r4"],
        ),
        (
            RequestQuery {
                limit: Some(2),
                ..RequestQuery::default()
            },
            vec!["r1", "r2"],
        ),
        (
            RequestQuery {
                limit: Some(2),
                ..newest
            },
            vec!["r6", "r5"],
        ),
        (
            RequestQuery {
                requester: Some("nobody".into()),
                ..RequestQuery::default()
            },
            vec![],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(&list(query.clone())), expected, "{query:?}");
    }
}

/// Every field of a grant comes back as written, and so does every field
/// an update may change, in every state.
pub fn grants_round_trip(store: &dyn Store) {
    insert_requests(
        store,
        &[
            bare_request("req_a", "alice", "db", 1),
            bare_request("req_b", "bob", "db", 2),
        ],
    );
    let mut full = grant("gr_full", "req_a", "alice", 10);
    full.state = GrantState::Revoked;
    full.ended_at = Some(at(20));
    full.revoked_by = Some("bob".into());
    full.revoke_reason = Some("done: « fini »".into());
    full.break_glass = true;
    full.ticket = Some("INC-42".into());
    full.incident = Some("INC-7".into());
    full.justification = "why, with ünïcödé\nand a line".into();
    let bare = grant("gr_bare", "req_b", "bob", 30);
    let mut tx = store.transaction().unwrap();
    tx.insert_grant(&full).unwrap();
    tx.insert_grant(&bare).unwrap();
    tx.commit().unwrap();

    let tx = store.transaction().unwrap();
    assert_eq!(tx.grant("gr_full").unwrap().as_ref(), Some(&full));
    assert_eq!(tx.grant("gr_bare").unwrap().as_ref(), Some(&bare));
    assert_eq!(tx.grant("gr_none").unwrap(), None);
    drop(tx);

    let mut changed = bare;
    for (n, state) in [GrantState::Expired, GrantState::Revoked, GrantState::Active]
        .into_iter()
        .enumerate()
    {
        let n = n as i64;
        changed.state = state;
        changed.expires_at = at(4_000_000 + n);
        changed.ended_at = (state != GrantState::Active).then(|| at(3_000 + n));
        changed.revoked_by = (state == GrantState::Revoked).then(|| "carol".into());
        changed.revoke_reason = (state == GrantState::Revoked).then(|| "policy".into());
        let mut tx = store.transaction().unwrap();
        tx.update_grant(&changed).unwrap();
        tx.commit().unwrap();
        let tx = store.transaction().unwrap();
        assert_eq!(tx.grant(&changed.id).unwrap().as_ref(), Some(&changed));
    }
}

/// Grant lists filter by holder, role, state and incident, come newest first by
/// start (then by id, greatest first) and stop at the limit.
pub fn grant_queries(store: &dyn Store) {
    insert_requests(store, &[bare_request("req", "alice", "db", 1)]);
    let g1 = grant("gr_1", "req", "alice", 10);
    let g2 = grant("gr_2", "req", "bob", 20);
    let mut g3 = grant("gr_3", "req", "alice", 20);
    g3.role = "staging-db".into();
    let mut g4 = grant("gr_4", "req", "alice", 30);
    g4.state = GrantState::Expired;
    g4.ended_at = Some(at(40));
    let mut g5 = grant("gr_5", "req", "carol", 5);
    g5.incident = Some("INC-1".into());
    let mut tx = store.transaction().unwrap();
    for grant in [&g1, &g2, &g3, &g4, &g5] {
        tx.insert_grant(grant).unwrap();
    }
    tx.commit().unwrap();

    let tx = store.transaction().unwrap();
    let cases = [
        (
            GrantQuery::default(),
            vec!["gr_4", "gr_3", "gr_2", "gr_1", "gr_5"],
        ),
        (
            GrantQuery {
                holder: Some("alice".into()),
                ..GrantQuery::default()
            },
            vec!["gr_4", "gr_3", "gr_1"],
        ),
        (
            GrantQuery {
                holder: Some("alice".into()),
                role: Some("prod-db".into()),
                ..GrantQuery::default()
            },
            vec!["gr_4", "gr_1"],
        ),
        (
            GrantQuery {
                states: vec![GrantState::Active],
                ..GrantQuery::default()
            },
            vec!["gr_3", "gr_2", "gr_1", "gr_5"],
        ),
        (
            GrantQuery {
                states: vec![GrantState::Expired, GrantState::Revoked],
                holder: Some("alice".into()),
                ..GrantQuery::default()
            },
            vec!["gr_4"],
        ),
        (
            GrantQuery {
                incident: Some("INC-1".into()),
                ..GrantQuery::default()
            },
            vec!["gr_5"],
        ),
        (
            GrantQuery {
                limit: Some(2),
                ..GrantQuery::default()
            },
            vec!["gr_4", "gr_3"],
        ),
    ];
    for (query, expected) in cases {
        let found = tx.grants(&query).unwrap();
        let found: Vec<&str> = found.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(found, expected, "{query:?}");
    }
}

/// [`Tx::request_with_holding`](crate::store::Tx::request_with_holding):
/// the request, and the active grants its requester holds of its role,
/// newest first, the transaction's own writes among them. (Its reads'
/// checks in an optimistic transaction: [`super::optimistic_commits_check_their_reads`].)
pub fn request_with_holding(store: &dyn Store) {
    insert_requests(
        store,
        &[
            bare_request("req", "alice", "prod-db", 1),
            bare_request("req_bob", "bob", "prod-db", 2),
        ],
    );
    let mut staging = grant("gr_3", "req", "alice", 20);
    staging.role = "staging-db".into();
    let mut expired = grant("gr_4", "req", "alice", 40);
    expired.state = GrantState::Expired;
    expired.ended_at = Some(at(45));
    let mut tx = store.transaction().unwrap();
    for held in [
        &grant("gr_1", "req", "alice", 10),
        &grant("gr_2", "req", "alice", 30),
        &staging,
        &expired,
        &grant("gr_5", "req_bob", "bob", 50),
    ] {
        tx.insert_grant(held).unwrap();
    }
    tx.commit().unwrap();
    let held_ids = |held: &[Grant]| held.iter().map(|g| g.id.clone()).collect::<Vec<_>>();

    let tx = store.transaction().unwrap();
    let (request, held) = tx.request_with_holding("req").unwrap().unwrap();
    assert_eq!(request.id, "req");
    assert_eq!(held_ids(&held), ["gr_2", "gr_1"]);
    let (request, held) = tx.request_with_holding("req_bob").unwrap().unwrap();
    assert_eq!(request.requester, "bob");
    assert_eq!(held_ids(&held), ["gr_5"]);
    assert!(tx.request_with_holding("req_none").unwrap().is_none());
    drop(tx);

    let mut tx = store.transaction().unwrap();
    tx.insert_grant(&grant("gr_7", "req", "alice", 70)).unwrap();
    let (_, held) = tx.request_with_holding("req").unwrap().unwrap();
    assert_eq!(held_ids(&held), ["gr_7", "gr_2", "gr_1"], "its own write");
}

/// Pending requests are due at their lapse time, approved ones at their
/// start (at once without one), active grants at their end; next_due is the
/// earliest of them.
pub fn due_work_and_next_due(store: &dyn Store) {
    let tx = store.transaction().unwrap();
    assert!(tx.due_requests(at(1_000_000), 10).unwrap().is_empty());
    assert!(tx.due_grants(at(1_000_000), 10).unwrap().is_empty());
    assert_eq!(tx.next_due().unwrap(), None);
    drop(tx);

    let mut lapsing = bare_request("p1", "alice", "db", 1);
    lapsing.state = RequestState::Pending;
    lapsing.lapses_at = Some(at(100));
    let mut starting = bare_request("a1", "bob", "db", 2);
    starting.starts_at = Some(at(200));
    let mut later = bare_request("p2", "carol", "db", 3);
    later.state = RequestState::Pending;
    later.lapses_at = Some(at(300));
    // Decided requests are never due, whatever their times say.
    let mut denied = bare_request("d1", "dave", "db", 4);
    denied.state = RequestState::Denied;
    denied.lapses_at = Some(at(50));
    denied.starts_at = Some(at(50));
    insert_requests(store, &[lapsing.clone(), starting, later, denied]);
    let mut ending = grant("g1", "p1", "alice", -1_000);
    ending.expires_at = at(150);
    let mut ended = grant("g0", "p1", "alice", -2_000);
    ended.expires_at = at(10);
    ended.state = GrantState::Expired;
    ended.ended_at = Some(at(10));
    let mut tx = store.transaction().unwrap();
    tx.insert_grant(&ending).unwrap();
    tx.insert_grant(&ended).unwrap();
    tx.commit().unwrap();

    let tx = store.transaction().unwrap();
    assert_eq!(
        ids(&tx.due_requests(at(99), 10).unwrap()),
        Vec::<&str>::new()
    );
    assert_eq!(ids(&tx.due_requests(at(100), 10).unwrap()), ["p1"]);
    assert_eq!(ids(&tx.due_requests(at(250), 10).unwrap()), ["p1", "a1"]);
    assert_eq!(
        ids(&tx.due_requests(at(300), 10).unwrap()),
        ["p1", "a1", "p2"]
    );
    assert_eq!(
        ids(&tx.due_requests(at(300), 2).unwrap()),
        ["p1", "a1"],
        "at most the limit, the oldest"
    );
    let due = |ms| -> Vec<String> {
        tx.due_grants(at(ms), 10)
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect()
    };
    assert!(due(149).is_empty());
    assert_eq!(due(150), ["g1"]);
    assert!(
        tx.due_grants(at(150), 0).unwrap().is_empty(),
        "at most the limit"
    );
    assert_eq!(
        tx.due_ids(at(300), 10).unwrap(),
        (
            vec!["p1".to_string(), "a1".to_string(), "p2".to_string()],
            vec!["g1".to_string()]
        ),
        "the same, as ids"
    );
    assert_eq!(
        tx.due_ids(at(300), 2).unwrap(),
        (
            vec!["p1".to_string(), "a1".to_string()],
            vec!["g1".to_string()]
        ),
        "at most the limit of each"
    );
    assert_eq!(tx.due_ids(at(99), 10).unwrap(), (Vec::new(), Vec::new()));
    assert_eq!(tx.next_due().unwrap(), Some(at(100)));
    drop(tx);

    lapsing.state = RequestState::TimedOut;
    let mut tx = store.transaction().unwrap();
    tx.update_request(&lapsing).unwrap();
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(tx.next_due().unwrap(), Some(at(150)));
    drop(tx);

    let at_once = bare_request("a2", "erin", "db", 5);
    insert_requests(store, &[at_once]);
    let tx = store.transaction().unwrap();
    assert_eq!(ids(&tx.due_requests(at(0), 10).unwrap()), ["a2"]);
    let next = tx.next_due().unwrap().unwrap();
    assert!(
        next <= at(0),
        "an approved request with no start is due at once, not at {next}"
    );
}

/// An idempotency key is the requester's own: found again under the same
/// requester only, and refused a second time (rule 4).
pub fn idempotency_keys(store: &dyn Store) {
    insert_requests(
        store,
        &[
            bare_request("req_a", "alice", "db", 1),
            bare_request("req_b", "bob", "db", 2),
        ],
    );
    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.idempotency_key("alice", "k1").unwrap(), None);
    tx.insert_idempotency_key("alice", "k1", "hash-a", "req_a", at(1))
        .unwrap();
    assert_eq!(tx.idempotency_key("bob", "k1").unwrap(), None);
    tx.insert_idempotency_key("bob", "k1", "hash-b", "req_b", at(2))
        .unwrap();
    tx.commit().unwrap();

    let mut tx = store.transaction().unwrap();
    assert_eq!(
        tx.idempotency_key("alice", "k1").unwrap(),
        Some(("hash-a".to_string(), "req_a".to_string()))
    );
    assert_eq!(
        tx.idempotency_key("bob", "k1").unwrap(),
        Some(("hash-b".to_string(), "req_b".to_string()))
    );
    assert_eq!(tx.idempotency_key("alice", "k2").unwrap(), None);
    let again = tx
        .insert_idempotency_key("alice", "k1", "hash-c", "req_b", at(3))
        .and_then(|()| tx.flush());
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    drop(tx);
    let tx = store.transaction().unwrap();
    assert_eq!(
        tx.idempotency_key("alice", "k1").unwrap(),
        Some(("hash-a".to_string(), "req_a".to_string()))
    );
}

/// Idempotency keys and workload exchanges are forgotten by age, oldest
/// first and at most as many as asked, and only those older than asked.
pub fn purges_forget_only_what_is_old(store: &dyn Store) {
    use crate::store::Exchange;
    insert_requests(store, &[bare_request("req_a", "alice", "db", 1)]);
    let exchange = |n: i64| Exchange {
        task_key: format!("https://issuer.example\njti-{n}"),
        principal: "workload:deploy:repo:acme/app".into(),
        request_id: "req_a".into(),
        expires_at: at(n * 1_000),
        created_at: at(1),
        redeemed_at: None,
        claims: None,
        collect_by: None,
    };
    let mut tx = store.transaction().unwrap();
    for n in [3, 1, 2] {
        tx.insert_idempotency_key("alice", &format!("k{n}"), "hash", "req_a", at(n * 1_000))
            .unwrap();
        tx.insert_exchange(&exchange(n)).unwrap();
    }
    tx.commit().unwrap();

    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.purge_idempotency_keys(at(3_000), 1).unwrap(), 1);
    assert_eq!(tx.purge_exchanges(at(3_000), 1).unwrap(), 1);
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(
        tx.idempotency_key("alice", "k1").unwrap(),
        None,
        "the oldest goes first"
    );
    assert!(tx.idempotency_key("alice", "k2").unwrap().is_some());
    assert_eq!(tx.exchange(&exchange(1).task_key).unwrap(), None);
    assert!(tx.exchange(&exchange(2).task_key).unwrap().is_some());
    drop(tx);

    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.purge_idempotency_keys(at(3_000), 10).unwrap(), 1);
    assert_eq!(tx.purge_exchanges(at(3_000), 10).unwrap(), 1);
    assert_eq!(tx.purge_idempotency_keys(at(3_000), 10).unwrap(), 0);
    assert_eq!(tx.purge_exchanges(at(3_000), 10).unwrap(), 0);
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(tx.idempotency_key("alice", "k2").unwrap(), None);
    assert_eq!(
        tx.idempotency_key("alice", "k3").unwrap(),
        Some(("hash".to_string(), "req_a".to_string())),
        "one used at the moment given is kept"
    );
    assert_eq!(tx.exchange(&exchange(2).task_key).unwrap(), None);
    assert_eq!(
        tx.exchange(&exchange(3).task_key).unwrap(),
        Some(exchange(3))
    );
}

/// A provider identity binds to one user and a user to one identity; both
/// directions read back, and a second binding of either is refused.
pub fn identities(store: &dyn Store) {
    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.identity_user("https://id.example", "u-1").unwrap(), None);
    assert_eq!(tx.user_identity("bob").unwrap(), None);
    tx.insert_identity("https://id.example", "u-1", "bob", at(1))
        .unwrap();
    tx.insert_identity("https://id.example", "u-2", "alice", at(2))
        .unwrap();
    tx.commit().unwrap();

    let mut tx = store.transaction().unwrap();
    assert_eq!(
        tx.identity_user("https://id.example", "u-1").unwrap(),
        Some("bob".to_string())
    );
    assert_eq!(
        tx.user_identity("alice").unwrap(),
        Some(("https://id.example".to_string(), "u-2".to_string()))
    );
    // The same subject at another issuer is another identity.
    assert_eq!(
        tx.identity_user("https://other.example", "u-1").unwrap(),
        None
    );
    for (issuer, subject, user) in [
        ("https://id.example", "u-1", "carol"),
        ("https://other.example", "u-9", "bob"),
    ] {
        let again = tx.insert_identity(issuer, subject, user, at(3));
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    }
    drop(tx);
    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.user_identity("carol").unwrap(), None);
    assert_eq!(
        tx.user_identity("bob").unwrap(),
        Some(("https://id.example".to_string(), "u-1".to_string()))
    );

    // What a provider last said of a user: nothing until recorded, then
    // the latest, with when it was said (to the millisecond, or unknown);
    // a user bound to no identity is not found.
    assert_eq!(tx.remembered("bob").unwrap(), None);
    let said = DateTime::from_timestamp_millis(1_764_000_000_123);
    let seen = |groups: &[&str], as_of| Remembered {
        issuer: "https://id.example".into(),
        display_name: "Bob Example".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        as_of,
    };
    tx.remember("bob", &seen(&["engineers", "on-call"], said))
        .unwrap();
    tx.commit().unwrap();
    let mut tx = store.transaction().unwrap();
    assert_eq!(
        tx.remembered("bob").unwrap(),
        Some(seen(&["engineers", "on-call"], said))
    );
    // The issuer is the binding's, whatever the word written says.
    let elsewhere = Remembered {
        issuer: "https://elsewhere.example".into(),
        ..seen(&[], None)
    };
    tx.remember("bob", &elsewhere).unwrap();
    assert_eq!(tx.remembered("bob").unwrap(), Some(seen(&[], None)));
    assert_eq!(tx.remembered("alice").unwrap(), None);
    let nobody = tx.remember("carol", &seen(&["engineers"], said));
    assert!(matches!(nobody, Err(StoreError::NotFound(_))), "{nobody:?}");

    // Who a provider last put in any of some groups, by name: a word
    // without them, and an identity never heard of since, are not.
    let group = |names: &[&str]| names.iter().map(|g| g.to_string()).collect::<Vec<_>>();
    assert_eq!(tx.remembered_in(&group(&["engineers"])).unwrap(), vec![]);
    tx.remember("alice", &seen(&["on-call", "it's \"quoted\""], said))
        .unwrap();
    tx.remember("bob", &seen(&["engineers", "on-call"], None))
        .unwrap();
    let named = |found: Vec<(String, Remembered)>| {
        found.into_iter().map(|(user, _)| user).collect::<Vec<_>>()
    };
    assert_eq!(
        tx.remembered_in(&group(&["on-call"])).unwrap(),
        vec![
            (
                "alice".to_string(),
                seen(&["on-call", "it's \"quoted\""], said)
            ),
            ("bob".to_string(), seen(&["engineers", "on-call"], None)),
        ]
    );
    assert_eq!(
        named(tx.remembered_in(&group(&["engineers", "prod"])).unwrap()),
        ["bob"]
    );
    assert_eq!(
        named(tx.remembered_in(&group(&["it's \"quoted\""])).unwrap()),
        ["alice"]
    );
    assert_eq!(
        named(tx.remembered_in(&group(&["on"])).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(named(tx.remembered_in(&[]).unwrap()), Vec::<String>::new());
}

/// The newest signing key is the one in use; a key id is never reused.
pub fn signing_keys(store: &dyn Store) {
    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.signing_key().unwrap(), None);
    let first: Vec<u8> = (0..=255).collect();
    tx.insert_signing_key("k1", &first, at(1)).unwrap();
    tx.commit().unwrap();
    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.signing_key().unwrap(), Some(("k1".into(), first)));
    tx.insert_signing_key("k2", b"second", at(2)).unwrap();
    tx.commit().unwrap();
    let mut tx = store.transaction().unwrap();
    assert_eq!(
        tx.signing_key().unwrap(),
        Some(("k2".into(), b"second".to_vec()))
    );
    let again = tx.insert_signing_key("k1", b"third", at(3));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

/// Rule 11: a broker key is kept for good under its purpose, apart from
/// the rotating signing keys.
pub fn broker_keys(store: &dyn Store) {
    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.broker_key("ssh-user-ca").unwrap(), None);
    let der: Vec<u8> = (0..=255).rev().collect();
    tx.insert_broker_key("ssh-user-ca", "ca1", &der, at(1))
        .unwrap();
    tx.insert_signing_key("k1", b"jwt", at(2)).unwrap();
    tx.commit().unwrap();
    let mut tx = store.transaction().unwrap();
    assert_eq!(
        tx.broker_key("ssh-user-ca").unwrap(),
        Some(("ca1".into(), der.clone()))
    );
    assert_eq!(tx.broker_key("other").unwrap(), None);
    // Listed by the start of their purpose, as written, never as a pattern.
    tx.insert_broker_key("ssh-user-ca:b", "cb", b"b", at(3))
        .unwrap();
    tx.insert_broker_key("ssh-user-ca:a", "ca", b"a", at(3))
        .unwrap();
    tx.insert_broker_key("ssh-user-cax", "cx", b"x", at(3))
        .unwrap();
    assert_eq!(
        tx.broker_keys_under("ssh-user-ca:").unwrap(),
        vec![
            ("ssh-user-ca:a".to_string(), b"a".to_vec()),
            ("ssh-user-ca:b".to_string(), b"b".to_vec()),
        ]
    );
    assert_eq!(tx.broker_keys_under("ssh-user-ca_").unwrap(), vec![]);
    assert_eq!(tx.broker_keys_under("%").unwrap(), vec![]);
    assert_eq!(
        tx.signing_key().unwrap(),
        Some(("k1".into(), b"jwt".to_vec())),
        "a broker key is never taken for the signing key"
    );
    let again = tx.insert_broker_key("ssh-user-ca", "ca2", b"second", at(3));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    drop(tx);
    let tx = store.transaction().unwrap();
    assert_eq!(
        tx.broker_key("ssh-user-ca").unwrap(),
        Some(("ca1".into(), der.clone()))
    );
    drop(tx);
    assert_eq!(
        store.snapshot().unwrap().broker_key("ssh-user-ca").unwrap(),
        Some(("ca1".into(), der)),
        "a snapshot reads it too"
    );
}

/// The SSH CAs `hoistd serve` signed with are kept once each, the last
/// seen first; a later sighting moves only when it was last seen, an
/// earlier one moves nothing, and a rolled-back one is not kept.
pub fn ssh_authorities(store: &dyn Store) {
    assert!(store.read().unwrap().ssh_authorities().unwrap().is_empty());
    let mut tx = store.transaction().unwrap();
    tx.note_ssh_authority("ssh-ed25519 AAAA first", at(1))
        .unwrap();
    tx.note_ssh_authority("ssh-ed25519 AAAA second", at(2))
        .unwrap();
    tx.commit().unwrap();
    let tx = store.read().unwrap();
    assert_eq!(
        tx.ssh_authorities().unwrap(),
        ["ssh-ed25519 AAAA second", "ssh-ed25519 AAAA first"]
    );
    drop(tx);
    let mut tx = store.transaction().unwrap();
    tx.note_ssh_authority("ssh-ed25519 AAAA first", at(3))
        .unwrap();
    tx.note_ssh_authority("ssh-ed25519 AAAA second", at(0))
        .unwrap();
    tx.commit().unwrap();
    let mut tx = store.transaction().unwrap();
    assert_eq!(
        tx.ssh_authorities().unwrap(),
        ["ssh-ed25519 AAAA first", "ssh-ed25519 AAAA second"]
    );
    tx.note_ssh_authority("ssh-ed25519 AAAA third", at(4))
        .unwrap();
    drop(tx);
    assert_eq!(store.read().unwrap().ssh_authorities().unwrap().len(), 2);
}

/// A CA is bound to the first ssh target it is given, for good: a later
/// binding to another target returns the first, a rolled-back one binds
/// nothing, and one of a CA never recorded records it; a snapshot reads
/// the binding too. (Two brokers binding at once take turns by rule 1.)
pub fn ssh_authority_targets(store: &dyn Store) {
    let mut tx = store.transaction().unwrap();
    tx.note_ssh_authority("ssh-ed25519 AAAA noted", at(1))
        .unwrap();
    tx.commit().unwrap();
    let target = |key: &str| store.read().unwrap().ssh_authority_target(key).unwrap();
    assert_eq!(target("ssh-ed25519 AAAA noted"), None, "noted, not bound");
    assert_eq!(target("ssh-ed25519 AAAA unknown"), None);
    let mut tx = store.transaction().unwrap();
    let bound = tx.bind_ssh_authority("ssh-ed25519 AAAA noted", "prod", at(2));
    assert_eq!(bound.unwrap(), "prod");
    assert_eq!(
        tx.ssh_authority_target("ssh-ed25519 AAAA noted").unwrap(),
        Some("prod".into())
    );
    drop(tx);
    assert_eq!(target("ssh-ed25519 AAAA noted"), None, "rolled back");
    let mut tx = store.transaction().unwrap();
    let bound = tx.bind_ssh_authority("ssh-ed25519 AAAA noted", "dev", at(3));
    assert_eq!(bound.unwrap(), "dev", "the rolled-back binding is gone");
    tx.commit().unwrap();
    let mut tx = store.transaction().unwrap();
    let bound = tx.bind_ssh_authority("ssh-ed25519 AAAA noted", "prod", at(4));
    assert_eq!(bound.unwrap(), "dev", "kept for good");
    let bound = tx.bind_ssh_authority("ssh-ed25519 AAAA new", "lab", at(5));
    assert_eq!(bound.unwrap(), "lab");
    tx.commit().unwrap();
    assert_eq!(
        store.read().unwrap().ssh_authorities().unwrap(),
        ["ssh-ed25519 AAAA new", "ssh-ed25519 AAAA noted"]
    );
    assert_eq!(target("ssh-ed25519 AAAA noted"), Some("dev".into()));

    let snapshot = store.snapshot().unwrap();
    assert_eq!(
        snapshot
            .ssh_authority_target("ssh-ed25519 AAAA noted")
            .unwrap(),
        Some("dev".into())
    );
    assert_eq!(
        snapshot
            .ssh_authority_target("ssh-ed25519 AAAA none")
            .unwrap(),
        None
    );
}

/// Rule 10: a workload task is exchanged once; its exchange reads back as
/// written, and its redemption is recorded; the claims it was filed with
/// are kept as they were, and found by the request it filed.
pub fn workload_exchanges(store: &dyn Store) {
    use crate::store::Exchange;
    let exchange = Exchange {
        task_key: "https://issuer.example\njti-1".into(),
        principal: "workload:deploy:repo:acme/app".into(),
        request_id: "req_1".into(),
        expires_at: at(300_000),
        created_at: at(1),
        redeemed_at: None,
        claims: Some(serde_json::json!({
            "iss": "https://issuer.example",
            "sub": "repo:acme/app",
            "aud": ["hoist"],
            "ref": "refs/heads/« main »",
            "run": 42,
        })),
        collect_by: Some(at(330_000)),
    };
    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.exchange(&exchange.task_key).unwrap(), None);
    assert_eq!(tx.workload_claims("req_1").unwrap(), None);
    tx.insert_exchange(&exchange).unwrap();
    tx.insert_exchange(&Exchange {
        task_key: "https://issuer.example\njti-0".into(),
        request_id: "req_0".into(),
        claims: None,
        ..exchange.clone()
    })
    .unwrap();
    tx.commit().unwrap();

    let mut tx = store.transaction().unwrap();
    assert_eq!(
        tx.exchange(&exchange.task_key).unwrap(),
        Some(exchange.clone())
    );
    assert_eq!(tx.workload_claims("req_1").unwrap(), exchange.claims);
    assert_eq!(tx.workload_claims("req_0").unwrap(), None);
    let again = Exchange {
        request_id: "req_2".into(),
        ..exchange.clone()
    };
    assert!(
        matches!(tx.insert_exchange(&again), Err(StoreError::Conflict(_))),
        "a task exchanged twice must be a conflict (rule 10)"
    );
    drop(tx);

    let mut tx = store.transaction().unwrap();
    let redeemed = Exchange {
        redeemed_at: Some(at(2_000)),
        expires_at: exchange.expires_at + chrono::TimeDelta::minutes(10),
        collect_by: None,
        ..exchange.clone()
    };
    tx.update_exchange(&redeemed).unwrap();
    let other = Exchange {
        task_key: "https://issuer.example\njti-2".into(),
        ..exchange.clone()
    };
    assert!(
        matches!(tx.update_exchange(&other), Err(StoreError::NotFound(_))),
        "updating an exchange never stored must be NotFound"
    );
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(tx.exchange(&exchange.task_key).unwrap(), Some(redeemed));
    assert_eq!(tx.exchange(&other.task_key).unwrap(), None);
}

/// Exchanges not redeemed past their `collect_by` are listed soonest
/// first, as many as asked, and fall due for the reaper; one redeemed, or
/// settled (`collect_by` cleared), is not.
pub fn uncollected_exchanges(store: &dyn Store) {
    use crate::store::Exchange;
    let exchange = |n: i64, collect_by: Option<i64>, redeemed: bool| Exchange {
        task_key: format!("https://issuer.example\njti-{n}"),
        principal: "workload:deploy:repo:acme/app".into(),
        request_id: format!("req_{n}"),
        expires_at: at(1_000),
        created_at: at(1),
        redeemed_at: redeemed.then(|| at(500)),
        claims: None,
        collect_by: collect_by.map(at),
    };
    let mut tx = store.transaction().unwrap();
    tx.insert_exchange(&exchange(1, Some(10_000), false))
        .unwrap();
    tx.insert_exchange(&exchange(2, Some(5_000), false))
        .unwrap();
    tx.insert_exchange(&exchange(3, Some(20_000), false))
        .unwrap();
    tx.insert_exchange(&exchange(4, Some(2_000), true)).unwrap();
    tx.insert_exchange(&exchange(5, None, false)).unwrap();
    tx.commit().unwrap();

    let mut tx = store.transaction().unwrap();
    let keys = |found: Vec<Exchange>| found.into_iter().map(|e| e.request_id).collect::<Vec<_>>();
    let same_keys = |tx: &dyn Tx, now: i64, limit: usize| {
        let listed: Vec<String> = tx
            .uncollected(at(now), limit)
            .unwrap()
            .into_iter()
            .map(|e| e.task_key)
            .collect();
        assert_eq!(
            tx.uncollected_keys(at(now), limit).unwrap(),
            listed,
            "the same keys, in the same order"
        );
        listed.len()
    };
    assert_eq!(same_keys(&*tx, 4_999, 10), 0);
    assert_eq!(same_keys(&*tx, 10_000, 10), 2);
    assert_eq!(same_keys(&*tx, 10_000, 1), 1);
    assert_eq!(tx.next_due().unwrap(), Some(at(5_000)));
    assert_eq!(
        keys(tx.uncollected(at(4_999), 10).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        keys(tx.uncollected(at(10_000), 10).unwrap()),
        ["req_2", "req_1"]
    );
    assert_eq!(keys(tx.uncollected(at(10_000), 1).unwrap()), ["req_2"]);
    assert_eq!(
        tx.uncollected(at(10_000), 1).unwrap(),
        [exchange(2, Some(5_000), false)]
    );
    tx.update_exchange(&exchange(2, None, false)).unwrap();
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(
        keys(tx.uncollected(at(30_000), 10).unwrap()),
        ["req_1", "req_3"]
    );
    assert_eq!(same_keys(&*tx, 30_000, 10), 2);
    assert_eq!(tx.next_due().unwrap(), Some(at(10_000)));
}

/// Rule 12: a Slack post's signature is taken once until it is purged at
/// or after the moment it was kept until; of racing takers exactly one
/// commits.
pub fn slack_replays(store: &dyn Store) {
    let first = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    let second = "v0=0000000000000000000000000000000000000000000000000000000000000001";
    let mut tx = store.transaction().unwrap();
    tx.insert_slack_replay(first, at(10_000)).unwrap();
    tx.insert_slack_replay(second, at(20_000)).unwrap();
    tx.commit().unwrap();

    let mut tx = store.transaction().unwrap();
    let again = tx.insert_slack_replay(first, at(30_000));
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "a signature kept must be a conflict (rule 13): {again:?}"
    );
    drop(tx);

    // Just before the first's moment nothing goes; at it, the first goes
    // and the second stays.
    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.purge_slack_replays(at(9_999)).unwrap(), 0);
    assert_eq!(tx.purge_slack_replays(at(10_000)).unwrap(), 1);
    tx.insert_slack_replay(first, at(40_000)).unwrap();
    let again = tx.insert_slack_replay(second, at(40_000));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    drop(tx);

    // The purge above was rolled back with the rest: both are still kept.
    let mut tx = store.transaction().unwrap();
    assert!(tx.insert_slack_replay(first, at(40_000)).is_err());
    drop(tx);

    let racer = "v0=00000000000000000000000000000000000000000000000000000000000000ff";
    let barrier = std::sync::Barrier::new(4);
    let taken = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                barrier.wait();
                let Ok(mut tx) = store.transaction() else {
                    return;
                };
                if tx.insert_slack_replay(racer, at(50_000)).is_ok() && tx.commit().is_ok() {
                    taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(
        taken.into_inner(),
        1,
        "exactly one of racing takers keeps a signature (rule 13)"
    );
}
