//! The TUI without a terminal: the `App` that turns keys, clicks and ticks
//! into actions, applies them with `update`, and hands commands to the
//! worker; and the task that keeps the session alive while it runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::worker::{Saver, Worker};
use crate::app::state::Screen;
use crate::app::{Action, Command, State, keymap, update};
use crate::backend::{Backend, ServerClock};
use crate::text::sanitize;
use crate::ui::theme::Theme;

/// Fetches a current session (refreshed if due, or re-read from the keyring).
pub type Renew = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<crate::auth::secrets::Session, String>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

pub struct Options {
    /// Keeps a single sign-on session alive while the TUI runs.
    pub renew: Option<Renew>,
    pub theme: Theme,
    pub favourites: BTreeSet<String>,
    pub ticket_url: Option<String>,
    pub save_favourites: Option<Saver>,
    pub screen: Screen,
    /// Named bundles from the config: name and roles.
    pub bundles: Vec<(String, Vec<String>)>,
    /// The profile and its kind, for the header.
    pub profile: Option<String>,
    /// The profile's name, and the config's profiles `P` switches between.
    pub profile_name: Option<String>,
    pub profiles: Vec<crate::app::state::ProfileChoice>,
    /// Opens another profile when one is picked; without it, hoist shows
    /// one broker for its whole run (the demo, the tests).
    pub switch: Option<super::profiles::Opener>,
    /// Where device sign-ins show their code once the TUI runs.
    pub prompter: Option<super::profiles::Prompter>,
    /// A first banner that stays a minute (the demo says what to try),
    /// and how it is shown.
    pub notice: Option<(String, crate::app::state::Level)>,
    /// Signs the person in again, freshly, when a role asks for a recent
    /// sign-in; without it the TUI says to run `hoist login`.
    pub sign_in_again: Option<super::worker::SignInAgain>,
    /// `hoist` and the options that choose this broker
    /// (`hoist --profile work`), for the commands messages name; a bare
    /// `hoist` if unset ([`crate::app::State::hoist`]).
    pub hoist: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            theme: Theme::default(),
            favourites: BTreeSet::new(),
            ticket_url: None,
            save_favourites: None,
            screen: Screen::Roles,
            renew: None,
            bundles: Vec::new(),
            profile: None,
            profile_name: None,
            profiles: Vec::new(),
            switch: None,
            prompter: None,
            notice: None,
            sign_in_again: None,
            hoist: None,
        }
    }
}

/// Renews the session shortly before it ends. If that fails, the TUI says
/// so and keeps trying (a `hoist login` elsewhere is picked up from the
/// keyring), without touching anything on screen.
async fn keep_session(
    backend: Arc<dyn Backend>,
    renew: Renew,
    actions: tokio::sync::mpsc::UnboundedSender<Action>,
) {
    let mut expires_at = None;
    let mut failing = false;
    loop {
        match expires_at {
            // By the wall clock: a laptop that slept through the end renews
            // soon after it wakes, not when the timer would have fired.
            Some(at) if !failing => {
                crate::auth::session::sleep_until_wall(crate::auth::session::refresh_at(at)).await;
            }
            None if !failing => {}
            _ => tokio::time::sleep(Duration::from_secs(10)).await,
        }
        match renew().await {
            Ok(session) => {
                backend.set_token(&session.access_token);
                if failing {
                    let _ = actions.send(Action::SessionRenewed);
                }
                failing = false;
                // A session without an end (a static token) needs no care.
                match session.expires_at {
                    Some(at) => expires_at = Some(at),
                    None => return,
                }
            }
            Err(reason) => {
                if !failing && actions.send(Action::SessionExpired(reason)).is_err() {
                    return;
                }
                failing = true;
            }
        }
        if actions.is_closed() {
            return;
        }
        // Still due (another hoist is refreshing it, and this one uses the
        // session as it is meanwhile): looked at again in a moment, not at
        // once.
        if expires_at.is_some_and(|at| crate::auth::session::refresh_at(at) <= chrono::Utc::now()) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// A profile opened for the picker, or why it could not be.
type Switched = (String, Result<super::profiles::Opened, String>);

/// The TUI without a terminal: state, the worker, and the queue of actions
/// coming back from it. Tests drive it with keys; the terminal loop too.
pub struct App {
    pub state: State,
    pub theme: Theme,
    worker: Worker,
    pub(super) actions: UnboundedReceiver<Action>,
    clock: Arc<ServerClock>,
    /// Terminal effects (bell, notices, clipboard) for the loop to perform.
    pub effects: Vec<Command>,
    /// What follows the broker and keeps the session: ended on a switch.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    switch: Option<super::profiles::Opener>,
    prompter: Option<super::profiles::Prompter>,
    pub(super) switches: UnboundedReceiver<Switched>,
    switched_sender: tokio::sync::mpsc::UnboundedSender<Switched>,
    /// The last tick: when by the monotonic clock, and the broker's time.
    last_tick: Option<(std::time::Instant, chrono::DateTime<chrono::Utc>)>,
    /// Set when the wall clock jumped (a clock step, a suspend): the offset
    /// to the broker then, and since when; ticks wait until an answer from
    /// the broker has set a new one (or a while has passed).
    resync: Option<(chrono::TimeDelta, std::time::Instant)>,
    /// Revocations refused in profiles switched away from, by profile:
    /// their marks, put back when the profile is shown again, and what
    /// hoist says of them on exit meanwhile.
    refused_elsewhere: HashMap<Option<String>, RefusedElsewhere>,
}

/// A profile's refused revocations while another is shown: the marks
/// (grant id to why), and the lines said of them on exit.
type RefusedElsewhere = (BTreeMap<String, String>, Vec<String>);

/// Longest ticks wait for the broker's time after the wall clock jumped.
const RESYNC_WAIT: Duration = Duration::from_secs(10);

/// Whether the wall clock moved other than time did between two ticks:
/// stepped (NTP, a person), or the machine slept.
fn clock_jumped(monotonic: Duration, wall: chrono::TimeDelta) -> bool {
    let monotonic = chrono::TimeDelta::from_std(monotonic).unwrap_or(chrono::TimeDelta::MAX);
    (wall - monotonic).abs() > chrono::TimeDelta::seconds(3)
}

/// One backend's part of the app: what a switch replaces whole.
struct Wired {
    state: State,
    worker: Worker,
    actions: UnboundedReceiver<Action>,
    clock: Arc<ServerClock>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn wire(
    backend: Arc<dyn Backend>,
    options: Options,
    prompter: Option<&super::profiles::Prompter>,
) -> (Wired, Theme) {
    let (sender, actions) = unbounded_channel();
    let clock = backend.clock();
    let mut state = State::new(backend.broker().to_string(), clock.now());
    state.capabilities = backend.capabilities();
    state.signs_in_again = options.sign_in_again.is_some();
    state.favourites = options.favourites;
    state.ticket_url = options.ticket_url;
    state.screen = options.screen;
    state.bundles = options.bundles;
    state.profile = options.profile;
    state.profile_name = options.profile_name;
    state.profiles = options.profiles;
    if let Some(hoist) = options.hoist {
        state.hoist = hoist;
    }
    if let Some((text, level)) = options.notice {
        state.banner = Some(crate::app::state::Banner {
            text,
            level,
            until: state.now + chrono::TimeDelta::minutes(1),
        });
    }
    if let Some(prompter) = prompter {
        prompter.attach(sender.clone());
    }
    let mut tasks = Vec::new();
    if let Some(renew) = options.renew {
        tasks.push(tokio::spawn(keep_session(
            Arc::clone(&backend),
            renew,
            sender.clone(),
        )));
    }
    let worker = Worker::new(
        backend,
        sender,
        options.save_favourites,
        options.sign_in_again,
    )
    .naming(&state.hoist);
    tasks.push(tokio::spawn(worker.clone().follow_events()));
    let wired = Wired {
        state,
        worker,
        actions,
        clock,
        tasks,
    };
    (wired, options.theme)
}

impl App {
    /// Creates the app and starts loading and following the broker.
    pub fn start(backend: Arc<dyn Backend>, mut options: Options) -> App {
        let switch = options.switch.take();
        let prompter = options.prompter.take();
        let (switched_sender, switches) = unbounded_channel();
        let (wired, theme) = wire(backend, options, prompter.as_ref());
        let mut app = App {
            state: wired.state,
            theme,
            worker: wired.worker,
            actions: wired.actions,
            clock: wired.clock,
            effects: Vec::new(),
            tasks: wired.tasks,
            switch,
            prompter,
            switches,
            switched_sender,
            last_tick: None,
            resync: None,
            refused_elsewhere: HashMap::new(),
        };
        app.dispatch(Action::Resize(80, 24));
        // No load here: the event stream's first `StreamUp` (or `StreamDown`)
        // starts it, after the stream has subscribed, so nothing that happens
        // in between is missed and the lists are never loaded twice at once.
        app
    }

    /// What hoist says on exit is left undone: revocations unconfirmed or
    /// refused here, and those refused in profiles switched away from.
    pub fn left_undone(&self) -> Vec<String> {
        let mut lines = super::unconfirmed(&self.state);
        for (_, said) in self.refused_elsewhere.values() {
            lines.extend(said.iter().cloned());
        }
        lines
    }

    /// Shows another profile in place of this one: a fresh state, worker
    /// and event stream; the old ones end, and answers still on their way
    /// to the old state are dropped with its queue.
    fn show(&mut self, opened: super::profiles::Opened) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let size = self.state.size;
        let said = super::refused(&self.state);
        if !said.is_empty() {
            let marks = std::mem::take(&mut self.state.revoke_refused);
            self.refused_elsewhere
                .insert(self.state.profile.clone(), (marks, said));
        }
        let (wired, theme) = wire(opened.backend, opened.options, self.prompter.as_ref());
        self.state = wired.state;
        // Still marked once its grants are loaded again, if still active.
        if let Some((marks, _)) = self.refused_elsewhere.remove(&self.state.profile) {
            self.state.revoke_refused = marks;
        }
        self.worker = wired.worker;
        self.actions = wired.actions;
        self.clock = wired.clock;
        self.tasks = wired.tasks;
        self.theme = theme;
        self.dispatch(Action::Resize(size.0, size.1));
    }

    /// A profile the picker asked for is open, or could not be.
    pub fn switched(&mut self, (profile, opened): Switched) {
        match opened {
            // What happened here while the profile opened may not be
            // dropped: a revocation being retried, a form being written.
            Ok(_) if let Some(why) = crate::app::update::why_not_leave(&self.state) => self
                .dispatch(Action::SwitchFailed {
                    profile,
                    reason: format!("{why} (it is signed in: P opens it at once)"),
                }),
            Ok(opened) => self.show(opened),
            Err(reason) => self.dispatch(Action::SwitchFailed { profile, reason }),
        }
    }

    fn switch_to(&mut self, profile: String) {
        let Some(open) = self.switch.clone() else {
            self.dispatch(Action::SwitchFailed {
                profile,
                reason: "this hoist shows one broker only".into(),
            });
            return;
        };
        let sender = self.switched_sender.clone();
        tokio::spawn(async move {
            let opened = open(profile.clone()).await;
            let _ = sender.send((profile, opened));
        });
    }

    pub fn dispatch(&mut self, action: Action) {
        let commands = update(&mut self.state, action);
        self.run_commands(commands);
    }

    fn run_commands(&mut self, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::Notify(_) | Command::Copy(_) => self.effects.push(command),
                Command::SwitchProfile(profile) => self.switch_to(profile),
                Command::Batch(commands) => self.run_commands(commands),
                other => self.worker.run(other),
            }
        }
    }

    pub fn key(&mut self, event: KeyEvent) {
        if let Some(action) = keymap::action_for_key(&self.state, event) {
            self.dispatch(action);
        }
    }

    /// Pasted text (bracketed paste) is text, never keys: it goes into the
    /// field being typed in, line breaks and tabs as spaces, so a pasted
    /// line break cannot send a prompt and let the rest of the paste act
    /// as keys (`a` approving whatever the cursor moved to). Where nothing
    /// is being typed, a paste does nothing.
    pub fn paste(&mut self, text: &str) {
        let context = keymap::Context::of(&self.state);
        if !context.takes_text() {
            return;
        }
        // In the form, the justification keeps its line breaks; the
        // break-glass toggle takes no paste (each space would flip it).
        let field = match context {
            keymap::Context::Form => self.state.form.as_ref().map(|form| form.field),
            _ => None,
        };
        if field == Some(crate::app::form::Field::BreakGlass) {
            return;
        }
        let line_break = match field {
            Some(crate::app::form::Field::Justification) => Action::Newline,
            _ => Action::Input(' '),
        };
        let text = text.replace("\r\n", "\n");
        for c in text.chars() {
            match c {
                '\n' | '\r' => self.dispatch(line_break.clone()),
                '\t' => self.dispatch(Action::Input(' ')),
                c if c.is_control() => {}
                c => self.dispatch(Action::Input(c)),
            }
        }
    }

    /// The wheel scrolls; a click picks what was drawn under it (a tab or a
    /// row), which only the view knows, so it is asked here and `update`
    /// gets the answer as an action.
    pub fn mouse(&mut self, event: MouseEvent) {
        match event.kind {
            MouseEventKind::ScrollUp => self.dispatch(Action::ScrollUp),
            MouseEventKind::ScrollDown => self.dispatch(Action::ScrollDown),
            MouseEventKind::Down(MouseButton::Left) => self.click(event.column, event.row),
            _ => {}
        }
    }

    /// A left click at a cell of the terminal.
    pub fn click(&mut self, column: u16, row: u16) {
        let action = match crate::ui::hit(&self.state, column, row) {
            Some(crate::ui::Hit::Tab(screen)) => Action::GoTo(screen),
            Some(crate::ui::Hit::Row(index)) => Action::SelectRow(index),
            None => return,
        };
        self.dispatch(action);
    }

    /// Advances the clock to the broker's now. When the wall clock jumped,
    /// the broker's time is read again (everything is loaded, and each
    /// answer sets the offset) before any countdown moves: a clock stepped
    /// three minutes on would otherwise end grants with two left, and they
    /// could no longer be revoked or extended from the list.
    pub fn tick(&mut self) {
        let now = self.clock.now();
        let ticked = std::time::Instant::now();
        if let Some((at, was)) = self.last_tick
            && clock_jumped(ticked.duration_since(at), now - was)
        {
            self.resync = Some((self.clock.offset(), ticked));
            self.dispatch(Action::ClockJumped);
        }
        self.last_tick = Some((ticked, now));
        if let Some((offset, since)) = self.resync {
            if self.clock.offset() == offset && since.elapsed() < RESYNC_WAIT {
                return;
            }
            self.resync = None;
            // The broker's now, by the offset the answers set.
            self.last_tick = Some((ticked, self.clock.now()));
        }
        self.dispatch(Action::Tick(self.clock.now()));
    }

    /// Applies every action already waiting, without blocking.
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        while let Ok(action) = self.actions.try_recv() {
            self.dispatch(action);
            any = true;
        }
        any
    }

    /// Processes actions and ticks until `done` holds; false after `limit`.
    pub async fn wait_until(&mut self, limit: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Ok(switched) = self.switches.try_recv() {
                self.switched(switched);
            }
            self.drain();
            self.tick();
            if done(&self.state) {
                return true;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let wait = left.min(Duration::from_millis(100));
            if let Ok(Some(action)) = tokio::time::timeout(wait, self.actions.recv()).await {
                self.dispatch(action);
            }
        }
    }

    /// Text for the terminal title: the nearest expiry, if any.
    pub fn title(&self) -> String {
        title(&self.state)
    }
}

/// The terminal title for a state: the nearest expiry, if any. It goes out
/// inside an OSC sequence, so the role's name is sanitised.
pub fn title(state: &State) -> String {
    match state.grants.first() {
        Some(grant) => {
            let left = crate::text::span(state.time_left(grant));
            let role = state.role_label(&grant.role, &grant.role_name);
            format!("hoist · {} {left}", sanitize::line(role))
        }
        None => "hoist".to_string(),
    }
}

#[cfg(test)]
mod clock_tests {
    use std::time::Duration;

    /// Ticks a second apart by both clocks are no jump; a wall clock that
    /// moved three minutes in a second, or a second in a suspend's hour
    /// (the monotonic clock stops while the machine sleeps), is.
    #[test]
    fn a_wall_clock_that_moves_other_than_time_did_is_a_jump() {
        let second = chrono::TimeDelta::seconds(1);
        assert!(!super::clock_jumped(Duration::from_secs(1), second));
        assert!(!super::clock_jumped(
            Duration::from_millis(2500),
            chrono::TimeDelta::milliseconds(900)
        ));
        assert!(super::clock_jumped(
            Duration::from_secs(1),
            chrono::TimeDelta::minutes(3)
        ));
        assert!(super::clock_jumped(
            Duration::from_secs(1),
            chrono::TimeDelta::minutes(-3)
        ));
        assert!(super::clock_jumped(
            Duration::from_secs(1),
            chrono::TimeDelta::hours(1)
        ));
    }
}
