//! Notifications (rule 12): written once per event and channel, the
//! transaction still usable after a refused one, kept until done, the
//! routing cursor moved with them, and the delivery log.

use super::at;
use crate::store::{Notification, NotificationDelivery, Store, StoreError};

fn notification(id: &str, key: &str, next_ms: i64) -> Notification {
    Notification {
        id: id.into(),
        dedup_key: key.into(),
        channel: "dba-slack".into(),
        event: "request_filed".into(),
        notice: r#"{"event":"request_filed","justification":"« quotes » \"and\" 🦀"}"#.into(),
        attempts: 0,
        next_attempt_at: at(next_ms),
        last_error: None,
        created_at: at(1),
        done_at: None,
        delivered: false,
    }
}

/// A read of due notifications leaves out the channels named, and only
/// those, in the same read as the others.
pub fn notifications_skipped_by_channel(store: &dyn Store) {
    let to = |id: &str, channel: &str, next_ms| Notification {
        channel: channel.into(),
        ..notification(id, &format!("audit:{id}:{channel}"), next_ms)
    };
    let mut tx = store.transaction().unwrap();
    for n in [
        to("n_1", "dba-slack", 10),
        to("n_2", "pager", 20),
        to("n_3", "dba-slack", 30),
    ] {
        tx.insert_notification(&n).unwrap();
    }
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    let ids = |skip: &[&str]| {
        let skip: Vec<String> = skip.iter().map(|s| s.to_string()).collect();
        let due: Vec<String> = tx
            .due_notifications(at(100), 10, &skip)
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(
            tx.due_notification_ids(at(100), 10, &skip).unwrap(),
            due,
            "the same ids, in the same order"
        );
        due
    };
    assert_eq!(ids(&[]), ["n_1", "n_2", "n_3"]);
    assert_eq!(ids(&["dba-slack"]), ["n_2"]);
    assert_eq!(ids(&["pager"]), ["n_1", "n_3"]);
    assert_eq!(ids(&["pager", "dba-slack"]), Vec::<String>::new());
}

/// Due notifications come soonest first and done ones never; a second
/// write of one event to one channel is refused without spoiling the
/// transaction; updates keep every field; the cursor starts at zero on an
/// empty log and holds what it is set to, or nothing if rolled back.
pub fn notifications_outbox(store: &dyn Store) {
    let first = notification("n_1", "audit:1:dba-slack", 100);
    let later = notification("n_2", "audit:2:dba-slack", 500);
    let sooner = notification("n_3", "lapsing:req_a:dba-slack", 50);

    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.notification_cursor().unwrap(), 0, "an empty log");
    for n in [&first, &later, &sooner] {
        tx.insert_notification(n).unwrap();
    }
    // The same event on the same channel, under a new id: refused, and the
    // transaction goes on (the router meets this whenever it routes again).
    assert!(matches!(
        tx.insert_notification(&notification("n_again", "audit:1:dba-slack", 1)),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        tx.insert_notification(&notification("n_1", "audit:9:dba-slack", 1)),
        Err(StoreError::Conflict(_))
    ));
    tx.set_notification_cursor(2).unwrap();
    tx.commit().unwrap();

    let tx = store.transaction().unwrap();
    assert_eq!(tx.notification_cursor().unwrap(), 2);
    let ids = |due: Vec<Notification>| due.into_iter().map(|n| n.id).collect::<Vec<_>>();
    assert_eq!(
        ids(tx.due_notifications(at(100), 10, &[]).unwrap()),
        ["n_3", "n_1"]
    );
    assert!(tx.due_notifications(at(49), 10, &[]).unwrap().is_empty());
    assert_eq!(
        ids(tx.due_notifications(at(1_000), 1, &[]).unwrap()),
        ["n_3"]
    );
    assert_eq!(
        tx.due_notification_ids(at(100), 10, &[]).unwrap(),
        ["n_3", "n_1"]
    );
    assert!(tx.due_notification_ids(at(49), 10, &[]).unwrap().is_empty());
    assert_eq!(
        tx.due_notification_ids(at(1_000), 1, &[]).unwrap(),
        ["n_3"],
        "limit"
    );
    assert!(
        tx.due_notifications(at(100), 10, &["pager".into(), "dba-slack".into()])
            .unwrap()
            .is_empty(),
        "a channel skipped"
    );
    assert_eq!(
        ids(tx
            .due_notifications(at(100), 10, &["pager".into()])
            .unwrap()),
        ["n_3", "n_1"],
        "only the channels skipped"
    );
    assert_eq!(tx.next_notification_due().unwrap(), Some(at(50)));
    assert_eq!(tx.notification("n_1").unwrap().as_ref(), Some(&first));
    assert_eq!(tx.notification("n_again").unwrap(), None);
    drop(tx);

    let mut failed = sooner.clone();
    failed.attempts = 3;
    failed.next_attempt_at = at(700);
    failed.last_error = Some("answered 500 Internal Server Error".into());
    let mut delivered = first.clone();
    delivered.attempts = 1;
    delivered.done_at = Some(at(120));
    delivered.delivered = true;
    let mut tx = store.transaction().unwrap();
    tx.update_notification(&failed).unwrap();
    tx.update_notification(&delivered).unwrap();
    tx.set_notification_cursor(7).unwrap();
    drop(tx);
    assert_eq!(
        store.transaction().unwrap().notification_cursor().unwrap(),
        2,
        "rolled back"
    );
    let mut tx = store.transaction().unwrap();
    tx.update_notification(&failed).unwrap();
    tx.update_notification(&delivered).unwrap();
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(
        ids(tx.due_notifications(at(1_000), 10, &[]).unwrap()),
        ["n_2", "n_3"]
    );
    assert_eq!(tx.next_notification_due().unwrap(), Some(at(500)));
    assert_eq!(tx.notification("n_1").unwrap(), Some(delivered));
    assert_eq!(tx.notification("n_3").unwrap(), Some(failed));
    assert_eq!(tx.notifications_given_up().unwrap(), 0, "none given up yet");
    drop(tx);

    // Given up: done, never delivered.
    let mut given_up = later.clone();
    given_up.attempts = 40;
    given_up.done_at = Some(at(900));
    given_up.last_error = Some("retried for a day".into());
    let mut tx = store.transaction().unwrap();
    tx.update_notification(&given_up).unwrap();
    tx.commit().unwrap();
    assert_eq!(store.read().unwrap().notifications_given_up().unwrap(), 1);

    let mut tx = store.transaction().unwrap();
    assert!(matches!(
        tx.update_notification(&notification("n_ghost", "x", 1)),
        Err(StoreError::NotFound(_))
    ));
}

/// The delivery log keeps every field, newest first, and forgets the
/// oldest first, only those made before the moment given.
pub fn notification_deliveries(store: &dyn Store) {
    let mut tx = store.transaction().unwrap();
    tx.insert_notification(&notification("n_1", "audit:1:dba-slack", 1))
        .unwrap();
    tx.commit().unwrap();
    let first = NotificationDelivery {
        notification_id: "n_1".into(),
        attempt: 1,
        channel: "dba-slack".into(),
        event: "request_filed".into(),
        status: Some(503),
        duration_ms: 12,
        error: Some("dba-slack answered 503 Service Unavailable".into()),
        at: at(10),
    };
    let second = NotificationDelivery {
        attempt: 2,
        status: Some(200),
        duration_ms: 3,
        error: None,
        at: at(20),
        ..first.clone()
    };
    let mut tx = store.transaction().unwrap();
    tx.insert_notification_delivery(&first).unwrap();
    tx.insert_notification_delivery(&second).unwrap();
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(
        tx.notification_deliveries(10).unwrap(),
        vec![second.clone(), first]
    );
    assert_eq!(tx.notification_deliveries(1).unwrap(), vec![second.clone()]);
    drop(tx);

    let mut tx = store.transaction().unwrap();
    assert_eq!(tx.purge_notification_deliveries(at(10), 10).unwrap(), 0);
    assert_eq!(tx.purge_notification_deliveries(at(30), 1).unwrap(), 1);
    tx.commit().unwrap();
    let tx = store.transaction().unwrap();
    assert_eq!(tx.notification_deliveries(10).unwrap(), vec![second]);
}
