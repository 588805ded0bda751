//! Signing in with a static token, signing out, and opening a broker's
//! backend with the session kept in the keyring.
//!
//! A token is checked with the broker (`GET /v1/me`) before it is stored,
//! so a typo never ends up in the keyring. The keyring entry is named by
//! the user the broker answered, not by anything typed. The caller records
//! the sign-in in the config ([`crate::config::Config::remember_login`]).

use std::io::Read;

use hoist_api::Me;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::secrets::{self, SecretsError, Session};
use crate::auth::sso::{self, DevicePrompt, SsoError};
use crate::backend::hoistd::HoistdClient;
use crate::backend::{self, Backend, BackendError, Hooks};
use crate::config::{Backend as BrokerKind, ConfigError, Target};

/// A session is refreshed when it has less than this left.
pub const REFRESH_AHEAD: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// When to refresh a session that ends at `expires_at` ([`REFRESH_AHEAD`]
/// before it); an end the provider put at the start of time is now.
pub fn refresh_at(expires_at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    expires_at
        .checked_sub_signed(REFRESH_AHEAD)
        .unwrap_or(expires_at)
}

/// Longest a wait for a wall-clock moment sleeps before it looks at the
/// clock again: timers count time the machine is awake, so a laptop that
/// slept through a token's end must notice within this of waking.
const WALL_CLOCK_SLICE: std::time::Duration = std::time::Duration::from_secs(30);

/// The next sleep of a wait until `until` by the wall clock, from `now`.
fn wall_clock_slice(
    until: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> std::time::Duration {
    (until - now)
        .to_std()
        .unwrap_or_default()
        .min(WALL_CLOCK_SLICE)
}

/// Waits until `until` by the wall clock, in slices, so a suspend or a
/// clock step does not stretch the wait.
pub async fn sleep_until_wall(until: chrono::DateTime<chrono::Utc>) {
    loop {
        let slice = wall_clock_slice(until, chrono::Utc::now());
        if slice.is_zero() {
            return;
        }
        tokio::time::sleep(slice).await;
    }
}

/// Longest token accepted, in bytes: far beyond any bearer token, and small
/// enough that a file piped by mistake is refused rather than sent.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `login` is the command that signs in to this profile.
    #[error("not signed in to {broker}: run `{login}`")]
    NotSignedIn { broker: String, login: String },
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
    #[error(transparent)]
    Sso(#[from] SsoError),
    /// A sign-in again was someone else's: nothing of it is kept.
    #[error("that sign-in was {signed_in}'s, not {expected}'s; nothing was changed")]
    SomeoneElse { expected: String, signed_in: String },
    /// This process keeps sessions in plain files, by another profile's
    /// choice; this profile keeps its own in the keyring.
    #[error(
        "this hoist keeps sessions in plain files, which profile {profile} did not opt into; \
         start hoist again with --profile {profile} to use its keyring session"
    )]
    FileStoreNotChosen { profile: String },
    #[error("the session for {broker} expired and could not be renewed ({reason}): run `{login}`")]
    Expired {
        broker: String,
        reason: String,
        login: String,
    },
}

/// A profile that opted into `--insecure-file-store` keeps using it; one
/// that did not is refused once this process keeps sessions in files
/// (another profile's choice, as after a profile switch in the TUI), so
/// its session is never written to, or looked for in, a plain file.
fn use_file_store_if_chosen(target: &Target) -> Result<(), SessionError> {
    if target.insecure_file_store {
        secrets::init_file_store(&crate::config::sessions_dir()?)?;
    } else if secrets::chosen() == Some(secrets::SessionStore::File) {
        return Err(SessionError::FileStoreNotChosen {
            profile: target.profile.clone(),
        });
    }
    Ok(())
}

/// How to sign in through the broker's OpenID provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// RFC 8628: a code to type at a URL, from any device. Works over SSH.
    Device,
    /// Authorization code with PKCE and a loopback redirect: needs a browser here.
    Browser,
}

/// Whether a sign-in the provider remembers will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recency {
    /// The provider may sign the person in from a session it keeps.
    Remembered,
    /// The person signs in at the provider now, whatever session it keeps
    /// (`max_age=0`, `prompt=login`): the ID token's `auth_time` is this
    /// sign-in's, which a role's step-up asks for.
    Fresh,
}

/// Signs in through the broker's OpenID provider and keeps the session in
/// the keyring under the user the broker recognises.
pub async fn login_sso(
    target: &Target,
    flow: Flow,
    recency: Recency,
    on_device: impl FnOnce(&DevicePrompt),
    on_browser: impl FnOnce(&str),
) -> Result<(Me, Session), SessionError> {
    let provider = provider_for(target).await?;
    let session = match (flow, recency) {
        (Flow::Device, Recency::Remembered) => provider.sign_in_device(on_device).await?,
        (Flow::Device, Recency::Fresh) => provider.sign_in_device_fresh(on_device).await?,
        (Flow::Browser, Recency::Remembered) => provider.sign_in_browser(on_browser).await?,
        (Flow::Browser, Recency::Fresh) => provider.sign_in_browser_fresh(on_browser).await?,
    };
    let me = store_if_accepted(target, session.clone()).await?;
    Ok((me, session))
}

/// Signs `target`'s person in again at the broker's provider, made to sign
/// in now whatever session the provider holds, so the ID token's
/// `auth_time` is recent: what a role's step-up asks for. The new session
/// replaces the stored one only if the broker says it is the same person's.
pub async fn sign_in_again(
    target: &Target,
    on_device: impl FnOnce(&DevicePrompt),
) -> Result<Session, SessionError> {
    let user = target
        .user
        .clone()
        .ok_or_else(|| SessionError::NotSignedIn {
            broker: target.broker.clone(),
            login: login_command(target),
        })?;
    use_file_store_if_chosen(target)?;
    let provider = provider_for(target).await?;
    let session = provider.sign_in_device_fresh(on_device).await?;
    let kept = async {
        let me = accepted(target, &session).await?;
        if me.user != user {
            return Err(SessionError::SomeoneElse {
                expected: user.clone(),
                signed_in: me.user,
            });
        }
        if let Some(orphan) = save_held(&target.broker, &user, &session).await? {
            revoke_orphan(target, orphan).await;
        }
        Ok(())
    }
    .await;
    match kept {
        Ok(()) => Ok(session),
        Err(err) => {
            discard(target, session).await;
            Err(err)
        }
    }
}

/// Who signs people in for `target`: the broker's OpenID provider as hoistd
/// announces it, or the Entra tenant's authority from the profile.
async fn provider_for(target: &Target) -> Result<sso::Provider, SessionError> {
    match &target.backend {
        BrokerKind::Hoistd => {
            let config = HoistdClient::auth_config(&target.broker).await?;
            let issuer = config.issuers.first().ok_or(SsoError::NotOffered)?;
            Ok(sso::discover(issuer).await?)
        }
        BrokerKind::Entra(tenant) => Ok(crate::auth::entra::provider(tenant).await?),
    }
}

/// Asks the broker who `session` belongs to, and keeps the session under
/// that user. A refused token is said to be refused: "session expired"
/// would be the wrong story before any session.
async fn store_if_accepted(target: &Target, session: Session) -> Result<Me, SessionError> {
    let kept = async {
        use_file_store_if_chosen(target)?;
        let me = accepted(target, &session).await?;
        if let Some(orphan) = save_held(&target.broker, &me.user, &session).await? {
            revoke_orphan(target, orphan).await;
        }
        Ok(me)
    }
    .await;
    if kept.is_err() {
        discard(target, session).await;
    }
    kept
}

/// Revokes the refresh token of a session just signed in that is not kept
/// (the broker refused it, it is someone else's, the keyring would not
/// take it): nothing would ever use or revoke it, and it would stay live
/// at the provider for as long as it lasts.
async fn discard(target: &Target, session: Session) {
    if revoke_refresh_token(target, session).await == Some(false) {
        tracing::warn!("could not revoke the refresh token of a sign-in that was not kept");
    }
}

/// Saves `session` as `user`'s while holding the refresh lock (this
/// process's, and the file's), so that a refresh under way elsewhere does
/// not then write the session it had over this one. Returns the renewed
/// session this process held unsaved for `user`, which the new one
/// supersedes: the caller revokes its refresh token.
pub(crate) async fn save_held(
    broker: &str,
    user: &str,
    session: &Session,
) -> Result<Option<Session>, SessionError> {
    let _refreshing = REFRESHING.lock().await;
    let _held = refresh_lock_waiting().await;
    let (broker, user, session) = (broker.to_string(), user.to_string(), session.clone());
    blocking(move || {
        if let Err(err) = secrets::save(&broker, &user, &session) {
            // A save that reported failure may have written it
            // ([`landed`]): then it is kept, and must not be revoked.
            // A session without a refresh token (a pasted one) is known by
            // its access token.
            let stored = secrets::load(&broker, &user).ok().flatten();
            let written = match session.refresh_token.as_deref() {
                Some(token) => holds(&stored, token),
                None => stored.is_some_and(|s| s.access_token == session.access_token),
            };
            if !written {
                return Err(err);
            }
        }
        Ok(unsaved_memo()
            .remove(&account_key(&broker, &user))
            .map(|held| held.session))
    })
    .await
}

/// The refresh lock file, waited for as long as a refresh may take
/// ([`REFRESH_LOCK_WAIT`]); `None` without a config dir, once that wait
/// is over (a process stopped mid-refresh), or where no refresh ever made
/// the file (nothing is written for it: a refresh that makes it after
/// this looked finds the session changed when it would save, and keeps
/// out of the way).
async fn refresh_lock_waiting() -> Option<std::fs::File> {
    tokio::task::spawn_blocking(|| {
        let path = crate::config::Config::dir().ok()?.join(REFRESH_LOCK);
        if !path.exists() {
            return None;
        }
        crate::fs::lock(&path, REFRESH_LOCK_WAIT).ok().flatten()
    })
    .await
    .ok()
    .flatten()
}

/// Whom the broker takes `session` for.
async fn accepted(target: &Target, session: &Session) -> Result<Me, SessionError> {
    match backend::connect_to(target, &session.access_token, Hooks::default())?
        .me()
        .await
    {
        Ok(me) => Ok(me),
        Err(BackendError::Unauthenticated(reason)) => Err(SessionError::TokenRefused {
            broker: target.broker.clone(),
            reason,
        }),
        Err(err) => Err(err.into()),
    }
}

/// Held while a session is read and refreshed: two refreshes at once in
/// one process would spend the same refresh token twice, which a provider
/// that rotates them takes as theft and answers by ending the session.
static REFRESHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held from the moment a refresh token is sent to the provider until
/// what it answered is saved ([`renew`]): the part of a refresh that must
/// not be dropped midway.
static RENEWING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Renewed sessions the keyring would not take ([`renew`]), by broker and
/// user, each held for the rest of the process in place of the stored one
/// whose refresh token it spent: that token is never sent again (a
/// provider that rotates refresh tokens takes a reuse for theft and ends
/// the session), and the renewed session is saved again at each locked
/// look until the keyring takes it. What is still unsaved when the process
/// ends is told ([`unsaved`]). Other processes read the keyring and still
/// find the spent token.
static UNSAVED: std::sync::Mutex<BTreeMap<(String, String), Unsaved>> =
    std::sync::Mutex::new(BTreeMap::new());

struct Unsaved {
    /// The refresh token the keyring holds, spent by the renewal.
    spent: String,
    session: Session,
    /// Why the keyring refused it, as [`SecretsError`] words it: no secret.
    why: String,
}

fn unsaved_memo() -> std::sync::MutexGuard<'static, BTreeMap<(String, String), Unsaved>> {
    UNSAVED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn account_key(broker: &str, user: &str) -> (String, String) {
    (broker.to_string(), user.to_string())
}

/// `user`'s session at `broker` as this process knows it: the stored one,
/// or, while the keyring still holds the session a renewal spent, the
/// renewed one held unsaved. Changes nothing (see [`settled`] for that).
/// Blocks, as the keyring does.
fn session_of(broker: &str, user: &str) -> Result<Option<Session>, SecretsError> {
    let loaded = secrets::load(broker, user)?;
    let memo = unsaved_memo();
    Ok(match memo.get(&account_key(broker, user)) {
        Some(held) if !landed(&loaded, held) && holds(&loaded, &held.spent) => {
            Some(held.session.clone())
        }
        _ => loaded,
    })
}

/// Whether the keyring holds `held`'s own session after all: a save that
/// reported failure may have written it (a key written but not linked, a
/// file replaced whose directory did not sync, a call that timed out).
fn landed(stored: &Option<Session>, held: &Unsaved) -> bool {
    held.session
        .refresh_token
        .as_deref()
        .is_some_and(|token| holds(stored, token))
}

fn holds(stored: &Option<Session>, refresh_token: &str) -> bool {
    stored
        .as_ref()
        .is_some_and(|now| now.refresh_token.as_deref() == Some(refresh_token))
}

/// [`session_of`], with this process's refresh lock held: a renewed
/// session held unsaved is, when the keyring no longer holds the session
/// it renewed (signed out, or signed in afresh, since), forgotten and
/// returned second, for its refresh token to be revoked; otherwise, with
/// `save` (the refresh lock file held too, so that no other process saves
/// meanwhile), saved again, and forgotten once the keyring takes it.
fn settled(
    broker: &str,
    user: &str,
    save: bool,
) -> Result<(Option<Session>, Option<Session>), SecretsError> {
    let loaded = secrets::load(broker, user)?;
    let key = account_key(broker, user);
    let Some((landed, spent, session)) = unsaved_memo().get(&key).map(|held| {
        (
            landed(&loaded, held),
            held.spent.clone(),
            held.session.clone(),
        )
    }) else {
        return Ok((loaded, None));
    };
    if landed {
        unsaved_memo().remove(&key);
        return Ok((loaded, None));
    }
    if !holds(&loaded, &spent) {
        unsaved_memo().remove(&key);
        return Ok((loaded, Some(session)));
    }
    if !save {
        return Ok((Some(session), None));
    }
    let saved = secrets::save(broker, user, &session);
    let mut memo = unsaved_memo();
    match saved {
        Ok(()) => {
            memo.remove(&key);
        }
        Err(err) => {
            if let Some(held) = memo.get_mut(&key) {
                held.why = err.to_string();
            }
        }
    }
    Ok((Some(session), None))
}

/// Saves `session`, renewed with the refresh token `spent`, over the one
/// [`session_of`] just read, the refresh locks held; if the keyring will
/// not take it, holds it in this process ([`UNSAVED`]) over what the
/// keyring still holds.
fn keep(broker: &str, user: &str, spent: &str, session: Session) {
    let saved = secrets::save(broker, user, &session);
    let mut memo = unsaved_memo();
    let key = account_key(broker, user);
    let Err(err) = saved else {
        memo.remove(&key);
        return;
    };
    tracing::warn!(error = %err, "the renewed session could not be saved");
    // The refresh token in the keyring: this renewal's spent one, or the
    // one an earlier renewal spent whose session is still held unsaved.
    let in_keyring = memo
        .remove(&key)
        .map_or_else(|| spent.to_string(), |held| held.spent);
    memo.insert(
        key,
        Unsaved {
            spent: in_keyring,
            session,
            why: err.to_string(),
        },
    );
}

/// What to tell as the process ends, a line for each renewed session that
/// could still not be saved: the keyring holds the session it renewed,
/// whose refresh token a provider that rotates them no longer takes.
/// Nothing when the memo is busy (a save under way that hangs): the
/// process is ending, and not kept waiting for it.
pub fn unsaved() -> Vec<String> {
    let Ok(memo) = UNSAVED.try_lock() else {
        return Vec::new();
    };
    memo.iter()
        .map(|((broker, user), held)| {
            format!(
                "the renewed session of {user} at {broker} could not be saved to the keyring \
                 ({}); the keyring still holds the session it renewed, whose refresh token the \
                 sign-in provider may no longer take: the next command may ask you to sign in \
                 again",
                held.why
            )
        })
        .collect()
}

/// How long a process that is ending waits for a refresh under way
/// ([`settle`]): as long as the provider may take to answer, and a moment
/// to save what it answered.
pub const SETTLE_WAIT: std::time::Duration =
    sso::PROVIDER_TIMEOUT.saturating_add(std::time::Duration::from_secs(2));

/// How long [`settle`] waits before it tells the person why hoist has not
/// ended yet.
const SETTLE_QUIET: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits, up to [`SETTLE_WAIT`], for a refresh token sent to the provider
/// (by a command's background refresh, say) to be answered and saved, and
/// returns the lock that keeps another from being sent; `waiting` is
/// called once if that takes more than a second. Called as the process
/// ends: its runtime would drop the refresh midway, with the stored
/// refresh token spent at a provider that rotates them. A refresh still
/// waiting its turn, or still asking the broker where to refresh, has
/// spent nothing and is not waited for.
pub async fn settle(waiting: impl FnOnce()) -> Option<tokio::sync::MutexGuard<'static, ()>> {
    let renewing = RENEWING.lock();
    tokio::pin!(renewing);
    if let Ok(guard) = tokio::time::timeout(SETTLE_QUIET, &mut renewing).await {
        return Some(guard);
    }
    waiting();
    tokio::time::timeout(SETTLE_WAIT - SETTLE_QUIET, renewing)
        .await
        .ok()
}

/// The same across processes: the TUI and `reviews --watch` in another pane
/// wake for one refresh at the same moment. A file in the config dir,
/// empty; a process that cannot have it within [`REFRESH_LOCK_WAIT`] (one
/// stopped mid-refresh) refreshes anyway. That is longer than a refresh
/// may take: the broker's sign-in settings, the provider's discovery and
/// its token endpoint, 30 s each at most.
const REFRESH_LOCK: &str = "refresh.lock";

/// Who refreshes a session due for it.
enum Held {
    /// This process, holding the lock file (if there could be one).
    Refresh(Option<std::fs::File>),
    /// Another process, now; the session is still good meanwhile.
    Elsewhere,
}
const REFRESH_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The stored session, refreshed first if it ends within [`REFRESH_AHEAD`]
/// (and saved again, as providers may rotate refresh tokens).
pub async fn current(target: &Target) -> Result<Session, SessionError> {
    use_file_store_if_chosen(target)?;
    let refreshing = REFRESHING.lock().await;
    let not_signed_in = || SessionError::NotSignedIn {
        broker: target.broker.clone(),
        login: login_command(target),
    };
    let user = target.user.clone().ok_or_else(not_signed_in)?;
    // A token with nothing to renew it (one pasted, for an Entra profile)
    // is used to its end, not refused a minute before it.
    let due = |session: &Session| {
        let ahead = if session.refresh_token.is_some() {
            REFRESH_AHEAD
        } else {
            chrono::TimeDelta::zero()
        };
        session
            .expires_at
            .is_some_and(|at| at - chrono::Utc::now() <= ahead)
    };
    let load = |save: bool| {
        let (broker, who) = (target.broker.clone(), user.clone());
        async move {
            let (session, orphan) = blocking(move || settled(&broker, &who, save)).await?;
            if let Some(orphan) = orphan {
                revoke_orphan(target, orphan).await;
            }
            Ok::<_, SessionError>(session)
        }
    };
    let session = load(false).await?.ok_or_else(not_signed_in)?;
    if !due(&session) {
        return Ok(session);
    }
    // Another process refreshing it now: its token is good until its end,
    // so used as it is; past it, this one waits for that refresh. Read
    // again once the lock is had: that process may have spent the refresh
    // token this one read. Without a lock file (no config dir), refreshed.
    let valid = session
        .expires_at
        .is_some_and(|at| at - chrono::Utc::now() > chrono::TimeDelta::seconds(10));
    let held = blocking(move || {
        let Ok(dir) = crate::config::Config::dir() else {
            return Ok(Held::Refresh(None));
        };
        let path = dir.join(REFRESH_LOCK);
        Ok(match crate::fs::lock(&path, std::time::Duration::ZERO) {
            Ok(Some(file)) => Held::Refresh(Some(file)),
            Ok(None) if valid => Held::Elsewhere,
            Ok(None) => Held::Refresh(crate::fs::lock(&path, REFRESH_LOCK_WAIT).ok().flatten()),
            Err(_) => Held::Refresh(None),
        })
    })
    .await?;
    let held = match held {
        Held::Elsewhere => return Ok(session),
        Held::Refresh(file) => file,
    };
    let session = load(true).await?.ok_or_else(not_signed_in)?;
    if !due(&session) {
        return Ok(session);
    }
    let expired = |reason: String| SessionError::Expired {
        broker: target.broker.clone(),
        reason,
        login: sign_in_command(target),
    };
    let (Some(refresh_token), Some(issuer), Some(client_id)) = (
        session.refresh_token.clone(),
        session.issuer.clone(),
        session.client_id.clone(),
    ) else {
        return Err(expired("no refresh token".into()));
    };
    let provider = match &target.backend {
        BrokerKind::Hoistd => {
            let config = HoistdClient::auth_config(&target.broker).await?;
            let issuer = config
                .issuers
                .into_iter()
                .find(|i| i.issuer == issuer && i.client_id == client_id)
                .ok_or_else(|| expired("the broker no longer trusts that provider".into()))?;
            sso::discover(&issuer).await?
        }
        BrokerKind::Entra(tenant) => {
            if tenant.client_id != client_id {
                return Err(expired("the profile's client_id changed".into()));
            }
            crate::auth::entra::provider(tenant).await?
        }
    };
    // From the refresh on, done to the end though the caller stops
    // waiting (a profile switched, a watch ended), with both locks held: a
    // rotated refresh token dropped halfway would leave the stored one
    // spent, and a provider takes its reuse for theft.
    let target = target.clone();
    tokio::spawn(async move {
        let (_refreshing, _held) = (refreshing, held);
        let _renewing = RENEWING.lock().await;
        renew(&target, &user, provider, session, refresh_token).await
    })
    .await
    .map_err(|err| SessionError::Task(err.to_string()))?
}

/// Renews `read`, the session as [`current`] read it with the locks held,
/// with its `refresh_token`, and saves the renewal over it.
async fn renew(
    target: &Target,
    user: &str,
    provider: sso::Provider,
    read: Session,
    refresh_token: String,
) -> Result<Session, SessionError> {
    let not_signed_in = || SessionError::NotSignedIn {
        broker: target.broker.clone(),
        login: login_command(target),
    };
    let expired = |reason: String| SessionError::Expired {
        broker: target.broker.clone(),
        reason,
        login: sign_in_command(target),
    };
    let fresh = match provider.refresh(&refresh_token).await {
        Ok(fresh) => fresh,
        // The provider away is no ended session: try again, not sign in.
        Err(err @ SsoError::Unreachable { .. }) => return Err(SessionError::Sso(err)),
        // Not renewed, but the refresh token it handed back is kept in
        // place of the spent one, so that signing out can revoke it; as
        // after a renewal, held in this process if the keyring will not
        // take it, and revoked if the session it renewed is gone.
        Err(SsoError::RefreshedWithoutIdToken {
            rotated: Some(rotated),
            away,
        }) => {
            let (broker, user, spent) = (
                target.broker.clone(),
                user.to_string(),
                refresh_token.clone(),
            );
            let orphan = blocking(move || {
                let kept = match session_of(&broker, &user) {
                    Ok(Some(now)) if now.refresh_token.as_deref() == Some(spent.as_str()) => now,
                    Ok(_) => return Ok(Some(rotated)),
                    // Unreadable now (a keyring locked during the refresh),
                    // it held the session read a moment ago, under the
                    // same locks.
                    Err(err) => {
                        tracing::warn!(error = %err, "the renewed session's keyring entry could not be read");
                        read
                    }
                };
                let kept = Session {
                    refresh_token: Some(rotated.0),
                    ..kept
                };
                keep(&broker, &user, &spent, kept);
                Ok(None)
            })
            .await?;
            if let Some(orphan) = orphan
                && let Err(err) = provider.revoke(&orphan.0).await
            {
                tracing::warn!(error = %err, "could not revoke a refresh token no session keeps");
            }
            // Asked again, the provider was away: try again, not sign in.
            if let Some(away) = away {
                return Err(SessionError::Sso(*away));
            }
            return Err(expired(
                SsoError::RefreshedWithoutIdToken {
                    rotated: None,
                    away: None,
                }
                .to_string(),
            ));
        }
        Err(SsoError::RefreshedWithoutIdToken {
            rotated: None,
            away: Some(away),
        }) => return Err(SessionError::Sso(*away)),
        // A renewed session held unsaved whose refresh token the provider
        // refused is over: nothing is left to tell of it. On any other
        // failure (a proxy's answer, say) it is kept for the next try.
        Err(err @ SsoError::RefreshRefused(_)) => {
            let mut memo = unsaved_memo();
            let key = account_key(&target.broker, user);
            if memo
                .get(&key)
                .is_some_and(|held| held.session.refresh_token.as_ref() == Some(&refresh_token))
            {
                memo.remove(&key);
            }
            return Err(expired(err.to_string()));
        }
        Err(err) => return Err(expired(err.to_string())),
    };
    // Saved only over the session it renewed. Signed out meanwhile, or
    // signed in afresh (which the lock keeps out, unless its wait ran out):
    // the renewed session is not brought back, and its refresh token,
    // which nothing will hold, is revoked.
    let (broker, user, stored, spent) = (
        target.broker.clone(),
        user.to_string(),
        fresh.clone(),
        refresh_token.clone(),
    );
    // A keyring that will not take it leaves the renewed session in this
    // process alone ([`UNSAVED`]): the work goes on, and the spent refresh
    // token is not sent again.
    let now_stored = blocking(move || {
        // Unreadable now (a keyring locked during the refresh), it held
        // the session renewed a moment ago, under the same locks.
        let now_stored = match session_of(&broker, &user) {
            Ok(now_stored) => now_stored,
            Err(err) => {
                tracing::warn!(error = %err, "the renewed session's keyring entry could not be read");
                keep(&broker, &user, &spent, stored);
                return Ok(None);
            }
        };
        if now_stored
            .as_ref()
            .is_some_and(|now| now.refresh_token.as_deref() == Some(spent.as_str()))
        {
            keep(&broker, &user, &spent, stored);
            return Ok(None);
        }
        Ok(Some(now_stored))
    })
    .await?;
    let Some(now_stored) = now_stored else {
        return Ok(fresh);
    };
    // Not the one it spent, which a provider that does not rotate hands
    // back, and which the session now stored may hold.
    if let Some(token) = fresh
        .refresh_token
        .as_ref()
        .filter(|t| **t != refresh_token)
        && let Err(err) = provider.revoke(token).await
    {
        tracing::warn!(error = %err, "could not revoke a refresh token no session keeps");
    }
    now_stored.ok_or_else(not_signed_in)
}

/// The command that signs in to `target` again once a single sign-on
/// session has ended: the same provider, so no token to paste.
pub fn sign_in_command(target: &Target) -> String {
    target.command("login")
}

/// The command that signs in to `target` the first time: hoistd takes a static token
/// (single sign-on, where the broker offers it, is `hoist login` alike);
/// an Entra profile signs in only through its tenant.
pub fn login_command(target: &Target) -> String {
    match target.backend {
        BrokerKind::Entra(_) => target.command("login"),
        BrokerKind::Hoistd => target.command("login --with-token"),
    }
}

/// Checks `token` with the broker and stores it in the keyring for the user
/// the broker says it belongs to. Returns that user; the caller saves the
/// config with [`crate::config::Config::remember_login`].
pub async fn login_with_token(target: &Target, token: &str) -> Result<Me, SessionError> {
    let token = check_token(token)?;
    let mut session = Session::with_token(token);
    // A Graph token pasted for an Entra profile (from `az account
    // get-access-token`, say) ends within the hour, with nothing to renew
    // it: said so, and signed in again after, rather than kept as if it
    // lasted.
    if matches!(target.backend, BrokerKind::Entra(_)) {
        session.expires_at = sso::token_expiry(token);
    }
    store_if_accepted(target, session).await
}

/// What a sign-out did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedOut {
    /// A stored session was deleted.
    pub removed: bool,
    /// Its refresh token: `Some(true)` revoked at the provider,
    /// `Some(false)` not (the provider offers no revocation, as Entra does
    /// not, or could not be reached), `None` if it had none.
    pub revoked: Option<bool>,
    /// The session deleted was in a file other users could read: its
    /// tokens may have been copied, and its refresh token was not revoked
    /// (what the file says of its provider is not trusted).
    pub exposed: bool,
}

/// Deletes the stored session of `target.user`. A single sign-on session's
/// refresh token is revoked at the provider first, where it supports
/// revocation. Static tokens cannot be revoked from here: that is the
/// broker admin's job.
pub async fn logout(target: &Target) -> Result<SignedOut, SessionError> {
    use_file_store_if_chosen(target)?;
    let Some(user) = target.user.clone() else {
        return Ok(SignedOut {
            removed: false,
            revoked: None,
            exposed: false,
        });
    };
    // Held to the end: a refresh under way elsewhere finishes first, so
    // what is revoked and deleted is the session it saved, which it would
    // otherwise write back after the deletion.
    let _refreshing = REFRESHING.lock().await;
    let _held = refresh_lock_waiting().await;
    let (broker, who) = (target.broker.clone(), user.clone());
    // A session that cannot be read (garbled, or a file others could
    // read) has no refresh token to revoke, and is deleted all the same:
    // signing out is the way out of both.
    let mut exposed = false;
    let stored = match blocking(move || session_of(&broker, &who)).await {
        Ok(stored) => stored,
        Err(SessionError::Secrets(err @ SecretsError::Corrupt { .. })) => {
            tracing::warn!(error = %err, "the stored session cannot be read; deleting it");
            None
        }
        Err(SessionError::Secrets(SecretsError::ExposedFile { .. })) => {
            exposed = true;
            None
        }
        Err(err) => return Err(err),
    };
    // Best effort: signing out locally must work even when the provider is away.
    let revoked_token = stored.as_ref().and_then(|s| s.refresh_token.clone());
    let revoked = match stored {
        Some(session) => revoke_refresh_token(target, session).await,
        None => None,
    };
    let broker = target.broker.clone();
    let (removed, held) = blocking(move || {
        let removed = secrets::delete(&broker, &user)?;
        let held = unsaved_memo().remove(&account_key(&broker, &user));
        Ok((removed, held.map(|held| held.session)))
    })
    .await?;
    // Held unsaved for a session no longer stored (signed in afresh
    // elsewhere): not the one revoked above, and nothing else would.
    if let Some(held) = held.filter(|held| held.refresh_token != revoked_token) {
        revoke_orphan(target, held).await;
    }
    Ok(SignedOut {
        removed,
        revoked,
        exposed,
    })
}

/// Revokes `session`'s refresh token at the provider that issued it, if it
/// has one: whether the provider did (`None`: nothing to revoke).
async fn revoke_refresh_token(target: &Target, session: Session) -> Option<bool> {
    let Session {
        refresh_token: Some(token),
        issuer: Some(issuer),
        client_id: Some(client_id),
        ..
    } = session
    else {
        return None;
    };
    let provider = match &target.backend {
        BrokerKind::Hoistd => {
            let issuer = hoist_api::AuthIssuer {
                issuer,
                client_id,
                scopes: Vec::new(),
                flows: Vec::new(),
            };
            sso::discover(&issuer).await
        }
        BrokerKind::Entra(tenant) => crate::auth::entra::provider(tenant).await,
    };
    Some(match provider {
        Ok(provider) => match provider.revoke(&token).await {
            Ok(done) => done,
            Err(err) => {
                tracing::warn!(error = %err, "could not revoke the refresh token");
                false
            }
        },
        Err(_) => false,
    })
}

/// Revokes the refresh token of a renewed session held unsaved that no
/// session kept in the keyring leads to any more (signed out, or signed in
/// afresh, since): nothing would ever use or revoke it.
async fn revoke_orphan(target: &Target, orphan: Session) {
    if revoke_refresh_token(target, orphan).await == Some(false) {
        tracing::warn!("could not revoke the refresh token of a renewed session no longer kept");
    }
}

/// The backend for `target` with the stored session, refreshed if it is
/// about to end. Does not call the broker: a token the broker no longer
/// accepts shows up on the first call. A sign-in the broker asks for
/// midway (an Entra role's authentication context) is prompted for on
/// standard error.
pub async fn open(target: &Target) -> Result<Arc<dyn Backend>, SessionError> {
    let (backend, expires_at) = opened(target, Some(Arc::new(print_device_prompt))).await?;
    if let Some(expires_at) = expires_at {
        keep_fresh(target.clone(), Arc::downgrade(&backend), expires_at);
    }
    Ok(backend)
}

/// Keeps a command's single sign-on token fresh for as long as its backend
/// lives: a wait (`--wait`, `exec`, `reviews --watch`) may outlast the
/// token, and the broker ends an event stream when its token does, so a
/// reconnection, or the withdrawal of a request, would be refused. A
/// static token needs no care.
fn keep_fresh(
    target: Target,
    weak: std::sync::Weak<dyn Backend>,
    mut expires_at: chrono::DateTime<chrono::Utc>,
) {
    tokio::spawn(async move {
        loop {
            // `current` refreshes from REFRESH_AHEAD before the end: nothing
            // is read or refreshed before then, so a short command never is.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            sleep_until_wall(refresh_at(expires_at)).await;
            let Some(backend) = weak.upgrade() else {
                return;
            };
            match current(&target).await {
                Ok(session) => {
                    backend.set_token(&session.access_token);
                    match session.expires_at {
                        // Nothing renews it: looked at again at its end
                        // (`refresh_at` is REFRESH_AHEAD before the time
                        // given), for a session signed in since.
                        Some(at) if session.refresh_token.is_none() => {
                            expires_at = at + REFRESH_AHEAD
                        }
                        Some(at) => expires_at = at,
                        None => return,
                    }
                }
                // The session over (its refresh token refused, or signed
                // out): asked again only once a sign-in elsewhere has
                // stored another, never with the refused token again.
                Err(SessionError::Expired { .. } | SessionError::NotSignedIn { .. }) => {
                    drop(backend);
                    let over = stored_bearer(&target).await;
                    loop {
                        tokio::time::sleep(ENDED_SESSION_LOOK).await;
                        if weak.strong_count() == 0 {
                            return;
                        }
                        if stored_bearer(&target).await != over {
                            break;
                        }
                    }
                }
                // The provider away: try again shortly, while the token in
                // use lasts.
                Err(_) => {
                    expires_at = chrono::Utc::now() + REFRESH_AHEAD + chrono::TimeDelta::seconds(10)
                }
            }
        }
    });
}

/// How often a command whose session ended looks for one signed in since.
const ENDED_SESSION_LOOK: std::time::Duration = std::time::Duration::from_secs(10);

/// The bearer token of the session stored for `target` now, if any.
pub async fn stored_bearer(target: &Target) -> Option<String> {
    let (broker, user) = (target.broker.clone(), target.user.clone()?);
    blocking(move || session_of(&broker, &user))
        .await
        .ok()
        .flatten()
        .map(|session| session.access_token)
}

/// What a person is told for a device sign-in, on standard error.
pub fn print_device_prompt(prompt: &DevicePrompt) {
    let clean = |text: &str| crate::text::sanitize::line(text).into_owned();
    let mut text = format!(
        "hoist: sign in again: open {} and enter the code {}\n",
        clean(&prompt.verification_uri),
        clean(&prompt.user_code)
    );
    if let Some(complete) = &prompt.verification_uri_complete {
        text.push_str(&format!("hoist: (or open {})\n", clean(complete)));
    }
    tell(&text);
}

/// What a person is told to sign in with the device flow, on standard
/// error: where to go, the code, and how long it lasts.
pub fn print_sign_in(broker: &str, prompt: &DevicePrompt) {
    let clean = |text: &str| crate::text::sanitize::line(text).into_owned();
    let mut text = format!(
        "To sign in to {broker}, open {}\nand enter the code: {}\n",
        clean(&prompt.verification_uri),
        clean(&prompt.user_code)
    );
    if let Some(complete) = &prompt.verification_uri_complete {
        text.push_str(&format!("(or open {})\n", clean(complete)));
    }
    text.push_str(&format!(
        "Waiting for approval (the code expires in {} minutes)…\n",
        prompt.expires_in.as_secs() / 60
    ));
    tell(&text);
}

/// Writes to standard error, best effort: a sign-in asked for in the middle
/// of a command (`exec` refreshing its session) must not end it with a
/// panic because the terminal went away (`eprintln!` panics then).
fn tell(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// [`open`], telling the person about a midway sign-in through `prompt`
/// (standard error for the commands, a pop-up in the TUI); without one, a
/// role that asks for a stronger sign-in is refused with a message that
/// says where to get it.
pub async fn open_with(
    target: &Target,
    prompt: Option<crate::auth::entra::Prompt>,
) -> Result<Arc<dyn Backend>, SessionError> {
    Ok(opened(target, prompt).await?.0)
}

/// [`open_with`], with when the session's token ends (`None` for a static
/// token).
async fn opened(
    target: &Target,
    prompt: Option<crate::auth::entra::Prompt>,
) -> Result<(Arc<dyn Backend>, Option<chrono::DateTime<chrono::Utc>>), SessionError> {
    let session = current(target).await?;
    if session
        .expires_at
        .is_some_and(|at| at <= chrono::Utc::now())
    {
        return Err(SessionError::Expired {
            broker: target.broker.clone(),
            reason: "it has ended".into(),
            login: sign_in_command(target),
        });
    }
    let mut hooks = Hooks::default();
    if let (BrokerKind::Entra(tenant), Some(user), Some(prompt)) =
        (&target.backend, &target.user, prompt)
    {
        hooks.step_up = Some(crate::auth::entra::step_up(
            tenant.clone(),
            target.broker.clone(),
            user.clone(),
            prompt,
        ));
    }
    let backend = backend::connect_to(target, &session.access_token, hooks)?;
    Ok((backend, session.expires_at))
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
    /// A wait for a moment by the wall clock sleeps at most a slice at a
    /// time: a machine that slept past the moment notices soon after.
    #[test]
    fn waits_by_the_wall_clock_look_again_within_a_slice() {
        let now = chrono::Utc::now();
        let slice = super::wall_clock_slice(now + chrono::TimeDelta::hours(1), now);
        assert_eq!(slice, super::WALL_CLOCK_SLICE);
        let slice = super::wall_clock_slice(now + chrono::TimeDelta::seconds(5), now);
        assert_eq!(slice, std::time::Duration::from_secs(5));
        let slice = super::wall_clock_slice(now - chrono::TimeDelta::hours(1), now);
        assert!(slice.is_zero());
    }

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

    fn target(profile: &str, text: &str) -> Target {
        crate::config::Config::parse(std::path::Path::new("c.toml"), text)
            .unwrap()
            .resolve(None, Some(profile))
            .unwrap()
    }

    #[test]
    fn not_signed_in_names_the_login_command() {
        let hoistd = "default_profile = \"default\"\n\
                      [profiles.default]\nbroker = \"https://b.example\"\n\
                      [profiles.work]\nbroker = \"https://b.example\"\n";
        let err = SessionError::NotSignedIn {
            broker: "https://b.example".into(),
            login: login_command(&target("default", hoistd)),
        };
        assert_eq!(
            err.to_string(),
            "not signed in to https://b.example: run `hoist login --with-token`"
        );
        assert_eq!(
            login_command(&target("work", hoistd)),
            "hoist --profile work login --with-token"
        );
        // Entra signs in through the tenant only: no token to paste.
        let entra = "[profiles.tenant]\nkind = \"entra\"\ntenant = \"t.example\"\n\
                     client_id = \"c\"\n";
        assert_eq!(login_command(&target("tenant", entra)), "hoist login");
        let both = format!("{entra}[profiles.work]\nbroker = \"https://b.example\"\n");
        assert_eq!(
            login_command(&target("tenant", &both)),
            "hoist --profile tenant login"
        );
    }
}
