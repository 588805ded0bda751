//! Opening a profile of the config for the TUI: its backend and session,
//! signing in with the device flow where there is no session (as start-up
//! always did), and what the TUI takes from the config for that profile
//! (favourites, theme, bundles, the profile's name and kind). Start-up and
//! the profile picker (`P`) both open profiles here, so a profile opened
//! midway is exactly the one `hoist --profile NAME` would open.
//!
//! A device sign-in must show its URL and code to the person. Before the
//! TUI owns the terminal they go to standard error; once it runs, the
//! [`Prompter`] hands them to it as an action, and a pop-up shows them
//! while hoist waits: for a profile being opened, for the stronger
//! sign-in an Entra role's authentication context asks for midway, and for
//! the recent sign-in a hoistd role's step-up asks for (after which the
//! form is filed again).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::UnboundedSender;

use super::app::{Options, Renew};
use crate::app::state::{Level, ProfileChoice, SignInPrompt};
use crate::app::{Action, Screen};
use crate::auth::session::{self, Flow, SessionError};
use crate::auth::sso::{DevicePrompt, SsoError};
use crate::backend::Backend;
use crate::config::{Config, Target};
use crate::ui::theme::Theme;

/// A profile opened: its backend, signed in, and its options.
pub struct Opened {
    pub backend: Arc<dyn Backend>,
    pub options: Options,
}

/// Opens the named profile, as the picker asks; the error in words.
pub type Opener = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Opened, String>> + Send>> + Send + Sync,
>;

/// Where a device sign-in's URL and code go: standard error until the
/// TUI is attached, then the TUI's pop-up.
#[derive(Clone, Default)]
pub struct Prompter {
    app: Arc<Mutex<Option<UnboundedSender<Action>>>>,
}

impl Prompter {
    /// From now on, prompts go to the app behind `actions`.
    pub fn attach(&self, actions: UnboundedSender<Action>) {
        *self.app.lock().unwrap_or_else(|p| p.into_inner()) = Some(actions);
    }

    /// Tells the person to sign in: `profile` is the one being opened
    /// (`None` for a stronger sign-in midway), `why` says what for.
    pub fn tell(&self, profile: Option<&str>, why: &str, broker: &str, prompt: &DevicePrompt) {
        let app = self.app.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match app {
            Some(actions) => {
                let _ = actions.send(Action::SignInPrompt(SignInPrompt {
                    profile: profile.map(str::to_string),
                    why: why.to_string(),
                    url: prompt.verification_uri.clone(),
                    code: prompt.user_code.clone(),
                    complete: prompt.verification_uri_complete.clone(),
                    minutes: prompt.expires_in.as_secs() / 60,
                }));
            }
            None => session::print_sign_in(broker, prompt),
        }
        if let Some(complete) = &prompt.verification_uri_complete {
            crate::auth::sso::open_in_browser(complete);
        }
    }

    /// The prompt for a stronger sign-in an Entra role asks for midway.
    pub fn step_up(&self, broker: &str) -> crate::auth::entra::Prompt {
        let (prompter, broker) = (self.clone(), broker.to_string());
        Arc::new(move |prompt: &DevicePrompt| {
            prompter.tell(
                None,
                "This role asks for a stronger sign-in (its authentication context)",
                &broker,
                prompt,
            );
        })
    }
}

/// Signs out `old`, the session a profile had at the broker it named
/// before `--broker` pointed it elsewhere (as `hoist login` does), and
/// says how that went, for a banner.
async fn sign_out_replaced(old: &Target) -> (String, Level) {
    let who = crate::text::sanitize::line(old.user.as_deref().unwrap_or_default()).into_owned();
    match session::logout(old).await {
        Ok(session::SignedOut { removed: true, .. }) => (
            format!(
                "Signed out {who} at {}, where profile {} pointed before",
                old.broker, old.profile
            ),
            Level::Info,
        ),
        Ok(_) => (
            format!(
                "No session of {who} at {} was found to sign out",
                old.broker
            ),
            Level::Warning,
        ),
        Err(err) => (
            format!(
                "{who}'s session at {} could not be deleted: {err}; sign in there again \
                 (`{}`) and run `{}`",
                old.broker,
                old.command_naming_both("login"),
                old.command_naming_both("logout")
            ),
            Level::Warning,
        ),
    }
}

/// Signs out `previous`, the person a profile had before someone else
/// signed in there, and says how that went, for a banner: nothing when
/// there was no session left to delete.
async fn sign_out_previous(previous: &Target) -> Option<(String, Level)> {
    let who =
        crate::text::sanitize::line(previous.user.as_deref().unwrap_or_default()).into_owned();
    match session::logout(previous).await {
        Ok(session::SignedOut { removed: true, .. }) => Some((
            format!("Signed out {who}, whose session had ended, first"),
            Level::Info,
        )),
        Ok(_) => None,
        Err(err) => Some((
            format!("{who}'s ended session could not be deleted: {err}"),
            Level::Warning,
        )),
    }
}

/// Opens `profile` (or what `--broker`/`--profile` and the config pick):
/// its session, refreshed if due; a device sign-in if there is none, or it
/// ended; then the backend. The sign-in is remembered in the config.
pub async fn open(
    broker: Option<&str>,
    profile: Option<&str>,
    prompter: &Prompter,
) -> anyhow::Result<Opened> {
    let mut config = Config::load()?;
    let mut target = config.resolve(broker, profile)?;
    let step_up = prompter.step_up(&target.broker);
    let mut signed_out = None;
    let backend = match session::open_with(&target, Some(Arc::clone(&step_up))).await {
        Ok(backend) => backend,
        // First run, or the session ended: sign in, then open.
        Err(SessionError::NotSignedIn { .. } | SessionError::Expired { .. }) => {
            let replaced = config.replaced_by(&target);
            let why = format!("Sign in to profile {}", target.profile);
            let (profile, broker) = (target.profile.clone(), target.broker.clone());
            let signed_in = session::login_sso(
                &target,
                Flow::Device,
                session::Recency::Remembered,
                |prompt| prompter.tell(Some(&profile), &why, &broker, prompt),
                |_| {},
            )
            .await;
            let (me, _) = match signed_in {
                Ok(signed_in) => signed_in,
                // A broker of static tokens only (no single sign-on): say
                // which profile's token to give, short enough for a banner.
                Err(SessionError::Sso(SsoError::NotOffered)) => {
                    anyhow::bail!("not signed in; use `{}`", session::login_command(&target))
                }
                Err(err) => return Err(err.into()),
            };
            // Read again, as `hoist login` does: the sign-in took minutes,
            // and another command may have changed the file meanwhile.
            config = Config::load()?;
            // Someone else signed in where the profile had a person whose
            // session ended (or another command signed them in meanwhile):
            // that session goes, as `hoist login` ends it, rather than stay
            // where no command would look again.
            target.user = config.named_user(&target);
            let previous = target
                .user
                .clone()
                .filter(|user| *user != me.user && !config.shares_session(&target))
                .map(|user| Target {
                    user: Some(user),
                    ..target.clone()
                });
            config.remember_login(&target, &me.user);
            config.save()?;
            target.user = Some(me.user);
            let backend = session::open_with(&target, Some(step_up)).await?;
            if let Some(old) = replaced {
                signed_out = Some(sign_out_replaced(&old).await);
            }
            if let Some(previous) = previous
                && let Some(said) = sign_out_previous(&previous).await
            {
                signed_out = Some(match signed_out {
                    None => said,
                    // The warning, if either is one, sets the banner's level.
                    Some((text, level)) => (
                        format!("{text}; {}", said.0),
                        if level == Level::Warning {
                            level
                        } else {
                            said.1
                        },
                    ),
                });
            }
            backend
        }
        Err(err) => return Err(err.into()),
    };
    let mut options = options(&config, &target)?;
    options.notice = signed_out;
    // An Entra role asks through the backend's own hook (above); a hoistd
    // role's step-up is a refusal the TUI answers by signing in again.
    if target.backend == crate::config::Backend::Hoistd {
        options.sign_in_again = Some(sign_in_again(target, prompter.clone()));
    }
    Ok(Opened { backend, options })
}

/// Signs the person of `target` in again, freshly, with the device flow in
/// the TUI's pop-up; keeps the session and answers its token.
fn sign_in_again(target: Target, prompter: Prompter) -> super::worker::SignInAgain {
    Arc::new(move || {
        let (target, prompter) = (target.clone(), prompter.clone());
        Box::pin(async move {
            let broker = target.broker.clone();
            let session = session::sign_in_again(&target, |prompt| {
                prompter.tell(
                    None,
                    "This role asks for a recent sign-in: sign in again to file it",
                    &broker,
                    prompt,
                );
            })
            .await
            .map_err(|err| err.to_string())?;
            Ok(session.access_token)
        })
    })
}

/// An [`Opener`] that opens profiles by name, prompting through `prompter`.
pub fn opener(prompter: Prompter) -> Opener {
    Arc::new(move |name: String| {
        let prompter = prompter.clone();
        Box::pin(async move {
            open(None, Some(&name), &prompter)
                .await
                .map_err(|err| format!("{err:#}"))
        })
    })
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// A session found over: the bearer stored then, and why it was over.
type Ended = (Option<String>, String);

/// What the TUI takes from the config for `target`'s profile.
fn options(config: &Config, target: &Target) -> anyhow::Result<Options> {
    let theme = Theme::from_config(&config.theme, no_color()).map_err(anyhow::Error::msg)?;
    let renew_target = target.clone();
    // A session over (its refresh token refused, or signed out) is asked
    // again only once another is stored, never with the refused token.
    let ended: Arc<std::sync::Mutex<Option<Ended>>> = Arc::default();
    let renew: Renew = Arc::new(move || {
        let (target, ended) = (renew_target.clone(), Arc::clone(&ended));
        Box::pin(async move {
            let stored = session::stored_bearer(&target).await;
            let over = ended.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some((bearer, why)) = over
                && bearer == stored
            {
                return Err(why);
            }
            let renewed = session::current(&target).await;
            let mut ended = ended.lock().unwrap_or_else(|p| p.into_inner());
            match renewed {
                Ok(session) => {
                    *ended = None;
                    Ok(session)
                }
                Err(err @ (SessionError::Expired { .. } | SessionError::NotSignedIn { .. })) => {
                    *ended = Some((stored, err.to_string()));
                    Err(err.to_string())
                }
                Err(err) => Err(err.to_string()),
            }
        })
    });
    Ok(Options {
        theme,
        favourites: config.favourites(&target.profile).into_iter().collect(),
        ticket_url: config.ticket_url.clone(),
        save_favourites: Some(favourite_saver(target.clone())),
        screen: Screen::Roles,
        bundles: config
            .bundles
            .iter()
            .map(|(name, b)| (name.clone(), b.roles.clone()))
            .collect(),
        profile: Some(format!(
            "{} ({})",
            target.profile,
            target.backend.kind().as_str()
        )),
        profile_name: Some(target.profile.clone()),
        profiles: config
            .profile_kinds()
            .into_iter()
            .map(|(name, kind)| ProfileChoice {
                name,
                kind: kind.as_str().to_string(),
            })
            .collect(),
        renew: Some(renew),
        switch: None,
        prompter: None,
        notice: None,
        sign_in_again: None,
        hoist: Some(target.hoist()),
    })
}

/// Writes the favourites of one profile back to the config file.
fn favourite_saver(target: Target) -> super::Saver {
    Arc::new(move |favourites: Vec<String>| {
        let mut config = Config::load().map_err(|e| e.to_string())?;
        let profile = config
            .profiles
            .entry(target.profile.clone())
            .or_insert_with(|| crate::config::Profile {
                broker: target.broker.clone(),
                user: target.user.clone(),
                ..Default::default()
            });
        profile.favourites = favourites;
        config.save().map_err(|e| e.to_string())
    })
}
