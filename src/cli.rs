//! The command line: global options, subcommands, and what each one runs.

use std::io::IsTerminal;
use std::process::ExitCode;

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
  5  not signed in, the session ended, or a sign-in too old for the role (run `hoist login`)
  6  try again: the broker or the identity provider unreachable, or busy
  7  refused by policy (not eligible, a rule of the role broken, not allowed)
hoist exec exits with the command's own status, hoist ssh with ssh's (255: ssh could not
connect). A command that SIGINT, SIGTERM or SIGHUP stops, or whose CMD one ends, ends by that
signal after cleaning up (a shell shows 128 + N; Ctrl-C is 2), so a loop stops; SIGQUIT exits
131 (no core dump: it would hold secrets).";

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
        /// Write what the demo's broker does (its log, at the level
        /// `HOIST_LOG` names, info by default) to this file.
        #[arg(long, value_name = "FILE")]
        log: Option<std::path::PathBuf>,
    },
    /// Sign in to the broker through its OpenID provider (device code by
    /// default) and keep the session in the OS keyring.
    Login {
        /// Read a static token from standard input instead (never from the command line);
        /// at a terminal it is asked for and not shown.
        #[arg(long, conflicts_with = "browser")]
        with_token: bool,
        /// Sign in in a browser on this machine (authorization code + PKCE, loopback redirect).
        #[arg(long)]
        browser: bool,
        /// Have the provider make you sign in now, even if it remembers you
        /// (`max_age=0`, `prompt=login`): a role with a step-up needs a recent sign-in.
        #[arg(long, conflicts_with = "with_token")]
        fresh: bool,
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
    /// The requests that wait for your decision, one tab-separated line each
    /// (id, tier, requester, role, ticket, justification); with --watch, each
    /// new one as it lands in your queue, for a tmux pane or a notifier script.
    Reviews {
        #[arg(long)]
        watch: bool,
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
    ///
    /// For a role at a target, `--format env` prints `export` lines with the
    /// access's variables (PG* for PostgreSQL) for `eval`, and `--format uri`
    /// its URI, password included, for a program that reads it from its
    /// environment (`DATABASE_URL="$(hoist credential prod-db-admin --format uri)"`;
    /// for psql, `hoist exec prod-db-admin -- psql` keeps it out of argv). Until
    /// the access is live it exits 7 naming its state, or with --wait waits.
    ///
    /// For a role at an ssh target it prints an OpenSSH certificate for your key,
    /// valid for the grant's window: the key of --public-key, else the ssh-agent's
    /// first key, else ~/.ssh/id_ed25519.pub. --write-certificate also writes it
    /// as <key>-cert.pub beside the key, where ssh finds it; --json shows its
    /// principals, key id and validity.
    Credential {
        /// The role, or a grant id.
        role: String,
        /// What to print (default: the certificate for an ssh grant, else the token).
        #[arg(long, value_enum)]
        format: Option<commands::CredentialFormat>,
        /// Wait for the access at the role's target to become live.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (exits 4).
        #[arg(long, requires = "wait")]
        timeout: Option<String>,
        /// The public key to certify, for an ssh grant.
        #[arg(long, value_name = "FILE.pub")]
        public_key: Option<std::path::PathBuf>,
        /// Also write the certificate as <key>-cert.pub beside the key (0644;
        /// only a certificate already there is replaced).
        #[arg(long)]
        write_certificate: bool,
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
    /// credential. For a role at a target, exec waits (up to --timeout) for the access
    /// to be live, and the command also gets the access's variables: PGHOST, PGPORT,
    /// PGDATABASE, PGUSER, PGPASSWORD and PGSSLMODE for PostgreSQL, so `hoist exec
    /// prod-db-admin -- psql` just works. Signals are forwarded; a grant exec
    /// requested is revoked when the command ends, however it ends.
    ///
    /// As a workload (a CI job, a bot): --workload-token-file PATH, HOIST_WORKLOAD_TOKEN or
    /// --workload-audience AUD (the CI system's ID token service) exchange the job's identity
    /// token for one task's credential, with no person's session; the command also gets the
    /// access at the role's target, and the task's grant is revoked when it ends.
    Exec {
        #[command(flatten)]
        args: commands::ExecArgs,
    },
    /// Log in to a host with an SSH certificate for a grant's window: reuses an active
    /// grant on ROLE or requests one (--reason) and waits, has the broker certify a key
    /// (--key FILE.pub, the ssh-agent's first key, ~/.ssh/id_ed25519.pub, or an ephemeral
    /// key kept only in an agent), and runs ssh with it. The certificate names the role's
    /// principals and ends with the grant; the grant is kept when ssh ends.
    Ssh {
        #[command(flatten)]
        args: commands::SshArgs,
    },
    /// Active grants in one short line for shell prompts and status bars
    /// (from a local cache; never waits on the network).
    Prompt,
    /// Incident tools.
    Incident {
        #[command(subcommand)]
        command: IncidentCommand,
    },
    /// Tools for reporting how hoist and a broker get on.
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
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

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Run a hoist command on an Entra profile and keep its exchanges with
    /// Microsoft Graph, scrubbed (tokens, codes, ids, user names, e-mail
    /// addresses, display names, free text), in a file only you can read:
    /// `hoist debug record --out pim.json -- --profile entra roles`.
    Record {
        /// Where the recording goes (written with mode 0600).
        #[arg(long)]
        out: std::path::PathBuf,
        /// The hoist command to run and record, after `--`.
        #[arg(last = true, required = true, value_name = "HOIST ARGS")]
        args: Vec<String>,
    },
}

/// Ends the runtime a command ran on: a session refresh still under way
/// is finished and saved first ([`session::settle`]), then a read still
/// blocked (a token file that is a pipe nobody writes to, left behind by a
/// signal) gets 2 s before hoist ends regardless. A renewed session the
/// keyring would not take is told last ([`session::unsaved`]).
pub fn shut_down(runtime: tokio::runtime::Runtime) {
    let _settled = runtime.block_on(session::settle(|| {
        commands::say(&format!(
            "saving the session a refresh renews: waiting for the sign-in provider's answer \
             ({} s at most)",
            session::SETTLE_WAIT.as_secs()
        ));
    }));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    for unsaved in session::unsaved() {
        commands::say(&format!("warning: {unsaved}"));
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    let (broker, profile) = (cli.broker.as_deref(), cli.profile.as_deref());
    let result = match cli.command {
        None => open_tui(broker, profile).await,
        Some(Command::Demo {
            user,
            serve_only,
            log,
        }) => run_demo(&user, serve_only, log.as_deref()).await,
        Some(Command::Login {
            with_token,
            browser,
            fresh,
            insecure_file_store,
        }) => {
            let recency = if fresh {
                session::Recency::Fresh
            } else {
                session::Recency::Remembered
            };
            let how = if with_token {
                Login::Token
            } else if browser {
                Login::Sso(session::Flow::Browser, recency)
            } else {
                Login::Sso(session::Flow::Device, recency)
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
        Some(Command::Debug {
            command: DebugCommand::Record { out, args },
        }) => {
            return match record(&out, args, broker, profile).await {
                Ok(code) => code,
                Err(err) => fail(&err),
            };
        }
        Some(Command::Exec { args }) => {
            let outcome = async {
                let target = Config::load()?.resolve(broker, profile)?;
                commands::talking_to(&target);
                // A workload has no person's session: nothing is read from
                // the keyring.
                if commands::runs_as_workload(&args) {
                    // An Entra profile's broker is Microsoft's sign-in
                    // service: the job's identity token is not for it.
                    if !matches!(target.backend, crate::config::Backend::Hoistd) {
                        return Err(commands::Ended::Usage(format!(
                            "profile `{}` is a Microsoft Entra tenant, which takes no workload identity token; \
                             run `hoist exec` as a workload against a hoistd broker (--broker or a \
                             hoistd profile)",
                            target.profile
                        ))
                        .into());
                    }
                    return commands::exec_workload(&target.broker, &args).await;
                }
                let backend = session::open(&target).await?;
                commands::exec(&*backend, &args, &target).await
            };
            return match outcome.await {
                Ok(code) => ExitCode::from(code),
                Err(err) => fail(&step_up_explained(err, broker, profile)),
            };
        }
        Some(Command::Ssh { args }) => {
            let outcome = async {
                let target = Config::load()?.resolve(broker, profile)?;
                commands::talking_to(&target);
                let backend = session::open(&target).await?;
                commands::ssh(&*backend, &args).await
            };
            return match outcome.await {
                Ok(code) => ExitCode::from(code),
                Err(err) => fail(&step_up_explained(err, broker, profile)),
            };
        }
        Some(command) => scripted(broker, profile, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&step_up_explained(err, broker, profile)),
    }
}

/// A refusal for a sign-in too old for the role (its step-up) says which
/// command signs in afresh: a plain `hoist login` may be signed in from the
/// provider's remembered session, as old as the one refused.
fn step_up_explained(
    err: anyhow::Error,
    broker: Option<&str>,
    profile: Option<&str>,
) -> anyhow::Error {
    let step_up = matches!(
        commands::refusal(&err),
        Some(crate::backend::BackendError::Refused {
            code: hoist_api::ErrorCode::StepUpRequired,
            ..
        })
    );
    if !step_up {
        return err;
    }
    let command = Config::load()
        .ok()
        .and_then(|config| config.resolve(broker, profile).ok())
        .map(|target| session::sign_in_command(&target))
        .unwrap_or_else(|| "hoist login".to_string());
    err.context(format!("sign in again with `{command} --fresh`"))
}

fn fail(err: &anyhow::Error) -> ExitCode {
    use std::io::Write;
    if commands::reader_gone(err) {
        return ExitCode::SUCCESS;
    }
    // Not eprintln: when the terminal has gone (closed under the TUI) the
    // print fails, and a failed eprintln panics instead of exiting.
    let _ = writeln!(
        std::io::stderr(),
        "hoist: {}",
        crate::text::sanitize::line(&format!("{err:#}"))
    );
    // The last word: hoist ends by the signal that stopped it, if one did.
    if let Some(signal) = commands::stopped_by(err) {
        commands::signals::status_of(signal);
    }
    ExitCode::from(commands::exit_code(err))
}

/// `hoist debug record`: runs the command given after `--` with every
/// Graph exchange recorded, then writes them scrubbed and says what was
/// scrubbed. The command's own exit code is this one's.
async fn record(
    out: &std::path::Path,
    args: Vec<String>,
    broker: Option<&str>,
    profile: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use crate::backend::entra::record;
    let mut inner = Cli::try_parse_from(std::iter::once("hoist".to_string()).chain(args))
        .map_err(|err| commands::Ended::Usage(format!("the command to record: {err}")))?;
    if matches!(inner.command, Some(Command::Debug { .. })) {
        return Err(commands::Ended::Usage("a recording cannot record a recording".into()).into());
    }
    if inner.broker.is_none() && inner.profile.is_none() {
        inner.broker = broker.map(str::to_string);
        inner.profile = profile.map(str::to_string);
    }
    let target = Config::load()?.resolve(inner.broker.as_deref(), inner.profile.as_deref())?;
    if !matches!(target.backend, crate::config::Backend::Entra(_)) {
        return Err(commands::Ended::Usage(format!(
            "hoist debug record records exchanges with Microsoft Graph, and profile `{}` is \
             hoistd's (whose API is its own /openapi.json): name an Entra profile",
            target.profile
        ))
        .into());
    }
    let recording = record::Recording::default();
    record::install(&recording);
    let code = Box::pin(run(inner)).await;
    let (document, scrubbed) = recording.scrubbed();
    let text = serde_json::to_string_pretty(&document)?;
    crate::fs::write_private(out, format!("{text}\n").as_bytes())
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", out.display()))?;
    eprintln!(
        "hoist: recorded {} exchanges with Microsoft Graph in {} (readable only by you)",
        recording.len(),
        out.display()
    );
    eprintln!("hoist: scrubbed {}", scrubbed.summary());
    eprintln!(
        "hoist: read it before you share it: scrubbing goes by field names and shapes, and \
         a text Graph sent may still say more than you want"
    );
    Ok(code)
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
        Command::Reviews { watch, output } => {
            commands::reviews(backend, watch, output.format()).await
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
        Command::Credential {
            role,
            format,
            wait,
            timeout,
            public_key,
            write_certificate,
            output,
        } => {
            let timeout = commands::timeout(timeout.as_deref())?;
            let args = commands::CredentialArgs {
                role: &role,
                format,
                output: output.format(),
                wait: wait.then_some(timeout),
                public_key: public_key.as_deref(),
                write_certificate,
            };
            commands::credential(backend, args).await
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
    // Sign-in prompts go to standard error until the TUI takes the
    // terminal, then to its pop-up.
    let prompter = tui::profiles::Prompter::default();
    let opened = tui::profiles::open(broker, profile, &prompter).await?;
    let options = tui::Options {
        switch: Some(tui::profiles::opener(prompter.clone())),
        prompter: Some(prompter),
        ..opened.options
    };
    tui::run(opened.backend, options).await
}

/// Runs a single sign-on flow in this terminal, telling the person what to do.
async fn sign_in(
    target: &Target,
    flow: session::Flow,
    recency: session::Recency,
) -> anyhow::Result<(hoist_api::Me, crate::auth::secrets::Session)> {
    let on_device = |prompt: &crate::auth::sso::DevicePrompt| {
        session::print_sign_in(&target.broker, prompt);
        if let Some(complete) = &prompt.verification_uri_complete {
            crate::auth::sso::open_in_browser(complete);
        }
    };
    let on_browser = |url: &str| {
        eprintln!("Opening your browser to sign in. If it does not open, visit:");
        eprintln!("{}", crate::text::sanitize::line(url));
        crate::auth::sso::open_in_browser(url);
    };
    Ok(session::login_sso(target, flow, recency, on_device, on_browser).await?)
}

enum Login {
    Token,
    Sso(session::Flow, session::Recency),
}

async fn login(
    broker: Option<&str>,
    profile: Option<&str>,
    how: Login,
    insecure_file_store: bool,
) -> anyhow::Result<()> {
    let config = Config::load()?;
    let mut target = config.resolve(broker, profile)?;
    // A profile pointed at another broker: whoever was signed in to it
    // there is signed out, rather than left in the keyring (or a file)
    // where no command of this profile would look again (not a session
    // another profile still signs in with).
    let replaced = config.replaced_by(&target);
    // The profile's choice of a plain file stands at its new broker too
    // (`resolve` keeps it), and its old session is found where it is.
    let file_store = insecure_file_store || target.insecure_file_store;
    target.insecure_file_store = file_store;
    if file_store {
        crate::auth::secrets::init_file_store(&crate::config::sessions_dir()?)?;
    } else {
        // No keyring to keep the session: said before the provider's
        // sign-in (a browser, a code, MFA) is asked for, not after, with
        // its refresh token thrown away.
        crate::auth::secrets::init()?;
    }
    let me = match how {
        Login::Token => {
            let token = if std::io::stdin().is_terminal() {
                // Typed or pasted: asked for, and not shown (a token read to
                // the end of a terminal's input waited for ^D in silence,
                // with the token echoed into the scrollback).
                let typed = rpassword::prompt_password(
                    "Paste the token (it is not shown), then press Enter: ",
                )
                .map_err(|err| session::SessionError::Stdin(err.to_string()))?;
                session::read_token_from_stdin(typed.as_bytes())?
            } else {
                session::read_token_from_stdin(std::io::stdin().lock())?
            };
            session::login_with_token(&target, &token).await?
        }
        Login::Sso(flow, recency) => match sign_in(&target, flow, recency).await {
            Ok((me, _)) => me,
            Err(err)
                if matches!(
                    err.downcast_ref::<session::SessionError>(),
                    Some(session::SessionError::Sso(
                        crate::auth::sso::SsoError::NotOffered
                    ))
                ) =>
            {
                return Err(commands::Ended::Usage(format!(
                    "{} offers no single sign-on: sign in with a token it issued, `{}`",
                    target.broker,
                    session::login_command(&target)
                ))
                .into());
            }
            Err(err) => return Err(err),
        },
    };
    // Read again: a sign-in can take minutes, and a command run meanwhile
    // (a sign-in to another profile, a sign-out) may have changed the
    // file, which saving the copy read before would undo.
    let mut config = Config::load()?;
    target.user = config.named_user(&target);
    // Someone else was signed in here: their session ends, rather than stay
    // in the keyring (or a file) where no command would look for it again.
    // Once the profile names the new person: a config that cannot be saved
    // leaves the one before signed in, as it was.
    let previous = target
        .user
        .clone()
        .filter(|user| *user != me.user && !config.shares_session(&target));
    config.remember_login(&target, &me.user);
    // Remembered, so that every later command of this profile finds the
    // session where it was put (and `logout` deletes the file).
    config.set_insecure_file_store(&target, file_store);
    config.save()?;
    if let Some(old) = replaced {
        let who = crate::text::sanitize::line(old.user.as_deref().unwrap_or_default());
        match session::logout(&old).await {
            Ok(signed_out @ session::SignedOut { removed: true, .. }) => {
                exposed_warning(&signed_out);
                eprintln!("Signed out {who} at {} first.", old.broker)
            }
            Ok(_) => eprintln!(
                "Warning: no session of {who} at {} was found to sign out; if one is kept \
                 elsewhere (the keyring, or a file), sign in there again and run `hoist logout`",
                old.broker
            ),
            Err(err) => eprintln!(
                "Warning: the session of {who} at {} could not be deleted: {err}; sign in \
                 there again (`{}`) and run `{}`",
                old.broker,
                old.command_naming_both("login"),
                old.command_naming_both("logout")
            ),
        }
    }
    if let Some(previous) = previous {
        let who = crate::text::sanitize::line(&previous);
        match session::logout(&target).await {
            Ok(signed_out @ session::SignedOut { removed: true, .. }) => {
                exposed_warning(&signed_out);
                eprintln!("Signed out {who} first.")
            }
            // Kept somewhere this sign-in does not look (the other store,
            // after a switch to --insecure-file-store): said, not hidden.
            Ok(_) => eprintln!(
                "Warning: no session of {who} was found to sign out; if one is kept elsewhere \
                 (the keyring, before --insecure-file-store), sign in as {who} there and run \
                 `hoist logout`"
            ),
            Err(err) => eprintln!("Warning: the session of {who} could not be deleted: {err}"),
        }
    }
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
    let groups: Vec<String> = me.groups.iter().map(|g| clean(g)).collect();
    let broker = match &target.backend {
        crate::config::Backend::Hoistd => target.broker.to_string(),
        crate::config::Backend::Entra(tenant) => {
            format!("Entra PIM, tenant {} via {}", tenant.tenant, tenant.graph)
        }
    };
    let session = match (current.expires_at, &current.issuer) {
        (Some(at), Some(issuer)) => {
            let local = at
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %Z");
            let issuer = crate::text::sanitize::line(issuer);
            format!("single sign-on via {issuer}, token valid until {local}")
        }
        (Some(at), None) => {
            let local = at
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %Z");
            format!("pasted token, valid until {local} (then sign in again)")
        }
        _ => "static token (does not expire by itself)".to_string(),
    };
    crate::commands::out(&format!(
        "user:     {} ({})\ngroups:   {}\nbroker:   {broker}\nprofile:  {}\nsession:  {session}\n",
        clean(&me.user),
        clean(&me.display_name),
        groups.join(", "),
        target.profile,
    ))
}

/// Says so when a session deleted was in a file others could read.
fn exposed_warning(signed_out: &session::SignedOut) {
    if signed_out.exposed {
        eprintln!(
            "Warning: the session file was open to other users, who may have copied its \
             tokens; it is deleted, but its refresh token was not revoked: end your sign-in \
             sessions at the provider to end it now."
        );
    }
}

async fn logout(broker: Option<&str>, profile: Option<&str>) -> anyhow::Result<()> {
    let config = Config::load()?;
    let target = config.resolve(broker, profile)?;
    // Forgetting the profile's sign-in there would strand its session.
    if let Some((at, user)) = config.signed_in_elsewhere(&target) {
        anyhow::bail!(
            "profile `{}` is signed in at {at} as {user}, not at {}: `hoist --profile {} logout` \
             signs it out",
            target.profile,
            target.broker,
            crate::text::shell_word(&target.profile)
        );
    }
    let signed_out = session::logout(&target).await?;
    let removed = signed_out.removed;
    // Read again, as a sign-in does: the revocation may have waited on
    // the provider while another command saved the file.
    let mut config = Config::load()?;
    config.forget_login(&target);
    // The opt-in ends with the session it was for: the next sign-in keeps
    // its token in a file only if asked to again.
    config.set_insecure_file_store(&target, false);
    config.save()?;
    exposed_warning(&signed_out);
    if signed_out.revoked == Some(false) {
        // Said first, so it is not lost after the line above it.
        eprintln!(
            "The provider did not revoke the refresh token (it offers no revocation, as Entra \
             does not, or could not be reached): it is forgotten here, and stays valid at the \
             provider until it expires; end the sign-in sessions there to end it now."
        );
    }
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

async fn run_demo(
    user: &str,
    serve_only: bool,
    log: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let Some(path) = log {
        demo::log_to(path)?;
    }
    let demo = demo::Demo::start_with_target().await?;
    if serve_only {
        use tokio::signal::unix::{SignalKind, signal};
        // Listening before saying how to stop it: a Ctrl-C (or SIGTERM)
        // right after the line must still stop the demo cleanly, cluster
        // included, not kill it with the cluster left running.
        let listening = signal(SignalKind::interrupt())
            .and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)));
        let (mut interrupt, mut terminate) = match listening {
            Ok(signals) => signals,
            Err(err) => {
                demo.stop().await;
                return Err(err.into());
            }
        };
        println!("hoist demo broker at {}", demo.url());
        println!("{}", demo.target_note());
        println!("tokens: demo-alice demo-bob demo-carol demo-dave demo-erin");
        println!(
            "try: curl -H 'Authorization: Bearer demo-alice' {}/v1/roles",
            demo.url()
        );
        println!("Ctrl-C stops it (and removes the demo's PostgreSQL cluster).");
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        demo.stop().await;
        return Ok(());
    }
    need_terminal()?;
    let backend = demo.client(user).await?;
    let mut approvers = demo.start_approvers(user);
    let options = tui::Options {
        theme: Theme::from_config(&Default::default(), no_color()).map_err(anyhow::Error::msg)?,
        ticket_url: Some("https://tracker.example/browse/{ticket}".into()),
        notice: Some((
            demo.target_note().to_string(),
            crate::app::state::Level::Info,
        )),
        ..tui::Options::default()
    };
    let result = tui::run(backend, options).await;
    approvers.abort_all();
    demo.stop().await;
    result
}
