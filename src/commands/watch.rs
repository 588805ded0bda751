//! `hoist reviews`: the requests that wait for my decision, one line each,
//! and with `--watch` each new one as it lands in my queue, for a tmux pane
//! or a notifier script reading standard output.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hoist_api::{AccessRequest, LiveEvent, Me, RequestState};

use super::Format;
use crate::backend::{Backend, BackendError};
use crate::text::sanitize;

/// Whether the request waits for my decision: pending, on a role I
/// approve (or read from my queue: Entra names no roles one approves), not
/// mine, and not reviewed by me yet.
fn needs_me(me: &Me, request: &AccessRequest, queued: bool) -> bool {
    request.state == RequestState::Pending
        && request.requester != me.user
        && (queued || me.approver_for.contains(&request.role))
        && !request.reviews.iter().any(|r| r.reviewer == me.user)
}

/// What `reviews` has printed, and which requests it read in my queue.
struct Shown {
    me: Me,
    format: Format,
    printed: BTreeSet<String>,
    queued: BTreeSet<String>,
}

impl Shown {
    async fn new(backend: &dyn Backend, format: Format) -> anyhow::Result<Shown> {
        Ok(Shown {
            me: backend.me().await?,
            format,
            printed: BTreeSet::new(),
            queued: BTreeSet::new(),
        })
    }

    fn show(&mut self, request: &AccessRequest) -> anyhow::Result<()> {
        let queued = self.queued.contains(&request.id);
        if needs_me(&self.me, request, queued) && self.printed.insert(request.id.clone()) {
            emit(self.format, request)?;
        }
        Ok(())
    }

    /// Prints what in my queue is new.
    fn queue(&mut self, queue: Vec<AccessRequest>) -> anyhow::Result<()> {
        for request in queue {
            self.queued.insert(request.id.clone());
            self.show(&request)?;
        }
        Ok(())
    }

    /// A request heard of: printed if it needs me; one pending on a role
    /// not known to be mine to approve is looked for in my queue first.
    async fn heard(
        &mut self,
        backend: &dyn Backend,
        request: &AccessRequest,
    ) -> anyhow::Result<()> {
        let unknown = !self.queued.contains(&request.id)
            && !self.me.approver_for.contains(&request.role)
            && needs_me(&self.me, request, true);
        if unknown {
            match backend.review_queue().await {
                Ok(queue) => self.queue(queue)?,
                Err(err) if ends_the_watch(&err) => return Err(err.into()),
                Err(_) => {}
            }
        }
        self.show(request)
    }
}

/// One review as a line: id, tier, requester, role, ticket and the
/// justification's first line, tab-separated for `cut` and `awk`, each
/// field cleaned of anything a terminal would act on.
fn line(request: &AccessRequest) -> String {
    let field = |text: &str| sanitize::line(text).replace('\t', " ");
    let tier = request
        .tier
        .map(|t| format!("T{t}"))
        .unwrap_or_else(|| "-".into());
    let justification = request.justification.lines().next().unwrap_or_default();
    [
        field(&request.id),
        tier,
        field(&request.requester),
        field(&request.role),
        field(request.ticket.as_deref().unwrap_or("-")),
        field(justification),
    ]
    .join("\t")
}

fn emit(format: Format, request: &AccessRequest) -> anyhow::Result<()> {
    // Written at once: a pane or a pipe sees each review as it comes, not
    // when a buffer fills.
    match format {
        Format::Json => super::out(&format!("{}\n", super::json::to_line(request)?)),
        // A stream of YAML documents, each opened by `---`.
        Format::Yaml => super::out(&format!("---\n{}", super::yaml::to_string(request)?)),
        Format::Table => super::out(&format!("{}\n", line(request))),
    }
}

/// Prints each review that needs me (JSON lines with `--json`); with
/// `watch`, keeps printing new ones until interrupted. A stream that ends
/// or breaks (the broker restarting, a proxy closing it) is opened again,
/// waiting longer each time up to [`RECONNECT_MAX`]; what landed meanwhile
/// is read from the queue, as it is after [`super::LOOK_AGAIN`] without an
/// event (a stream held up by a proxy). Only a refusal (the session
/// expired, say) ends the watch, or a signal: the watch then returns, so
/// that a session refresh under way is saved before hoist ends by it.
pub async fn reviews(backend: &dyn Backend, watch: bool, format: Format) -> anyhow::Result<()> {
    if !watch {
        return Shown::new(backend, format)
            .await?
            .queue(backend.review_queue().await?);
    }
    let mut signals = super::signals::Signals::listen()?;
    tokio::select! {
        watched = follow(backend, format) => watched,
        signal = signals.next() => Err(super::Ended::Signalled {
            signal,
            message: format!("{} stopped the watch", signal.as_str()),
        }
        .into()),
    }
}

/// [`reviews`] with `--watch`, until a refusal.
async fn follow(backend: &dyn Backend, format: Format) -> anyhow::Result<()> {
    // Subscribed before the queue is read, so nothing filed in between is missed.
    let mut events = backend.events().await?;
    let mut shown = Shown::new(backend, format).await?;
    shown.queue(backend.review_queue().await?)?;
    let mut pause = RECONNECT_FIRST;
    let mut opened_at = Instant::now();
    loop {
        loop {
            // Quiet for a while: what is new in the queue, read directly.
            let event = match tokio::time::timeout(super::LOOK_AGAIN, events.next()).await {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(_) => match backend.review_queue().await {
                    Ok(queue) => {
                        shown.queue(queue)?;
                        continue;
                    }
                    Err(err) if ends_the_watch(&err) => return Err(err.into()),
                    Err(_) => continue,
                },
            };
            let event = match event {
                Ok(event) => event,
                Err(err) if ends_the_watch(&err) => return Err(err.into()),
                Err(_) => break,
            };
            match event {
                LiveEvent::Request { request } => shown.heard(backend, &request).await?,
                // Events may have been missed: whatever is new in the queue now.
                LiveEvent::Resync { .. } => match backend.review_queue().await {
                    Ok(queue) => shown.queue(queue)?,
                    Err(err) if ends_the_watch(&err) => return Err(err.into()),
                    Err(_) => break,
                },
                _ => {}
            }
        }
        // A stream that lasted is a broker that came back: start the waits
        // over. One that keeps ending at once waits longer each time.
        if opened_at.elapsed() >= RECONNECT_MAX {
            pause = RECONNECT_FIRST;
        }
        super::say(&format!(
            "the broker's event stream ended; reconnecting in {}s",
            pause.as_secs()
        ));
        loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RECONNECT_MAX);
            // Subscribed first, then read, as at the start.
            let opened = match backend.events().await {
                Ok(opened) => opened,
                Err(err) if ends_the_watch(&err) => return Err(err.into()),
                Err(_) => continue,
            };
            let queue = match backend.review_queue().await {
                Ok(queue) => queue,
                Err(err) if ends_the_watch(&err) => return Err(err.into()),
                Err(_) => continue,
            };
            super::say("reconnected to the broker's event stream");
            shown.queue(queue)?;
            events = opened;
            opened_at = Instant::now();
            break;
        }
    }
}

/// The first wait before opening a stream that ended again, doubled after
/// each failed try.
const RECONNECT_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between tries.
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Whether an error ends `--watch` rather than a reconnect: a refusal
/// that trying again will not change (signed out, forbidden).
fn ends_the_watch(err: &BackendError) -> bool {
    !err.is_transient() && !matches!(err, BackendError::Protocol(_))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A stream that stays open and says nothing (held up by a proxy that
    /// buffers it) does not hide the queue: it is read again while quiet.
    #[tokio::test]
    async fn a_quiet_stream_does_not_hide_the_queue() {
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&reads);
        let app = axum::Router::new()
            .route(
                "/v1/events",
                axum::routing::get(super::super::silent_events),
            )
            .route(
                "/v1/me",
                axum::routing::get(|| async {
                    axum::Json(Me {
                        user: "bob".into(),
                        display_name: "Bob".into(),
                        groups: vec![],
                        approver_for: vec!["db".into()],
                        auditor: false,
                    })
                }),
            )
            .route(
                "/v1/reviews",
                axum::routing::get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async { axum::Json(Vec::<AccessRequest>::new()) }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(async move { axum::serve(listener, app).await });
        let backend = crate::backend::hoistd::HoistdClient::new(&url, "t-bob").unwrap();
        let watched = tokio::time::timeout(
            Duration::from_millis(3500),
            reviews(&backend, true, Format::Json),
        )
        .await;
        assert!(watched.is_err(), "a watch goes on: {watched:?}");
        assert!(
            reads.load(Ordering::SeqCst) >= 3,
            "read once at the start, then again while quiet: {}",
            reads.load(Ordering::SeqCst)
        );
        served.abort();
    }
}
