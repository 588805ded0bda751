//! What every HTTP client hoistd makes shares (OpenBao and webhook targets,
//! notification channels, OpenID providers' keys): https, or plain http to
//! this machine only; redirects never followed; and this machine reached
//! directly. reqwest would otherwise send a call to a proxy from
//! `HTTP_PROXY` or `ALL_PROXY`: plain http, tokens and secrets and all, in
//! the clear to another machine, whose loopback is not the one meant.
//! Other hosts keep the environment's proxy (over https it sees only the
//! host).

use url::Url;

/// Whether `url` names this machine: `localhost` or a loopback address.
pub fn is_loopback(url: &Url) -> bool {
    url.host().is_some_and(|host| match host {
        url::Host::Domain(domain) => domain.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    })
}

/// `host` as one name whatever it is written as, for telling systems
/// apart (`TargetKind::system`): lowercase, and this machine (`localhost`,
/// any loopback address) as `localhost`. Names for one host that DNS
/// alone knows are the same stay apart.
pub fn host_key(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        "localhost".into()
    } else if bare.starts_with('/') {
        // A Unix socket's directory: a path, whose case counts.
        bare.into()
    } else {
        bare.to_ascii_lowercase()
    }
}

/// `url`'s scheme, host (as [`host_key`]) and port: its origin, one way
/// of writing it.
pub fn origin_key(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        host_key(url.host_str().unwrap_or_default()),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// Whether hoistd may call `url` at all: https, or http to this machine.
pub fn allowed(url: &Url) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && is_loopback(url))
}

/// Where `localhost` is reached: the loopback addresses, never what a
/// resolver answers for the name. Plain http is allowed to `localhost`
/// because it is this machine; a hosts file or DNS server that says
/// otherwise must not send tokens in the clear elsewhere. (Port 0: the
/// URL's port is used.)
const LOCALHOST: [std::net::SocketAddr; 2] = [
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0),
    std::net::SocketAddr::new(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 0),
];

/// `builder` reaching this machine directly: no proxy, and `localhost`
/// as the loopback addresses.
fn direct(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder.no_proxy().resolve_to_addrs("localhost", &LOCALHOST)
}

/// A client builder for calls to `url`: no redirects, and no proxy for
/// this machine, which is reached at its loopback addresses.
pub fn client_for(url: &Url) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if is_loopback(url) {
        direct(builder)
    } else {
        builder
    }
}

/// Clients for URLs known only when they are called (an OpenID provider's
/// discovery document and keys): one that reaches this machine directly,
/// one that keeps the environment's proxy for the rest.
#[derive(Clone)]
pub struct Clients {
    /// `None` where no client could be made (no TLS backend): calls then
    /// fail, rather than go through reqwest's default client, which
    /// follows redirects and proxies loopback.
    direct: Option<reqwest::Client>,
    proxied: Option<reqwest::Client>,
}

impl Clients {
    pub fn new() -> Clients {
        let make = |builder: reqwest::ClientBuilder| {
            builder
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .inspect_err(|err| {
                    tracing::error!(error = %err, "no HTTP client for OpenID providers can be made")
                })
                .ok()
        };
        Clients {
            direct: make(direct(reqwest::Client::builder())),
            proxied: make(reqwest::Client::builder()),
        }
    }

    /// The client for `url`; one that does not parse gets no proxy (it
    /// fails before anything is sent). `None` if none could be made.
    pub fn for_url(&self, url: &str) -> Option<&reqwest::Client> {
        match Url::parse(url) {
            Ok(url) if !is_loopback(&url) => self.proxied.as_ref(),
            _ => self.direct.as_ref(),
        }
    }
}

impl Default for Clients {
    fn default() -> Self {
        Clients::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_loopback_and_plain_http_only_goes_there() {
        for url in [
            "http://localhost:8200",
            "http://LOCALHOST/",
            "http://127.0.0.1:1",
            "http://127.8.9.10/",
            "http://[::1]:8200/",
        ] {
            let url = Url::parse(url).unwrap();
            assert!(is_loopback(&url) && allowed(&url), "{url}");
        }
        for url in [
            "http://bao.internal:8200",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
        ] {
            assert!(!allowed(&Url::parse(url).unwrap()), "{url}");
        }
        assert!(allowed(&Url::parse("https://bao.internal").unwrap()));
        assert!(!is_loopback(&Url::parse("https://bao.internal").unwrap()));
    }

    /// `localhost` is reached at the loopback addresses hoistd names, on
    /// the URL's port, by both kinds of client: with any other address in
    /// `LOCALHOST`, this fails, whatever the resolver says of the name.
    #[tokio::test]
    async fn localhost_is_reached_at_its_port_on_loopback() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        let url = Url::parse(&format!("http://localhost:{port}/")).unwrap();
        let built = client_for(&url).build().unwrap();
        let clients = Clients::new();
        for client in [&built, clients.for_url(url.as_str()).unwrap()] {
            let status = client.get(url.clone()).send().await.unwrap().status();
            assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
        }
    }

    /// One machine written several ways is one key; others stay apart.
    #[test]
    fn one_host_written_several_ways_is_one_key() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.0.1.1",
            "::1",
            "[::1]",
        ] {
            assert_eq!(host_key(host), "localhost", "{host}");
        }
        assert_eq!(host_key("DB.Example.com"), "db.example.com");
        assert_eq!(host_key("/run/PostgreSQL"), "/run/PostgreSQL");
        assert_ne!(host_key("10.0.0.1"), host_key("10.0.0.2"));
        let key = |url: &str| origin_key(&Url::parse(url).unwrap());
        assert_eq!(key("http://localhost:8200/"), key("http://127.0.0.1:8200"));
        assert_eq!(
            key("https://Bao.Example.com"),
            key("https://bao.example.com:443")
        );
        assert_ne!(key("http://127.0.0.1:8200"), key("http://127.0.0.1:8201"));
    }
}
