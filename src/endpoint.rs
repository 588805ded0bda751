//! Which URLs hoist sends anything to: https anywhere, plain http only to a
//! loopback address, never credentials in the URL. Brokers, identity
//! providers and the config's profiles are all checked here, so the rule
//! is written once and no layer reaches into another to apply it. What
//! comes back is read only up to [`MAX_BODY`].

use url::Url;

/// A URL hoist refuses to talk to, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{url}` is not usable: {reason}")]
pub struct UnusableUrl {
    pub url: String,
    pub reason: String,
}

/// Checks an endpoint URL and returns it without query, fragment or a
/// trailing slash.
pub fn check(raw: &str) -> Result<Url, UnusableUrl> {
    let bad = |reason: &str| UnusableUrl {
        url: without_userinfo(raw),
        reason: reason.to_string(),
    };
    let mut url = Url::parse(raw.trim()).map_err(|err| bad(&err.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials do not belong in the URL"));
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            if !is_loopback(&url) {
                return Err(bad(
                    "plain http is only allowed to a loopback address; use https",
                ));
            }
        }
        other => return Err(bad(&format!("scheme `{other}` is not http or https"))),
    }
    if url.host().is_none() {
        return Err(bad("no host"));
    }
    url.set_query(None);
    url.set_fragment(None);
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

/// Whether `url`'s host is a loopback address or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Where `localhost` is reached: the loopback addresses, never what a
/// hosts file or DNS answers for the name (a minimal container without
/// one, a search domain with a wildcard): plain http is allowed there
/// because it is this machine. Port 0: the URL's port is used.
const LOCALHOST: [std::net::SocketAddr; 2] = [
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0),
    std::net::SocketAddr::new(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 0),
];

/// `builder` reaching this machine directly: no proxy, and `localhost` as
/// the loopback addresses.
fn direct(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder.no_proxy().resolve_to_addrs("localhost", &LOCALHOST)
}

/// An HTTP client builder for talking to `url` (checked): redirects are
/// never followed, and a loopback host is reached directly. reqwest would
/// otherwise send to a proxy from `http_proxy` or `ALL_PROXY`: plain http,
/// tokens and all, in the clear to another machine, whose loopback is not
/// the one meant. Other hosts keep the environment's proxy.
pub fn client_for(url: &Url) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if is_loopback(url) {
        direct(builder)
    } else {
        builder
    }
}

/// [`client_for`] for a URL as text; one that does not parse gets no
/// proxy either (it will be refused before anything is sent).
pub fn client_for_text(raw: &str) -> reqwest::ClientBuilder {
    match Url::parse(raw.trim()) {
        Ok(url) => client_for(&url),
        Err(_) => direct(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())),
    }
}

/// `raw` as an error may show it: whatever stands before the last `@`
/// ahead of its query or fragment (a user name and password) replaced by
/// `***`. The authority is taken to start after the scheme's `:` and any
/// slashes, as the url crate reads `https:/u:p@h` and `https:///u:p@h`, and
/// to run on through a `/`, so that a password holding one
/// (`https://u:p/w@h`, which does not parse) is not shown either; a path
/// with an `@` is hidden with it.
fn without_userinfo(raw: &str) -> String {
    let scheme_end = raw
        .find(':')
        .filter(|&at| {
            at > 0
                && raw[..at]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
        .map_or(0, |at| at + 1);
    let rest = &raw[scheme_end..];
    let start = scheme_end + (rest.len() - rest.trim_start_matches(['/', '\\']).len());
    let end = raw[start..]
        .find(['?', '#'])
        .map_or(raw.len(), |at| start + at);
    match raw[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &raw[..start], &raw[start + at..]),
        None => raw.to_string(),
    }
}

/// The one spelling of an endpoint used for comparisons and keyring
/// entries: checked, without a trailing slash.
pub fn normalise(raw: &str) -> Result<String, UnusableUrl> {
    let url = check(raw)?;
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// The most of one answer's body hoist reads (64 MiB): a server that
/// sends more, by mistake or in malice, is refused rather than held in
/// memory.
pub const MAX_BODY: usize = 64 << 20;

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Read(#[from] reqwest::Error),
    #[error("the answer is larger than {} MiB", MAX_BODY >> 20)]
    TooLarge,
}

/// An answer's body, refused past [`MAX_BODY`] without reading further.
pub async fn body(response: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    body_within(response, MAX_BODY).await
}

pub async fn body_within(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        assert!(check("https://broker.example.com").is_ok());
        assert!(check("http://127.0.0.1:8700").is_ok());
        assert!(check("http://[::1]:8700/").is_ok());
        assert!(check("http://localhost:8700").is_ok());
        let err = check("http://broker.example.com").unwrap_err().to_string();
        assert!(err.contains("only allowed to a loopback"), "{err}");
        assert!(check("http://10.0.0.1:8700").is_err());
        assert!(check("ftp://127.0.0.1").is_err());
        let err = check("https://user:s3cret@broker.example.com/x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("credentials do not belong in the URL"),
            "{err}"
        );
        assert!(err.contains("https://***@broker.example.com/x"), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("user"), "{err}");
        let err = check("https://user:s3cret@[broken/x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        // Spellings the url crate reads as credentials, or cannot read:
        // the password is not shown either way.
        for raw in [
            "https:///alice:s3cret@broker.example",
            "https:/alice:s3cret@broker.example",
            "https:\\\\alice:s3cret@broker.example",
            "https://alice:s3/cret@broker.example",
            "https://alice:s3cret@broker.example:99999",
        ] {
            let err = check(raw).unwrap_err().to_string();
            assert!(!err.contains("s3") && !err.contains("alice"), "{err}");
            assert!(err.contains("***@broker.example"), "{err}");
        }
        assert!(check("not a url").is_err());
    }

    #[test]
    fn one_spelling_per_endpoint() {
        assert_eq!(
            normalise("https://hoist.corp.example/").unwrap(),
            "https://hoist.corp.example"
        );
        assert_eq!(
            normalise(" http://127.0.0.1:8700/api/?x=1#y").unwrap(),
            "http://127.0.0.1:8700/api"
        );
    }

    /// A loopback server answering every connection with `head`, then
    /// 1 KiB chunks for as long as the client reads.
    async fn serving(head: &'static str) -> String {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0_u8; 1024];
                    let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut request).await;
                    socket.write_all(head.as_bytes()).await?;
                    let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
                    loop {
                        socket.write_all(chunk.as_bytes()).await?;
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), std::io::Error>(())
                });
            }
        });
        url
    }

    /// `localhost` is reached at the loopback addresses named here, on the
    /// URL's port: with any other address in `LOCALHOST`, this fails,
    /// whatever the resolver says of the name.
    #[tokio::test]
    async fn localhost_is_reached_at_its_port_on_loopback() {
        let served = serving("HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
        let url = Url::parse(&served.replace("127.0.0.1", "localhost")).unwrap();
        for client in [client_for(&url), client_for_text(url.as_str())] {
            let status = client
                .build()
                .unwrap()
                .get(url.clone())
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
        }
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_not_held() {
        let endless = serving("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
        let response = reqwest::get(&endless).await.unwrap();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            body_within(response, 64 * 1024),
        );
        let err = read.await.expect("read on without end").unwrap_err();
        assert!(matches!(err, BodyError::TooLarge), "{err:?}");
        assert!(err.to_string().contains("larger than"), "{err}");

        // Said up front: refused before a byte of it is read.
        let declared = serving("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n").await;
        let response = reqwest::get(&declared).await.unwrap();
        assert!(matches!(body(response).await, Err(BodyError::TooLarge)));
    }
}
