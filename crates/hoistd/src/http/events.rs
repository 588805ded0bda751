//! `GET /v1/events`: Server-Sent Events carrying each caller the changes that
//! concern them, as they are committed, for as long as the caller is still
//! who they were: a stream ends when its token stops being accepted (an ID
//! token's end, or a reload after which the token names nobody or someone
//! else), so a client reconnects and learns it is signed out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, stream};
use hoist_api::{ApiError, LiveEvent};
use tokio::sync::watch;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ops::Metrics;
use super::serve::StreamLimits;
use super::{AppState, Failure, Session};
use crate::broker::{self, Broker, Change};
use crate::error::Error;

/// When to try again after a refusal for too many streams: streams end
/// when their clients go, so a retry soon may well find room.
const STREAM_RETRY: Duration = Duration::from_secs(10);

/// The event streams open now, by identity, within [`StreamLimits`].
pub struct StreamSlots {
    limits: StreamLimits,
    open: Mutex<OpenStreams>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct OpenStreams {
    total: usize,
    by_identity: HashMap<String, usize>,
}

impl StreamSlots {
    pub fn new(limits: StreamLimits, metrics: Arc<Metrics>) -> Self {
        StreamSlots {
            limits,
            open: Mutex::new(OpenStreams::default()),
            metrics,
        }
    }

    /// A slot for one more stream of `identity`, or a refusal that says
    /// which cap it met.
    fn take(self: &Arc<Self>, identity: &str) -> Result<StreamSlot, Error> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let theirs = open.by_identity.get(identity).copied().unwrap_or(0);
        if theirs >= self.limits.per_identity {
            return Err(Error::RateLimited {
                message: format!(
                    "{identity} already has {theirs} event streams open, the most one identity may have; close one (another window or terminal) first"
                ),
                retry_after: STREAM_RETRY,
            });
        }
        if open.total >= self.limits.total {
            return Err(Error::RateLimited {
                message: format!(
                    "the broker already serves {} event streams, the most it keeps open; try again shortly",
                    open.total
                ),
                retry_after: STREAM_RETRY,
            });
        }
        open.total += 1;
        *open.by_identity.entry(identity.to_string()).or_default() += 1;
        self.metrics.set_stream_subscribers(open.total);
        Ok(StreamSlot {
            slots: Arc::clone(self),
            identity: identity.to_string(),
        })
    }
}

/// One open stream's place, given back when the stream is dropped (it
/// ended, or its client went away).
struct StreamSlot {
    slots: Arc<StreamSlots>,
    identity: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_identity.get_mut(&self.identity) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_identity.remove(&self.identity);
            }
        }
        self.slots.metrics.set_stream_subscribers(open.total);
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// A `text/event-stream` of [`LiveEvent`]s: first `hello`, then `request` and
/// `grant` events for the caller's own requests and grants and for requests on
/// roles they approve, and `resync` if the stream fell behind (fetch
/// everything again). Comments are sent as keep-alives.
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = [])),
    responses(
        (status = 200, description = "An endless stream of events", content_type = "text/event-stream", body = LiveEvent),
        (status = 401, description = "Missing or unknown token", body = ApiError),
        (status = 503, description = "The broker's database is unavailable: nothing was done; see Retry-After", body = ApiError),
        (status = 429, description = "Too many event streams open, the caller's own or the broker's; see Retry-After", body = ApiError),
    ))]
async fn events(
    State(state): State<AppState>,
    Session {
        caller,
        token,
        reloads_before,
    }: Session,
) -> Result<
    (
        [(&'static str, &'static str); 1],
        Sse<impl Stream<Item = Result<Event, Infallible>>>,
    ),
    Failure,
> {
    let slot = state.streams.take(&caller.user)?;
    let broker = Arc::clone(&state.broker);
    let hello = LiveEvent::Hello {
        user: caller.user.clone(),
        time: broker::now(),
        // `broker::next_change`.
        ordered: true,
    };
    // A reload while the caller was being authenticated: the stream checks
    // them against the policy now in force before anything else.
    let mut reloads = broker.reloads();
    if *reloads.borrow() != reloads_before {
        reloads.mark_changed();
    }
    let follow = Follow {
        changes: BroadcastStream::new(broker.subscribe()),
        reloads,
        shutdown: state.shutdown.clone(),
        broker,
        user: caller.user,
        token,
        ends_at: caller.expires_at,
        _slot: slot,
    };
    let stream = stream::once(std::future::ready(hello))
        .chain(stream::unfold(follow, Follow::next))
        .map(|event| {
            Ok(Event::default()
                .event(event.name())
                .json_data(&event)
                .unwrap_or_else(|_| Event::default().comment("unserialisable event")))
        });
    // A proxy that buffers answers (nginx does, by default) would hold
    // each event back until its buffer filled: this one must not.
    Ok((
        [("x-accel-buffering", "no")],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    ))
}

/// What woke a stream.
enum Step {
    End,
    Reloaded,
    Change(Box<Result<Change, BroadcastStreamRecvError>>),
}

/// One caller's stream after its `hello`.
struct Follow {
    broker: Arc<Broker>,
    user: String,
    token: String,
    /// When the caller's token stops being accepted, if it ever does.
    ends_at: Option<DateTime<Utc>>,
    changes: BroadcastStream<Change>,
    reloads: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    _slot: StreamSlot,
}

impl Follow {
    /// The next event for the caller, or `None` to end the stream.
    async fn next(mut self) -> Option<(LiveEvent, Follow)> {
        loop {
            let left = self
                .ends_at
                .map(|at| (at - broker::now()).to_std().unwrap_or_default());
            let step = tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|stopped| *stopped) => Step::End,
                _ = tokio::time::sleep(left.unwrap_or_default()), if left.is_some() => Step::End,
                changed = self.reloads.changed() => match changed {
                    Ok(()) => Step::Reloaded,
                    Err(_) => Step::End,
                },
                item = self.changes.next() => match item {
                    Some(item) => Step::Change(Box::new(item)),
                    None => Step::End,
                },
            };
            let item = match step {
                Step::End => return None,
                Step::Reloaded if self.still_signed_in().await => continue,
                Step::Reloaded => return None,
                Step::Change(item) => *item,
            };
            // A reload may have landed just before this change: the caller
            // is checked again before it is delivered.
            if self.reloads.has_changed().unwrap_or(true) {
                self.reloads.mark_unchanged();
                if !self.still_signed_in().await {
                    return None;
                }
            }
            if self.ends_at.is_some_and(|at| at <= broker::now()) {
                return None;
            }
            let event = match item {
                // Visibility under the policy as it is now, per event.
                Ok(change) if self.broker.concerns(&self.user, &change) => match change {
                    Change::Request(request) => LiveEvent::Request { request },
                    Change::Grant(mut grant) => {
                        // As a read now would show it (an access past the
                        // end its target took).
                        broker::settle_grant(&mut grant, broker::now());
                        LiveEvent::Grant { grant }
                    }
                    Change::Resync => LiveEvent::Resync {
                        time: broker::now(),
                    },
                },
                Ok(_) => continue,
                Err(BroadcastStreamRecvError::Lagged(_)) => LiveEvent::Resync {
                    time: broker::now(),
                },
            };
            return Some((event, self));
        }
    }

    /// Whether the token still names the same caller under the current policy.
    async fn still_signed_in(&mut self) -> bool {
        match self.broker.authenticate(&self.token).await {
            Ok(caller) if caller.user == self.user => {
                self.ends_at = caller.expires_at;
                true
            }
            _ => false,
        }
    }
}
