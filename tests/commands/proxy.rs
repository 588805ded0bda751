//! A proxy on loopback in front of a broker, for the races a test must set
//! up between hoist and the broker: it relays each request on a connection
//! of its own, and lets the test act before a request reaches the broker
//! and before the broker's answer reaches hoist.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a hook holds what it relays until the test has done its part
/// (sent a signal, say), and a second more for hoist to take that in.
pub struct Gate {
    reached: Sender<()>,
    opened: Mutex<Receiver<()>>,
}

/// The test's side of a [`Gate`].
pub struct Keeper {
    reached: Receiver<()>,
    open: Sender<()>,
}

pub fn gate() -> (Gate, Keeper) {
    let (reached, reached_rx) = channel();
    let (open, opened) = channel();
    (
        Gate {
            reached,
            opened: Mutex::new(opened),
        },
        Keeper {
            reached: reached_rx,
            open,
        },
    )
}

impl Gate {
    /// Says the gate was reached, and waits until it is opened.
    pub fn hold(&self) {
        let _ = self.reached.send(());
        let _ = self
            .opened
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(1));
    }
}

impl Keeper {
    /// Waits until a hook reached the gate; `what` names it if none does.
    pub async fn reached(&self, what: &str) {
        tokio::task::block_in_place(|| self.reached.recv_timeout(Duration::from_secs(30)))
            .unwrap_or_else(|_| panic!("{what}"));
    }

    pub fn open(&self) {
        self.open.send(()).unwrap();
    }
}

/// Starts a proxy in front of `broker` (an `http://` URL) and returns its
/// URL. `before` gets each request's first line before it is relayed;
/// `after` gets that line and the head of the broker's answer (status line
/// and headers) before any of the answer is passed on; the body follows as
/// it comes (an event stream too). Either may take its time: hoist waits
/// meanwhile. Request bodies must have a length (hoist's do).
pub fn relay(
    broker: &str,
    before: impl Fn(&str) + Send + Sync + 'static,
    after: impl Fn(&str, &[u8]) + Send + Sync + 'static,
) -> String {
    relay_losing(broker, before, move |line, head| {
        after(line, head);
        false
    })
}

/// [`relay_losing`] that loses the broker's answers to requests whose line
/// starts with `line` for `lasting` from the first of them, each made by
/// the broker all the same.
pub fn relay_losing_at_first(broker: &str, line: &'static str, lasting: Duration) -> String {
    let first = std::sync::Mutex::new(None::<std::time::Instant>);
    relay_losing(
        broker,
        |_| {},
        move |seen, _| {
            if !seen.starts_with(line) {
                return false;
            }
            let mut first = first.lock().unwrap_or_else(|p| p.into_inner());
            let since = *first.get_or_insert_with(std::time::Instant::now);
            since.elapsed() < lasting
        },
    )
}

/// [`relay`], with `after` saying whether the broker's answer is lost on
/// its way: the connection to hoist is closed without a byte of it, after
/// the broker has done what was asked.
pub fn relay_losing(
    broker: &str,
    before: impl Fn(&str) + Send + Sync + 'static,
    after: impl Fn(&str, &[u8]) -> bool + Send + Sync + 'static,
) -> String {
    let upstream = broker.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hooks = Arc::new((before, after));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let (mut client, upstream, hooks) =
                (client.unwrap(), upstream.clone(), Arc::clone(&hooks));
            std::thread::spawn(move || {
                // A connection closed unused (a client's spare) asks nothing.
                let Some(request) = read_request(&mut client) else {
                    return;
                };
                let line = String::from_utf8_lossy(&request)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                (hooks.0)(&line);
                // A request its client gave up on while it was held goes
                // no further, as if lost on the way.
                if gone(&client) {
                    return;
                }
                let mut server = TcpStream::connect(&upstream).unwrap();
                server.write_all(&request).unwrap();
                let mut answer = Vec::new();
                let mut buf = [0u8; 8192];
                let head_end = loop {
                    if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at;
                    }
                    let n = server.read(&mut buf).unwrap();
                    assert!(n > 0, "the broker closed without an answer to {line}");
                    answer.extend_from_slice(&buf[..n]);
                };
                if (hooks.1)(&line, &answer[..head_end]) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    return;
                }
                if client.write_all(&answer).is_ok() {
                    let _ = std::io::copy(&mut server, &mut client);
                }
            });
        }
    });
    url
}

/// Whether `client` closed its end.
fn gone(client: &TcpStream) -> bool {
    client.set_nonblocking(true).unwrap();
    let closed = matches!(client.peek(&mut [0u8; 1]), Ok(0));
    client.set_nonblocking(false).unwrap();
    closed
}

/// One HTTP/1.1 request read from `client`, its head and body, with the
/// connection asked to close after the answer; `None` for a connection
/// closed before any of it.
fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = client.read(&mut buf).unwrap_or(0);
        if n == 0 {
            assert!(request.is_empty(), "the client left mid-request");
            return None;
        }
        request.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(request[..head_end].to_vec()).unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "a request body without a length: {head}"
    );
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|n| n.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while request.len() < head_end + 4 + length {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "the client left mid-body");
        request.extend_from_slice(&buf[..n]);
    }
    let kept: Vec<&str> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let mut relayed = format!("{}\r\nconnection: close\r\n\r\n", kept.join("\r\n")).into_bytes();
    relayed.extend_from_slice(&request[head_end + 4..]);
    Some(relayed)
}
