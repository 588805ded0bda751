//! The running TUI: the terminal loop around the [`App`], which draws after
//! every batch of actions, performs terminal effects (bell, notices,
//! clipboard, title), and restores the terminal on exit, Ctrl-C, signals,
//! errors and panics. The [`worker`] runs everything else.

mod app;
pub mod profiles;
pub mod worker;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event, EventStream};
use futures::StreamExt;

pub use app::{App, Options, Renew, title};
pub use worker::Saver;

use crate::app::{Action, Command};
use crate::backend::Backend;
use crate::text::sanitize;

/// How the terminal shows desktop notices, if it does: OSC 9 (iTerm2,
/// WezTerm, ghostty, kitty) or OSC 777 (foot; VTE terminals such as GNOME
/// Terminal where their distribution enables it, and VTE ignores it
/// elsewhere). Some other terminals print unknown sequences, so only known
/// ones get either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notices {
    None,
    Osc9,
    Osc777,
}

fn terminal_notices() -> Notices {
    let program = std::env::var("TERM_PROGRAM").unwrap_or_default();
    let term = std::env::var("TERM").unwrap_or_default();
    if matches!(program.as_str(), "iTerm.app" | "WezTerm" | "ghostty")
        || std::env::var("KITTY_WINDOW_ID").is_ok()
    {
        Notices::Osc9
    } else if term.starts_with("foot") || std::env::var("VTE_VERSION").is_ok() {
        Notices::Osc777
    } else {
        Notices::None
    }
}

fn perform(effect: &Command) -> std::io::Result<()> {
    let mut out = std::io::stdout();
    // On a desktop, its notification daemon shows the notice, and the
    // terminal only rings: one notice, not two.
    let notices = if crate::desktop::available() {
        if let Command::Notify(text) = effect {
            let text = text.clone();
            tokio::spawn(async move {
                if let Err(err) = crate::desktop::notify(None, &text).await {
                    tracing::debug!(error = %err, "no desktop notice");
                }
            });
        }
        Notices::None
    } else {
        terminal_notices()
    };
    write_effect(effect, &mut out, notices)?;
    out.flush()
}

/// The bytes of a terminal effect: the bell, and a desktop notice where the
/// terminal shows them (`notices`), or OSC 52 for the clipboard.
pub fn write_effect(
    effect: &Command,
    out: &mut impl Write,
    notices: Notices,
) -> std::io::Result<()> {
    match effect {
        Command::Notify(text) => {
            out.write_all(b"\x07")?;
            // The text is ours, but names roles and people from the broker;
            // cleaned again here, so nothing in it can end the sequence.
            let text = sanitize::line(text);
            match notices {
                Notices::None => {}
                // Prefixed, so text starting with digits and `;` (a role
                // named `4;1;50`) is never read as OSC 9's progress form.
                Notices::Osc9 => write!(out, "\x1b]9;hoist: {text}\x07")?,
                Notices::Osc777 => write!(out, "\x1b]777;notify;hoist;{text}\x07")?,
            }
        }
        Command::Copy(text) => {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            write!(out, "\x1b]52;c;{encoded}\x07")?;
        }
        _ => {}
    }
    Ok(())
}

/// Puts the terminal back however we leave: normal exit, error or drop.
/// When the terminal is gone (closed under us) there is nothing to put back
/// and nowhere to say so: `ratatui::restore` would report the failure on
/// stderr, and a failed print panics, which inside a drop aborts.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = crossterm::execute!(
            std::io::stdout(),
            crossterm::event::DisableMouseCapture,
            crossterm::event::DisableBracketedPaste,
            crossterm::cursor::Show
        );
        let _ = ratatui::try_restore();
    }
}

/// Runs the TUI in this terminal until the user quits.
pub async fn run(backend: Arc<dyn Backend>, options: Options) -> anyhow::Result<()> {
    // A panic puts the terminal back before the report is printed. Ours
    // replaces the hook ratatui::init installs, whose restore reports its
    // own failure with a print that panics again (an abort) once the
    // terminal is gone.
    let report = std::panic::take_hook();
    // Never dropped: its drop shows the cursor and reports a failure to do
    // so with a print that panics once the terminal is gone; Restore shows
    // the cursor instead.
    let mut terminal = std::mem::ManuallyDrop::new(ratatui::init());
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::execute!(
            std::io::stdout(),
            crossterm::event::DisableMouseCapture,
            crossterm::event::DisableBracketedPaste
        );
        let _ = ratatui::try_restore();
        report(info);
    }));
    let restore = Restore;
    // Pasted text arrives as one event, not as keys (see `App::paste`).
    crossterm::execute!(
        std::io::stdout(),
        crossterm::event::EnableMouseCapture,
        crossterm::event::EnableBracketedPaste
    )?;

    let clock = backend.clock();
    let mut app = App::start(backend, options);
    let size = terminal.size()?;
    app.dispatch(Action::Resize(size.width, size.height));

    let mut events = EventStream::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut title = String::new();
    let mut cached: Vec<(String, chrono::DateTime<chrono::Utc>)> = Vec::new();
    let mut cached_offset = chrono::TimeDelta::zero();
    let mut caching: Option<tokio::task::JoinHandle<()>> = None;

    loop {
        terminal.draw(|frame| crate::ui::draw(frame, &app.state, &app.theme))?;
        for effect in std::mem::take(&mut app.effects) {
            let _ = perform(&effect);
        }
        // Keep `hoist prompt` in step with what this screen knows.
        let grants: Vec<_> = app
            .state
            .grants
            .iter()
            .map(|g| (g.id.clone(), g.expires_at))
            .collect();
        let offset = clock.offset();
        if app.state.loaded && prompt_stale(&cached, &grants, cached_offset, offset) {
            // Off the loop, as the write is flushed to disk and no frame
            // should wait for it; one write at a time, so the last one wins.
            if let Some(previous) = caching.take() {
                let _ = previous.await;
            }
            let (broker, held) = (app.state.broker.clone(), app.state.grants.clone());
            caching = Some(tokio::task::spawn_blocking(move || {
                crate::prompt::remember(&broker, &held, offset);
            }));
            cached = grants;
            cached_offset = offset;
        }
        let wanted = app.title();
        if wanted != title {
            let _ = crossterm::execute!(std::io::stdout(), crossterm::terminal::SetTitle(&wanted));
            title = wanted;
        }
        if app.state.should_quit {
            break;
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != crossterm::event::KeyEventKind::Release => app.key(key),
                Some(Ok(Event::Mouse(mouse))) => app.mouse(mouse),
                Some(Ok(Event::Resize(w, h))) => app.dispatch(Action::Resize(w, h)),
                Some(Ok(Event::Paste(text))) => app.paste(&text),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => break,
            },
            _ = ticks.tick() => app.tick(),
            Some(action) = app.actions.recv() => {
                app.dispatch(action);
                app.drain();
            }
            Some(switched) = app.switches.recv() => app.switched(switched),
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
        }
    }
    let _ = crossterm::execute!(std::io::stdout(), crossterm::terminal::SetTitle(""));
    if let Some(last) = caching {
        let _ = last.await;
    }
    // Said on the restored terminal, where it stays after hoist is gone: a
    // revocation nobody retries any more must not pass for done.
    let unconfirmed = app.left_undone();
    drop(restore);
    let mut stderr = std::io::stderr();
    for line in unconfirmed {
        let _ = writeln!(stderr, "hoist: {line}");
    }
    Ok(())
}

/// What is left undone when hoist stops: each revocation the broker has
/// not confirmed or refused, with the grant's end and the command that
/// tries again.
pub fn unconfirmed(state: &crate::app::State) -> Vec<String> {
    let mut lines: Vec<String> = state
        .unconfirmed_revocations()
        .into_iter()
        .map(|grant| {
        format!(
            "the broker never confirmed the revocation of {} ({}); it stays active until {} unless you run `{} revoke {}`",
            sanitize::line(&grant.role),
            sanitize::line(&grant.id),
            crate::text::local_timestamp(grant.expires_at),
            sanitize::line(&state.hoist),
            // Pasted: the broker's id quoted for the shell.
            sanitize::line(&crate::text::shell_word(&grant.id)),
        )
        })
        .collect();
    lines.extend(refused(state));
    lines
}

/// Each revocation the broker refused for good whose grant is still
/// active, with why and the grant's end.
pub fn refused(state: &crate::app::State) -> Vec<String> {
    state
        .refused_revocations()
        .into_iter()
        .map(|(grant, why)| {
            format!(
                "the broker refused to revoke {} ({}): {}; it stays active until {}",
                sanitize::line(&grant.role),
                sanitize::line(&grant.id),
                sanitize::line(why),
                crate::text::local_timestamp(grant.expires_at),
            )
        })
        .collect()
}

/// Whether `hoist prompt`'s cache, written for `cached` with the broker's
/// clock `cached_offset` ahead of this machine's, no longer says what this
/// screen knows: the grants or their ends changed, or this machine's clock
/// stepped (the cache keeps ends on this machine's clock, so a step of more
/// than a second or two would show every countdown off by as much).
fn prompt_stale(
    cached: &[(String, chrono::DateTime<chrono::Utc>)],
    grants: &[(String, chrono::DateTime<chrono::Utc>)],
    cached_offset: chrono::TimeDelta,
    offset: chrono::TimeDelta,
) -> bool {
    grants != cached || (offset - cached_offset).abs() > chrono::TimeDelta::seconds(2)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};

    use super::prompt_stale;

    /// The cache is written again when the grants change or this machine's
    /// clock steps, not for the offset's usual jitter.
    #[test]
    fn the_prompt_cache_follows_a_clock_step() {
        let held = vec![("gr_1".to_string(), Utc::now())];
        let zero = TimeDelta::zero();
        assert!(!prompt_stale(
            &held,
            &held,
            zero,
            TimeDelta::milliseconds(300)
        ));
        assert!(prompt_stale(&held, &held, zero, TimeDelta::minutes(10)));
        assert!(prompt_stale(&held, &held, zero, TimeDelta::minutes(-10)));
        assert!(prompt_stale(&held, &[], zero, zero));
    }
}
