//! The client's config file: brokers as named profiles, favourites, theme
//! overrides and the ticket link. It never holds a token; sessions live in
//! the OS keyring (see [`crate::auth::secrets`]), or, for a profile that opted in
//! with `insecure_file_store`, in files under [`sessions_dir`].
//!
//! The file is `<config dir>/config.toml`, where the config dir is
//! `$HOIST_CONFIG_DIR` if set, else the platform's config dir for hoist
//! (`~/.config/hoist` on Linux).
//!
//! Long because the file's every section and its one writer (which edits
//! the file in place, keeping what it says as written) belong together; its
//! unit tests are below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::endpoint::{self, UnusableUrl};

/// Environment variable that overrides the config dir.
pub const CONFIG_DIR_ENV: &str = "HOIST_CONFIG_DIR";
/// Name of the config file inside the config dir.
pub const CONFIG_FILE: &str = "config.toml";
/// Name of the dir inside the config dir that holds session files, for
/// profiles with `insecure_file_store`.
pub const SESSIONS_DIR: &str = "sessions";
/// Profile name used when a broker is given on the command line and no
/// profile has that broker yet.
pub const DEFAULT_PROFILE: &str = "default";

/// What `hoist` suggests when it has no broker to talk to.
const NO_BROKER_HINT: &str = "run `hoist --broker URL login --with-token` to sign in to a broker, \
     or `hoist demo` to try hoist against a local demo broker";

/// Written at the top of every saved file, because saving rewrites the file.
const SAVED_HEADER: &str = "# hoist client config, updated by `hoist` when you sign in or pick favourites.\n\
# Tokens are never stored here: they live in the OS keyring (or in sessions/ for a profile\n\
# with insecure_file_store).\n\n";

/// A commented example of every setting, for `hoist config example` and the docs.
pub const EXAMPLE: &str = r##"# hoist client config.
#
# Lives at $HOIST_CONFIG_DIR/config.toml, or the platform config dir
# (~/.config/hoist/config.toml on Linux). hoist rewrites it when you sign in
# or toggle a favourite. It never holds a token: sessions are kept in the OS
# keyring (Secret Service, or the kernel keyring as a fallback).

# The profile used when neither --broker nor --profile is given. Without it,
# hoist uses the only profile there is.
default_profile = "work"

# Where a ticket reference links to; {ticket} is replaced by the reference.
ticket_url = "https://tracker.example/browse/{ticket}"

# One profile per broker (or per identity on a broker).
# `hoist --broker URL login --with-token` creates or updates one.
[profiles.work]
# https anywhere; plain http only to a loopback address.
broker = "https://hoist.corp.example"
# Who you signed in as; filled in by `hoist login`.
user = "alice"
# Roles pinned to the top of the role list (toggle with `f`).
favourites = ["prod-db-admin", "k8s-prod-view"]
# Only for machines with no keyring at all: keep this profile's session in a
# plain file (mode 0600) under <config dir>/sessions. Anyone with access to
# this account or its backups can read the token there. Set by
# `hoist login --insecure-file-store`; hoist warns each time it is used.
# insecure_file_store = true

[profiles.demo]
broker = "http://127.0.0.1:8700"

# Microsoft Entra Privileged Identity Management, through Microsoft Graph,
# signed in with your organisation's own app registration (see the README).
[profiles.entra]
kind = "entra"
tenant = "contoso.onmicrosoft.com"
client_id = "11111111-1111-1111-1111-111111111111"
# National clouds: Graph and the sign-in authority of that cloud, e.g.
# US Government: graph = "https://graph.microsoft.us",
#                authority = "https://login.microsoftonline.us"
# China (21Vianet): graph = "https://microsoftgraph.chinacloudapi.cn",
#                   authority = "https://login.chinacloudapi.cn"
# graph = "https://graph.microsoft.com"
# authority = "https://login.microsoftonline.com"
# How often hoist asks Graph for changes while the TUI is open.
# poll = "15s"
# The ticket system named with each ticket number (PIM's ticketInfo); by
# default the host of ticket_url.
# ticket_system = "ServiceNow"

# Colour overrides: any named colour of the theme, as a colour name
# ("red", "light-blue"), an index ("42") or "#rrggbb". Unset names keep
# their defaults.
[theme]
accent = "#5fafff"
danger = "light-red"

# Named sets of roles to request together.
[bundles.incident]
roles = ["prod-db-admin", "k8s-prod-admin"]
"##;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot find a config directory (no home directory?); set {CONFIG_DIR_ENV} to choose one"
    )]
    NoDir,
    #[error("cannot read {}: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}:{line}:{column}: {reason}", .path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("cannot save {}: {reason}", .path.display())]
    Write { path: PathBuf, reason: String },
    #[error("no profile named `{name}`; known profiles: {}", list(.known))]
    UnknownProfile { name: String, known: Vec<String> },
    #[error("no broker configured: {NO_BROKER_HINT}")]
    NoBroker,
    #[error(
        "several profiles and no default_profile: pick one with `hoist --profile NAME` \
         or set default_profile in the config (profiles: {})",
        list(.known)
    )]
    NoDefaultProfile { known: Vec<String> },
    /// `--broker URL` with no `--profile`, and more than one profile talks
    /// to it: which session and settings are meant cannot be guessed.
    #[error(
        "several profiles use {broker}: pick one with `hoist --profile NAME` (profiles: {})",
        list(.known)
    )]
    SeveralProfiles { broker: String, known: Vec<String> },
    /// `profile` is `None` for a URL given with `--broker`. The refusal is
    /// part of the message, so it is not also a `source`: printing the chain
    /// would say it twice.
    #[error("{}broker URL {url}", profile_prefix(.profile))]
    BadBroker {
        profile: Option<String>,
        url: UnusableUrl,
    },
    /// A profile whose settings do not make a usable broker: names the
    /// profile and the setting.
    #[error("profile `{profile}`: {reason}")]
    BadProfile { profile: String, reason: String },
    /// A setting outside the profiles that cannot work as written.
    #[error("{}: {setting}: {reason}", .path.display())]
    BadSetting {
        path: PathBuf,
        setting: &'static str,
        reason: String,
    },
}

fn profile_prefix(profile: &Option<String>) -> String {
    profile
        .as_ref()
        .map(|name| format!("profile `{name}`: "))
        .unwrap_or_default()
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    /// Link template for ticket references; `{ticket}` is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_url: Option<String>,
    /// `[theme]` is a partial override: names the theme does not know are
    /// reported by the theme, not here, so the file stays usable across versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub theme: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, Profile>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bundles: BTreeMap<String, Bundle>,
    /// Where this config was loaded from, and where `save` writes it.
    #[serde(skip)]
    path: Option<PathBuf>,
}

/// The file `old` changed to say what `new` says, keeping its comments,
/// order and layout wherever the two agree: a key whose value is the same
/// is left as written, a changed value is replaced in its place (with the
/// comments around it), a key `new` lacks is removed and one it adds goes
/// at the end of its table. A table the file writes inline stays inline,
/// and an array keeps the elements (and their comments) it still holds;
/// a file whose lines end in CRLF keeps them. `None` if either does not
/// parse.
fn edit_in_place(old: &str, new: &str) -> Option<String> {
    let mut kept: toml_edit::DocumentMut = old.parse().ok()?;
    let new: toml_edit::DocumentMut = new.parse().ok()?;
    merge_table(kept.as_table_mut(), new.as_table());
    let edited = kept.to_string();
    // toml_edit writes its own line breaks as LF; a file written with CRLF
    // (on Windows) keeps CRLF throughout.
    Some(if old.contains("\r\n") {
        edited.replace("\r\n", "\n").replace('\n', "\r\n")
    } else {
        edited
    })
}

fn merge_table(kept: &mut toml_edit::Table, new: &toml_edit::Table) {
    use toml_edit::{Item, Value};
    kept.retain(|key, _| new.contains_key(key));
    for (key, item) in new.iter() {
        match (kept.get_mut(key), item) {
            (Some(Item::Table(was)), Item::Table(now)) => merge_table(was, now),
            (Some(Item::Value(was)), Item::Value(now)) => merge_value(was, now),
            (Some(Item::Value(Value::InlineTable(was))), Item::Table(now)) => {
                merge_inline(was, &now.clone().into_inline_table());
            }
            (Some(slot), _) => *slot = placed(item.clone()),
            (None, _) => {
                kept.insert(key, placed(item.clone()));
            }
        }
    }
    // A dotted table with no keys left is written as nothing at all.
    if kept.is_dotted() && kept.is_empty() {
        kept.set_dotted(false);
        kept.set_implicit(false);
    }
}

/// A table from `new`, to be added: with no place of its own in the file,
/// it is written after the table before it (its siblings), not where it
/// stood in `new`.
fn placed(mut item: toml_edit::Item) -> toml_edit::Item {
    fn unplace(table: &mut toml_edit::Table) {
        table.set_position(None);
        for (_, item) in table.iter_mut() {
            match item {
                toml_edit::Item::Table(table) => unplace(table),
                toml_edit::Item::ArrayOfTables(tables) => tables.iter_mut().for_each(unplace),
                _ => {}
            }
        }
    }
    if let toml_edit::Item::Table(table) = &mut item {
        unplace(table);
    }
    item
}

fn merge_value(was: &mut toml_edit::Value, now: &toml_edit::Value) {
    use toml_edit::Value;
    if same_value(was, now) {
        return;
    }
    match (was, now) {
        (Value::Array(was), Value::Array(now)) => merge_array(was, now),
        (Value::InlineTable(was), Value::InlineTable(now)) => merge_inline(was, now),
        (was, now) => {
            let decor = was.decor().clone();
            *was = now.clone();
            *was.decor_mut() = decor;
        }
    }
}

fn merge_inline(kept: &mut toml_edit::InlineTable, new: &toml_edit::InlineTable) {
    kept.retain(|key, _| new.contains_key(key));
    for (key, value) in new.iter() {
        match kept.get_mut(key) {
            Some(was) => merge_value(was, value),
            None => {
                kept.insert(key, value.clone());
            }
        }
    }
    if kept.is_dotted() && kept.is_empty() {
        kept.set_dotted(false);
    }
}

/// One element of a TOML array as a person reads it: the comment lines
/// above it with its indentation, the value, and the comment ending its
/// line. toml_edit keeps that last comment in the next element's prefix
/// (or, for the last element, in the array's trailing text), so it is
/// taken from there.
struct Element {
    above: String,
    value: toml_edit::Value,
    end_of_line: String,
}

/// Splits the text between two elements at its first line break: the end
/// of the line before, and what leads to the next element.
fn at_line_break(text: &str) -> (&str, &str) {
    text.find('\n')
        .map_or(("", text), |at| (&text[..at], &text[at..]))
}

fn raw(text: Option<&toml_edit::RawString>) -> &str {
    text.and_then(|text| text.as_str()).unwrap_or_default()
}

/// `kept`, an empty list holding a comment, given `new`'s elements: the
/// comment stays, and the elements go on lines of their own after it,
/// indented as it is.
fn fill_commented(kept: &mut toml_edit::Array, new: &toml_edit::Array) {
    let inside = raw(kept.trailing().into());
    let (comments, closing) = inside.split_at(inside.rfind('\n').unwrap_or(inside.len()));
    let indent: String = match comments.rfind('\n') {
        Some(at) => comments[at + 1..]
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect(),
        None => "    ".to_string(),
    };
    let mut merged = toml_edit::Array::new();
    for (index, value) in new.iter().enumerate() {
        let mut value = value.clone();
        let before = if index == 0 { comments } else { "" };
        value.decor_mut().clear();
        value.decor_mut().set_prefix(format!("{before}\n{indent}"));
        merged.push_formatted(value);
    }
    merged.set_trailing_comma(true);
    merged.set_trailing(if closing.is_empty() { "\n" } else { closing });
    *merged.decor_mut() = kept.decor().clone();
    *kept = merged;
}

/// `next`, the text after `before`, moved to a line of its own (indented
/// by `indent`) when `before` ends in a comment on the same line.
fn after_comment(before: &str, next: &str, indent: &str) -> String {
    if before.contains('#') && !next.starts_with('\n') {
        format!("\n{indent}{}", next.trim_start_matches([' ', '\t']))
    } else {
        next.to_string()
    }
}

/// `kept` made to hold `new`'s elements in `new`'s order: each element it
/// already holds keeps its comments (above it and ending its line), and
/// one it gains is indented as the others.
fn merge_array(kept: &mut toml_edit::Array, new: &toml_edit::Array) {
    let inside = raw(kept.trailing().into());
    if kept.is_empty() && !new.is_empty() && inside.contains('#') {
        fill_commented(kept, new);
        return;
    }
    if new.is_empty() || kept.is_empty() {
        let decor = kept.decor().clone();
        *kept = new.clone();
        *kept.decor_mut() = decor;
        return;
    }
    let values: Vec<&toml_edit::Value> = kept.iter().collect();
    let last = values.len() - 1;
    // What follows the last value: its suffix (when no comma follows it)
    // and the trailing text, up to the `]`.
    let tail = if kept.trailing_comma() {
        inside.to_string()
    } else {
        format!("{}{inside}", raw(values[last].decor().suffix()))
    };
    let first_prefix = raw(values[0].decor().prefix());
    // A comment on the `[` line stays there.
    let (header, first_above) = match first_prefix.find('\n') {
        Some(at) => (&first_prefix[..at], &first_prefix[at..]),
        None => (first_prefix, ""),
    };
    let (last_end, closing) = at_line_break(&tail);
    let mut old: Vec<Option<Element>> = Vec::with_capacity(values.len());
    for (at, value) in values.iter().enumerate() {
        let above = if at == 0 {
            first_above
        } else {
            at_line_break(raw(value.decor().prefix())).1
        };
        let end_of_line = match values.get(at + 1) {
            Some(next) => at_line_break(raw(next.decor().prefix())).0,
            None => last_end,
        };
        let mut value = (*value).clone();
        value.decor_mut().set_prefix("");
        if at == last && !kept.trailing_comma() {
            value.decor_mut().set_suffix("");
        }
        old.push(Some(Element {
            above: above.to_string(),
            value,
            end_of_line: end_of_line.to_string(),
        }));
    }
    // How an element is led to when the file shows none: on a line of its
    // own, indented as the last one, or after a space.
    let on_lines = old
        .iter()
        .flatten()
        .rev()
        .find_map(|e| e.above.rfind('\n').map(|at| e.above[at..].to_string()));
    let multi_line = on_lines.is_some();
    let last_above = old[last].as_ref().map_or("", |e| e.above.as_str());
    let lead = match on_lines {
        Some(indented) => indented,
        None if last > 0 && !last_above.is_empty() => last_above.to_string(),
        None => " ".to_string(),
    };
    // A comment ends its line: what follows it starts on the next.
    let indent = if multi_line { &lead[1..] } else { "" };
    let elements: Vec<Element> = new
        .iter()
        .map(|value| {
            let held = old.iter_mut().find(|held| {
                held.as_ref()
                    .is_some_and(|held| same_value(&held.value, value))
            });
            held.and_then(Option::take).unwrap_or_else(|| {
                let mut value = value.clone();
                value.decor_mut().clear();
                Element {
                    above: lead.clone(),
                    value,
                    end_of_line: String::new(),
                }
            })
        })
        .collect();
    let mut merged = toml_edit::Array::new();
    let mut end_before = String::new();
    for (index, mut element) in elements.into_iter().enumerate() {
        let above = match (index, multi_line) {
            (0, true) => element.above,
            (0, false) => String::new(),
            _ if element.above.is_empty() => lead.clone(),
            _ => element.above,
        };
        let lead_in = if index == 0 {
            header
        } else {
            end_before.as_str()
        };
        let above = after_comment(lead_in, &above, indent);
        element
            .value
            .decor_mut()
            .set_prefix(format!("{lead_in}{above}"));
        end_before = element.end_of_line;
        merged.push_formatted(element.value);
    }
    merged.set_trailing_comma(kept.trailing_comma());
    let closing = after_comment(&end_before, closing, "");
    merged.set_trailing(format!("{end_before}{closing}"));
    *merged.decor_mut() = kept.decor().clone();
    *kept = merged;
}

/// Whether two values say the same, however each is laid out.
fn same_value(a: &toml_edit::Value, b: &toml_edit::Value) -> bool {
    let bare = |v: &toml_edit::Value| {
        let mut v = v.clone();
        v.decor_mut().clear();
        format!("x = {v}").parse::<toml::Table>().ok()
    };
    bare(a).is_some_and(|a| Some(a) == bare(b))
}

/// Which kind of broker a profile talks to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// hoistd's HTTP API (the default).
    #[default]
    Hoistd,
    /// Microsoft Entra Privileged Identity Management, over Microsoft Graph.
    Entra,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hoistd => "hoistd",
            Kind::Entra => "entra",
        }
    }

    fn is_hoistd(&self) -> bool {
        *self == Kind::Hoistd
    }
}

/// Microsoft Graph in the global cloud.
pub const GRAPH_GLOBAL: &str = "https://graph.microsoft.com";
/// The sign-in authority of the global cloud.
pub const AUTHORITY_GLOBAL: &str = "https://login.microsoftonline.com";
/// How often the Entra backend asks Graph for changes, unless the profile says.
pub const ENTRA_POLL_DEFAULT: std::time::Duration = std::time::Duration::from_secs(15);

/// Where an Entra profile's tenant lives: every URL checked by
/// [`endpoint::check`] and normalised, the cloud's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraTenant {
    /// The tenant: its id (a GUID) or one of its domains.
    pub tenant: String,
    /// The customer's own app registration (a public client).
    pub client_id: String,
    /// Graph's root, without the version (`https://graph.microsoft.com`).
    pub graph: String,
    /// The cloud's sign-in authority, without the tenant.
    pub authority: String,
    /// How often to ask Graph for changes while following them.
    pub poll: std::time::Duration,
    /// What goes in `ticketInfo.ticketSystem` beside a ticket number: the
    /// profile's `ticket_system`, else the host `ticket_url` links to.
    pub ticket_system: Option<String>,
}

impl EntraTenant {
    /// The tenant's own authority, where its people sign in.
    pub fn tenant_authority(&self) -> String {
        format!("{}/{}", self.authority, self.tenant)
    }

    /// What stands for a hoistd broker's URL: it names the profile's
    /// sessions in the keyring and its cached grants. The tenant's
    /// authority and the app registration signed in with, since a session
    /// (its refresh token above all) is one app's: two profiles of one
    /// tenant with different `client_id`s keep a session each.
    pub fn broker(&self) -> String {
        format!("{}?client_id={}", self.tenant_authority(), self.client_id)
    }
}

/// The kind of broker a target is, with what that kind needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Hoistd,
    Entra(EntraTenant),
}

impl Backend {
    pub fn kind(&self) -> Kind {
        match self {
            Backend::Hoistd => Kind::Hoistd,
            Backend::Entra(_) => Kind::Entra,
        }
    }
}

/// A broker, and who we are there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// hoistd's URL; an Entra profile has none (its tenant says where).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub broker: String,
    #[serde(default, skip_serializing_if = "Kind::is_hoistd")]
    pub kind: Kind,
    /// Entra: the tenant id or a domain of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Entra: the application (client) id of the organisation's app registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Entra: Microsoft Graph's root for a national cloud; the global one by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<String>,
    /// Entra: the sign-in authority for a national cloud; the global one by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Entra: how often to ask Graph for changes (`15s`, `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<String>,
    /// Entra: the name of the ticket system tickets are from (`ServiceNow`),
    /// sent with each ticket number; by default the host of `ticket_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_system: Option<String>,
    /// The user the broker said the token belongs to; names the keyring entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub favourites: Vec<String>,
    /// The user opted into keeping this profile's session in a plain file
    /// ([`crate::auth::secrets::init_file_store`]) rather than the OS keyring.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_file_store: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A named set of roles requested together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub roles: Vec<String>,
}

/// The broker a command talks to, after the command line and the config
/// have been weighed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The profile that holds this broker (it may not exist yet, before a
    /// first login).
    pub profile: String,
    /// Normalised by [`endpoint::normalise`], without a trailing slash, so the
    /// same broker always names the same keyring entry.
    pub broker: String,
    /// Who we signed in as, if we have.
    pub user: Option<String>,
    /// The profile keeps its session in a plain file, by the user's choice:
    /// the caller must call [`crate::auth::secrets::init_file_store`] with
    /// [`sessions_dir`] before anything touches the keyring.
    pub insecure_file_store: bool,
    /// What kind of broker it is. For Entra, `broker` is
    /// [`EntraTenant::broker`], which names the keyring entry and the
    /// prompt cache.
    pub backend: Backend,
    /// The global options that choose this target on a command line of
    /// its own (`--profile work`, `--broker URL`); none when a bare
    /// `hoist` does. What [`Target::command`] names.
    pub chosen_by: Vec<String>,
}

impl Target {
    /// The command line, quoted for a POSIX shell, that runs `rest` (a
    /// subcommand and its arguments, such as `login --with-token`) against
    /// this target wherever it is typed: a hint that names another
    /// profile's broker would send a token there.
    pub fn command(&self, rest: &str) -> String {
        format!("{} {rest}", self.hoist())
    }

    /// `hoist` and the options that choose this target, quoted for a POSIX
    /// shell: what a hint's command begins with.
    pub fn hoist(&self) -> String {
        let mut words = vec!["hoist".to_string()];
        words.extend(
            self.chosen_by
                .iter()
                .map(|word| crate::text::shell_word(word)),
        );
        words.join(" ")
    }

    /// The same, naming both the profile and the broker: for a profile's
    /// old broker, which `--broker` has since pointed it away from.
    pub fn command_naming_both(&self, rest: &str) -> String {
        format!(
            "hoist --profile {} --broker {} {rest}",
            crate::text::shell_word(&self.profile),
            crate::text::shell_word(&self.broker)
        )
    }
}

/// Where session files are kept for profiles with `insecure_file_store`:
/// `<config dir>/sessions` (see [`Config::dir`]).
pub fn sessions_dir() -> Result<PathBuf, ConfigError> {
    Ok(Config::dir()?.join(SESSIONS_DIR))
}

impl Config {
    /// The config dir: `$HOIST_CONFIG_DIR`, else the platform config dir.
    pub fn dir() -> Result<PathBuf, ConfigError> {
        if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|dir| !dir.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        directories::ProjectDirs::from("dev", "hoist", "hoist")
            .map(|dirs| dirs.config_dir().to_path_buf())
            .ok_or(ConfigError::NoDir)
    }

    /// The path of the config file in [`Config::dir`].
    pub fn default_path() -> Result<PathBuf, ConfigError> {
        Ok(Self::dir()?.join(CONFIG_FILE))
    }

    /// Loads the config file; a missing file is an empty config.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(&Self::default_path()?)
    }

    /// Loads `path`; a missing file is an empty config that will be saved there.
    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config {
                    path: Some(path.to_path_buf()),
                    ..Config::default()
                });
            }
            Err(err) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    reason: err.to_string(),
                });
            }
        };
        let mut config = Self::parse(path, &text)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses config text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config = Self::parse_toml(path, text)?;
        if let Some(template) = &config.ticket_url
            && let Err(reason) = check_ticket_url(template)
        {
            return Err(ConfigError::BadSetting {
                path: path.to_path_buf(),
                setting: "ticket_url",
                reason,
            });
        }
        Ok(config)
    }

    fn parse_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str::<Config>(text).map_err(|err| {
            let (line, column) = err
                .span()
                .map(|span| hoist_api::text::line_and_column(text, span.start))
                .unwrap_or((1, 1));
            let mut reason = err.message().trim().to_string();
            if reason.starts_with("unknown field `token")
                || reason.starts_with("unknown field `access_token")
            {
                reason.push_str(
                    "; tokens never go in the config file: `hoist login --with-token` keeps them in the OS keyring",
                );
            }
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                reason,
            }
        })
    }

    /// Where [`Config::save`] writes: the file this was loaded from, else
    /// the default path.
    pub fn path(&self) -> Result<PathBuf, ConfigError> {
        match &self.path {
            Some(path) => Ok(path.clone()),
            None => Self::default_path(),
        }
    }

    /// Writes the config whole or not at all ([`crate::fs::write_private`]):
    /// a crash leaves either the old file or the new one. The directory is
    /// created readable by its owner only: it says which brokers and roles
    /// someone uses. What the file already says the same way is kept as
    /// written, comments and layout included (see [`edit_in_place`]).
    pub fn save(&self) -> Result<(), ConfigError> {
        let path = self.path()?;
        let write_error = |reason: String| ConfigError::Write {
            path: path.clone(),
            reason,
        };
        let text = toml::to_string(self).map_err(|err| write_error(err.to_string()))?;
        let written = std::fs::read_to_string(&path).ok();
        // An edit that would not read back as this config is not written:
        // the file is written afresh instead.
        let contents = written
            .filter(|old| !old.trim().is_empty())
            .and_then(|old| edit_in_place(&old, &text))
            .filter(|edited| {
                toml::from_str::<Config>(edited).is_ok_and(|mut read| {
                    read.path.clone_from(&self.path);
                    read == *self
                })
            })
            .unwrap_or_else(|| format!("{SAVED_HEADER}{text}"));
        crate::fs::write_private(&path, contents.as_bytes())
            .map_err(|err| write_error(err.to_string()))
    }

    /// Where and as whom `target`'s profile is signed in, when that is at
    /// another broker than the target's (`--broker` pointing the profile
    /// elsewhere): a sign-out there would find nothing to end.
    pub fn signed_in_elsewhere(&self, target: &Target) -> Option<(&str, &str)> {
        let profile = self.profiles.get(&target.profile)?;
        let user = profile.user.as_deref()?;
        let broker = endpoint::normalise(&profile.broker).ok()?;
        (profile.kind == Kind::Hoistd && broker != target.broker)
            .then_some((profile.broker.as_str(), user))
    }

    /// Whether a profile besides `target`'s signs in with its session: a
    /// session is kept by broker and person (and store), not by profile.
    pub fn shares_session(&self, target: &Target) -> bool {
        self.profile_names().iter().any(|other| {
            *other != target.profile
                && self.resolve(None, Some(other)).is_ok_and(|t| {
                    t.broker == target.broker
                        && t.user == target.user
                        && t.insecure_file_store == target.insecure_file_store
                })
        })
    }

    /// The sign-in that signing in at `target` leaves behind: its
    /// profile's at the broker it named until `--broker` pointed it
    /// elsewhere, where no command of the profile would look again. None
    /// if there is none, or another profile still signs in with it.
    pub fn replaced_by(&self, target: &Target) -> Option<Target> {
        self.resolve(None, Some(&target.profile))
            .ok()
            .filter(|old| old.broker != target.broker && old.user.is_some())
            .filter(|old| !self.shares_session(old))
    }

    /// Picks the broker to talk to. In order: `--broker URL` (with the
    /// profile that already has that broker, or `--profile`, or
    /// "default"); `--profile NAME`; `default_profile`; the only profile.
    pub fn resolve(
        &self,
        broker: Option<&str>,
        profile: Option<&str>,
    ) -> Result<Target, ConfigError> {
        if let Some(raw) = broker {
            let broker = endpoint::normalise(raw).map_err(|url| ConfigError::BadBroker {
                profile: profile.map(str::to_string),
                url,
            })?;
            let existing = |name: &str| {
                self.profiles
                    .get(name)
                    .filter(|p| endpoint::normalise(&p.broker).is_ok_and(|b| b == broker))
            };
            if let Some(name) = profile
                && self
                    .profiles
                    .get(name)
                    .is_some_and(|p| p.kind == Kind::Entra)
            {
                return Err(ConfigError::BadProfile {
                    profile: name.to_string(),
                    reason: "it is an Entra profile; --broker names a hoistd broker".into(),
                });
            }
            let name = match profile {
                Some(name) => name.to_string(),
                None => {
                    let mut using = self.profiles.keys().filter(|name| existing(name).is_some());
                    match (using.next(), using.next()) {
                        (Some(one), None) => one.clone(),
                        (None, _) => self.free_profile_name(&broker),
                        (Some(_), Some(_)) => {
                            return Err(ConfigError::SeveralProfiles {
                                broker: broker.clone(),
                                known: self
                                    .profiles
                                    .keys()
                                    .filter(|name| existing(name).is_some())
                                    .cloned()
                                    .collect(),
                            });
                        }
                    }
                }
            };
            // The profile's choice of store stands wherever it points, so
            // that a profile pointed elsewhere keeps its session where its
            // later commands look, and its old one is found to sign out.
            let insecure_file_store = self
                .profiles
                .get(&name)
                .is_some_and(|p| p.insecure_file_store);
            let existing = existing(&name);
            // A saved profile at this broker is reached by its name (or by
            // nothing); otherwise only --broker reaches it, with the
            // profile it will be saved as if that was named.
            let chosen_by = match (existing, profile) {
                (Some(_), _) => self.chosen_by_profile(&name),
                (None, None) => vec!["--broker".to_string(), broker.clone()],
                (None, Some(_)) => vec![
                    "--broker".to_string(),
                    broker.clone(),
                    "--profile".to_string(),
                    name.clone(),
                ],
            };
            return Ok(Target {
                user: existing.and_then(|p| p.user.clone()),
                chosen_by,
                profile: name,
                broker,
                insecure_file_store,
                backend: Backend::Hoistd,
            });
        }
        let name = match profile.or(self.default_profile.as_deref()) {
            Some(name) => name.to_string(),
            None => {
                let mut names = self.profiles.keys();
                match (names.next(), names.next()) {
                    (Some(only), None) => only.clone(),
                    (None, _) => return Err(ConfigError::NoBroker),
                    (Some(_), Some(_)) => {
                        return Err(ConfigError::NoDefaultProfile {
                            known: self.profile_names(),
                        });
                    }
                }
            }
        };
        let Some(found) = self.profiles.get(&name) else {
            return Err(ConfigError::UnknownProfile {
                name,
                known: self.profile_names(),
            });
        };
        let (broker, backend) = match found.kind {
            Kind::Hoistd => {
                let stray = entra_only_settings(found);
                if !stray.is_empty() {
                    return Err(ConfigError::BadProfile {
                        profile: name,
                        reason: format!(
                            "{}: Entra settings (kind = \"entra\"); this profile is hoistd's, \
                             with a `broker` URL, and would ignore them",
                            stray
                                .iter()
                                .map(|s| format!("`{s}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
                let broker =
                    endpoint::normalise(&found.broker).map_err(|url| ConfigError::BadBroker {
                        profile: Some(name.clone()),
                        url,
                    })?;
                (broker, Backend::Hoistd)
            }
            Kind::Entra => {
                let tenant = entra_tenant(&name, found, self.ticket_url.as_deref())?;
                (tenant.broker(), Backend::Entra(tenant))
            }
        };
        Ok(Target {
            chosen_by: self.chosen_by_profile(&name),
            profile: name,
            broker,
            user: found.user.clone(),
            insecure_file_store: found.insecure_file_store,
            backend,
        })
    }

    /// The options that choose the saved profile `name`: none if a bare
    /// `hoist` picks it (`default_profile`, or the only profile).
    fn chosen_by_profile(&self, name: &str) -> Vec<String> {
        let bare = match self.default_profile.as_deref() {
            Some(default) => Some(default),
            None => {
                let mut names = self.profiles.keys();
                match (names.next(), names.next()) {
                    (Some(only), None) => Some(only.as_str()),
                    _ => None,
                }
            }
        };
        if bare == Some(name) {
            Vec::new()
        } else {
            vec!["--profile".to_string(), name.to_string()]
        }
    }

    /// The profiles and their kinds, in name order: what the TUI's profile
    /// picker lists.
    pub fn profile_kinds(&self) -> Vec<(String, Kind)> {
        self.profiles
            .iter()
            .map(|(name, profile)| (name.clone(), profile.kind))
            .collect()
    }

    /// A profile name for a new broker: "default" if free, else its host
    /// (and port), so a second broker never overwrites the first profile.
    fn free_profile_name(&self, broker: &str) -> String {
        if !self.profiles.contains_key(DEFAULT_PROFILE) {
            return DEFAULT_PROFILE.to_string();
        }
        let host = url::Url::parse(broker)
            .ok()
            .and_then(|url| {
                let host = url.host_str()?.trim_matches(['[', ']']).to_string();
                Some(match url.port() {
                    Some(port) => format!("{host}-{port}"),
                    None => host,
                })
            })
            .unwrap_or_else(|| "broker".to_string());
        let mut name = host.clone();
        let mut n = 2;
        while self.profiles.contains_key(&name) {
            name = format!("{host}-{n}");
            n += 1;
        }
        name
    }

    pub fn profile_names(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }

    /// The profile's favourite roles, in the order they were added.
    pub fn favourites(&self, profile: &str) -> Vec<String> {
        self.profiles
            .get(profile)
            .map(|p| p.favourites.clone())
            .unwrap_or_default()
    }

    /// Adds or removes a favourite and returns whether it is one now. A
    /// profile that does not exist cannot hold favourites: nothing changes.
    pub fn toggle_favourite(&mut self, profile: &str, role: &str) -> bool {
        let Some(profile) = self.profiles.get_mut(profile) else {
            return false;
        };
        if let Some(at) = profile.favourites.iter().position(|r| r == role) {
            profile.favourites.remove(at);
            false
        } else {
            profile.favourites.push(role.to_string());
            true
        }
    }

    /// Records a sign-in: the profile gets the broker and user (and is
    /// created if needed), and becomes the default if there was none. An
    /// Entra profile keeps its tenant settings and gets no broker URL.
    pub fn remember_login(&mut self, target: &Target, user: &str) {
        let profile = self.profiles.entry(target.profile.clone()).or_default();
        if target.backend == Backend::Hoistd {
            profile.broker = target.broker.clone();
        }
        profile.user = Some(user.to_string());
        if self.default_profile.is_none() {
            self.default_profile = Some(target.profile.clone());
        }
    }

    /// Records whether the target's profile keeps its session in a plain
    /// file, so later runs choose the same store. Turning it on creates the
    /// profile if needed; turning it off on a missing profile does nothing.
    pub fn set_insecure_file_store(&mut self, target: &Target, on: bool) {
        if !on && !self.profiles.contains_key(&target.profile) {
            return;
        }
        let profile = self
            .profiles
            .entry(target.profile.clone())
            .or_insert_with(|| Profile {
                broker: target.broker.clone(),
                ..Profile::default()
            });
        profile.insecure_file_store = on;
    }

    /// Records a sign-out. The profile keeps its broker and favourites.
    /// Who `target`'s profile names as signed in now, if it is still at
    /// that broker.
    pub fn named_user(&self, target: &Target) -> Option<String> {
        self.resolve(None, Some(&target.profile))
            .ok()
            .filter(|now| now.broker == target.broker)
            .and_then(|now| now.user)
    }

    pub fn forget_login(&mut self, target: &Target) {
        // Only the person signed out: someone signed in there since (in
        // another terminal) stays named, or their session would be lost.
        if let Some(profile) = self.profiles.get_mut(&target.profile)
            && profile.user == target.user
        {
            profile.user = None;
        }
    }
}

/// Why a `ticket_url` template cannot make a link the browser opens: it
/// needs `{ticket}`, and must be an http or https URL once filled.
fn check_ticket_url(template: &str) -> Result<(), String> {
    if !template.contains("{ticket}") {
        return Err(format!(
            "`{template}` has no `{{ticket}}` to put the reference in \
             (e.g. https://tracker.example/browse/{{ticket}})"
        ));
    }
    let url = url::Url::parse(&template.replace("{ticket}", "T-1"))
        .map_err(|err| format!("`{template}` is not a URL: {err}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "`{template}`: scheme `{}` is not http or https",
            url.scheme()
        ));
    }
    Ok(())
}

/// Settings only an Entra profile reads: on a hoistd profile they would be
/// ignored, so they are refused, named.
fn entra_only_settings(profile: &Profile) -> Vec<&'static str> {
    [
        ("tenant", profile.tenant.is_some()),
        ("client_id", profile.client_id.is_some()),
        ("graph", profile.graph.is_some()),
        ("authority", profile.authority.is_some()),
        ("poll", profile.poll.is_some()),
        ("ticket_system", profile.ticket_system.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

/// An Entra profile's settings, checked: every missing or unusable one is
/// named, so the person knows which line to fix.
fn entra_tenant(
    name: &str,
    profile: &Profile,
    ticket_url: Option<&str>,
) -> Result<EntraTenant, ConfigError> {
    let bad = |reason: String| ConfigError::BadProfile {
        profile: name.to_string(),
        reason,
    };
    if !profile.broker.is_empty() {
        return Err(bad(
            "an Entra profile has no `broker`: its tenant, client_id and (for national clouds) \
             graph and authority say where it signs in and what it calls"
                .into(),
        ));
    }
    let tenant = profile
        .tenant
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("`tenant` is missing: the tenant id or one of its domains".into()))?;
    // It becomes a path segment of the authority's URL.
    if !tenant
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(bad(format!(
            "`tenant` must be a tenant id or a domain, not `{tenant}`"
        )));
    }
    let client_id = profile
        .client_id
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            bad(
                "`client_id` is missing: the application (client) id of your app registration \
                 (hoist borrows no other application's)"
                    .into(),
            )
        })?;
    let url = |setting: &str, value: Option<&str>, default: &str| {
        endpoint::normalise(value.unwrap_or(default))
            .map_err(|refused| bad(format!("`{setting}`: {refused}")))
    };
    let poll = match profile.poll.as_deref() {
        None => ENTRA_POLL_DEFAULT,
        Some(text) => crate::text::parse_duration(text)
            .filter(|secs| *secs > 0)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| {
                bad(format!(
                    "`poll`: `{text}` is not a duration (try 15s or 1m)"
                ))
            })?,
    };
    let ticket_system = match profile.ticket_system.as_deref().map(str::trim) {
        Some("") => {
            return Err(bad(
                "`ticket_system` is empty: name the ticket system".into()
            ));
        }
        Some(system) => Some(system.to_string()),
        // The tracker tickets link to is the best name hoist has for it.
        None => ticket_url
            .and_then(|template| url::Url::parse(&template.replace("{ticket}", "x")).ok())
            .and_then(|url| url.host_str().map(str::to_string)),
    };
    Ok(EntraTenant {
        tenant: tenant.to_string(),
        client_id: client_id.to_string(),
        graph: url("graph", profile.graph.as_deref(), GRAPH_GLOBAL)?,
        authority: url("authority", profile.authority.as_deref(), AUTHORITY_GLOBAL)?,
        poll,
        ticket_system,
    })
}

#[cfg(test)]
mod tests;
