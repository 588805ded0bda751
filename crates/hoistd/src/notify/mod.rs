//! Notifications to people: a request filed, decided or soon to lapse, a
//! break-glass activation, a grant soon to end, a provisioning failure, a
//! removal failing (access that outlives its grant),
//! sent to the policy's `[[notify]]` channels (Slack, Microsoft Teams or
//! plain JSON), signed as webhook targets sign their calls.
//!
//! - [`Channel`] is one configured channel (parsed by `policy/notify.rs`):
//!   its format, its endpoint (a secret URL), which events and which roles,
//!   approver groups and tiers it covers, and how long before an end it
//!   reminds.
//! - [`Notice`] is what one notification says, kept in the store as JSON;
//!   [`format::render`] makes the body a channel's format asks for.
//! - [`outbox`] is the worker: it asks the broker (through [`Notifier`]) to
//!   route new audit events and write due reminders, then sends each due
//!   notification outside any transaction and records the attempt, retrying
//!   with jittered, capped backoff. It runs on the leader only.
//!
//! Like the target layer, this module imports nothing above it; the broker
//! implements [`Notifier`].

pub mod format;
pub mod outbox;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{Notification, NotificationDelivery};
use crate::target::webhook::Endpoint;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A request waits for approval (to its approvers).
    RequestFiled,
    /// A request was approved or denied (to its requester).
    RequestDecided,
    /// A pending request lapses soon (to its approvers).
    RequestLapsing,
    /// Someone broke glass (to the role's approvers, who review it).
    BreakGlass,
    /// A grant ends soon (to its holder).
    GrantEnding,
    /// A grant's access could not be made at its target (to the holder and
    /// whoever runs the target).
    ProvisionFailed,
    /// A grant ended, and its access could not be removed at its target:
    /// access that outlives its grant until a retry succeeds (to the holder
    /// and whoever runs the target).
    RemovalFailed,
}

impl Event {
    pub const ALL: [Event; 7] = [
        Event::RequestFiled,
        Event::RequestDecided,
        Event::RequestLapsing,
        Event::BreakGlass,
        Event::GrantEnding,
        Event::ProvisionFailed,
        Event::RemovalFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::RequestFiled => "request_filed",
            Event::RequestDecided => "request_decided",
            Event::RequestLapsing => "request_lapsing",
            Event::BreakGlass => "break_glass",
            Event::GrantEnding => "grant_ending",
            Event::ProvisionFailed => "provision_failed",
            Event::RemovalFailed => "removal_failed",
        }
    }

    pub fn parse(text: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|event| event.as_str() == text)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body a channel is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Slack incoming webhook: Block Kit blocks with a fallback text.
    Slack,
    /// A Microsoft Teams Workflows webhook: a message with one Adaptive Card.
    Teams,
    /// The [`Notice`] itself.
    Json,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Slack, Format::Teams, Format::Json];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Slack => "slack",
            Format::Teams => "teams",
            Format::Json => "json",
        }
    }

    pub fn parse(text: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|format| format.as_str() == text)
    }
}

/// One `[[notify]]` channel. Its `Debug` shows neither the URL nor the
/// secret.
#[derive(Debug)]
pub struct Channel {
    pub name: String,
    pub format: Format,
    pub events: BTreeSet<Event>,
    /// Roles it covers by id; with `groups` and `tiers` empty too, every role.
    pub roles: BTreeSet<String>,
    /// Roles it covers by one of their approver groups.
    pub groups: BTreeSet<String>,
    /// Roles it covers by their risk tier.
    pub tiers: BTreeSet<u8>,
    /// How long before a request lapses or a grant ends it reminds.
    pub remind_before: Duration,
    pub endpoint: Endpoint,
}

impl Channel {
    /// Whether the channel takes `event` about a role with these approver
    /// groups and tier: the event is one of its own, and it lists nothing
    /// to choose roles by, or the role matches one of what it lists.
    pub fn covers(
        &self,
        event: Event,
        role: &str,
        approver_groups: &[String],
        tier: Option<u8>,
    ) -> bool {
        if !self.events.contains(&event) {
            return false;
        }
        let everything = self.roles.is_empty() && self.groups.is_empty() && self.tiers.is_empty();
        everything
            || self.roles.contains(role)
            || approver_groups.iter().any(|g| self.groups.contains(g))
            || tier.is_some_and(|tier| self.tiers.contains(&tier))
    }
}

/// The policy's channels, in the file's order.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    channels: Vec<Arc<Channel>>,
}

impl Channels {
    pub fn get(&self, name: &str) -> Option<&Arc<Channel>> {
        self.channels.iter().find(|c| c.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Channel>> {
        self.channels.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Adds a channel; false if the name is taken.
    pub fn insert(&mut self, channel: Channel) -> bool {
        if self.get(&channel.name).is_some() {
            return false;
        }
        self.channels.push(Arc::new(channel));
        true
    }

    /// Whether any channel takes this event at all.
    pub fn want(&self, event: Event) -> bool {
        self.channels.iter().any(|c| c.events.contains(&event))
    }
}

/// A link template such as `https://hoist.example.com/requests/{id}`: the
/// placeholder is replaced by the value, percent-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    template: String,
    placeholder: &'static str,
}

impl Link {
    /// Checks a template: https (http only to a loopback address), with the
    /// placeholder in it.
    pub fn new(template: &str, placeholder: &'static str) -> Result<Link, String> {
        if !template.contains(placeholder) {
            return Err(format!("must contain {placeholder}"));
        }
        let sample = template.replace(placeholder, "x");
        Endpoint::check_url(&sample).map_err(|why| format!("is not an acceptable link: {why}"))?;
        Ok(Link {
            template: template.to_string(),
            placeholder,
        })
    }

    pub fn fill(&self, value: &str) -> String {
        self.template
            .replace(self.placeholder, &percent_encode(value))
    }
}

/// Every byte but RFC 3986's unreserved characters, percent-encoded.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// What one notification says: the facts of the request (and grant) it is
/// about, as the broker knew them when it wrote the notification. The JSON
/// format sends exactly this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub event: Event,
    /// When what it reports happened (for a reminder, when it was written).
    pub at: DateTime<Utc>,
    /// The people it is for: the approvers (filed, lapsing, break-glass),
    /// the requester (decided) or the holder (ending, provisioning or removal
    /// failed).
    pub to: Vec<String>,
    pub request_id: String,
    /// `access` or `extension`.
    pub kind: String,
    pub role: String,
    pub role_name: String,
    /// The role's risk tier as filed, 0 the most critical.
    pub tier: Option<u8>,
    pub requester: String,
    pub justification: String,
    pub ticket: Option<String>,
    /// The ticket in the operator's tracker (`settings.ticket_url`).
    pub ticket_url: Option<String>,
    pub incident: Option<String>,
    pub duration_secs: u64,
    pub break_glass: bool,
    pub approvals_required: u32,
    /// Where the request opens (`settings.request_url`), if set.
    pub url: Option<String>,
    /// When a pending request lapses.
    pub lapses_at: Option<DateTime<Utc>>,
    /// `approved` or `denied`, for a decision.
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    /// The decider's comment.
    pub comment: Option<String>,
    pub grant_id: Option<String>,
    /// When the grant ends.
    pub expires_at: Option<DateTime<Utc>>,
    /// The target whose provisioning or removal failed, and why.
    pub target: Option<String>,
    pub error: Option<String>,
}

/// What the worker needs from the broker. Each method is one transaction,
/// and blocks.
pub trait Notifier: Send + Sync + 'static {
    /// The channels of the policy in force.
    fn channels(&self) -> Channels;
    /// Whether this instance still leads by its own clock: checked just
    /// before each post, so a leader paused past its term (its worker not
    /// yet told) posts nothing the next leader will post again.
    fn leads_now(&self) -> bool;
    /// Routes audit events past the cursor to the channels that take them:
    /// writes their notifications and moves the cursor, in one
    /// transaction. True if more events are waiting.
    fn route(&self) -> crate::error::Result<bool>;
    /// Writes the reminders due now (each once); returns when the next one
    /// falls due.
    fn remind(&self) -> crate::error::Result<Option<DateTime<Utc>>>;
    /// Notifications due at `now`, soonest first; none to a channel in
    /// `skip`.
    fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> crate::error::Result<Vec<Notification>>;
    /// Records one attempt: the notification as it now stands (unless it
    /// was already done) and its line in the delivery log, in one
    /// transaction.
    fn record_notification(
        &self,
        notification: &Notification,
        delivery: &NotificationDelivery,
    ) -> crate::error::Result<()>;
    /// The state of request `id` if it is no longer pending (decided,
    /// withdrawn or lapsed since its notice was written), read just before
    /// a notice that asks for a decision goes out late.
    fn decided(&self, id: &str) -> crate::error::Result<Option<hoist_api::RequestState>> {
        let _ = id;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_their_value_and_refuse_plain_http() {
        let link = Link::new("https://hoist.example.com/requests/{id}", "{id}").unwrap();
        assert_eq!(
            link.fill("req_1a"),
            "https://hoist.example.com/requests/req_1a"
        );
        let tickets = Link::new("https://tracker.example/browse/{ticket}", "{ticket}").unwrap();
        assert_eq!(
            tickets.fill("INC 1/2?x=<y>"),
            "https://tracker.example/browse/INC%201%2F2%3Fx%3D%3Cy%3E"
        );
        assert!(
            Link::new("http://hoist.example.com/{id}", "{id}")
                .unwrap_err()
                .contains("https")
        );
        assert!(
            Link::new("https://hoist.example.com/", "{id}")
                .unwrap_err()
                .contains("{id}")
        );
        assert!(Link::new("http://127.0.0.1:8080/r/{id}", "{id}").is_ok());
    }

    #[test]
    fn events_and_formats_use_their_policy_names() {
        for event in Event::ALL {
            assert_eq!(Event::parse(event.as_str()), Some(event));
            assert_eq!(
                serde_json::to_value(event).unwrap(),
                serde_json::Value::String(event.as_str().into())
            );
        }
        for format in Format::ALL {
            assert_eq!(Format::parse(format.as_str()), Some(format));
        }
    }
}
