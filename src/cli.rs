//! The command line: global options, subcommands, and what each one runs.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::auth::session;
use crate::commands::{self, OutputArgs};
use crate::config::{Config, Target};
use crate::ui::theme::Theme;
use crate::{demo, tui};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other failure
  2  usage error (bad arguments, unknown profile)
  3  denied by an approver
  4  timed out (--wait/--timeout ran out, or the request lapsed undecided)
  5  not signed in, or the session ended (run `hoist login`)
  6  broker unreachable
  7  refused by policy (not eligible, a rule of the role broken, not allowed)
hoist exec exits with the command's own status (128 + N if signal N ended it).";

/// Just-in-time privileged access from the terminal.
///
/// With no command, opens the terminal UI on the default profile.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Broker URL (https, or http on loopback); overrides the profile's.
    #[arg(long, global = true, env = "HOIST_BROKER")]
    pub broker: Option<String>,
    /// Profile from the config file to use.
    #[arg(long, global = true, env = "HOIST_PROFILE")]
    pub profile: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Try hoist: a real broker on a free loopback port with demo people and
    /// history, and the TUI signed in as one of them.
    Demo {
        /// Who to be: alice (engineer), bob or dave (approvers), carol (on call), erin (auditor).
        #[arg(long = "as", default_value = "alice")]
        user: String,
        /// Only run the demo broker and print how to reach it.
        #[arg(long)]
        serve_only: bool,
    },
    /// Sign in to the broker through its OpenID provider (device code by
    /// default) and keep the session in the OS keyring.
    Login {
        /// Read a static token from standard input instead (never from the command line).
        #[arg(long, conflicts_with = "browser")]
        with_token: bool,
        /// Sign in in a browser on this machine (authorization code + PKCE, loopback redirect).
        #[arg(long)]
        browser: bool,
        /// Keep the session in a plain file (mode 0600) when no keyring works. Not recommended.
        #[arg(long)]
        insecure_file_store: bool,
    },
    /// Sign out: revoke the session at the provider where possible, and delete it from the keyring.
    Logout,
    /// Who you are signed in as: identity, groups, broker, session expiry.
    Whoami,
    /// The roles you may request, with their terms.
    Roles {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Your requests, newest first (or, with --reviewable, those waiting for your decision).
    Requests {
        #[arg(long)]
        reviewable: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Your active grants (with --all, ended ones too).
    Grants {
        #[arg(long)]
        all: bool,
        /// Instead of yours: the active grants workloads (CI jobs, bots) hold on roles you
        /// approve, or on every role for an auditor.
        #[arg(long, conflicts_with = "all")]
        workloads: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The audit log: everything for auditors, your own events for everyone else.
    Audit {
        /// Only entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 500)]
        limit: usize,
        /// Only what people did and what was about them, or only workloads'.
        #[arg(long, value_enum)]
        actor_kind: Option<commands::ActorKind>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Ask for a role. With --wait, block until it is active, denied or lapses.
    Request {
        #[command(flatten)]
        args: commands::RequestArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// One request, by id.
    Status {
        id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Withdraw your pending request.
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// End a grant now: give its id or its role.
    Revoke {
        grant_or_role: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Approve a request waiting for you.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Deny a request waiting for you; the comment is the reason the requester sees.
    Deny {
        id: String,
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print the short-lived credential of your active grant for ROLE (for `$(...)`).
    Credential {
        role: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run a command with access to ROLE for exactly as long as it runs.
    ///
    /// Reuses your active grant for ROLE, or requests one and waits; if it gives up waiting
    /// (--timeout, a signal, an error) it cancels that request. The command gets
    /// HOIST_CREDENTIAL (a signed JWT), HOIST_CREDENTIAL_EXPIRES_AT, HOIST_ROLE,
    /// HOIST_GRANT_ID and HOIST_GRANT_EXPIRES_AT in its environment, and
    /// HOIST_CREDENTIAL_COMMAND: a command line that prints a fresh credential for the
    /// grant (`sh -c "$HOIST_CREDENTIAL_COMMAND"`), for a command that outlives one
    /// credential. Signals are forwarded; a grant exec requested is revoked when the
    /// command ends, however it ends.
    ///
    /// As a workload (a CI job, a bot): --workload-token-file PATH, HOIST_WORKLOAD_TOKEN or
    /// --workload-audience AUD (the CI system's ID token service) exchange the job's identity
    /// token for one task's credential, with no person's session; the command also gets the
    /// access at the role's target (PGHOST, PGUSER, ...), and the task's grant is revoked
    /// when it ends.
    Exec {
        #[command(flatten)]
        args: commands::ExecArgs,
    },
    /// Active grants in one short line for shell prompts and status bars
    /// (from a local cache; never waits on the network).
    Prompt,
    /// Incident tools.
    Incident {
        #[command(subcommand)]
        command: IncidentCommand,
    },
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Write the incident's access timeline from the audit log (Markdown for a
    /// postmortem appendix, or JSON).
    Export {
        reference: String,
        #[arg(long, value_enum, default_value = "markdown")]
        format: commands::incident::ExportFormat,
    },
}

pub async fn run(cli: Cli) -> ExitCode {
    let (broker, profile) = (cli.broker.as_deref(), cli.profile.as_deref());
    let result = match cli.command {
        None => open_tui(broker, profile).await,
        Some(Command::Demo { user, serve_only }) => run_demo(&user, serve_only).await,
        Some(Command::Login {
            with_token,
            browser,
            insecure_file_store,
        }) => {
            let how = if with_token {
                Login::Token
            } else if browser {
                Login::Sso(session::Flow::Browser)
            } else {
                Login::Sso(session::Flow::Device)
            };
            login(broker, profile, how, insecure_file_store).await
        }
        Some(Command::Logout) => logout(broker, profile).await,
        Some(Command::Whoami) => whoami(broker, profile).await,
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "hoist",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Some(Command::Man) => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map_err(Into::into),
        Some(Command::Exec { args }) => {
            let outcome = async {
                let target = Config::load()?.resolve(broker, profile)?;
                // A workload has no person's session: nothing is read from
                // the keyring.
                if commands::runs_as_workload(&args) {
                    return commands::exec_workload(&target.broker, &args).await;
                }
                let backend = session::open(&target).await?;
                commands::exec(&*backend, &args, &target).await
            };
            return match outcome.await {
                Ok(code) => ExitCode::from(code),
                Err(err) => fail(&err),
            };
        }
        Some(command) => scripted(broker, profile, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!(
        "hoist: {}",
        crate::text::sanitize::line(&format!("{err:#}"))
    );
    ExitCode::from(commands::exit_code(err))
}

/// The commands that talk to the broker with the stored session.
async fn scripted(
    broker: Option<&str>,
    profile: Option<&str>,
    command: Command,
) -> anyhow::Result<()> {
    let backend = commands::connect(broker, profile).await?;
    let backend = &*backend;
    match command {
        Command::Roles { output } => commands::roles(backend, output.format()).await,
        Command::Requests { reviewable, output } => {
            commands::requests(backend, reviewable, output.format()).await
        }
        Command::Grants {
            all,
            workloads,
            output,
        } => commands::grants(backend, all, workloads, output.format()).await,
        Command::Audit {
            after,
            limit,
            actor_kind,
            output,
        } => commands::audit(backend, after, limit, actor_kind, output.format()).await,
        Command::Request { args, output } => {
            let bundle = match &args.bundle {
                Some(name) => Some(bundle_roles(name)?),
                None => None,
            };
            commands::request(backend, &args, bundle, output.format()).await
        }
        Command::Incident {
            command: IncidentCommand::Export { reference, format },
        } => commands::incident::export(backend, &reference, format).await,
        Command::Status { id, output } => commands::status(backend, &id, output.format()).await,
        Command::Cancel { id, reason, output } => {
            commands::cancel(backend, &id, reason, output.format()).await
        }
        Command::Revoke {
            grant_or_role,
            reason,
            output,
        } => commands::revoke(backend, &grant_or_role, reason, output.format()).await,
        Command::Approve {
            id,
            comment,
            output,
        } => commands::approve(backend, &id, comment, output.format()).await,
        Command::Deny {
            id,
            comment,
            output,
        } => commands::deny(backend, &id, comment, output.format()).await,
        Command::Credential { role, output } => {
            commands::credential(backend, &role, output.format()).await
        }
        _ => unreachable!("handled in run"),
    }
}

/// The roles of a named bundle from the config.
fn bundle_roles(name: &str) -> anyhow::Result<Vec<String>> {
    let config = Config::load()?;
    match config.bundles.get(name) {
        Some(bundle) if !bundle.roles.is_empty() => Ok(bundle.roles.clone()),
        Some(_) => Err(commands::Ended::Usage(format!("bundle `{name}` has no roles")).into()),
        None => {
            let known: Vec<&str> = config.bundles.keys().map(String::as_str).collect();
            Err(commands::Ended::Usage(format!(
                "no bundle `{name}` in the config (known: {})",
                known.join(", ")
            ))
            .into())
        }
    }
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

fn need_terminal() -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        anyhow::bail!("the terminal UI needs a terminal on standard input and output");
    }
    Ok(())
}

async fn open_tui(broker: Option<&str>, profile: Option<&str>) -> anyhow::Result<()> {
    need_terminal()?;
    let mut config = Config::load()?;
    let mut target = config.resolve(broker, profile)?;
    // The TUI owns the terminal: no sign-in prompt may be printed midway.
    let backend = match session::open_with(&target, None).await {
        Ok(backend) => backend,
        // First run, or the session ended: sign in, then open.
        Err(session::SessionError::NotSignedIn { .. } | session::SessionError::Expired { .. }) => {
            let (me, _) = sign_in(&target, session::Flow::Device).await?;
            config.remember_login(&target, &me.user);
            config.save()?;
            target.user = Some(me.user);
            session::open_with(&target, None).await?
        }
        Err(err) => return Err(err.into()),
    };
    let theme = Theme::from_config(&config.theme, no_color()).map_err(anyhow::Error::msg)?;
    let favourites = config.favourites(&target.profile).into_iter().collect();
    let renew_target = target.clone();
    let profile_label = format!("{} ({})", target.profile, target.backend.kind().as_str());
    let options = tui::Options {
        theme,
        favourites,
        ticket_url: config.ticket_url.clone(),
        save_favourites: Some(favourite_saver(target)),
        screen: crate::app::Screen::Roles,
        bundles: config
            .bundles
            .iter()
            .map(|(name, b)| (name.clone(), b.roles.clone()))
            .collect(),
        profile: Some(profile_label),
        renew: Some(Arc::new(move || {
            let target = renew_target.clone();
            Box::pin(async move { session::current(&target).await.map_err(|e| e.to_string()) })
        })),
    };
    tui::run(backend, options).await
}

/// Runs a single sign-on flow in this terminal, telling the person what to do.
async fn sign_in(
    target: &Target,
    flow: session::Flow,
) -> anyhow::Result<(hoist_api::Me, crate::auth::secrets::Session)> {
    let on_device = |prompt: &crate::auth::sso::DevicePrompt| {
        eprintln!(
            "To sign in to {}, open {}",
            target.broker,
            crate::text::sanitize::line(&prompt.verification_uri)
        );
        eprintln!(
            "and enter the code: {}",
            crate::text::sanitize::line(&prompt.user_code)
        );
        if let Some(complete) = &prompt.verification_uri_complete {
            eprintln!("(or open {})", crate::text::sanitize::line(complete));
            open_browser(complete);
        }
        eprintln!(
            "Waiting for approval (the code expires in {} minutes)…",
            prompt.expires_in.as_secs() / 60
        );
    };
    let on_browser = |url: &str| {
        eprintln!("Opening your browser to sign in. If it does not open, visit:");
        eprintln!("{}", crate::text::sanitize::line(url));
        open_browser(url);
    };
    Ok(session::login_sso(target, flow, on_device, on_browser).await?)
}

/// Opens a URL in the browser where there is one to open; otherwise the
/// printed URL is all there is (e.g. over SSH).
fn open_browser(url: &str) {
    let graphical = cfg!(any(target_os = "macos", target_os = "windows"))
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if graphical && std::env::var_os("HOIST_NO_BROWSER").is_none() {
        let _ = open::that_detached(url);
    }
}

/// Writes the favourites of one profile back to the config file.
fn favourite_saver(target: Target) -> crate::tui::worker::Saver {
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

enum Login {
    Token,
    Sso(session::Flow),
}

async fn login(
    broker: Option<&str>,
    profile: Option<&str>,
    how: Login,
    insecure_file_store: bool,
) -> anyhow::Result<()> {
    let mut config = Config::load()?;
    let target = config.resolve(broker, profile)?;
    let file_store = insecure_file_store || target.insecure_file_store;
    if file_store {
        crate::auth::secrets::init_file_store(&crate::config::sessions_dir()?)?;
    }
    let me = match how {
        Login::Token => {
            let token = session::read_token_from_stdin(std::io::stdin().lock())?;
            session::login_with_token(&target, &token).await?
        }
        Login::Sso(flow) => sign_in(&target, flow).await?.0,
    };
    config.remember_login(&target, &me.user);
    // Remembered, so that every later command of this profile finds the
    // session where it was put (and `logout` deletes the file).
    config.set_insecure_file_store(&target, file_store);
    config.save()?;
    eprintln!(
        "Signed in to {} as {} ({}).",
        target.broker,
        crate::text::sanitize::line(&me.user),
        crate::text::sanitize::line(&me.display_name)
    );
    if let Some(warning) = crate::auth::secrets::warning() {
        eprintln!("Warning: {warning}");
    }
    Ok(())
}

async fn whoami(broker: Option<&str>, profile: Option<&str>) -> anyhow::Result<()> {
    let config = Config::load()?;
    let target = config.resolve(broker, profile)?;
    let current = session::current(&target).await?;
    let me = crate::backend::connect_to(&target, &current.access_token, Default::default())?
        .me()
        .await?;
    let clean = |text: &str| crate::text::sanitize::line(text).into_owned();
    println!(
        "user:     {} ({})",
        clean(&me.user),
        clean(&me.display_name)
    );
    let groups: Vec<String> = me.groups.iter().map(|g| clean(g)).collect();
    println!("groups:   {}", groups.join(", "));
    match &target.backend {
        crate::config::Backend::Hoistd => println!("broker:   {}", target.broker),
        crate::config::Backend::Entra(tenant) => {
            println!(
                "broker:   Entra PIM, tenant {} via {}",
                tenant.tenant, tenant.graph
            )
        }
    }
    println!("profile:  {}", target.profile);
    match (current.expires_at, &current.issuer) {
        (Some(at), Some(issuer)) => {
            let local = at
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %Z");
            println!("session:  single sign-on via {issuer}, token valid until {local}");
        }
        _ => println!("session:  static token (does not expire by itself)"),
    }
    Ok(())
}

async fn logout(broker: Option<&str>, profile: Option<&str>) -> anyhow::Result<()> {
    let mut config = Config::load()?;
    let target = config.resolve(broker, profile)?;
    let removed = session::logout(&target).await?;
    config.forget_login(&target);
    // The opt-in ends with the session it was for: the next sign-in keeps
    // its token in a file only if asked to again.
    config.set_insecure_file_store(&target, false);
    config.save()?;
    if removed && target.insecure_file_store {
        eprintln!(
            "Signed out of {}; the session file is deleted.",
            target.broker
        );
    } else if removed {
        eprintln!("Signed out of {}.", target.broker);
    } else {
        eprintln!("No session for {} was stored.", target.broker);
    }
    Ok(())
}

async fn run_demo(user: &str, serve_only: bool) -> anyhow::Result<()> {
    let demo = demo::Demo::start().await?;
    if serve_only {
        println!("hoist demo broker at {}", demo.url());
        println!("tokens: demo-alice demo-bob demo-carol demo-dave demo-erin");
        println!(
            "try: curl -H 'Authorization: Bearer demo-alice' {}/v1/roles",
            demo.url()
        );
        println!("Ctrl-C stops it.");
        tokio::signal::ctrl_c().await?;
        demo.stop().await;
        return Ok(());
    }
    need_terminal()?;
    let backend = demo.client(user).await?;
    let mut approvers = demo.start_approvers(user);
    let options = tui::Options {
        theme: Theme::from_config(&Default::default(), no_color()).map_err(anyhow::Error::msg)?,
        ticket_url: Some("https://tracker.example/browse/{ticket}".into()),
        ..tui::Options::default()
    };
    let result = tui::run(backend, options).await;
    approvers.abort_all();
    demo.stop().await;
    result
}
