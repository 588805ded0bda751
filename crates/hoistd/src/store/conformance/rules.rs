//! The transaction rules: refused writes, rollback on drop, and
//! transactions that race and must take turns.

use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::TimeDelta;
use hoist_api::{AccessRequest, Decision, GrantState, RequestState, Review};

use super::targets::effect;
use super::{at, bare_request, entry, grant, insert_requests, next_entry};
use crate::store::{
    AuditQuery, EffectAction, GrantQuery, Lease, RequestQuery, Store, StoreError, Tx,
};

/// How many threads race in the checks below.
const RACERS: usize = 8;

/// A second row under a unique key is a conflict (rules 2 to 5), and an
/// update of a row never stored is not found; what was committed stays.
/// A transaction that met an error is only dropped, as the broker does.
pub fn conflicts_and_missing_rows(store: &dyn Store) {
    let request = bare_request("req", "alice", "db", 1);
    let granted = grant("gr", "req", "alice", 2);
    let approval = Review {
        reviewer: "bob".into(),
        decision: Decision::Approve,
        comment: None,
        at: at(3),
    };
    let mut tx = store.transaction().unwrap();
    tx.insert_request(&request).unwrap();
    tx.insert_grant(&granted).unwrap();
    tx.insert_review(&request.id, &approval).unwrap();
    tx.insert_audit(&entry(1, "genesis")).unwrap();
    tx.commit().unwrap();

    let second_review = Review {
        decision: Decision::Deny,
        comment: Some("changed my mind".into()),
        ..approval.clone()
    };
    let mut ghost = bare_request("req_ghost", "alice", "db", 4);
    ghost.state = RequestState::Cancelled;
    type Write<'a> = &'a dyn Fn(&mut dyn Tx) -> crate::store::Result<()>;
    let refusals: [(&str, Write<'_>, bool); 6] = [
        (
            "the same request id again",
            &|tx| tx.insert_request(&request),
            true,
        ),
        (
            "the same grant id again",
            &|tx| tx.insert_grant(&granted),
            true,
        ),
        (
            "a second review by the same reviewer",
            &|tx| tx.insert_review(&request.id, &second_review),
            true,
        ),
        (
            "an audit entry at a taken sequence number",
            &|tx| tx.insert_audit(&entry(1, "fork")),
            true,
        ),
        (
            "an update of a request never stored",
            &|tx| tx.update_request(&ghost),
            false,
        ),
        (
            "an update of a grant never stored",
            &|tx| tx.update_grant(&grant("gr_ghost", "req", "alice", 5)),
            false,
        ),
    ];
    // A backend may hold the write back until the transaction's next call
    // that reads, or its commit (rule 6): the refusal is that call's error,
    // and a commit that reports it commits nothing.
    let after = bare_request("req_after", "alice", "db", 6);
    for (what, write, conflict) in refusals {
        let expected = |result: &crate::store::Result<()>| match conflict {
            true => matches!(result, Err(StoreError::Conflict(_))),
            false => matches!(result, Err(StoreError::NotFound(_))),
        };
        let mut tx = store.transaction().unwrap();
        let result = write(tx.as_mut()).and_then(|()| tx.flush());
        assert!(expected(&result), "{what}, then flush: {result:?}");
        drop(tx);

        let mut tx = store.transaction().unwrap();
        let result = write(tx.as_mut()).and_then(|()| tx.request("req").map(|_| ()));
        assert!(expected(&result), "{what}, then a read: {result:?}");
        drop(tx);

        let mut tx = store.transaction().unwrap();
        let result = write(tx.as_mut()).and_then(|()| {
            tx.insert_request(&after)?;
            tx.commit()
        });
        assert!(expected(&result), "{what}, then commit: {result:?}");
        let tx = store.transaction().unwrap();
        assert_eq!(
            tx.request(&after.id).unwrap(),
            None,
            "{what}: a commit that failed wrote nothing"
        );
    }

    let tx = store.transaction().unwrap();
    let stored = tx.request("req").unwrap().unwrap();
    assert_eq!(stored.reviews, [approval], "the first review stands");
    assert_eq!(tx.grant("gr").unwrap(), Some(granted));
    let log = tx.audit(&AuditQuery::default()).unwrap();
    assert_eq!(log, [entry(1, "genesis")], "the chain did not fork");
    assert_eq!(tx.request("req_ghost").unwrap(), None);
}

/// A transaction only read through ([`Store::read`]) sees what was
/// committed before it, with its reviews and the audit head, and none of
/// what a transaction still open wrote once it has begun reading.
pub fn reads_see_what_was_committed(store: &dyn Store) {
    let request = bare_request("req_read", "alice", "db", 1);
    let approval = Review {
        reviewer: "bob".into(),
        decision: Decision::Approve,
        comment: Some("ok".into()),
        at: at(2),
    };
    let mut tx = store.transaction().unwrap();
    tx.insert_request(&request).unwrap();
    tx.insert_review(&request.id, &approval).unwrap();
    tx.insert_audit(&entry(1, "genesis")).unwrap();
    tx.commit().unwrap();

    let read = store.read().unwrap();
    let seen = read.request(&request.id).unwrap().unwrap();
    assert_eq!(seen.reviews, [approval]);
    assert_eq!(
        read.audit_head().unwrap().map(|head| head.seq),
        Some(1),
        "a read sees the audit head"
    );
    assert_eq!(read.request("req_other").unwrap(), None);
    drop(read);

    let read = store.read().unwrap();
    assert_eq!(read.grant("gr_none").unwrap(), None);
    let found = read
        .requests(&RequestQuery {
            requester: Some("alice".into()),
            ..RequestQuery::default()
        })
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
}

/// A transaction dropped without commit leaves nothing of what it wrote
/// (rule 6), and the store takes the next transaction as usual.
pub fn dropping_a_transaction_rolls_everything_back(store: &dyn Store) {
    let committed = bare_request("req_kept", "alice", "db", 1);
    insert_requests(store, std::slice::from_ref(&committed));

    let mut tx = store.transaction().unwrap();
    let mut changed = committed.clone();
    changed.state = RequestState::Cancelled;
    changed.reason = Some("never".into());
    tx.update_request(&changed).unwrap();
    tx.insert_request(&bare_request("req_new", "bob", "db", 2))
        .unwrap();
    tx.insert_review(
        "req_new",
        &Review {
            reviewer: "carol".into(),
            decision: Decision::Approve,
            comment: None,
            at: at(3),
        },
    )
    .unwrap();
    tx.insert_grant(&grant("gr_new", "req_new", "bob", 4))
        .unwrap();
    tx.insert_idempotency_key("bob", "key", "hash", "req_new", at(5))
        .unwrap();
    tx.insert_audit(&entry(1, "genesis")).unwrap();
    tx.insert_signing_key("kid", b"key", at(6)).unwrap();
    drop(tx);

    let tx = store.transaction().unwrap();
    assert_eq!(tx.request("req_kept").unwrap(), Some(committed));
    assert_eq!(tx.request("req_new").unwrap(), None);
    assert_eq!(tx.grant("gr_new").unwrap(), None);
    assert_eq!(tx.idempotency_key("bob", "key").unwrap(), None);
    assert_eq!(tx.audit_head().unwrap(), None);
    assert_eq!(tx.signing_key().unwrap(), None);
    assert_eq!(tx.requests(&RequestQuery::default()).unwrap().len(), 1);
    drop(tx);

    insert_requests(store, &[bare_request("req_after", "bob", "db", 7)]);
    let tx = store.transaction().unwrap();
    assert!(tx.request("req_after").unwrap().is_some());
}

/// Reviewers race to decide one pending request, each reading it, checking
/// nobody decided yet and writing its decision in one transaction: with
/// writes serialised (rule 1) exactly one decides, whoever it is; and one
/// reviewer racing themself records one review (rule 3).
pub fn racing_reviews_let_exactly_one_decide(store: &dyn Store) {
    insert_requests(store, &[pending("req", 1)]);

    for same_reviewer in [false, true] {
        let id = if same_reviewer { "req_same" } else { "req" };
        if same_reviewer {
            insert_requests(store, &[pending(id, 2)]);
        }
        let decided = race(|racer| {
            let reviewer = if same_reviewer {
                "bob".to_string()
            } else {
                format!("reviewer{racer}")
            };
            usize::from(decide(store, id, &reviewer, racer))
        });
        let tx = store.transaction().unwrap();
        let request = tx.request(id).unwrap().unwrap();
        assert_eq!(decided, 1, "{id}: exactly one reviewer decides");
        assert_eq!(request.reviews.len(), 1, "{id}: {:?}", request.reviews);
        assert_eq!(request.state, RequestState::Approved);
    }
}

/// Holders race to revoke one active grant, each reading it, checking it
/// is still active and ending it in one transaction; outbox workers race
/// to finish one target effect the same way: exactly one wins each race,
/// in locked transactions (rule 1: a read is made under the lock) and in
/// optimistic ones done again while their commit finds a read changed.
pub fn racing_writers_end_a_grant_and_its_effect_once(store: &dyn Store) {
    insert_requests(store, &[bare_request("req", "alice", "db", 1)]);
    // Rounds, so that the later ones race on connections the first opened.
    for optimistic in [false, true] {
        for round in 0..3 {
            let id = format!("gr_{optimistic}_{round}");
            let effect_id = format!("fx_{optimistic}_{round}");
            let mut tx = store.transaction().unwrap();
            tx.insert_grant(&grant(&id, "req", "alice", 10)).unwrap();
            tx.insert_effect(&effect(&effect_id, &id, EffectAction::Provision, 1))
                .unwrap();
            tx.commit().unwrap();
            for attempt in [try_revoking, try_finishing] {
                let won = race(|racer| {
                    loop {
                        let tx = if optimistic {
                            store.optimistic()
                        } else {
                            store.transaction()
                        };
                        match tx.and_then(|tx| attempt(tx, &id, racer)) {
                            Ok(won) => return usize::from(won),
                            Err(StoreError::Contended(_)) if optimistic => continue,
                            Err(StoreError::Conflict(_) | StoreError::Unavailable(_))
                                if !optimistic =>
                            {
                                return 0;
                            }
                            Err(err) => panic!("{id}, racer {racer}: {err}"),
                        }
                    }
                });
                assert_eq!(won, 1, "{id}: exactly one racer wins");
            }
            let tx = store.transaction().unwrap();
            let ended = tx.grant(&id).unwrap().unwrap();
            assert_eq!(ended.state, GrantState::Revoked, "{id}");
            let effects = tx.grant_effects(&id).unwrap();
            assert!(effects.iter().all(|e| e.done_at.is_some()), "{effects:?}");
        }
    }
}

/// In `tx`: read the grant, and if it is still active, revoke it. Whether
/// this revoked it.
fn try_revoking(mut tx: Box<dyn Tx + '_>, id: &str, racer: usize) -> crate::store::Result<bool> {
    let Some(mut grant) = tx.grant(id)? else {
        return Ok(false);
    };
    if grant.state != GrantState::Active {
        return Ok(false);
    }
    grant.state = GrantState::Revoked;
    grant.ended_at = Some(at(20 + racer as i64));
    grant.revoked_by = Some(format!("racer{racer}"));
    tx.update_grant(&grant)?;
    tx.commit()?;
    Ok(true)
}

/// In `tx`: read the grant's effects, and if its effect is still to do,
/// record it done. Whether this finished it.
fn try_finishing(mut tx: Box<dyn Tx + '_>, id: &str, racer: usize) -> crate::store::Result<bool> {
    let Some(mut open) = tx
        .grant_effects(id)?
        .into_iter()
        .find(|effect| effect.done_at.is_none())
    else {
        return Ok(false);
    };
    open.attempts += 1;
    open.done_at = Some(at(30 + racer as i64));
    tx.update_effect(&open)?;
    tx.commit()?;
    Ok(true)
}

/// A transaction's reads see its own writes not yet committed, before its
/// first write and after it, in locked and in optimistic transactions.
pub fn transactions_read_their_own_writes(store: &dyn Store) {
    insert_requests(store, &[bare_request("req", "alice", "db", 1)]);
    let alice = GrantQuery {
        holder: Some("alice".into()),
        ..GrantQuery::default()
    };
    for (n, optimistic) in [false, true].into_iter().enumerate() {
        let mut tx = if optimistic {
            store.optimistic().unwrap()
        } else {
            store.transaction().unwrap()
        };
        let before = tx.grants(&alice).unwrap().len();
        assert_eq!(before, n, "optimistic: {optimistic}");
        let id = format!("gr_{n}");
        let mut written = grant(&id, "req", "alice", 10 + n as i64);
        tx.insert_grant(&written).unwrap();
        assert_eq!(tx.grant(&id).unwrap().as_ref(), Some(&written));
        assert_eq!(tx.grants(&alice).unwrap().len(), n + 1);
        written.state = GrantState::Revoked;
        written.ended_at = Some(at(20));
        tx.update_grant(&written).unwrap();
        assert_eq!(tx.grant(&id).unwrap().as_ref(), Some(&written));
        let queued = effect(&format!("fx_{n}"), &id, EffectAction::Deprovision, 30);
        tx.insert_effect(&queued).unwrap();
        assert_eq!(tx.grant_effects(&id).unwrap(), [queued]);
        let mut request = tx.request("req").unwrap().unwrap();
        request.reason = Some(format!("changed {n}"));
        tx.update_request(&request).unwrap();
        assert_eq!(tx.request("req").unwrap().unwrap().reason, request.reason);
        tx.commit().unwrap();
    }
}

/// Runs `racer` on [`RACERS`] threads, released together, each given its
/// number; the sum of what they return (how many times each won).
fn race(racer: impl Fn(usize) -> usize + Sync) -> usize {
    let won = AtomicUsize::new(0);
    let start = Barrier::new(RACERS);
    std::thread::scope(|threads| {
        for n in 0..RACERS {
            let (racer, won, start) = (&racer, &won, &start);
            threads.spawn(move || {
                start.wait();
                won.fetch_add(racer(n), Ordering::SeqCst);
            });
        }
    });
    won.into_inner()
}

/// A request of alice's, pending until an hour in, filed at `created_ms`.
fn pending(id: &str, created_ms: i64) -> AccessRequest {
    let mut pending = bare_request(id, "alice", "db", created_ms);
    pending.state = RequestState::Pending;
    pending.lapses_at = Some(at(3_600_000));
    pending
}

/// One reviewer's attempt: true if it decided the request. A conflict or an
/// unavailable store (a serialisation failure) loses, with nothing written.
fn decide(store: &dyn Store, id: &str, reviewer: &str, racer: usize) -> bool {
    match try_deciding(store.transaction(), id, reviewer, racer) {
        Ok(decided) => decided,
        Err(StoreError::Conflict(_) | StoreError::Unavailable(_)) => false,
        Err(err) => panic!("{reviewer}: {err}"),
    }
}

/// In `tx`: read the request, and if nobody decided it yet, approve it.
/// Whether this decided it.
fn try_deciding(
    tx: crate::store::Result<Box<dyn Tx + '_>>,
    id: &str,
    reviewer: &str,
    racer: usize,
) -> crate::store::Result<bool> {
    let mut tx = tx?;
    let Some(mut request) = tx.request(id)? else {
        return Ok(false);
    };
    if request.state != RequestState::Pending || !request.reviews.is_empty() {
        return Ok(false);
    }
    tx.insert_review(
        id,
        &Review {
            reviewer: reviewer.into(),
            decision: Decision::Approve,
            comment: None,
            at: at(10 + racer as i64),
        },
    )?;
    request.state = RequestState::Approved;
    request.lapses_at = None;
    tx.update_request(&request)?;
    tx.commit()?;
    Ok(true)
}

/// Reviewers race as [`racing_reviews_let_exactly_one_decide`], each in
/// optimistic transactions ([`Store::optimistic`]) done again while their
/// commit finds a read changed (rule 1): still exactly one decides, with
/// one review, and no try fails otherwise.
pub fn racing_optimistic_reviews_decide_once(store: &dyn Store) {
    insert_requests(store, &[pending("req", 1)]);
    let decided = race(|racer| {
        let reviewer = format!("reviewer{racer}");
        loop {
            match try_deciding(store.optimistic(), "req", &reviewer, racer) {
                Ok(decided) => return usize::from(decided),
                Err(StoreError::Contended(_)) => continue,
                Err(err) => panic!("{reviewer}: {err}"),
            }
        }
    });
    let tx = store.transaction().unwrap();
    let request = tx.request("req").unwrap().unwrap();
    assert_eq!(decided, 1, "exactly one reviewer decides");
    assert_eq!(request.reviews.len(), 1, "{:?}", request.reviews);
    assert_eq!(request.state, RequestState::Approved);
}

/// For a store whose optimistic transactions read without waiting for
/// the writers' turn (not SQLite, where another transaction cannot begin
/// while one is open, so the store's own suite leaves this out): an
/// optimistic commit fails with [`StoreError::Contended`], writing
/// nothing, when a row it read was changed meanwhile, and when a list it
/// read would now list another row; and commits when nothing it read
/// changed, though other rows did. Another transaction takes the writers'
/// turn and commits while each one is open, so none of them holds it
/// while it reads.
pub fn optimistic_commits_check_their_reads(store: &dyn Store) {
    let pending = pending("req", 1);
    insert_requests(store, std::slice::from_ref(&pending));
    let alice = RequestQuery {
        requester: Some("alice".into()),
        ..RequestQuery::default()
    };
    // Runs `change` in a transaction of its own on another thread, which
    // must commit while the optimistic one is open.
    let meanwhile = |change: &(dyn Fn(&mut dyn Tx) + Sync)| {
        std::thread::scope(|scope| {
            let done = scope.spawn(|| {
                let mut tx = store.transaction().unwrap();
                assert!(tx.audit_head().is_ok(), "takes the writers' turn");
                change(tx.as_mut());
                tx.commit().unwrap();
            });
            done.join().unwrap();
        });
    };

    // A row it read changed.
    let mut tx = store.optimistic().unwrap();
    let mut read = tx.request("req").unwrap().unwrap();
    meanwhile(&|tx| {
        let mut denied = pending.clone();
        denied.state = RequestState::Denied;
        denied.lapses_at = None;
        tx.update_request(&denied).unwrap();
    });
    read.state = RequestState::Approved;
    read.lapses_at = None;
    tx.update_request(&read).unwrap();
    tx.append_audit(&mut entry(0, ""), b"}").unwrap();
    assert!(
        matches!(tx.commit(), Err(StoreError::Contended(_))),
        "a changed row fails the commit"
    );
    let tx = store.transaction().unwrap();
    assert_eq!(
        tx.request("req").unwrap().unwrap().state,
        RequestState::Denied
    );
    assert_eq!(tx.audit_head().unwrap(), None, "nothing was written");
    drop(tx);

    // A list it read would list another row.
    let mut tx = store.optimistic().unwrap();
    assert_eq!(tx.requests(&alice).unwrap().len(), 1);
    meanwhile(&|tx| {
        tx.insert_request(&bare_request("req2", "alice", "db", 2))
            .unwrap()
    });
    tx.insert_request(&bare_request("req3", "alice", "db", 3))
        .unwrap();
    assert!(
        matches!(tx.commit(), Err(StoreError::Contended(_))),
        "a list with another row fails the commit"
    );
    let tx = store.transaction().unwrap();
    assert_eq!(tx.request("req3").unwrap(), None, "nothing was written");
    drop(tx);

    // Nothing it read changed: other rows did.
    let mut tx = store.optimistic().unwrap();
    let mut read = tx.request("req").unwrap().unwrap();
    assert!(tx.request("req_none").unwrap().is_none());
    meanwhile(&|tx| {
        tx.insert_request(&bare_request("req4", "bob", "db", 4))
            .unwrap()
    });
    read.state = RequestState::Expired;
    read.lapses_at = None;
    tx.update_request(&read).unwrap();
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(
        tx.request("req").unwrap().unwrap().state,
        RequestState::Expired
    );
    drop(tx);

    // The requester came to hold the role since it read what they held
    // with the request (Tx::request_with_holding).
    insert_requests(store, &[self::pending("req5", 5)]);
    let mut tx = store.optimistic().unwrap();
    let (mut read, held) = tx.request_with_holding("req5").unwrap().unwrap();
    assert!(held.is_empty());
    meanwhile(&|tx| {
        let mut held = grant("gr_5", "req", "alice", 5);
        held.role = "db".into();
        tx.insert_grant(&held).unwrap();
    });
    read.state = RequestState::Denied;
    read.lapses_at = None;
    tx.update_request(&read).unwrap();
    assert!(
        matches!(tx.commit(), Err(StoreError::Contended(_))),
        "a grant the requester came to hold fails the commit"
    );
}

/// Threads race to append entries with [`Tx::append_audit`], from 1 to 11
/// a transaction, in optimistic transactions: every entry is in the chain
/// once, numbered in turn, each linked to the one before, its hash the
/// [`link`](crate::store::link) of its place and its tail, and a
/// transaction's entries next to each other in the order appended (rule 2).
pub fn racing_appends_link_to_the_head(store: &dyn Store) {
    const TRANSACTIONS: usize = 10;
    std::thread::scope(|threads| {
        for racer in 0..RACERS {
            threads.spawn(move || {
                for n in 0..TRANSACTIONS {
                    let mut tx = store.optimistic().unwrap();
                    for at in 0..appended(racer, n) {
                        let mut next = entry(0, "");
                        next.actor = format!("racer{racer}-{n}-{at}");
                        let tail = tail_of(&next.actor);
                        tx.append_audit(&mut next, &tail).unwrap();
                    }
                    tx.announce(&["req"], &[], None, false).unwrap();
                    tx.commit().unwrap();
                }
            });
        }
    });
    let tx = store.transaction().unwrap();
    let log = tx.audit(&AuditQuery::default()).unwrap();
    let total: usize = (0..RACERS)
        .flat_map(|racer| (0..TRANSACTIONS).map(move |n| appended(racer, n)))
        .sum();
    assert_eq!(log.len(), total, "every entry, once");
    assert_chained(&log);
    for (n, event) in log.iter().enumerate() {
        let (transaction, at) = event.actor.rsplit_once('-').unwrap();
        if at != "0" {
            let before = at.parse::<usize>().unwrap() - 1;
            assert_eq!(
                log[n - 1].actor,
                format!("{transaction}-{before}"),
                "a transaction's entries are next to each other, in order"
            );
        }
    }
}

/// Every entry of `log`, the whole log oldest first, is numbered in turn
/// from 1 and linked to the one before, its hash the
/// [`link`](crate::store::link) of its place and its actor's [`tail_of`].
fn assert_chained(log: &[hoist_api::AuditEvent]) {
    let mut prev_hash = crate::store::GENESIS.to_string();
    for (n, event) in log.iter().enumerate() {
        assert_eq!(event.seq, n as i64 + 1);
        assert_eq!(event.prev_hash, prev_hash, "entry {}", event.seq);
        assert_eq!(
            event.hash,
            crate::store::link(&prev_hash, event.seq, &tail_of(&event.actor)),
            "entry {}",
            event.seq
        );
        prev_hash = event.hash.clone();
    }
}

/// How many entries racer `racer` appends in its transaction `n` in
/// [`racing_appends_link_to_the_head`]: 1 to 11.
fn appended(racer: usize, n: usize) -> usize {
    1 + (racer * 3 + n) % 11
}

/// Entries appended ([`Tx::append_audit`]) and written as given
/// ([`Tx::insert_audit`]) in one transaction go in the order the
/// transaction made them (rule 2).
pub fn appends_and_inserts_keep_their_order(store: &dyn Store) {
    let mut tx = store.transaction().unwrap();
    let mut prev_hash = crate::store::GENESIS.to_string();
    for seq in 1..=5 {
        let mut next = entry(0, "");
        next.actor = format!("entry{seq}");
        let tail = tail_of(&next.actor);
        let hash = crate::store::link(&prev_hash, seq, &tail);
        if seq == 3 {
            let mut given = entry(seq, &prev_hash);
            given.actor = next.actor.clone();
            given.hash = hash.clone();
            tx.insert_audit(&given).unwrap();
        } else {
            tx.append_audit(&mut next, &tail).unwrap();
        }
        prev_hash = hash;
    }
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    let log = tx.audit(&AuditQuery::default()).unwrap();
    let actors: Vec<_> = log.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(
        actors,
        ["entry1", "entry2", "entry3", "entry4", "entry5"],
        "in the order made"
    );
    assert_chained(&log);
}

/// The tail hashed after an entry's sequence number in
/// [`racing_appends_link_to_the_head`]: any bytes do, here UTF-8 too.
fn tail_of(actor: &str) -> Vec<u8> {
    format!(",\"actor\":\"{actor}\",\"é\":\"ü\"}}").into_bytes()
}

/// Threads race to append to the audit log, each reading the head and
/// inserting the next entry in one transaction: the chain that results has
/// every committed entry once, in sequence, each linked to the one before
/// (rule 2); an append that loses the race fails whole.
pub fn racing_appends_take_turns(store: &dyn Store) {
    const APPENDS: usize = 25;
    let committed = race(|_| {
        let mut committed = 0;
        for _ in 0..APPENDS {
            let append = || -> crate::store::Result<()> {
                let mut tx = store.transaction()?;
                let next = next_entry(tx.as_ref());
                tx.insert_audit(&next)?;
                tx.commit()
            };
            match append() {
                Ok(()) => committed += 1,
                Err(StoreError::Conflict(_) | StoreError::Unavailable(_)) => {}
                Err(err) => panic!("append: {err}"),
            }
        }
        committed
    });
    let tx = store.transaction().unwrap();
    let log = tx.audit(&AuditQuery::default()).unwrap();
    assert_eq!(log.len(), committed, "every commit, once");
    assert!(!log.is_empty());
    let mut prev_hash = "genesis".to_string();
    for (n, event) in log.iter().enumerate() {
        assert_eq!(event.seq, n as i64 + 1);
        assert_eq!(event.prev_hash, prev_hash, "entry {}", event.seq);
        prev_hash = event.hash.clone();
    }
}

/// A transaction holds a connection while it is open and gives it back
/// when it ends, and the store tells so without waiting for one.
pub fn connections_in_use(store: &dyn Store) {
    let idle = store.connections();
    assert_eq!(idle.in_use, 0, "nothing runs yet: {idle:?}");
    assert!(idle.max >= 1 && idle.open <= idle.max, "{idle:?}");

    let tx = store.transaction().unwrap();
    let busy = store.connections();
    assert_eq!(busy.in_use, 1, "one transaction is open: {busy:?}");
    assert!(busy.open >= 1 && busy.open <= busy.max, "{busy:?}");
    tx.commit().unwrap();

    // A pooled connection may go back a moment after the commit returns.
    let mut after = store.connections();
    for _ in 0..100 {
        if after.in_use == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        after = store.connections();
    }
    assert_eq!(after.in_use, 0, "the transaction ended: {after:?}");
}

/// A transaction fenced with a lease ([`Tx::fence`]) commits while the
/// lease is still that one, and once another instance took the lease over
/// it writes nothing and is `Contended`. A store only one process uses has
/// no one to take the lease over: `lead` answers every holder alike there,
/// and a fenced transaction commits as any other.
pub fn fenced_transactions_write_only_under_their_lease(store: &dyn Store) {
    let term = std::time::Duration::from_secs(60);
    let epoch = store
        .lead("first", term, false)
        .unwrap()
        .expect("no one led before");
    let first = Lease {
        holder: "first".into(),
        epoch,
    };
    let mut tx = store.transaction().unwrap();
    tx.fence(&first).unwrap();
    tx.insert_request(&bare_request("req_led", "alice", "db", 1))
        .unwrap();
    tx.commit().unwrap();
    assert!(
        store.read().unwrap().request("req_led").unwrap().is_some(),
        "a transaction fenced with the lease in force committed nothing"
    );

    store.resign("first").unwrap();
    let next = store.lead("second", term, false).unwrap();
    let mut tx = store.transaction().unwrap();
    tx.fence(&first).unwrap();
    tx.insert_request(&bare_request("req_late", "alice", "db", 2))
        .unwrap();
    let written = tx.commit();
    let stored = store.read().unwrap().request("req_late").unwrap();
    if next == Some(epoch) {
        // One process: "second" is this process too.
        written.unwrap();
        assert!(stored.is_some(), "a store one process uses fenced a write");
    } else {
        assert!(
            next.is_some_and(|next| next > epoch),
            "the lease changed hands without a higher epoch: {next:?} after {epoch}"
        );
        match written {
            Err(StoreError::Contended(message)) => assert!(
                message.contains(&format!("epoch {epoch}")),
                "the refusal does not name the lost epoch: {message}"
            ),
            other => panic!("a write fenced with a lost lease was not refused: {other:?}"),
        }
        assert!(stored.is_none(), "a write fenced with a lost lease landed");
    }
}

/// Rule 14: a transaction commits its writes only before the moment it was
/// given, by the broker's clock (a server database checks under its lock,
/// by its own clock moved by the offset it measured); the earliest of two
/// moments holds, and one that wrote nothing commits whenever.
pub fn transactions_commit_only_before_their_moment(store: &dyn Store) {
    // A server database's offset, as the broker reads it at start.
    store.measure_clock().unwrap();
    let now = crate::clock::now();
    let mut tx = store.transaction().unwrap();
    tx.commit_before(now + TimeDelta::minutes(10));
    tx.insert_request(&bare_request("req_in_time", "alice", "db", 1))
        .unwrap();
    tx.commit().unwrap();
    assert!(
        store
            .read()
            .unwrap()
            .request("req_in_time")
            .unwrap()
            .is_some(),
        "a transaction whose moment had not come committed nothing"
    );

    for optimistic in [false, true] {
        let mut tx = if optimistic {
            store.optimistic().unwrap()
        } else {
            store.transaction().unwrap()
        };
        assert!(tx.request("req_in_time").unwrap().is_some());
        tx.commit_before(now + TimeDelta::minutes(10));
        tx.commit_before(now - TimeDelta::milliseconds(1));
        tx.insert_request(&bare_request("req_late", "alice", "db", 2))
            .unwrap();
        match tx.commit() {
            Err(StoreError::Contended(message)) => assert!(
                message.contains("ended by time"),
                "the refusal does not say why: {message}"
            ),
            other => panic!(
                "a write after its moment was not refused (optimistic: {optimistic}): {other:?}"
            ),
        }
        assert!(
            store.read().unwrap().request("req_late").unwrap().is_none(),
            "a write after its moment landed (optimistic: {optimistic})"
        );
    }

    let mut tx = store.transaction().unwrap();
    assert!(tx.request("req_in_time").unwrap().is_some());
    tx.commit_before(now - TimeDelta::milliseconds(1));
    tx.commit()
        .expect("a transaction that wrote nothing was refused");
}
