//! Serving connections: every stalled or slow client is timed out, the
//! number of open connections is capped, and a flood of connections that
//! never deliver a request cannot hold the slots real callers need. hyper's
//! own replies to requests it cannot parse leave in the broker's error body.
//!
//! Every timeout is kept here, by a watchdog per connection that knows
//! whether a request is in flight, since when the connection is idle and
//! since when a request's head has been arriving. hyper's own header timer
//! is off: it starts whenever hyper waits for a head, so it would close a
//! kept-alive connection at the header timeout, not the idle one.
//!
//! Over 600 lines only with its unit tests: the watchdog, the cap and the
//! error replies share one connection's state; apart, each would reach into
//! the others.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use hoist_api::{ApiError, ErrorCode, SERVER_TIME_HEADER};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::status_of;
use super::tls::Tls;
use crate::broker;

/// How long the broker waits for its clients, and how many it serves at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once. When all are taken, a new connection
    /// closes the oldest one that has no request in flight.
    pub max_connections: usize,
    /// A new connection must deliver its first request's headers within
    /// this; a later request's headers, within this of their first byte.
    pub header_timeout: Duration,
    /// A request body must arrive whole within this of its headers.
    pub body_timeout: Duration,
    /// A connection with no request in flight is closed after this. An
    /// event stream is a request in flight, cut only when its client has
    /// read nothing of it for this long (30 s at least; see `stalled`).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// How many event streams the broker keeps open. A stream is a request in
/// flight for as long as it lasts, so the connection cap never closes one:
/// without a cap of their own, streams could take every connection slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Most streams open at once, everyone's together.
    pub total: usize,
    /// Most streams one identity (a person, a workload) has open at once.
    pub per_identity: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            // Half the default connection cap: the other half stays for calls.
            total: 2048,
            // A terminal UI per window, a prompt, a script or two.
            per_identity: 16,
        }
    }
}

/// Largest request head hyper buffers (request line and headers). Past it
/// hyper answers 431; a URI longer than 64 KiB within it, 414.
const MAX_HEAD_BYTES: usize = 128 * 1024;

/// How long a stop waits for requests in flight to finish (event streams
/// end at once) before closing their connections: a target call stuck on
/// an unreachable system must not keep the process from exiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Requests one HTTP/2 connection may have in flight at once: the
/// connection cap counts connections, so this bounds what one can ask.
const H2_MAX_STREAMS: u32 = 128;

/// The stream cap under the connection cap `limits`, `configured` before
/// it may have been lowered to fit the open-file limit: as configured when
/// it was not (the arguments already hold it below the connection cap);
/// otherwise, since streams hold their connections and are never closed
/// for a newcomer, at most half the connections, as by default, leaving
/// the rest to calls.
pub fn fit_streams(streams: StreamLimits, configured: &Limits, limits: &Limits) -> StreamLimits {
    let most = (limits.max_connections / 2).max(1);
    if limits.max_connections >= configured.max_connections || streams.total <= most {
        return streams;
    }
    tracing::warn!(
        max_streams = streams.total,
        max_connections = limits.max_connections,
        "more event streams than half the connections; serving at most {most}"
    );
    StreamLimits {
        total: most,
        ..streams
    }
}

/// File descriptors kept for everything but connections: the database, its
/// log, the policy file, the OpenID providers.
const SPARE_FILES: u64 = 64;

/// The connection cap that the open-file limit allows: a cap above it
/// would fail at accept with EMFILE instead of closing an idle connection.
pub fn fit_to_open_files(limits: Limits) -> Limits {
    let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    else {
        return limits;
    };
    let usable = usize::try_from(soft.saturating_sub(SPARE_FILES).max(1)).unwrap_or(usize::MAX);
    if limits.max_connections > usable {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_files = soft,
            usable,
            "the open-file limit allows fewer connections than asked; serving at most {usable}"
        );
        return Limits {
            max_connections: usable,
            ..limits
        };
    }
    limits
}

/// One open connection, as its watchdog and the cap see it.
struct Conn {
    id: u64,
    /// Requests handed to the router whose response has not finished.
    in_flight: AtomicUsize,
    /// Responses the router produced whose head is not written yet.
    heads_due: AtomicUsize,
    /// Requests in flight whose body has not all arrived.
    bodies_due: AtomicUsize,
    /// Requests handed to the router so far.
    served: AtomicU64,
    /// When the connection last had nothing in flight (accepted, or its
    /// last response finished).
    idle_since: Mutex<Instant>,
    /// When the first byte of the next request's head came, while nothing
    /// was in flight (HTTP/1.1); cleared when that request is handed over.
    head_since: Mutex<Option<Instant>>,
    /// Told when a head begins, so the watchdog looks at its deadline.
    head_begun: Notify,
    /// Told to close, to make room for a newer connection.
    evicted: Notify,
    /// Told when a request's body did not arrive within the body timeout:
    /// the connection is wound down (on HTTP/2 as well, where the answer
    /// alone would end only that stream).
    body_timed_out: Notify,
    /// When each response still being sent was handed over (an event
    /// stream: last read from), and whether it is an event stream, by an
    /// id counted across connections: see [`Conn::stalled`].
    sending: Mutex<BTreeMap<u64, (Instant, bool)>>,
}

impl Conn {
    fn new(id: u64) -> Self {
        Conn {
            id,
            in_flight: AtomicUsize::new(0),
            heads_due: AtomicUsize::new(0),
            bodies_due: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: Mutex::new(Instant::now()),
            head_since: Mutex::new(None),
            head_begun: Notify::new(),
            evicted: Notify::new(),
            body_timed_out: Notify::new(),
            sending: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether a response has been handed over for longer than the idle
    /// timeout without being sent whole, or an event stream has not been
    /// read from for that long, and at least [`STREAM_UNREAD`] (it sends a
    /// keep-alive every 15 s, so one that is read never is). Over HTTP/2 a
    /// client that opens no flow-control window (`INITIAL_WINDOW_SIZE` 0)
    /// takes no byte of a body, and the response stays in flight for ever;
    /// the connection, busy, would never be closed for idleness nor for a
    /// newcomer, and a few such clients could hold every slot, streams'
    /// included, past their token's end and the server's stop. Over
    /// HTTP/1.1 a body is handed to the socket's buffer whole, and a client
    /// that stops reading is closed as idle.
    fn stalled(&self, limits: &Limits) -> bool {
        let sending = self
            .sending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let stream_limit = limits.idle_timeout.max(STREAM_UNREAD);
        sending.values().any(|(since, streaming)| {
            since.elapsed()
                >= if *streaming {
                    stream_limit
                } else {
                    limits.idle_timeout
                }
        })
    }

    fn idle_since(&self) -> Instant {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// When the connection is to close if nothing is in flight by then: a
    /// first request is owed within the header timeout of the accept, a
    /// later one within the idle timeout of the last answer, and a head
    /// that began arriving within the header timeout of its first byte.
    fn deadline(&self, limits: &Limits) -> Instant {
        let patience = if self.served.load(Ordering::Acquire) == 0 {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
        let idle = self.idle_since() + patience;
        match *self
            .head_since
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
        {
            Some(since) => idle.min(since + limits.header_timeout),
            None => idle,
        }
    }

    /// Bytes came while nothing was in flight: a head has begun, and must
    /// be whole within the header timeout.
    fn head_arriving(&self) {
        let mut since = self
            .head_since
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if since.is_none() {
            *since = Some(Instant::now());
            self.head_begun.notify_one();
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Whether a response other than an event stream was handed over at
    /// least `for_at_least` ago and is still not sent whole: over HTTP/2, a
    /// client that opens no flow-control window takes none of a body, needs
    /// no token to ask for one, and would otherwise keep its connection
    /// busy, and its slot, until it counts as stalled.
    fn not_reading(&self, for_at_least: Duration) -> bool {
        self.sending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .values()
            .any(|(since, streaming)| !streaming && since.elapsed() >= for_at_least)
    }

    /// Whether every request in flight is still waiting for its body: a
    /// connection the client keeps busy only by sending slowly, which
    /// needs no token (a body is read before the caller is known on some
    /// routes), and so may be closed for a newcomer like an idle one.
    fn only_waiting_for_bodies(&self) -> bool {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        in_flight > 0 && self.bodies_due.load(Ordering::Acquire) >= in_flight
    }
}

/// Marks a request in flight until its response body is dropped.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn begin(conn: &Arc<Conn>) -> Self {
        *conn
            .head_since
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = None;
        conn.served.fetch_add(1, Ordering::AcqRel);
        conn.heads_due.fetch_add(1, Ordering::AcqRel);
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(conn))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Set before the count falls, so the watchdog never sees an idle
        // connection with an old time.
        *self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, oldest first.
struct Registry {
    max: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

impl Registry {
    /// A slot for a new connection: a free one, or the one of the oldest
    /// connection with no request in flight (else of the oldest whose
    /// requests all wait for their bodies, else of the oldest that has
    /// not taken an answer for [`UNREAD_ANSWER`]), which is told to close.
    /// None when every connection is busy with requests that arrived and
    /// answers that are being taken.
    fn admit(&self) -> Option<Arc<Conn>> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if open.len() >= self.max {
            let idle = open
                .values()
                .find(|conn| conn.idle())
                .or_else(|| open.values().find(|conn| conn.only_waiting_for_bodies()))
                .or_else(|| open.values().find(|conn| conn.not_reading(UNREAD_ANSWER)))
                .map(|conn| conn.id)?;
            if let Some(conn) = open.remove(&idle) {
                conn.evicted.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(id));
        open.insert(id, Arc::clone(&conn));
        Some(conn)
    }

    fn leave(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(&id);
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then stops
/// accepting and waits for the open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<Tls>>,
    shutdown: watch::Receiver<bool>,
) {
    let mut stopped = shutdown.clone();
    let registry = Arc::new(Registry {
        max: limits.max_connections.max(1),
        next_id: AtomicU64::new(0),
        open: Mutex::new(BTreeMap::new()),
    });
    let mut connections = JoinSet::new();
    let mut last_warning: Option<Instant> = None;
    let mut warn = |what: &str, error: Option<&io::Error>| {
        // A flood would otherwise write a line per connection.
        if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            last_warning = Some(Instant::now());
            match error {
                Some(error) => tracing::warn!(%error, "{what}"),
                None => tracing::warn!("{what}"),
            }
        }
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let Some(conn) = registry.admit() else {
                        warn("every connection has a request in flight; refusing new ones", None);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    watch_peer(&stream);
                    let registry = Arc::clone(&registry);
                    let app = app.clone();
                    let shutdown = shutdown.clone();
                    let tls = tls.as_ref().map(|tls| tls.acceptor());
                    connections.spawn(async move {
                        let id = conn.id;
                        match tls {
                            Some(tls) => serve_tls(stream, tls, conn, app, limits, shutdown).await,
                            None => serve_http1(stream, conn, app, limits, shutdown).await,
                        }
                        registry.leave(id);
                    });
                }
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    // Out of file descriptors, most likely: wait for some
                    // to close rather than spin.
                    warn("cannot accept connections", Some(&error));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stopping(&mut stopped) => break,
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still busy {}s after the stop; closing them",
            SHUTDOWN_GRACE.as_secs()
        );
        connections.shutdown().await;
    }
}

/// Resolves once the server is told to stop (or its sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopped| *stopped).await;
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A TLS connection: the handshake is owed within the header timeout (a
/// client that connects and says nothing is closed as on plain HTTP), then
/// HTTP/2 or HTTP/1.1 as ALPN chose.
async fn serve_tls(
    stream: TcpStream,
    tls: TlsAcceptor,
    conn: Arc<Conn>,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(limits.header_timeout, tls.accept(stream)) => accepted,
        () = conn.evicted.notified() => return,
        () = stopping(&mut shutdown) => return,
    };
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("connection closed: no TLS handshake in time");
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        serve_h2(stream, conn, app, limits, shutdown).await;
    } else {
        serve_http1(stream, conn, app, limits, shutdown).await;
    }
}

/// The router as a hyper service that marks each request in flight on
/// `conn` until its response body is done.
fn service(
    conn: &Arc<Conn>,
    app: Router,
    limits: Limits,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>>
             + Send
             + 'static,
> + Clone
+ Send
+ 'static {
    let conn = Arc::clone(conn);
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::begin(&conn);
        let request =
            request.map(|body| Body::new(BodyDeadline::new(body, limits.body_timeout, &conn)));
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            response.map(|response| {
                let streaming = response
                    .headers()
                    .get(axum::http::header::CONTENT_TYPE)
                    .is_some_and(|kind| kind.as_bytes().starts_with(b"text/event-stream"));
                let sending = Sending::begin(&in_flight.0, streaming);
                response.map(|body| {
                    Body::new(Tracked {
                        body,
                        sending,
                        streaming,
                        _in_flight: in_flight,
                    })
                })
            })
        }
    })
}

async fn serve_http1<S>(
    stream: S,
    conn: Arc<Conn>,
    app: Router,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service(&conn, app, limits);
    let io = TokioIo::new(Wire {
        stream,
        conn: Arc::clone(&conn),
        reply: None,
        partial: false,
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = std::pin::pin!(http.serve_connection(io, service));
    watch_connection(
        connection,
        |connection| connection.graceful_shutdown(),
        &conn,
        &limits,
        shutdown,
    )
    .await;
}

/// HTTP/2 (over TLS only). hyper answers what it cannot parse with a
/// stream reset, so there is no error reply to swap; the watchdog, the cap
/// and the body deadline work as on HTTP/1.1, per connection.
async fn serve_h2<S>(
    stream: S,
    conn: Arc<Conn>,
    app: Router,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service(&conn, app, limits);
    let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX));
    let connection = std::pin::pin!(http.serve_connection(TokioIo::new(stream), service));
    watch_connection(
        connection,
        |connection| connection.graceful_shutdown(),
        &conn,
        &limits,
        shutdown,
    )
    .await;
}

/// Serves one connection until it ends, closing it when it is idle past
/// its deadline or evicted by the cap, and winding it down gracefully (the
/// requests in flight finish) when the server stops.
async fn watch_connection<C, E>(
    mut connection: Pin<&mut C>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    conn: &Conn,
    limits: &Limits,
    mut shutdown: watch::Receiver<bool>,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut closing = false;
    loop {
        let wake = if conn.idle() {
            conn.deadline(limits)
        } else {
            // Busy: look again later; the deadline moves when it finishes.
            Instant::now() + limits.idle_timeout.min(limits.header_timeout)
        };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, "connection ended");
                }
                return;
            }
            // Still idle (or only sending slowly, or not taking what it
            // was sent): closed at once. A request may have begun since the
            // cap found it idle (this task served it meanwhile): then it is
            // wound down instead, and that request answered first.
            // A head began: its deadline may come before the one slept to.
            () = conn.head_begun.notified() => {}
            () = conn.evicted.notified(), if !closing => {
                if conn.idle() || conn.only_waiting_for_bodies() || conn.not_reading(UNREAD_ANSWER) {
                    tracing::debug!("connection closed to make room for a newer one");
                    return;
                }
                tracing::debug!("connection closing to make room for a newer one");
                closing = true;
                graceful_shutdown(connection.as_mut());
            }
            () = tokio::time::sleep_until(wake) => {
                if conn.idle() && Instant::now() >= conn.deadline(limits) {
                    tracing::debug!("connection closed: no whole request in time");
                    return;
                }
                if conn.stalled(limits) {
                    tracing::debug!("connection closed: a response was not taken in time");
                    return;
                }
            }
            // Its answer (408) is sent; no request begun after it is.
            () = conn.body_timed_out.notified(), if !closing => {
                tracing::debug!("connection closing: a body did not arrive in time");
                closing = true;
                graceful_shutdown(connection.as_mut());
            }
            () = stopping(&mut shutdown), if !closing => {
                closing = true;
                graceful_shutdown(connection.as_mut());
            }
        }
    }
}

/// A response body that keeps its request in flight until it is dropped.
struct Tracked {
    body: Body,
    /// Since when it is being sent; an event stream's, since it was last
    /// read from.
    sending: Sending,
    streaming: bool,
    _in_flight: InFlight,
}

/// How long an answer (not an event stream) may go untaken before its
/// connection may be closed to make room for a newcomer at the cap: the
/// broker's answers are small, and a client that reads takes one at once.
const UNREAD_ANSWER: Duration = Duration::from_secs(5);

/// The least time an event stream may go unread before its connection
/// counts as stalled: twice its keep-alive (15 s), whatever the idle
/// timeout, so a stream that is read is never taken for one that is not.
const STREAM_UNREAD: Duration = Duration::from_secs(30);

/// A response being sent, on its connection's list until it is dropped.
struct Sending {
    conn: Arc<Conn>,
    id: u64,
}

impl Sending {
    fn begin(conn: &Arc<Conn>, streaming: bool) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        conn.sending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(id, (Instant::now(), streaming));
        Sending {
            conn: Arc::clone(conn),
            id,
        }
    }
}

impl Sending {
    /// Marks it as read from now.
    fn touch(&self) {
        if let Some(since) = self
            .conn
            .sending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get_mut(&self.id)
        {
            since.0 = Instant::now();
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.conn
            .sending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(&self.id);
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if self.streaming && matches!(frame, Poll::Ready(Some(Ok(_)))) {
            self.sending.touch();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// TCP keepalives and a user timeout on an accepted connection, so a peer
/// that vanished without a word (a laptop asleep, a network roamed away)
/// is noticed within a minute or two, not after TCP's own retries give up
/// a quarter of an hour later: an event stream to it counts as read while
/// its keep-alives fit in the kernel's buffer, and would hold its slot
/// (of the identity's, and of the server's) all that time.
fn watch_peer(stream: &tokio::net::TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(PEER_QUIET)
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(err) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %err, "no TCP keepalive on a connection");
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    if let Err(err) = socket.set_tcp_user_timeout(Some(PEER_SILENT)) {
        tracing::debug!(error = %err, "no TCP user timeout on a connection");
    }
}

/// How long a connection is quiet before its peer is asked whether it is
/// still there (every 10 s then, three times).
const PEER_QUIET: Duration = Duration::from_secs(30);
/// How long what was sent may go unacknowledged before the connection is
/// given up.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
const PEER_SILENT: Duration = Duration::from_secs(90);

/// The error a request body gives when it did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(Duration);

/// A request body that must arrive whole before a deadline: a client
/// trickling it a byte at a time cannot hold the request open.
struct BodyDeadline {
    body: Incoming,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Until the body has all arrived.
    due: Option<BodyDue>,
}

impl BodyDeadline {
    fn new(body: Incoming, limit: Duration, conn: &Arc<Conn>) -> Self {
        let due = (!body.is_end_stream()).then(|| BodyDue::begin(conn));
        BodyDeadline {
            body,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            due,
        }
    }
}

/// Counts a request body on its connection until it has all arrived (or
/// failed, or was dropped unread with its request).
struct BodyDue(Arc<Conn>);

impl BodyDue {
    fn begin(conn: &Arc<Conn>) -> Self {
        conn.bodies_due.fetch_add(1, Ordering::AcqRel);
        BodyDue(Arc::clone(conn))
    }
}

impl Drop for BodyDue {
    fn drop(&mut self) {
        self.0.bodies_due.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HttpBody for BodyDeadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                if !matches!(frame, Some(Ok(_))) || self.body.is_end_stream() {
                    self.due = None;
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                ready!(self.deadline.as_mut().poll(cx));
                if let Some(due) = &self.due {
                    due.0.body_timed_out.notify_one();
                }
                Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Whether a body error, anywhere in its chain of sources, is a
/// [`BodyTimedOut`].
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The socket, and the one place hyper's own error replies are replaced.
///
/// hyper answers a request it cannot parse (400, a URI over 64 KiB: 414, a
/// head over [`MAX_HEAD_BYTES`]: 431) by itself, with an empty body, and
/// closes the connection. Such a reply is the one response head written
/// when the router owes none; it is swapped for the same status with the
/// broker's `{code, message}` body.
struct Wire<S> {
    stream: S,
    conn: Arc<Conn>,
    reply: Option<Reply>,
    /// The last write took only part of its buffer, so the next one goes on
    /// with the rest of it: it starts mid-response, never with a head,
    /// whatever its bytes say (a body may quote a status line).
    partial: bool,
}

/// The broker's own error reply, in place of hyper's.
struct Reply {
    bytes: Vec<u8>,
    written: usize,
}

impl Reply {
    fn poll_send<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.written < self.bytes.len() {
            let n = ready!(Pin::new(&mut *stream).poll_write(cx, &self.bytes[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// The status of a response head at the start of `buf`, if one starts there.
fn head_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// A complete HTTP/1.1 response with the broker's error body, that closes
/// the connection (hyper closes it after its own error replies too).
fn error_reply(status: u16) -> Vec<u8> {
    let (code, message) = match status {
        414 => (
            ErrorCode::UriTooLong,
            "the request URI is longer than the broker accepts",
        ),
        431 => (
            ErrorCode::HeadersTooLarge,
            "the request's headers are larger than the broker accepts",
        ),
        _ => (
            ErrorCode::BadRequest,
            "the request is not valid HTTP/1.1 (its request line, URI or a header is malformed)",
        ),
    };
    let status = status_of(code);
    let body = serde_json::to_vec(&ApiError {
        code,
        message: message.into(),
    })
    .unwrap_or_default();
    let now = broker::now();
    let mut reply = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\ndate: {}\r\n{}: {}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        now.format("%a, %d %b %Y %H:%M:%S GMT"),
        SERVER_TIME_HEADER,
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
    .into_bytes();
    reply.extend_from_slice(&body);
    reply
}

impl<S: AsyncRead + Unpin> AsyncRead for Wire<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before && self.conn.idle() {
            self.conn.head_arriving();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.reply.is_none() && !this.partial {
            // 1xx heads (100 Continue) come before the response they announce.
            if let Some(status) = head_status(buf).filter(|status| *status >= 200) {
                if this.conn.heads_due.load(Ordering::Acquire) > 0 {
                    let written = ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
                    if written > 0 {
                        this.conn.heads_due.fetch_sub(1, Ordering::AcqRel);
                    }
                    this.partial = written < buf.len();
                    return Poll::Ready(Ok(written));
                }
                if status >= 400 {
                    this.reply = Some(Reply {
                        bytes: error_reply(status),
                        written: 0,
                    });
                }
            }
        }
        if let Some(reply) = &mut this.reply {
            // hyper's reply is dropped whole: it wrote the last thing this
            // connection says.
            ready!(reply.poll_send(&mut this.stream, cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        let written = ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        this.partial = written < buf.len();
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(reply) = &mut this.reply {
            ready!(reply.poll_send(&mut this.stream, cx))?;
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(reply) = &mut this.reply {
            ready!(reply.poll_send(&mut this.stream, cx))?;
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each response from one flat buffer, so
    // a response head always starts a write.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::FutureExt;

    use super::*;

    #[test]
    fn response_heads_are_recognised_by_their_status_line() {
        assert_eq!(
            head_status(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            Some(431)
        );
        assert_eq!(head_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(head_status(b"HTTP/1.1 100 Continue\r\n\r\n"), Some(100));
        assert_eq!(head_status(b"{\"code\":\"HTTP/1.1 400\"}"), None);
        assert_eq!(head_status(b"HTTP/1."), None);
    }

    /// A socket that takes one byte a write.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.extend_from_slice(&buf[..buf.len().min(1)]);
            Poll::Ready(Ok(buf.len().min(1)))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A body that quotes a status line (a justification can) is written
    /// as it is, even when a write that went on with a partly written
    /// buffer starts at the quote: only a write that starts a buffer can
    /// start a head.
    #[test]
    fn a_status_line_quoted_in_a_body_is_never_taken_for_a_head() {
        let conn = Arc::new(Conn::new(0));
        let _request = InFlight::begin(&conn);
        let mut wire = Wire {
            stream: Trickle(Vec::new()),
            conn,
            reply: None,
            partial: false,
        };
        let response =
            b"HTTP/1.1 200 OK\r\ncontent-length: 27\r\n\r\n{\"j\":\"HTTP/1.1 400 x\"}   ";
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut sent = 0;
        while sent < response.len() {
            match Pin::new(&mut wire).poll_write(&mut cx, &response[sent..]) {
                Poll::Ready(Ok(n)) => sent += n,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(wire.stream.0, response);
    }

    /// A connection cap lowered to fit the open-file limit lowers the
    /// stream cap with it, to half the connections; one that fits is kept.
    #[test]
    fn the_stream_cap_stays_below_a_lowered_connection_cap() {
        let streams = StreamLimits {
            total: 2048,
            per_identity: 16,
        };
        let lowered = Limits {
            max_connections: 960,
            ..Limits::default()
        };
        assert_eq!(
            fit_streams(streams, &Limits::default(), &lowered),
            StreamLimits {
                total: 480,
                per_identity: 16
            }
        );
        let fits = Limits::default();
        assert_eq!(fit_streams(streams, &fits, &fits), streams);
        // More than half of a cap that was not lowered: as configured.
        let wide = StreamLimits {
            total: 3000,
            per_identity: 16,
        };
        let cap = Limits {
            max_connections: 4096,
            ..Limits::default()
        };
        assert_eq!(fit_streams(wide, &cap, &cap), wide);
    }

    #[test]
    fn the_cap_closes_the_oldest_idle_connection_and_never_a_busy_one() {
        let registry = Registry {
            max: 3,
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        };
        let busy = registry.admit().unwrap();
        let _streaming = InFlight::begin(&busy);
        let idle = registry.admit().unwrap();
        let newer = registry.admit().unwrap();
        let newest = registry.admit().unwrap();
        let open: Vec<u64> = registry.open.lock().unwrap().keys().copied().collect();
        assert_eq!(open, [busy.id, newer.id, newest.id]);
        assert!(idle.evicted.notified().now_or_never().is_some());
        assert!(busy.evicted.notified().now_or_never().is_none());

        // With every slot busy, a new connection is refused.
        let _a = InFlight::begin(&newer);
        let _b = InFlight::begin(&newest);
        assert!(registry.admit().is_none());
    }
}
