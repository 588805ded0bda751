//! Which URLs hoist sends anything to: https anywhere, plain http only to a
//! loopback address, never credentials in the URL. Brokers, identity
//! providers and the config's profiles are all checked here, so the rule
//! is written once and no layer reaches into another to apply it.

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
        url: raw.to_string(),
        reason: reason.to_string(),
    };
    let mut url = Url::parse(raw.trim()).map_err(|err| bad(&err.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials do not belong in the URL"));
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if !loopback {
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

/// The one spelling of an endpoint used for comparisons and keyring
/// entries: checked, without a trailing slash.
pub fn normalise(raw: &str) -> Result<String, UnusableUrl> {
    let url = check(raw)?;
    Ok(url.as_str().trim_end_matches('/').to_string())
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
        assert!(check("https://user:pw@broker.example.com").is_err());
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
}
