//! The command line: global options, subcommands, and what each one runs.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::{Config, Target};
use crate::theme::Theme;
use crate::{demo, session, tui};

/// Just-in-time privileged access from the terminal.
///
/// With no command, opens the terminal UI on the default profile.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
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
    /// Sign in to the broker. `--with-token` reads a static token from
    /// standard input (never from the command line) and keeps it in the OS keyring.
    Login {
        #[arg(long, required = true)]
        with_token: bool,
    },
    /// Sign out: delete this broker's session from the OS keyring.
    Logout,
}

pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        None => open_tui(cli.broker.as_deref(), cli.profile.as_deref()).await,
        Some(Command::Demo { user, serve_only }) => run_demo(&user, serve_only).await,
        Some(Command::Login { .. }) => login(cli.broker.as_deref(), cli.profile.as_deref()).await,
        Some(Command::Logout) => logout(cli.broker.as_deref(), cli.profile.as_deref()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hoist: {err:#}");
            ExitCode::FAILURE
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
    let config = Config::load()?;
    let target = config.resolve(broker, profile)?;
    let client = session::open(&target).await?;
    let theme = Theme::from_config(&config.theme, no_color()).map_err(anyhow::Error::msg)?;
    let favourites = config.favourites(&target.profile).into_iter().collect();
    let options = tui::Options {
        theme,
        favourites,
        ticket_url: config.ticket_url.clone(),
        save_favourites: Some(favourite_saver(target)),
        screen: crate::app::Screen::Roles,
    };
    tui::run(client, options).await
}

/// Writes the favourites of one profile back to the config file.
fn favourite_saver(target: Target) -> crate::worker::Saver {
    Arc::new(move |favourites: Vec<String>| {
        let mut config = Config::load().map_err(|e| e.to_string())?;
        let profile = config
            .profiles
            .entry(target.profile.clone())
            .or_insert_with(|| crate::config::Profile {
                broker: target.broker.clone(),
                user: target.user.clone(),
                favourites: Vec::new(),
            });
        profile.favourites = favourites;
        config.save().map_err(|e| e.to_string())
    })
}

async fn login(broker: Option<&str>, profile: Option<&str>) -> anyhow::Result<()> {
    let mut config = Config::load()?;
    let target = config.resolve(broker, profile)?;
    let token = session::read_token_from_stdin(std::io::stdin().lock())?;
    let me = session::login_with_token(&target, &token).await?;
    config.remember_login(&target, &me.user);
    config.save()?;
    eprintln!(
        "Signed in to {} as {} ({}).",
        target.broker, me.user, me.display_name
    );
    if let Some(warning) = crate::secrets::warning() {
        eprintln!("Note: {warning}");
    }
    Ok(())
}

async fn logout(broker: Option<&str>, profile: Option<&str>) -> anyhow::Result<()> {
    let mut config = Config::load()?;
    let target = config.resolve(broker, profile)?;
    let removed = session::logout(&target).await?;
    config.forget_login(&target);
    config.save()?;
    if removed {
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
    let client = demo.client(user).await?;
    let mut approvers = demo.start_approvers(user);
    let options = tui::Options {
        theme: Theme::from_config(&Default::default(), no_color()).map_err(anyhow::Error::msg)?,
        ticket_url: Some("https://tracker.example/browse/{ticket}".into()),
        ..tui::Options::default()
    };
    let result = tui::run(client, options).await;
    approvers.abort_all();
    demo.stop().await;
    result
}
