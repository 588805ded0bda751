//! The store's connections, driven on the thread that waits for them.
//!
//! tokio-postgres splits a connection in two: a `Client` that makes
//! requests, and a `Connection` future that does the socket's work. Run as a
//! task on a runtime, the `Connection` costs two hops between threads a
//! round trip: the caller hands its statements to the task, and the task
//! hands the answers back. Here the calling thread polls the `Connection`
//! itself, beside what it waits for, on a non-blocking socket no runtime
//! watches ([`Socket`]); when neither can go on, it waits in poll(2) for the
//! socket to be ready as the connection asked ([`Conn::drive`]). No runtime
//! is entered, so this works on any thread, async or not, as blocking on
//! SQLite's lock does.
//!
//! Connecting follows tokio-postgres's own `connect`: each host of the URL
//! in turn (its `hostaddr` if given), every address a name resolves to,
//! TCP keepalives and the user timeout as configured, TLS as the URL's
//! `sslmode` says (none over a Unix socket, as with libpq), and
//! `target_session_attrs`.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use lru::LruCache;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// What the connection waits for on its socket, set by [`Socket`] when an
/// operation would block.
const READABLE: u8 = 1;
const WRITABLE: u8 = 2;

/// A connection's two halves over a [`Socket`].
type Connection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// A connected, non-blocking socket. An operation that would block says
/// which way in `wants` and returns `Pending` without a waker: the thread
/// driving the connection waits for the socket itself.
pub(super) struct Socket {
    stream: Stream,
    wants: Arc<AtomicU8>,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    fn io<T>(
        &mut self,
        want: u8,
        mut op: impl FnMut(&mut Stream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            match op(&mut self.stream) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.wants.fetch_or(want, Ordering::Relaxed);
                    return Poll::Pending;
                }
                done => return Poll::Ready(done),
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.read(buf),
            Stream::Unix(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.write(buf),
            Stream::Unix(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = this.io(READABLE, |stream| stream.read(buf.initialize_unfilled()));
        read.map_ok(|n| buf.advance(n))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io(WRITABLE, |stream| stream.write(buf))
    }

    /// Nothing is buffered here: a write the socket took is sent.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let done = match &self.stream {
            Stream::Tcp(stream) => stream.shutdown(std::net::Shutdown::Write),
            Stream::Unix(stream) => stream.shutdown(std::net::Shutdown::Write),
        };
        Poll::Ready(match done {
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

/// Set when a future is woken from inside the poll that drives it: a
/// request handed to the connection, an answer handed back. Only the
/// driving thread holds the connection's parts, so nothing else wakes it.
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Why [`Conn::drive`] gave up.
#[derive(Debug)]
pub(super) enum Stalled {
    /// Nothing came within the time given.
    TimedOut,
    /// The connection ended and what waited on it was never answered.
    Lost,
}

/// Driving state shared by a connection's socket and its driver.
struct Driver {
    /// The socket, duplicated, to wait on in poll(2).
    watch: OwnedFd,
    wants: Arc<AtomicU8>,
    woken: Arc<Woken>,
    waker: Waker,
}

impl Driver {
    fn new(watch: OwnedFd, wants: Arc<AtomicU8>) -> Self {
        let woken = Arc::new(Woken(AtomicBool::new(false)));
        Driver {
            watch,
            wants,
            waker: Waker::from(Arc::clone(&woken)),
            woken,
        }
    }

    /// Polls `work`, and `connection` when there is one, until `work` is
    /// done: again at once when either woke the other, and otherwise after
    /// waiting in poll(2) for the socket, at most until `deadline`.
    fn drive<T>(
        &self,
        mut connection: Option<&mut Option<Connection>>,
        work: impl Future<Output = T>,
        deadline: Instant,
    ) -> Result<T, Stalled> {
        let mut work = pin!(work);
        let mut cx = Context::from_waker(&self.waker);
        loop {
            self.woken.0.store(false, Ordering::Relaxed);
            self.wants.store(0, Ordering::Relaxed);
            if let Poll::Ready(done) = work.as_mut().poll(&mut cx) {
                return Ok(done);
            }
            let mut ended = false;
            if let Some(slot) = connection.as_deref_mut() {
                match slot.as_mut() {
                    Some(open) => {
                        if Pin::new(open).poll(&mut cx).is_ready() {
                            // Closed or failed: its requests now fail, and
                            // wake what waits on them.
                            *slot = None;
                            continue;
                        }
                    }
                    None => ended = true,
                }
            }
            if self.woken.0.load(Ordering::Relaxed) {
                continue;
            }
            if ended {
                return Err(Stalled::Lost);
            }
            let wants = self.wants.load(Ordering::Relaxed);
            let mut events = PollFlags::empty();
            if wants & READABLE != 0 || wants == 0 {
                events |= PollFlags::POLLIN;
            }
            if wants & WRITABLE != 0 {
                events |= PollFlags::POLLOUT;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Stalled::TimedOut);
            }
            let timeout =
                PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
            match nix::poll::poll(&mut [PollFd::new(self.watch.as_fd(), events)], timeout) {
                Ok(0) => return Err(Stalled::TimedOut),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return Err(Stalled::Lost),
            }
        }
    }
}

/// How many statements a connection keeps prepared. The store's own
/// statements are far fewer, but some vary with the call (a listing's
/// `LIMIT`, the checks of an optimistic transaction's reads), and each one
/// kept costs memory here and a plan on the server: past this many, the
/// least recently used is closed.
pub const KEPT_STATEMENTS: NonZeroUsize = match NonZeroUsize::new(256) {
    Some(kept) => kept,
    None => panic!("a connection keeps at least one statement"),
};

/// One connection: its client, its connection future (gone once it ended)
/// and the statements prepared on it.
pub(super) struct Conn {
    pub(super) client: Client,
    connection: RefCell<Option<Connection>>,
    driver: Driver,
    statements: RefCell<LruCache<String, tokio_postgres::Statement>>,
}

impl Conn {
    /// Drives `work` on this thread until it is done, at most `within`.
    pub(super) fn drive<T>(
        &self,
        work: impl Future<Output = T>,
        within: Duration,
    ) -> Result<T, Stalled> {
        let mut connection = self.connection.borrow_mut();
        self.driver
            .drive(Some(&mut connection), work, Instant::now() + within)
    }

    /// `sql` prepared on this connection: a statement met for the first
    /// time costs one round trip, and is kept while it is among the
    /// [`KEPT_STATEMENTS`] used last. One let go is closed on the server
    /// (tokio-postgres sends the `Close` once the last copy is dropped).
    pub(super) fn prepared(
        &self,
        sql: &str,
        within: Duration,
    ) -> Result<Result<tokio_postgres::Statement, tokio_postgres::Error>, Stalled> {
        if let Some(statement) = self.statements.borrow_mut().get(sql) {
            return Ok(Ok(statement.clone()));
        }
        let prepared = self.drive(self.client.prepare(sql), within)?;
        if let Ok(statement) = &prepared {
            self.statements
                .borrow_mut()
                .push(sql.to_owned(), statement.clone());
        }
        Ok(prepared)
    }

    /// How many statements are kept prepared on this connection.
    #[cfg(feature = "testing")]
    pub(super) fn kept_statements(&self) -> usize {
        self.statements.borrow().len()
    }

    /// Whether it is still open: reads what the server sent while it sat
    /// in the pool (a notice, or the end of a server that went away).
    fn open(&self) -> bool {
        let mut connection = self.connection.borrow_mut();
        let Some(open) = connection.as_mut() else {
            return false;
        };
        let mut cx = Context::from_waker(&self.driver.waker);
        if Pin::new(open).poll(&mut cx).is_ready() {
            *connection = None;
            return false;
        }
        !self.client.is_closed()
    }
}

/// Connects as `config` says, trying each host in turn; the error is the
/// last host's.
pub(super) fn connect(config: &Config, tls: &MakeRustlsConnect) -> Result<Conn, StoreError> {
    let hosts = config.get_hosts();
    let hostaddrs = config.get_hostaddrs();
    let count = hosts.len().max(hostaddrs.len());
    if count == 0 {
        return Err(StoreError::UnknownLocation(
            "a PostgreSQL URL names no host".into(),
        ));
    }
    let ports = config.get_ports();
    let mut last = None;
    for at in 0..count {
        let port = ports
            .get(at)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432);
        let hostname = match hosts.get(at) {
            Some(Host::Tcp(name)) => Some(name.as_str()),
            _ => None,
        };
        let attempt = match (hostaddrs.get(at), hosts.get(at)) {
            (Some(addr), _) => connect_tcp(config, &[SocketAddr::new(*addr, port)]),
            (None, Some(Host::Tcp(name))) => (name.as_str(), port)
                .to_socket_addrs()
                .map_err(|err| unavailable(&format!("{name}:{port}"), &err))
                .and_then(|addrs| connect_tcp(config, &addrs.collect::<Vec<_>>())),
            (None, Some(Host::Unix(dir))) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                UnixStream::connect(&path)
                    .and_then(|stream| {
                        stream.set_nonblocking(true)?;
                        Ok(Stream::Unix(stream))
                    })
                    .map_err(|err| unavailable(&path.display().to_string(), &err))
            }
            (None, None) => continue,
        };
        match attempt.and_then(|stream| start(config, tls, stream, hostname)) {
            Ok(conn) => return Ok(conn),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| StoreError::Unavailable("no database host to connect to".into())))
}

fn unavailable(to: &str, err: &io::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot connect to the database at {to}: {err}"))
}

/// The first of `addrs` that accepts a connection, within the connect
/// timeout, set up as `config` says.
fn connect_tcp(config: &Config, addrs: &[SocketAddr]) -> Result<Stream, StoreError> {
    let mut last = None;
    for addr in addrs {
        match tcp(config, addr) {
            Ok(stream) => return Ok(Stream::Tcp(stream)),
            Err(err) => last = Some(unavailable(&addr.to_string(), &err)),
        }
    }
    Err(last.unwrap_or_else(|| {
        StoreError::Unavailable("the database's name resolves to no address".into())
    }))
}

fn tcp(config: &Config, addr: &SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, SockAddr, TcpKeepalive, Type};
    let socket = socket2::Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    let to = SockAddr::from(*addr);
    match config.get_connect_timeout() {
        Some(timeout) => socket.connect_timeout(&to, *timeout)?,
        None => socket.connect(&to)?,
    }
    socket.set_tcp_nodelay(true)?;
    if config.get_keepalives() {
        let mut keepalive = TcpKeepalive::new().with_time(config.get_keepalives_idle());
        if let Some(interval) = config.get_keepalives_interval() {
            keepalive = keepalive.with_interval(interval);
        }
        if let Some(retries) = config.get_keepalives_retries() {
            keepalive = keepalive.with_retries(retries);
        }
        socket.set_tcp_keepalive(&keepalive)?;
    }
    if let Some(timeout) = config.get_tcp_user_timeout() {
        socket.set_tcp_user_timeout(Some(*timeout))?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The startup, TLS and authentication on a connected `stream`, then the
/// session's check against `target_session_attrs`. Over a Unix socket
/// there is no TLS, whatever `sslmode` says, as with libpq: the socket is
/// local, and the server does not offer TLS on it (it would refuse the
/// request, and `sslmode=require` would then fail).
fn start(
    config: &Config,
    tls: &MakeRustlsConnect,
    stream: Stream,
    hostname: Option<&str>,
) -> Result<Conn, StoreError> {
    let without_tls;
    let config = match stream {
        Stream::Unix(_) => {
            let mut plain = config.clone();
            plain.ssl_mode(SslMode::Disable);
            without_tls = plain;
            &without_tls
        }
        Stream::Tcp(_) => config,
    };
    let watch = match &stream {
        Stream::Tcp(stream) => stream.try_clone().map(OwnedFd::from),
        Stream::Unix(stream) => stream.try_clone().map(OwnedFd::from),
    }
    .map_err(|err| StoreError::Unavailable(format!("the database connection's socket: {err}")))?;
    let wants = Arc::new(AtomicU8::new(0));
    let socket = Socket {
        stream,
        wants: Arc::clone(&wants),
    };
    let driver = Driver::new(watch, wants);
    let connecting =
        MakeTlsConnect::<Socket>::make_tls_connect(&mut tls.clone(), hostname.unwrap_or(""))
            .map_err(|err| StoreError::Other(format!("TLS to the database: {err}")))?;
    let deadline = Instant::now() + config.get_connect_timeout().copied().unwrap_or(super::WAIT);
    let (client, connection) = driver
        .drive(None, config.connect_raw(socket, connecting), deadline)
        .map_err(|_| {
            StoreError::Unavailable("the database did not finish connecting in time".into())
        })??;
    let conn = Conn {
        client,
        connection: RefCell::new(Some(connection)),
        driver,
        statements: RefCell::new(LruCache::new(KEPT_STATEMENTS)),
    };
    let wanted = match config.get_target_session_attrs() {
        TargetSessionAttrs::ReadWrite => Some("off"),
        TargetSessionAttrs::ReadOnly => Some("on"),
        _ => None,
    };
    if let Some(wanted) = wanted {
        let shown = conn
            .drive(
                conn.client.simple_query("SHOW transaction_read_only"),
                super::WAIT,
            )
            .map_err(|_| StoreError::Unavailable("the database did not answer in time".into()))??;
        let read_only = shown.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        });
        if read_only != Some(wanted) {
            return Err(StoreError::Unavailable(format!(
                "the database's session is not as target_session_attrs asks \
                 (transaction_read_only is {})",
                read_only.unwrap_or("unknown")
            )));
        }
    }
    Ok(conn)
}

/// Makes and recycles the pool's connections. A connection is made on the
/// thread that asked the pool for one, and checked on its way out of the
/// pool: one the server closed meanwhile is thrown away then.
#[derive(Clone)]
pub(super) struct Manager {
    pub(super) config: Config,
    pub(super) tls: MakeRustlsConnect,
}

impl deadpool::managed::Manager for Manager {
    type Type = Conn;
    type Error = StoreError;

    async fn create(&self) -> Result<Conn, StoreError> {
        connect(&self.config, &self.tls)
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<StoreError> {
        match conn.open() {
            true => Ok(()),
            false => Err(RecycleError::message("the connection was closed")),
        }
    }
}
