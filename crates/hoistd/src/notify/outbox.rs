//! The notification worker: routes new audit events and due reminders into
//! the store (through the broker), then sends each due notification outside
//! any transaction and records the attempt. A failed attempt is tried again
//! with the target outbox's capped, jittered backoff, for a day; a
//! notification whose channel left the policy is given up at once. The
//! notifications are in the store, so a restart (or another leader) picks up
//! whatever was left. Each keeps its delivery id across attempts, so a
//! receiver can tell a retry from a new one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::{Notice, Notifier, format};
use crate::store::{Notification, NotificationDelivery};
use crate::target::outbox::{Failing, LEAD_LOST_PAUSE, Slots, backoff};
use crate::target::webhook::PostError;

/// Longest the worker sleeps between looks, in case a wake-up is missed.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// Notifications sent at once.
const MAX_RUNNING: usize = 16;
/// Notifications sent at once to one channel: a channel that stops
/// answering holds no more than these, so the others' still go out.
const MAX_RUNNING_PER_CHANNEL: usize = 4;
/// Notifications sent at once to channels that are failing, in all: the
/// other slots stay for channels that answer.
const MAX_PROBING: usize = MAX_RUNNING / 2;
/// Due notifications read at a time.
const READ: usize = 256;
/// Pages of audit events routed per look, before sending anything.
const MAX_PAGES: usize = 16;
/// Reminders are looked for at most this often (and when one falls due).
const REMIND_EVERY: Duration = Duration::from_secs(1);
/// How long a notification is retried before it is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again later.
    Failed(String),
    /// Trying again cannot help (the channel left the policy).
    Abandoned(String),
}

/// The notification after an attempt at `now` with `outcome`.
pub fn settle(notification: &Notification, outcome: &Outcome, now: DateTime<Utc>) -> Notification {
    let mut next = notification.clone();
    match outcome {
        Outcome::Delivered => {
            next.done_at = Some(now);
            next.delivered = true;
            next.last_error = None;
        }
        Outcome::Failed(why) => {
            next.attempts += 1;
            next.last_error = Some(why.clone());
            let age = (now - notification.created_at).to_std().unwrap_or_default();
            if age >= GIVE_UP_AFTER {
                next.done_at = Some(now);
                next.last_error = Some(format!(
                    "{why}; given up after {}",
                    humantime::format_duration(GIVE_UP_AFTER)
                ));
            } else {
                next.next_attempt_at =
                    now + TimeDelta::from_std(backoff(next.attempts)).unwrap_or_default();
            }
        }
        Outcome::Abandoned(why) => {
            next.attempts += 1;
            next.done_at = Some(now);
            next.last_error = Some(why.clone());
        }
    }
    next
}

/// Routes, reminds and sends until `stopped`.
pub async fn run<N: Notifier>(
    notifier: Arc<N>,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut running: JoinSet<Attempted> = JoinSet::new();
    // Outcomes reached but not recorded (the store took no writes), by
    // notification: the next try records them again, and never posts a
    // notification known to be delivered again.
    let mut unrecorded: HashMap<String, Unrecorded> = HashMap::new();
    // The id and channel of each notification being sent, by the task
    // sending it.
    let mut busy: HashMap<tokio::task::Id, (String, String)> = HashMap::new();
    // Notifications whose outcome could not be recorded, until when they
    // wait: they hold no slot meanwhile.
    let mut held: HashMap<String, Instant> = HashMap::new();
    let mut failing = Failing::default();
    // When reminders were last looked for, and when the next falls due.
    let mut reminded: Option<Instant> = None;
    let mut reminder: Option<DateTime<Utc>> = None;
    loop {
        // Without channels the cursor still moves, so that a channel added
        // later is not told of the past; every few seconds is enough.
        let quiet = notifier.channels().is_empty();
        let now = crate::target::now();
        let instant = Instant::now();
        held.retain(|_, until| *until > instant);
        let horizon = now + TimeDelta::from_std(MAX_SLEEP).unwrap_or_default();
        let remind = reminded.is_none_or(|at| at.elapsed() >= REMIND_EVERY)
            || reminder.is_some_and(|at| at <= now);
        let mut slots = Slots::new(
            &failing,
            busy.values().map(|(_, channel)| channel),
            MAX_RUNNING_PER_CHANNEL,
            MAX_PROBING,
        );
        let full = slots.full();
        let looked = {
            let notifier = Arc::clone(&notifier);
            tokio::task::spawn_blocking(move || {
                // Routing or reminding failing (a lock wait given up) holds
                // up nothing already due: sending needs only a read.
                let routed = (|| {
                    for _ in 0..MAX_PAGES {
                        if !notifier.route()? {
                            break;
                        }
                    }
                    Ok::<_, crate::error::Error>(())
                })();
                if let Err(err) = routed {
                    tracing::error!(error = %err, "notifications not routed; retrying");
                }
                let reminder = match remind.then(|| notifier.remind()) {
                    Some(Ok(reminder)) => Some(reminder),
                    Some(Err(err)) => {
                        tracing::error!(error = %err, "reminders not looked for; retrying");
                        None
                    }
                    None => None,
                };
                let due = notifier.due_notifications(horizon, READ, &full)?;
                Ok::<_, crate::error::Error>((reminder, due))
            })
            .await
        };
        let mut next: Option<DateTime<Utc>> = None;
        let mut again = false;
        match looked {
            Ok(Ok((looked_for, due))) => {
                // A full read may have left out notifications due to
                // channels it did not reach: read again at once (see the
                // target outbox).
                let filled = due.len() >= READ;
                if let Some(looked_for) = looked_for {
                    reminded = Some(Instant::now());
                    reminder = looked_for;
                }
                next = reminder;
                if !remind && let Some(at) = reminded {
                    // Look again once the pause is over.
                    let again = now
                        + TimeDelta::from_std(REMIND_EVERY.saturating_sub(at.elapsed()))
                            .unwrap_or_default();
                    next = Some(next.map_or(again, |n| n.min(again)));
                }
                let in_flight: HashSet<&String> = busy.values().map(|(id, _)| id).collect();
                let mut starting = Vec::new();
                for notification in due {
                    if in_flight.contains(&notification.id) || held.contains_key(&notification.id) {
                        continue;
                    }
                    if !slots.fit(&notification.channel) {
                        continue;
                    }
                    if notification.next_attempt_at > now {
                        next = Some(next.map_or(notification.next_attempt_at, |n| {
                            n.min(notification.next_attempt_at)
                        }));
                        continue;
                    }
                    if running.len() + starting.len() < MAX_RUNNING {
                        slots.take(&notification.channel);
                        starting.push(notification);
                    }
                }
                again = filled && !starting.is_empty();
                for notification in starting {
                    let ids = (notification.id.clone(), notification.channel.clone());
                    let handle = match unrecorded.remove(&notification.id) {
                        Some(outcome) => running.spawn(record(Arc::clone(&notifier), outcome)),
                        None => running.spawn(attempt(Arc::clone(&notifier), notification)),
                    };
                    busy.insert(handle.id(), ids);
                }
            }
            Ok(Err(err)) => tracing::error!(error = %err, "notifications not routed; retrying"),
            Err(err) => tracing::error!(error = %err, "notifications not routed; retrying"),
        }
        if again {
            continue;
        }
        let sleep = next
            .map(|at| {
                (at - crate::target::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            })
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        let sleep = held
            .values()
            .map(|until| until.saturating_duration_since(Instant::now()))
            .fold(sleep, Duration::min);
        let sleep = if quiet { MAX_SLEEP } else { sleep };
        let stopping = tokio::select! {
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let (id, answered, not_recorded) = match done {
                    Ok((id, attempted)) => {
                        if let Some(left) = attempted.unrecorded {
                            unrecorded.insert(left.0.id.clone(), left);
                        }
                        (id, attempted.answered, attempted.not_recorded)
                    }
                    // A bug (the task panicked): whether it posted is not
                    // known, and nothing was recorded. It waits its pause,
                    // as an outcome not recorded does, rather than be sent
                    // again at the next look.
                    Err(err) => {
                        tracing::error!(error = %err, "a notification failed to send");
                        (err.id(), None, true)
                    }
                };
                if let Some((notification, channel)) = busy.remove(&id) {
                    failing.note(&channel, answered);
                    if not_recorded {
                        held.insert(
                            notification,
                            Instant::now() + crate::target::outbox::UNRECORDED_PAUSE,
                        );
                    }
                }
                false
            }
            _ = tokio::time::sleep(sleep) => false,
            _ = wake.notified(), if !quiet => false,
            _ = stopped.wait_for(|stopped| *stopped) => true,
        };
        if stopping {
            // Posts under way are answered and recorded while this instance
            // still leads (a rolling restart), as the target outbox's calls
            // are: cut off, Slack would show the next leader's post of it
            // twice. What is left stays in the store, sent by the next
            // leader with the same delivery id.
            if notifier.leads_now() {
                let _ = tokio::time::timeout(crate::target::outbox::HALT_WAIT, async {
                    while running.join_next().await.is_some() {}
                })
                .await;
            }
            running.abort_all();
            return;
        }
    }
}

/// A notification as its attempt left it, and what that attempt was, to
/// be recorded.
type Unrecorded = (Notification, NotificationDelivery);

/// What one task did: whether the channel answered (`None`: it was not
/// posted to), whether its outcome could not be recorded (the
/// notification then waits its pause), and that outcome, to record at
/// the next try, if it was not lost (the recording task failed).
#[derive(Default)]
struct Attempted {
    answered: Option<bool>,
    not_recorded: bool,
    unrecorded: Option<Unrecorded>,
}

/// Sends one notification and records how it went. An answer of 5xx or
/// 429 is none: the receiver is down or swamped.
async fn attempt<N: Notifier>(notifier: Arc<N>, notification: Notification) -> Attempted {
    if !notifier.leads_now() {
        // Past this instance's term: the notification stays due, for
        // whoever leads now. The worker is being halted; until then the
        // channel's slot stays taken rather than be tried again at once.
        tokio::time::sleep(LEAD_LOST_PAUSE).await;
        return Attempted::default();
    }
    let channels = notifier.channels();
    let at = crate::target::now();
    let started = Instant::now();
    let mut answered = None;
    let (status, outcome) = match channels.get(&notification.channel) {
        None => (
            None,
            Outcome::Abandoned(format!(
                "{}: no such channel in the policy in force",
                notification.channel
            )),
        ),
        Some(channel) => match serde_json::from_str::<Notice>(&notification.notice) {
            // Written by a newer hoistd (an event this one does not know)
            // during an upgrade: tried again, so that a newer leader sends
            // it, and given up only with the day's retries.
            Err(err) => (
                None,
                Outcome::Failed(format!("the stored notice does not read: {err}")),
            ),
            Ok(notice) => {
                // A notice that asks for a decision, going out late (its
                // channel was down): one already decided says so, rather
                // than offer buttons that would only be refused.
                let decided = if channel.format == super::Format::Slack
                    && matches!(
                        notice.event,
                        super::Event::RequestFiled | super::Event::RequestLapsing
                    ) {
                    let (asking, id) = (Arc::clone(&notifier), notice.request_id.clone());
                    tokio::task::spawn_blocking(move || asking.decided(&id))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten()
                } else {
                    None
                };
                let mut body = format::render_as_of(channel.format, &notice, decided);
                // The delivery id again, where the signature covers it: a
                // receiver that drops what it has seen by this id cannot be
                // made to take a captured post twice under a new header.
                // And the channel it was sent to: a post captured at one
                // receiver, sent on to another that shares the secret, says
                // it was not meant for it.
                if let (super::Format::Json, Some(fields)) = (channel.format, body.as_object_mut())
                {
                    fields.insert("delivery".into(), notification.id.clone().into());
                    fields.insert("channel".into(), channel.name.clone().into());
                }
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                // Asked again just before the post: the read above may have
                // outlasted this instance's term, and the next leader posts
                // it too.
                if !notifier.leads_now() {
                    tokio::time::sleep(LEAD_LOST_PAUSE).await;
                    return Attempted::default();
                }
                let (status, posted) = channel.endpoint.post(&notification.id, bytes).await;
                // Any 2xx is a delivery, whatever came after it: an answer
                // too long to read, or cut off, was still a yes, and taken
                // as a failure it would be posted again and again.
                let accepted = status.is_some_and(|status| (200..300).contains(&status));
                answered = Some(match &posted {
                    _ if accepted => true,
                    Ok(reply) => {
                        !(reply.status.is_server_error()
                            || reply.status == reqwest::StatusCode::TOO_MANY_REQUESTS)
                    }
                    Err(PostError::Unreachable(_)) => false,
                    Err(PostError::Refused(_)) => true,
                });
                let outcome = match posted {
                    _ if accepted => Outcome::Delivered,
                    Ok(answered) => {
                        let said = String::from_utf8_lossy(&answered.body);
                        let said = said.trim();
                        let said = if said.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", channel.endpoint.scrub(said))
                        };
                        Outcome::Failed(format!(
                            "{} ({}) answered {}{said}",
                            channel.name,
                            channel.endpoint.origin(),
                            answered.status
                        ))
                    }
                    Err(PostError::Unreachable(why) | PostError::Refused(why)) => Outcome::Failed(
                        format!("{} ({}): {why}", channel.name, channel.endpoint.origin()),
                    ),
                };
                (status, outcome)
            }
        },
    };
    let delivery = NotificationDelivery {
        notification_id: notification.id.clone(),
        attempt: notification.attempts + 1,
        channel: notification.channel.clone(),
        event: notification.event.clone(),
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        error: match &outcome {
            Outcome::Delivered => None,
            Outcome::Failed(why) | Outcome::Abandoned(why) => Some(why.clone()),
        },
        at,
    };
    if let Some(why) = &delivery.error {
        tracing::warn!(
            channel = %notification.channel,
            notification = %notification.id,
            event = %notification.event,
            error = %why,
            "notification not delivered"
        );
    }
    let settled = settle(&notification, &outcome, crate::target::now());
    if settled.done_at.is_some() && !settled.delivered {
        // Nobody will be told now: an operator must hear of it.
        tracing::error!(
            channel = %notification.channel,
            notification = %notification.id,
            event = %notification.event,
            error = %settled.last_error.as_deref().unwrap_or_default(),
            "notification given up: it will not be sent"
        );
    }
    let mut attempted = record(notifier, (settled, delivery)).await;
    attempted.answered = answered;
    attempted
}

/// Records an attempt's outcome. Not recorded, the notification stays due
/// and the worker keeps the outcome to record at its next try, after a
/// pause (holding no slot meanwhile): it is not posted again.
async fn record<N: Notifier>(notifier: Arc<N>, outcome: Unrecorded) -> Attempted {
    let recorded = tokio::task::spawn_blocking(move || {
        let done = notifier.record_notification(&outcome.0, &outcome.1);
        (done, outcome)
    })
    .await;
    let (unrecorded, why) = match recorded {
        Ok((Ok(()), _)) => {
            return Attempted::default();
        }
        Ok((Err(err), outcome)) => (Some(outcome), err.to_string()),
        Err(err) => (None, err.to_string()),
    };
    tracing::error!(error = %why, "notification outcome not recorded");
    Attempted {
        answered: None,
        not_recorded: true,
        unrecorded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(created: DateTime<Utc>) -> Notification {
        Notification {
            id: "n".into(),
            dedup_key: "k".into(),
            channel: "c".into(),
            event: "request_filed".into(),
            notice: "{}".into(),
            attempts: 0,
            next_attempt_at: created,
            last_error: None,
            created_at: created,
            done_at: None,
            delivered: false,
        }
    }

    #[test]
    fn failures_back_off_then_give_up_after_a_day() {
        let start = crate::target::now();
        let failed = settle(&pending(start), &Outcome::Failed("down".into()), start);
        assert_eq!(failed.attempts, 1);
        assert!(failed.next_attempt_at > start);
        assert_eq!(failed.done_at, None);
        let late = start + TimeDelta::hours(25);
        let given_up = settle(&failed, &Outcome::Failed("down".into()), late);
        assert_eq!(given_up.done_at, Some(late));
        assert!(!given_up.delivered);
        assert!(given_up.last_error.unwrap().contains("given up"));
        let delivered = settle(&failed, &Outcome::Delivered, late);
        assert!(delivered.delivered);
        assert_eq!(delivered.last_error, None);
        let abandoned = settle(&pending(start), &Outcome::Abandoned("gone".into()), start);
        assert_eq!(abandoned.done_at, Some(start));
        assert!(!abandoned.delivered);
    }
}

#[cfg(test)]
mod worker_tests {
    //! The worker over given due notifications, sending to receivers on
    //! loopback: a channel that stops answering does not hold up the others.
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::notify::{Channel, Channels, Event, Format};
    use crate::target::webhook::Endpoint;

    /// A notice as the router writes it.
    const NOTICE: &str = r#"{"event":"request_filed","at":"2026-01-01T00:00:00Z","to":["dba"],
        "request_id":"req_1","kind":"access","role":"db","role_name":"Database","tier":null,
        "requester":"alice","justification":"reading the logs","duration_secs":3600,
        "break_glass":false,"approvals_required":1}"#;

    /// A receiver on loopback that counts the posts it is sent and answers
    /// each with `answer`'s status after its delay; with no `answer` it
    /// keeps each waiting for ever.
    async fn receiver(answer: Option<(u16, Duration)>) -> (url::Url, Arc<AtomicUsize>) {
        let posts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&posts);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let counted = Arc::clone(&counted);
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Some((status, delay)) = answer else {
                        return std::future::pending().await;
                    };
                    tokio::time::sleep(delay).await;
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, posts)
    }

    /// Answers at once.
    const ANSWERS: Option<(u16, Duration)> = Some((204, Duration::ZERO));

    fn channel(name: &str, url: url::Url) -> Channel {
        Channel {
            name: name.into(),
            format: Format::Json,
            events: [Event::RequestFiled].into(),
            roles: Default::default(),
            groups: Default::default(),
            tiers: Default::default(),
            remind_before: Duration::from_secs(600),
            endpoint: Endpoint::new(url, b"secret".to_vec(), Duration::from_secs(60)).unwrap(),
        }
    }

    /// A notification to `channel`, due since long ago.
    fn due(id: String, channel: &str) -> Notification {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Notification {
            dedup_key: id.clone(),
            id,
            channel: channel.into(),
            event: "request_filed".into(),
            notice: NOTICE.into(),
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
            created_at: at,
            done_at: None,
            delivered: false,
        }
    }

    /// Channels and the notifications due to them, which stay due: nothing
    /// is recorded.
    struct FakeNotifier {
        channels: Channels,
        due: Vec<Notification>,
        leading: bool,
        /// Whether outcomes are recorded, or refused as by a store that
        /// takes no writes; never those of notifications whose id begins
        /// `n_unrecorded`, and it panics recording one whose id begins
        /// `n_panics` (a bug).
        records: bool,
        /// Whether routing fails, as a lock wait given up does.
        route_fails: bool,
        /// How many more times sending panics (a bug), as it asks whether
        /// this instance leads.
        send_panics: AtomicUsize,
        /// Outcomes recorded.
        recorded: AtomicUsize,
        /// Of those, deliveries.
        delivered: AtomicUsize,
    }

    impl FakeNotifier {
        /// One channel, `live`, at `url`, with one notification due to it;
        /// leading, and recording what it is told.
        fn one_due(url: url::Url) -> FakeNotifier {
            let mut channels = Channels::default();
            channels.insert(channel("live", url));
            FakeNotifier {
                channels,
                due: vec![self::due("n_1".into(), "live")],
                leading: true,
                records: true,
                route_fails: false,
                send_panics: AtomicUsize::new(0),
                recorded: AtomicUsize::new(0),
                delivered: AtomicUsize::new(0),
            }
        }
    }

    /// Runs the worker over `notifier` for `time`, then stops it.
    async fn run_for(notifier: Arc<FakeNotifier>, time: Duration) {
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(run(notifier, Arc::new(Notify::new()), stopped));
        tokio::time::sleep(time).await;
        stop.send(true).unwrap();
        worker.await.unwrap();
    }

    impl Notifier for FakeNotifier {
        fn channels(&self) -> Channels {
            self.channels.clone()
        }
        fn leads_now(&self) -> bool {
            let panics = self
                .send_panics
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            assert!(panics.is_err(), "a bug");
            self.leading
        }
        fn route(&self) -> crate::error::Result<bool> {
            if self.route_fails {
                return Err(
                    crate::store::StoreError::Unavailable("55P03: lock timeout".into()).into(),
                );
            }
            Ok(false)
        }
        fn remind(&self) -> crate::error::Result<Option<DateTime<Utc>>> {
            Ok(None)
        }
        fn due_notifications(
            &self,
            _: DateTime<Utc>,
            limit: usize,
            skip: &[String],
        ) -> crate::error::Result<Vec<Notification>> {
            Ok(self
                .due
                .iter()
                .filter(|n| !skip.contains(&n.channel))
                .take(limit)
                .cloned()
                .collect())
        }
        fn record_notification(
            &self,
            notification: &Notification,
            _: &NotificationDelivery,
        ) -> crate::error::Result<()> {
            assert!(!notification.id.starts_with("n_panics"), "a bug");
            if self.records && !notification.id.starts_with("n_unrecorded") {
                self.recorded.fetch_add(1, Ordering::SeqCst);
                if notification.delivered {
                    self.delivered.fetch_add(1, Ordering::SeqCst);
                }
                return Ok(());
            }
            Err(crate::store::StoreError::Unavailable("25006: read-only transaction".into()).into())
        }
    }

    /// A leader told to stop (a rolling restart) lets the post under way
    /// be answered and recorded, rather than leave it for the next leader
    /// to post again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopping_leader_records_the_post_under_way() {
        let (url, posts) = receiver(Some((204, Duration::from_millis(800)))).await;
        let notifier = Arc::new(FakeNotifier::one_due(url));
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(run(Arc::clone(&notifier), Arc::new(Notify::new()), stopped));
        while posts.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        worker.await.unwrap();
        assert_eq!(notifier.recorded.load(Ordering::SeqCst), 1);
    }

    /// A 2xx whose body is too long to read is still a delivery: recorded
    /// so, and not posted again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_yes_with_an_answer_too_long_to_read_is_a_delivery() {
        let posts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&posts);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "x".repeat(100 * 1024) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let notifier = Arc::new(FakeNotifier::one_due(url));
        run_for(Arc::clone(&notifier), Duration::from_secs(2)).await;
        assert!(posts.load(Ordering::SeqCst) >= 1, "nothing was posted");
        assert_eq!(
            notifier.delivered.load(Ordering::SeqCst),
            notifier.recorded.load(Ordering::SeqCst),
            "every post recorded as delivered"
        );
    }

    /// Routing that fails does not hold up what is already due.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_route_holds_up_nothing_due() {
        let (url, posts) = receiver(ANSWERS).await;
        let notifier = Arc::new(FakeNotifier {
            route_fails: true,
            ..FakeNotifier::one_due(url)
        });
        run_for(notifier, Duration::from_secs(1)).await;
        assert!(posts.load(Ordering::SeqCst) >= 1, "nothing was posted");
    }

    /// A delivered notification whose outcome the store would not take
    /// (out of disk, read-only) is not posted again while the worker
    /// keeps trying to record it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_not_recorded_is_not_posted_again() {
        let (url, posts) = receiver(ANSWERS).await;
        let notifier = Arc::new(FakeNotifier {
            records: false,
            ..FakeNotifier::one_due(url)
        });
        // Two pauses after an unrecorded outcome, and a look after each.
        run_for(
            notifier,
            crate::target::outbox::UNRECORDED_PAUSE * 2 + Duration::from_secs(1),
        )
        .await;
        assert_eq!(posts.load(Ordering::SeqCst), 1);
    }

    /// Notifications whose outcomes cannot be recorded, more of them than
    /// there are slots, at several channels, wait their pause before they
    /// are recorded, but hold no slot meanwhile: each is posted once, and
    /// a notification to another channel is sent too, in a second.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unrecorded_outcomes_hold_no_slot_while_they_wait() {
        let mut channels = Channels::default();
        let mut due = Vec::new();
        let mut posted = Vec::new();
        for c in 0..8 {
            let (url, posts) = receiver(ANSWERS).await;
            let name = format!("u{c}");
            channels.insert(channel(&name, url));
            posted.push(posts);
            due.extend((0..5).map(|n| self::due(format!("n_unrecorded_{c}_{n}"), &name)));
        }
        let (live_url, live_posts) = receiver(ANSWERS).await;
        channels.insert(channel("live", live_url));
        due.push(self::due("n_live".into(), "live"));
        let notifier = Arc::new(FakeNotifier {
            channels,
            due,
            ..FakeNotifier::one_due(url::Url::parse("http://127.0.0.1:9/").unwrap())
        });
        run_for(Arc::clone(&notifier), Duration::from_secs(1)).await;
        let unrecorded: usize = posted.iter().map(|p| p.load(Ordering::SeqCst)).sum();
        assert_eq!(unrecorded, 40, "each posted once, no more");
        assert!(
            live_posts.load(Ordering::SeqCst) >= 1,
            "the live one was sent"
        );
    }

    /// A notification whose recording fails with a bug (the task panics,
    /// the outcome is lost) waits its pause before it is posted again,
    /// rather than be posted at every look.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recording_that_panics_waits_before_the_next_post() {
        let (url, posts) = receiver(ANSWERS).await;
        let mut notifier = FakeNotifier::one_due(url);
        notifier.due = vec![self::due("n_panics".into(), "live")];
        run_for(Arc::new(notifier), Duration::from_secs(2)).await;
        assert_eq!(posts.load(Ordering::SeqCst), 1);
    }

    /// A notification whose sending fails with a bug (the task panics,
    /// whether it posted unknown) waits its pause before it is tried
    /// again, rather than be sent at every look.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_send_that_panics_waits_before_the_next_try() {
        let (url, posts) = receiver(ANSWERS).await;
        let notifier = FakeNotifier::one_due(url);
        notifier.send_panics.store(1, Ordering::SeqCst);
        run_for(Arc::new(notifier), Duration::from_secs(2)).await;
        assert_eq!(posts.load(Ordering::SeqCst), 0);
    }

    /// However many notifications are due to a channel that stopped
    /// answering, it holds a few of the worker's slots, and its
    /// notifications do not hide another channel's from the worker's read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_channel_that_stops_answering_does_not_hold_up_the_others() {
        let (dead_url, dead_posts) = receiver(None).await;
        let (live_url, live_posts) = receiver(ANSWERS).await;
        let mut channels = Channels::default();
        channels.insert(channel("dead", dead_url));
        channels.insert(channel("live", live_url));
        let mut due: Vec<Notification> = (0..READ + 10)
            .map(|n| self::due(format!("n_dead_{n}"), "dead"))
            .collect();
        due.push(self::due("n_live".into(), "live"));
        let notifier = Arc::new(FakeNotifier {
            channels,
            due,
            leading: true,
            records: true,
            route_fails: false,
            send_panics: AtomicUsize::new(0),
            recorded: AtomicUsize::new(0),
            delivered: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(run(notifier, Arc::new(Notify::new()), stopped));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        worker.await.unwrap();
        assert_eq!(dead_posts.load(Ordering::SeqCst), MAX_RUNNING_PER_CHANNEL);
        assert!(
            live_posts.load(Ordering::SeqCst) >= 1,
            "the live channel was never posted to"
        );
    }

    /// A worker whose instance no longer leads by its own clock (paused
    /// past its term, not yet halted) posts nothing: the next leader posts
    /// what is due.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_past_its_term_posts_nothing() {
        let (url, posts) = receiver(ANSWERS).await;
        let mut channels = Channels::default();
        channels.insert(channel("live", url));
        let due = (0..3)
            .map(|n| self::due(format!("n_live_{n}"), "live"))
            .collect();
        let notifier = Arc::new(FakeNotifier {
            channels,
            due,
            leading: false,
            records: true,
            route_fails: false,
            send_panics: AtomicUsize::new(0),
            recorded: AtomicUsize::new(0),
            delivered: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(run(notifier, Arc::new(Notify::new()), stopped));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        worker.await.unwrap();
        assert_eq!(posts.load(Ordering::SeqCst), 0);
    }

    /// A channel that answers no (a 400: one notice it will not take) is
    /// answering, not failing: it keeps its share of the slots.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_channel_that_answers_no_keeps_its_slots() {
        let (url, posts) = receiver(Some((400, Duration::from_millis(300)))).await;
        let mut channels = Channels::default();
        channels.insert(channel("picky", url));
        let due = (0..20)
            .map(|n| self::due(format!("n_picky_{n}"), "picky"))
            .collect();
        let notifier = Arc::new(FakeNotifier {
            channels,
            due,
            leading: true,
            records: true,
            route_fails: false,
            send_panics: AtomicUsize::new(0),
            recorded: AtomicUsize::new(0),
            delivered: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(run(notifier, Arc::new(Notify::new()), stopped));
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.send(true).unwrap();
        worker.await.unwrap();
        // Four at a time, 300 ms each, for 2 s: about 28; one at a time
        // after the first four would be about 10.
        let posts = posts.load(Ordering::SeqCst);
        assert!(posts >= 16, "{posts} posts");
    }

    /// Channels that fail, more of them than there are slots, each with
    /// many notifications due: after its first failures each probes with
    /// one post at a time, half the slots at most go to probes, and a live
    /// channel is still posted to. (Without that share, twenty probes
    /// would hold all sixteen slots.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_channels_probe_one_at_a_time() {
        let mut channels = Channels::default();
        let mut due = Vec::new();
        for n in 0..20 {
            // As a channel whose calls time out.
            let (url, _) = receiver(Some((503, Duration::from_millis(300)))).await;
            let name = format!("failing{n}");
            channels.insert(channel(&name, url));
            due.extend((0..10).map(|i| self::due(format!("n_{name}_{i}"), &name)));
        }
        let (live_url, live_posts) = receiver(ANSWERS).await;
        channels.insert(channel("live", live_url));
        due.push(self::due("n_live".into(), "live"));
        let notifier = Arc::new(FakeNotifier {
            channels,
            due,
            leading: true,
            records: true,
            route_fails: false,
            send_panics: AtomicUsize::new(0),
            recorded: AtomicUsize::new(0),
            delivered: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(run(notifier, Arc::new(Notify::new()), stopped));
        // The first posts to each failing channel learn that it fails: a
        // few rounds of 300 ms.
        crate::target::outbox::until_counted(&live_posts, Duration::from_secs(10)).await;
        stop.send(true).unwrap();
        worker.await.unwrap();
        assert!(
            live_posts.load(Ordering::SeqCst) >= 1,
            "the live channel was never posted to"
        );
    }
}
