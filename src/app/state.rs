//! Everything the TUI shows, as plain data. Only `update` changes it; drawing
//! reads it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use hoist_api::{
    AccessCredential, AccessRequest, AuditEvent, Grant, Me, RequestHistory, RequestPreview, Role,
};

use super::capabilities::Capabilities;
use super::command::Command;
use super::form::RequestForm;
use super::roles;

/// How long before a grant ends its holder is warned (banner and bell), and
/// its countdown turns to a warning.
pub const WARN_AT: TimeDelta = TimeDelta::minutes(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Screen {
    Roles,
    Requests,
    Grants,
    Reviews,
    Activity,
    Incidents,
}

impl Screen {
    pub const ALL: [Screen; 6] = [
        Screen::Roles,
        Screen::Requests,
        Screen::Grants,
        Screen::Reviews,
        Screen::Activity,
        Screen::Incidents,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Roles => "Roles",
            Screen::Requests => "Requests",
            Screen::Grants => "Grants",
            Screen::Reviews => "Reviews",
            Screen::Activity => "Activity",
            Screen::Incidents => "Incidents",
        }
    }

    /// For narrow terminals.
    pub fn short_title(self) -> &'static str {
        match self {
            Screen::Roles => "Roles",
            Screen::Requests => "Reqs",
            Screen::Grants => "Grants",
            Screen::Reviews => "Review",
            Screen::Activity => "Log",
            Screen::Incidents => "Inc",
        }
    }

    pub fn index(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Success,
    Warning,
    Error,
}

/// A notice across the top of the screen until `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Banner {
    pub text: String,
    pub level: Level,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting,
    Live,
    /// The event stream is down; countdowns keep running from the last known times.
    Offline {
        reason: String,
        since: DateTime<Utc>,
    },
}

/// What a one-line text prompt is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Approve {
        request_id: String,
    },
    Deny {
        request_id: String,
    },
    Acknowledge {
        request_id: String,
    },
    /// Filing for a tier-0 role: the requester types its id, so that the
    /// most critical access is never asked for by a stray Enter.
    TypeRoleId {
        role: String,
        file: Box<Command>,
    },
}

impl Prompt {
    /// The request a decision or acknowledgement is about.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Prompt::Approve { request_id }
            | Prompt::Deny { request_id }
            | Prompt::Acknowledge { request_id } => Some(request_id),
            Prompt::TypeRoleId { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Modal {
    Help,
    /// Asks yes or no; `yes` runs the command. A `danger`ous one (access
    /// that starts or ends at once) is answered yes by `y` alone: a reflex
    /// Enter (sending the form it came from) leaves it asking. One that
    /// `repeats` the key that asked it (`y` and `s` on a grant whose fetch
    /// sets a new password) is answered yes by Enter alone: a key pressed
    /// twice, or held, does not answer it.
    Confirm {
        prompt: String,
        yes: Command,
        danger: bool,
        repeats: bool,
    },
    Input {
        prompt: Prompt,
        title: String,
        text: String,
        required: bool,
        error: Option<String>,
    },
    /// The credential of a grant, and for a grant at a target how to use
    /// the access there (a ready `psql` command and URI). The secret is
    /// held only while this is open.
    Credential {
        /// Whose credential this is: `y` fetches a fresh one for this
        /// grant, whatever the list's selection has become meanwhile.
        grant_id: String,
        role: String,
        token: String,
        expires_at: DateTime<Utc>,
        access: Option<Box<AccessCredential>>,
    },
    /// Quit was asked for while the broker has not yet confirmed a
    /// revocation: those grants stay active if hoist stops retrying, so
    /// the person decides, knowing that.
    QuitWhileRevoking,
    /// The config's profiles, to switch to one; `cursor` indexes `profiles`.
    Profiles {
        cursor: usize,
    },
    /// A device sign-in is waiting for the person: where to go and what to
    /// type, while hoist waits (opening a profile, or a stronger sign-in a
    /// role asks for midway).
    SignIn(SignInPrompt),
}

impl Modal {
    /// Whether it asks the person something (a yes or no, a text, a choice,
    /// a sign-in), whose keys nothing arriving meanwhile may take.
    pub fn asks(&self) -> bool {
        !matches!(self, Modal::Help | Modal::Credential { .. })
    }
}

/// What a device sign-in asks the person to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInPrompt {
    /// The profile being opened; `None` for a stronger sign-in that a call
    /// in flight asked for (it ends with that call's answer).
    pub profile: Option<String>,
    /// Why a sign-in is needed, in a few words.
    pub why: String,
    pub url: String,
    pub code: String,
    /// The URL with the code in it, where the provider offers one.
    pub complete: Option<String>,
    /// Minutes until the code expires.
    pub minutes: u64,
}

/// A profile of the config, as the picker lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileChoice {
    pub name: String,
    /// The kind of broker (`hoistd`, `entra`).
    pub kind: String,
}

/// Which list a row of the Reviews screen comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewRow {
    /// A pending request that needs my decision (an index into the queue).
    Pending(usize),
    BreakGlass(usize),
    /// A pending request I approved that needs others' approvals too
    /// (an index into the queue).
    Waiting(usize),
}

/// Whose events the Activity screen shows: people act for themselves,
/// workloads (CI jobs, bots) under a `workload:` principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actors {
    Everyone,
    People,
    Workloads,
}

impl Actors {
    pub fn next(self) -> Actors {
        match self {
            Actors::Everyone => Actors::People,
            Actors::People => Actors::Workloads,
            Actors::Workloads => Actors::Everyone,
        }
    }

    pub fn admits(self, event: &AuditEvent) -> bool {
        match self {
            Actors::Everyone => true,
            Actors::People => !event.concerns_workload(),
            Actors::Workloads => event.concerns_workload(),
        }
    }

    /// How the Activity title names it, if it narrows anything.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Actors::Everyone => None,
            Actors::People => Some("people"),
            Actors::Workloads => Some("workloads"),
        }
    }
}

/// The items the list cursors point at, by id (see [`State::reselect`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub request: Option<String>,
    pub grant: Option<String>,
    pub review: Option<String>,
    /// The incident's reference.
    pub incident: Option<String>,
}

/// Lists whose selected item left them by someone else's doing (decided,
/// revoked or ended elsewhere) since the person last moved their cursor
/// there: the cursor then rests on the neighbour that took its place, and
/// the next key that acts on an item there only says so.
#[derive(Debug, Clone, Default)]
pub struct Lost {
    pub requests: bool,
    pub grants: bool,
    pub reviews: bool,
}

/// The newest copy of each request and grant heard of lately, by events,
/// answers and loads: one that arrives after a newer copy (an event relayed
/// by another broker instance, overtaken; a load answered before a change
/// that came in meanwhile) is passed over, and the screen keeps the newer.
/// Only for a broker that says its copies are ordered (`Hello.ordered`):
/// with any other, the copy heard last wins, as it always did.
#[derive(Debug, Clone, Default)]
pub struct Heard {
    pub ordered: bool,
    requests: HashMap<String, (AccessRequest, DateTime<Utc>)>,
    grants: HashMap<String, (Grant, DateTime<Utc>)>,
}

/// How long a copy is remembered: far longer than events are ever held up
/// between instances, or a load's answer is on its way.
const HEARD_FOR: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

impl Heard {
    /// `request` if it is not older than a copy heard before, remembered as
    /// the newest; `None` if it is.
    pub fn request(&mut self, request: AccessRequest, now: DateTime<Utc>) -> Option<AccessRequest> {
        let newest = self.newest_request(request, now);
        (!newest.1).then_some(newest.0)
    }

    /// The newest copy of `request`: the one heard before when `request` is
    /// older (and `true`), or `request` itself, remembered.
    pub fn newest_request(
        &mut self,
        request: AccessRequest,
        now: DateTime<Utc>,
    ) -> (AccessRequest, bool) {
        match self.requests.get(&request.id) {
            Some((known, _)) if self.ordered && request.is_older_than(known) => {
                (known.clone(), true)
            }
            _ => {
                self.requests
                    .insert(request.id.clone(), (request.clone(), now));
                (request, false)
            }
        }
    }

    /// As [`Heard::request`], for a grant.
    pub fn grant(&mut self, grant: Grant, now: DateTime<Utc>) -> Option<Grant> {
        let newest = self.newest_grant(grant, now);
        (!newest.1).then_some(newest.0)
    }

    /// As [`Heard::newest_request`], for a grant.
    pub fn newest_grant(&mut self, grant: Grant, now: DateTime<Utc>) -> (Grant, bool) {
        match self.grants.get(&grant.id) {
            Some((known, _)) if self.ordered && grant.is_older_than(known) => (known.clone(), true),
            _ => {
                self.grants.insert(grant.id.clone(), (grant.clone(), now));
                (grant, false)
            }
        }
    }

    /// Forgets copies heard long ago.
    pub fn forget_old(&mut self, now: DateTime<Utc>) {
        self.requests.retain(|_, (_, at)| *at > now - HEARD_FOR);
        self.grants.retain(|_, (_, at)| *at > now - HEARD_FOR);
    }
}

#[derive(Debug, Clone, Default)]
pub struct Cursors {
    pub roles: usize,
    pub requests: usize,
    pub grants: usize,
    pub reviews: usize,
    pub activity: usize,
    pub incidents: usize,
}

#[derive(Debug, Clone)]
pub struct State {
    pub broker: String,
    /// The profile on screen and its kind of broker (`work (hoistd)`), when
    /// hoist was opened on one; the header always shows it.
    pub profile: Option<String>,
    /// The profile on screen, by name, and every profile `P` can switch to.
    pub profile_name: Option<String>,
    /// `hoist` and the options that choose the broker on screen
    /// (`hoist --profile work`): what every command a message names to
    /// run elsewhere (sign in again, revoke) begins with, or it would reach
    /// another profile's broker.
    pub hoist: String,
    pub profiles: Vec<ProfileChoice>,
    /// What the broker can do; screens and keys for the rest are hidden.
    pub capabilities: Capabilities,
    /// hoist can sign the person in again by itself (a profile it opened):
    /// a role that asks for a recent sign-in gets one in place.
    pub signs_in_again: bool,
    pub me: Option<Me>,
    pub screen: Screen,
    pub roles: Vec<Role>,
    pub favourites: BTreeSet<String>,
    pub filter: String,
    pub filtering: bool,
    /// Indices into `roles`: favourites first, then the filter's ranking.
    pub visible_roles: Vec<usize>,
    /// What filtering the roles keeps between keystrokes.
    pub search: roles::Search,
    pub requests: Vec<AccessRequest>,
    /// My active grants, soonest to end first.
    pub grants: Vec<Grant>,
    /// My grants that ended in hoist while their access is still at the
    /// target: shown until the broker reports the access removed.
    pub ending: Vec<Grant>,
    /// Grants whose access the broker reported removed: an older answer
    /// arriving later (a revoke's reply after the removal's event) must
    /// not bring them back as ending.
    pub access_removed: HashSet<String>,
    pub queue: Vec<AccessRequest>,
    pub break_glass: Vec<AccessRequest>,
    pub histories: HashMap<String, RequestHistory>,
    /// Grants of requests under review (break-glass activations), by id,
    /// so approvers see where their access is.
    pub reviewed_grants: HashMap<String, Grant>,
    /// A load failed while the stream was up (the broker busy after a
    /// reconnect, say): what is shown may be stale, and it is loaded again
    /// at this time, each failure waiting twice as long (to a minute).
    pub reload_due: Option<(DateTime<Utc>, u32)>,
    /// A load asked for and not answered yet, and the requests the stream
    /// told of meanwhile: the load's reads may predate them (a request
    /// filed then is not in its answer), so the answer does not drop them.
    pub loading: bool,
    pub heard_while_loading: BTreeSet<String>,
    /// Grants whose extension is on its way to the broker.
    pub extending: BTreeSet<String>,
    /// Each grant's last extension not known to have been answered (on
    /// its way, or its answer lost): its duration, its idempotency key and
    /// when it was sent or failed. Asked again for the same duration soon
    /// after, it is sent with the same key, so an extension the broker made
    /// but whose answer was lost is not made twice.
    pub extend_keys: BTreeMap<String, (u64, String, DateTime<Utc>)>,
    /// Roles marked (space) to be requested together as a bundle.
    pub marked: BTreeSet<String>,
    /// Named bundles from the config: name and roles.
    pub bundles: Vec<(String, Vec<String>)>,
    /// The incident shown on the Incidents screen, as last loaded.
    pub incident: Option<hoist_api::IncidentView>,
    /// Grants whose revocation is sent but not yet confirmed by the broker.
    pub revoking: BTreeSet<String>,
    /// Grants whose revocation the broker refused for good, and why (as
    /// described, sanitised): shown as not revoked while they are active.
    pub revoke_refused: BTreeMap<String, String>,
    pub activity: Vec<AuditEvent>,
    /// Whose events the Activity screen shows.
    pub actors: Actors,
    /// Active grants workloads hold that I approve or audit, beside mine on
    /// the Grants screen (read-only there).
    pub workload_grants: Vec<Grant>,
    pub cursors: Cursors,
    pub lost: Lost,
    pub heard: Heard,
    pub form: Option<RequestForm>,
    pub preview: Option<RequestPreview>,
    pub modal: Option<Modal>,
    /// A sign-in whose pop-up was closed: it goes on until its code
    /// expires, and [`Action::ShowSignIn`](super::action::Action::ShowSignIn)
    /// shows the pop-up again.
    pub hidden_sign_in: Option<SignInPrompt>,
    /// A credential that arrived while another pop-up asked something: it
    /// is shown once that one closes, rather than take its keys.
    pub waiting_credential: Option<Modal>,
    /// The pop-up the question to quit covered (a decision half-typed):
    /// open again as it was when the person stays.
    pub behind_quit: Option<Modal>,
    pub banner: Option<Banner>,
    pub connection: Connection,
    /// The broker's clock, as of the last tick.
    pub now: DateTime<Utc>,
    /// Grants already warned about their coming end.
    pub warned: HashSet<String>,
    /// Operations in flight, for the spinner: each is a short label.
    pub busy: BTreeSet<String>,
    /// Requests the person decided or acknowledged, until the broker
    /// answers: their leaving the queue is the person's doing, no surprise.
    pub deciding: BTreeSet<String>,
    /// The reason typed with a decision on its way to the broker: given
    /// back in its prompt if the decision fails, not typed again.
    pub sent_reason: Option<Modal>,
    pub ticket_url: Option<String>,
    pub loaded: bool,
    pub should_quit: bool,
    /// Height of the terminal's list area, for paging and mouse hits.
    pub size: (u16, u16),
}

impl State {
    pub fn new(broker: String, now: DateTime<Utc>) -> State {
        State {
            broker,
            profile: None,
            profile_name: None,
            hoist: "hoist".to_string(),
            profiles: Vec::new(),
            capabilities: Capabilities::ALL,
            signs_in_again: false,
            me: None,
            screen: Screen::Roles,
            roles: Vec::new(),
            favourites: BTreeSet::new(),
            filter: String::new(),
            filtering: false,
            visible_roles: Vec::new(),
            search: roles::Search::default(),
            requests: Vec::new(),
            grants: Vec::new(),
            ending: Vec::new(),
            access_removed: HashSet::new(),
            queue: Vec::new(),
            break_glass: Vec::new(),
            histories: HashMap::new(),
            reviewed_grants: HashMap::new(),
            reload_due: None,
            extending: BTreeSet::new(),
            extend_keys: BTreeMap::new(),
            marked: BTreeSet::new(),
            bundles: Vec::new(),
            incident: None,
            revoking: BTreeSet::new(),
            revoke_refused: BTreeMap::new(),
            activity: Vec::new(),
            actors: Actors::Everyone,
            workload_grants: Vec::new(),
            cursors: Cursors::default(),
            lost: Lost::default(),
            heard: Heard::default(),
            form: None,
            preview: None,
            modal: None,
            hidden_sign_in: None,
            waiting_credential: None,
            behind_quit: None,
            banner: None,
            connection: Connection::Connecting,
            now,
            warned: HashSet::new(),
            busy: BTreeSet::new(),
            deciding: BTreeSet::new(),
            sent_reason: None,
            loading: false,
            heard_while_loading: BTreeSet::new(),
            ticket_url: None,
            loaded: false,
            should_quit: false,
            size: (80, 24),
        }
    }

    /// Whether an action has anything to act on here: what the backend
    /// can do, and a choice of profiles to switch between.
    pub fn offers(&self, action: &super::action::Action) -> bool {
        match action {
            super::action::Action::PickProfile => !self.profiles.is_empty(),
            super::action::Action::ShowSignIn => self.hidden_sign_in.is_some(),
            other => self.capabilities.allows(other),
        }
    }

    pub fn user(&self) -> &str {
        self.me.as_ref().map_or("", |me| me.user.as_str())
    }

    pub fn selected_role(&self) -> Option<&Role> {
        self.visible_roles
            .get(self.cursors.roles)
            .and_then(|i| self.roles.get(*i))
    }

    pub fn selected_request(&self) -> Option<&AccessRequest> {
        self.requests.get(self.cursors.requests)
    }

    pub fn selected_grant(&self) -> Option<&Grant> {
        self.grants.get(self.cursors.grants)
    }

    /// The Reviews screen's rows: what needs me first (to decide, then
    /// break-glass to acknowledge), then what I approved and waits for others.
    pub fn review_rows(&self) -> Vec<ReviewRow> {
        let (waiting, pending): (Vec<usize>, Vec<usize>) =
            (0..self.queue.len()).partition(|i| self.awaits_others(&self.queue[*i]));
        pending
            .into_iter()
            .map(ReviewRow::Pending)
            .chain((0..self.break_glass.len()).map(ReviewRow::BreakGlass))
            .chain(waiting.into_iter().map(ReviewRow::Waiting))
            .collect()
    }

    /// Whether I already reviewed this request of my queue, so it waits
    /// for other approvers rather than for me.
    pub fn awaits_others(&self, request: &AccessRequest) -> bool {
        let me = self.user();
        !me.is_empty() && request.reviews.iter().any(|r| r.reviewer == me)
    }

    /// How many requests of the queue need my decision.
    pub fn to_decide(&self) -> usize {
        self.queue.iter().filter(|r| !self.awaits_others(r)).count()
    }

    /// Who else may still approve a request waiting for others: its
    /// approvers but me and those who already reviewed it.
    pub fn others_to_approve<'a>(&self, request: &'a AccessRequest) -> Vec<&'a str> {
        request
            .approvers
            .iter()
            .filter(|a| *a != self.user() && !request.reviews.iter().any(|r| r.reviewer == **a))
            .map(String::as_str)
            .collect()
    }

    pub fn selected_review(&self) -> Option<(ReviewRow, &AccessRequest)> {
        let row = *self.review_rows().get(self.cursors.reviews)?;
        let request = match row {
            ReviewRow::Pending(i) | ReviewRow::Waiting(i) => self.queue.get(i)?,
            ReviewRow::BreakGlass(i) => self.break_glass.get(i)?,
        };
        Some((row, request))
    }

    /// How lists name a role: by its id where people know ids, else by its
    /// name (the id when the backend gave no name).
    /// A grant's risk tier: its request's, as filed, else its role's now;
    /// `None` where the broker has no tiers.
    pub fn grant_tier(&self, grant: &Grant) -> Option<u8> {
        self.requests
            .iter()
            .find(|request| request.id == grant.request_id)
            .and_then(|request| request.tier)
            .or_else(|| {
                self.roles
                    .iter()
                    .find(|role| role.id == grant.role)
                    .and_then(|role| role.tier)
            })
    }

    pub fn role_label<'a>(&self, id: &'a str, name: &'a str) -> &'a str {
        if self.capabilities.readable_role_ids || name.is_empty() {
            id
        } else {
            name
        }
    }

    /// The Activity screen's rows: the events of the actors chosen.
    pub fn visible_activity(&self) -> Vec<&AuditEvent> {
        self.activity
            .iter()
            .filter(|e| self.actors.admits(e))
            .collect()
    }

    /// What the request, grant and review cursors point at, by id.
    pub fn selection(&self) -> Selection {
        Selection {
            request: self.selected_request().map(|r| r.id.clone()),
            grant: self.selected_grant().map(|g| g.id.clone()),
            review: self.selected_review().map(|(_, r)| r.id.clone()),
            incident: self.selected_incident(),
        }
    }

    /// Puts each cursor back on the item it pointed at before its list
    /// changed (a live event, a reload, a re-sort), so a key pressed next
    /// acts on what the person was looking at. An item that left its list
    /// leaves the cursor where it is, on the neighbour that took its
    /// place: unless the person's own decision or revocation took it out,
    /// that list is marked [`Lost`]. Anything else in flight for it (an
    /// extension, a credential, a claim) is no reason to leave the next key
    /// to the neighbour.
    pub fn reselect(&mut self, selection: &Selection) {
        /// Where the item is now; `Err` if it was selected and is gone.
        fn position<'a>(
            mut ids: impl Iterator<Item = &'a str>,
            wanted: &Option<String>,
        ) -> Result<Option<usize>, String> {
            let Some(wanted) = wanted.as_deref() else {
                return Ok(None);
            };
            ids.position(|id| id == wanted)
                .map(Some)
                .ok_or_else(|| wanted.to_string())
        }
        let requests = position(
            self.requests.iter().map(|r| r.id.as_str()),
            &selection.request,
        );
        let grants = position(self.grants.iter().map(|g| g.id.as_str()), &selection.grant);
        let rows = self.review_rows();
        let reviews = rows.iter().filter_map(|row| match *row {
            ReviewRow::Pending(i) | ReviewRow::Waiting(i) => self.queue.get(i),
            ReviewRow::BreakGlass(i) => self.break_glass.get(i),
        });
        let reviews = position(reviews.map(|r| r.id.as_str()), &selection.review);
        let others = |gone: &String| !self.deciding.contains(gone) && !self.revoking.contains(gone);
        match requests {
            Ok(Some(i)) => self.cursors.requests = i,
            Ok(None) => {}
            Err(gone) => self.lost.requests |= others(&gone),
        }
        match grants {
            Ok(Some(i)) => self.cursors.grants = i,
            Ok(None) => {}
            Err(gone) => self.lost.grants |= others(&gone),
        }
        match reviews {
            Ok(Some(i)) => self.cursors.reviews = i,
            Ok(None) => {}
            Err(gone) => self.lost.reviews |= others(&gone),
        }
        // A list left empty has no neighbour for a key to fall on: what
        // comes into it later is chosen anew.
        if self.requests.is_empty() {
            self.lost.requests = false;
        }
        if self.grants.is_empty() {
            self.lost.grants = false;
        }
        if self.queue.is_empty() && self.break_glass.is_empty() {
            self.lost.reviews = false;
        }
        let incidents = self.incident_refs();
        if let Ok(Some(i)) = position(incidents.iter().map(String::as_str), &selection.incident) {
            self.cursors.incidents = i;
        }
    }

    /// My active grant for a role, if any.
    pub fn grant_for(&self, role: &str) -> Option<&Grant> {
        self.grants.iter().find(|g| g.role == role)
    }

    /// My open (pending or scheduled) access request for a role, if any.
    pub fn open_request_for(&self, role: &str) -> Option<&AccessRequest> {
        self.requests.iter().find(|r| {
            r.role == role
                && matches!(
                    r.state,
                    hoist_api::RequestState::Pending | hoist_api::RequestState::Approved
                )
        })
    }

    /// Grants whose revocation the broker has not confirmed yet, soonest
    /// to end first.
    pub fn unconfirmed_revocations(&self) -> Vec<&Grant> {
        self.grants
            .iter()
            .filter(|g| self.revoking.contains(&g.id))
            .collect()
    }

    /// Active grants whose revocation the broker refused, with why.
    pub fn refused_revocations(&self) -> Vec<(&Grant, &str)> {
        self.grants
            .iter()
            .filter(|g| g.state == hoist_api::GrantState::Active && g.expires_at > self.now)
            .filter_map(|g| Some((g, self.revoke_refused.get(&g.id)?.as_str())))
            .collect()
    }

    pub fn time_left(&self, grant: &Grant) -> TimeDelta {
        (grant.expires_at - self.now).max(TimeDelta::zero())
    }

    /// Incident references I know of (my requests, my grants, my review
    /// queue), most recent first.
    pub fn incident_refs(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut refs = Vec::new();
        let mut dated: Vec<(chrono::DateTime<Utc>, &str)> = self
            .requests
            .iter()
            .chain(&self.queue)
            .chain(&self.break_glass)
            .filter_map(|r| r.incident.as_deref().map(|i| (r.created_at, i)))
            .chain(
                self.grants
                    .iter()
                    .filter_map(|g| g.incident.as_deref().map(|i| (g.starts_at, i))),
            )
            .collect();
        dated.sort_by_key(|d| std::cmp::Reverse(d.0));
        for (_, reference) in dated {
            if seen.insert(reference) {
                refs.push(reference.to_string());
            }
        }
        refs
    }

    pub fn selected_incident(&self) -> Option<String> {
        self.incident_refs().into_iter().nth(self.cursors.incidents)
    }

    /// How many rows one page of a list holds at the current size.
    pub fn page(&self) -> usize {
        usize::from(self.size.1.saturating_sub(8)).max(1)
    }
}
