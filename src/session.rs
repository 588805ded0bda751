//! Signing in with a static token, signing out, and opening a broker client
//! from the session kept in the keyring.
//!
//! A token is checked with the broker (`GET /v1/me`) before it is stored,
//! so a typo never ends up in the keyring. The keyring entry is named by
//! the user the broker answered, not by anything typed. The caller records
//! the sign-in in the config ([`crate::config::Config::remember_login`]).

use std::io::Read;

use hoist_api::Me;

use crate::client::{BrokerClient, ClientError};
use crate::config::{ConfigError, Target};
use crate::secrets::{self, SecretsError, Session};

/// Longest token accepted, in bytes: far beyond any bearer token, and small
/// enough that a file piped by mistake is refused rather than sent.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("not signed in to {broker}: run `{}`", login_command(.profile))]
    NotSignedIn { profile: String, broker: String },
    #[error("{broker} refused the token ({reason}); check it and try again")]
    TokenRefused { broker: String, reason: String },
    #[error("the token is empty")]
    EmptyToken,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes; is that really a token?")]
    TokenTooLong,
    #[error("the token contains spaces or control characters; paste only the token")]
    MalformedToken,
    #[error("cannot read the token from standard input: {0}")]
    Stdin(String),
    #[error("the keyring task failed: {0}")]
    Task(String),
}

fn login_command(profile: &str) -> String {
    if profile == crate::config::DEFAULT_PROFILE {
        "hoist login --with-token".to_string()
    } else {
        format!("hoist --profile {profile} login --with-token")
    }
}

/// Checks `token` with the broker and stores it in the keyring for the user
/// the broker says it belongs to. Returns that user; the caller saves the
/// config with [`crate::config::Config::remember_login`].
pub async fn login_with_token(target: &Target, token: &str) -> Result<Me, SessionError> {
    let token = check_token(token)?;
    let me = match BrokerClient::new(&target.broker, token)?.me().await {
        Ok(me) => me,
        // "Session expired" would be the wrong story before any session.
        Err(ClientError::Unauthenticated(reason)) => {
            return Err(SessionError::TokenRefused {
                broker: target.broker.clone(),
                reason,
            });
        }
        Err(err) => return Err(err.into()),
    };
    let session = Session::with_token(token);
    let broker = target.broker.clone();
    let user = me.user.clone();
    blocking(move || secrets::save(&broker, &user, &session)).await?;
    Ok(me)
}

/// Deletes the stored session of `target.user`; false if there was none.
/// Static tokens cannot be revoked from here: that is the broker admin's job.
pub async fn logout(target: &Target) -> Result<bool, SessionError> {
    let Some(user) = target.user.clone() else {
        return Ok(false);
    };
    let broker = target.broker.clone();
    blocking(move || secrets::delete(&broker, &user)).await
}

/// A client for `target` with the stored session. Does not call the
/// broker: a token the broker no longer accepts shows up on the first call.
pub async fn open(target: &Target) -> Result<BrokerClient, SessionError> {
    let not_signed_in = || SessionError::NotSignedIn {
        profile: target.profile.clone(),
        broker: target.broker.clone(),
    };
    let Some(user) = target.user.clone() else {
        return Err(not_signed_in());
    };
    let broker = target.broker.clone();
    let session = blocking(move || secrets::load(&broker, &user))
        .await?
        .ok_or_else(not_signed_in)?;
    if session
        .expires_at
        .is_some_and(|expires| expires <= chrono::Utc::now())
    {
        return Err(not_signed_in());
    }
    Ok(BrokerClient::new(&target.broker, &session.access_token)?)
}

/// Reads a token piped on standard input (`hoist login --with-token < file`),
/// so it never appears in the shell history or the process list.
pub fn read_token_from_stdin(stdin: impl Read) -> Result<String, SessionError> {
    let mut bytes = Vec::new();
    // One byte more than allowed tells "too long" from "exactly the limit".
    stdin
        .take(MAX_TOKEN_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| SessionError::Stdin(err.to_string()))?;
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(SessionError::TokenTooLong);
    }
    let text = String::from_utf8(bytes).map_err(|_| SessionError::MalformedToken)?;
    Ok(check_token(&text)?.to_string())
}

/// The token without surrounding whitespace, if it can be one.
fn check_token(token: &str) -> Result<&str, SessionError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(SessionError::EmptyToken);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(SessionError::TokenTooLong);
    }
    // It goes into an HTTP header: anything else would be refused there,
    // with a less helpful message.
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(SessionError::MalformedToken);
    }
    Ok(token)
}

/// Runs a keyring call off the async runtime: a Secret Service call is a
/// D-Bus round trip.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, SecretsError> + Send + 'static,
) -> Result<T, SessionError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => Ok(result?),
        Err(err) => Err(SessionError::Task(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_tokens_are_trimmed() {
        assert_eq!(
            read_token_from_stdin(&b"demo-alice\n"[..]).unwrap(),
            "demo-alice"
        );
        assert_eq!(read_token_from_stdin(&b"  tok\r\n"[..]).unwrap(), "tok");
    }

    #[test]
    fn stdin_refuses_empty_long_and_malformed_tokens() {
        assert_eq!(
            read_token_from_stdin(&b""[..]),
            Err(SessionError::EmptyToken)
        );
        assert_eq!(
            read_token_from_stdin(&b" \n\n"[..]),
            Err(SessionError::EmptyToken)
        );
        let long = vec![b'a'; MAX_TOKEN_BYTES + 1];
        assert_eq!(
            read_token_from_stdin(&long[..]),
            Err(SessionError::TokenTooLong)
        );
        let limit = vec![b'a'; MAX_TOKEN_BYTES];
        assert_eq!(
            read_token_from_stdin(&limit[..]).unwrap().len(),
            MAX_TOKEN_BYTES
        );
        assert_eq!(
            read_token_from_stdin(&b"two\nlines"[..]),
            Err(SessionError::MalformedToken)
        );
        assert_eq!(
            read_token_from_stdin(&[0xff, 0xfe][..]),
            Err(SessionError::MalformedToken)
        );
    }

    #[test]
    fn not_signed_in_names_the_login_command() {
        let err = SessionError::NotSignedIn {
            profile: "default".into(),
            broker: "https://b.example".into(),
        };
        assert_eq!(
            err.to_string(),
            "not signed in to https://b.example: run `hoist login --with-token`"
        );
        let err = SessionError::NotSignedIn {
            profile: "work".into(),
            broker: "https://b.example".into(),
        };
        assert!(
            err.to_string()
                .contains("hoist --profile work login --with-token")
        );
    }
}
