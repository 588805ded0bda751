//! `hoist debug record`: a person's real exchanges with Microsoft Graph,
//! kept so that they can be shared (to check hoist's fake of Graph against
//! a real tenant) without giving anything of the tenant away.
//!
//! Everything is scrubbed before it is written: the authorization header
//! and anything shaped like a token; the values of secret fields (tokens,
//! codes); ids (every GUID, and the value of every `id` or `…Id` field,
//! wherever else it appears, in URLs and messages too); user principal
//! names and e-mail addresses; display names; free text people typed
//! (justifications, descriptions, ticket numbers). A value gets the same
//! placeholder wherever it appears, so the recording still says which
//! request names which role.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value, json};

use super::graph::{Exchange, Recorder};

/// Exchanges as they happen, kept in memory until the command ends.
#[derive(Clone, Default)]
pub struct Recording {
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

static INSTALLED: OnceLock<Recorder> = OnceLock::new();

/// Every Entra backend this process opens from now on records into
/// `recording` (the command line, the TUI and sign-in open their own).
pub fn install(recording: &Recording) -> bool {
    INSTALLED.set(recording.recorder()).is_ok()
}

/// The recorder `install` set, if any.
pub fn installed() -> Option<Recorder> {
    INSTALLED.get().cloned()
}

impl Recording {
    pub fn recorder(&self) -> Recorder {
        let exchanges = Arc::clone(&self.exchanges);
        Arc::new(move |exchange| {
            exchanges
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(exchange);
        })
    }

    pub fn len(&self) -> usize {
        self.exchanges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole recording, scrubbed, and what was scrubbed from it.
    pub fn scrubbed(&self) -> (Value, Scrubbed) {
        let exchanges = self
            .exchanges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut scrubber = Scrubber::default();
        for exchange in &exchanges {
            for body in [&exchange.request, &exchange.response]
                .into_iter()
                .flatten()
            {
                scrubber.learn(None, body);
            }
        }
        let scrubbed: Vec<Value> = exchanges
            .iter()
            .map(|exchange| scrubber.exchange(exchange))
            .collect();
        let document = json!({
            "recorded_by": concat!("hoist ", env!("CARGO_PKG_VERSION")),
            "scrubbed": scrubber.counts.summary(),
            "exchanges": scrubbed,
        });
        (document, scrubber.counts)
    }
}

/// How many distinct values of each kind were replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scrubbed {
    pub tokens: usize,
    pub secrets: usize,
    pub ids: usize,
    pub users: usize,
    pub names: usize,
    pub texts: usize,
}

impl Scrubbed {
    /// In words, for the person and the file: "4 tokens, 12 ids, ...".
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            (
                self.tokens,
                "token",
                "tokens (authorization headers included)",
            ),
            (self.secrets, "code or secret", "codes and secrets"),
            (self.ids, "id", "ids (object, tenant, role, request ids)"),
            (
                self.users,
                "user principal name or e-mail address",
                "user principal names and e-mail addresses",
            ),
            (self.names, "display name", "display names"),
            (
                self.texts,
                "free text (justification, description, ticket)",
                "free texts (justifications, descriptions, tickets)",
            ),
        ]
        .into_iter()
        .filter(|(n, ..)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
        .collect();
        if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join(", ")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    Id,
    User,
    Name,
    Text,
}

/// Fields whose values are secrets, whatever they hold.
const SECRET_FIELDS: [&str; 8] = [
    "access_token",
    "refresh_token",
    "id_token",
    "code",
    "device_code",
    "user_code",
    "client_secret",
    "password",
];
/// Fields that hold an enumeration, not an id, though they end in `Id`.
const NOT_IDS: [&str; 1] = ["accessId"];
const USER_FIELDS: [&str; 4] = ["userPrincipalName", "mail", "upn", "otherMails"];
const NAME_FIELDS: [&str; 4] = ["displayName", "givenName", "surname", "name"];
const TEXT_FIELDS: [&str; 4] = [
    "justification",
    "description",
    "ticketNumber",
    "ticketSystem",
];
/// A user's own particulars, as Graph gives them with a user object (a
/// request's `principal`, expanded whole).
const PERSONAL_FIELDS: [&str; 16] = [
    "businessPhones",
    "mobilePhone",
    "faxNumber",
    "jobTitle",
    "department",
    "companyName",
    "officeLocation",
    "preferredLanguage",
    "streetAddress",
    "city",
    "postalCode",
    "country",
    "usageLocation",
    "employeeId",
    "imAddresses",
    "proxyAddresses",
];
/// Headers that carry credentials or cookies: replaced whole.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

fn kind_of(field: &str) -> Option<Kind> {
    if SECRET_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(field)) {
        Some(Kind::Secret)
    } else if USER_FIELDS.contains(&field) {
        Some(Kind::User)
    } else if NAME_FIELDS.contains(&field) {
        Some(Kind::Name)
    } else if TEXT_FIELDS.contains(&field) || PERSONAL_FIELDS.contains(&field) {
        Some(Kind::Text)
    } else if !NOT_IDS.contains(&field) && (field == "id" || field.ends_with("Id")) {
        Some(Kind::Id)
    } else {
        None
    }
}

/// Graph's error codes (`{"error": {"code": "RoleAssignmentExists", …}}`,
/// and those of its `details` and `innerError`) are what a recording is
/// read for, not an authorization code: kept where they are a plain name.
fn error_code(object: Option<&str>, key: &str, value: &Value) -> bool {
    key == "code"
        && matches!(
            object,
            Some("error" | "details" | "innerError" | "innererror")
        )
        && value.as_str().is_some_and(|code| {
            (1..=100).contains(&code.len())
                && code
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
}

fn patterns() -> &'static (Regex, Regex, Regex) {
    static PATTERNS: OnceLock<(Regex, Regex, Regex)> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let compile = |pattern: &str| Regex::new(pattern).unwrap_or_else(|_| unreachable!());
        (
            // A JWT: the form every Entra token takes.
            compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
            compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
            // Addresses, with `@` plain or percent-encoded as in a query.
            compile(r"[A-Za-z0-9._+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"),
        )
    })
}

#[derive(Default)]
struct Scrubber {
    /// Each value seen, and its placeholder.
    known: HashMap<String, String>,
    counts: Scrubbed,
}

impl Scrubber {
    fn placeholder(&mut self, kind: Kind, value: &str) -> String {
        if let Some(known) = self.known.get(value) {
            return known.clone();
        }
        let counts = &mut self.counts;
        let placeholder = match kind {
            Kind::Secret => {
                counts.secrets += 1;
                format!("<secret-{}>", counts.secrets)
            }
            // Still shaped like an id, so the recording reads as Graph's.
            Kind::Id => {
                counts.ids += 1;
                format!("00000000-0000-0000-0000-{:012}", counts.ids)
            }
            Kind::User => {
                counts.users += 1;
                format!("user{}@example.invalid", counts.users)
            }
            Kind::Name => {
                counts.names += 1;
                format!("<name-{}>", counts.names)
            }
            Kind::Text => {
                counts.texts += 1;
                format!("<text-{}>", counts.texts)
            }
        };
        self.known.insert(value.to_string(), placeholder.clone());
        placeholder
    }

    /// Notes every value a field's name says is sensitive.
    fn learn(&mut self, field: Option<&str>, value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if !error_code(field, key, value) {
                        self.learn(Some(key), value);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.learn(field, item);
                }
            }
            Value::String(text) => {
                let kind = field.and_then(kind_of);
                // The root scope `/` is no one's id.
                if let Some(kind) = kind
                    && !text.is_empty()
                    && text != "/"
                {
                    self.placeholder(kind, text);
                }
            }
            _ => {}
        }
    }

    /// `text` with everything sensitive in it replaced.
    fn text(&mut self, text: &str) -> String {
        if let Some(whole) = self.known.get(text) {
            return whole.clone();
        }
        let (jwt, guid, address) = patterns();
        let mut out = jwt
            .replace_all(text, |_: &regex::Captures| {
                self.counts.tokens += 1;
                "<token>".to_string()
            })
            .into_owned();
        // Known values inside longer text: longest first, so a value that
        // contains another is replaced whole. Short ones only stand alone.
        let mut known: Vec<(String, String)> = self
            .known
            .iter()
            .filter(|(value, _)| value.chars().count() >= 3)
            .map(|(v, p)| (v.clone(), p.clone()))
            .collect();
        known.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        for (value, placeholder) in known {
            // As written in a body, and as a query carries it.
            for form in [value.clone(), super::graph::query_value(&value)] {
                out = replace_words(&out, &form, &placeholder);
            }
        }
        let out = guid
            .replace_all(&out, |found: &regex::Captures| {
                let id = found[0].to_string();
                // A placeholder already in place stays as it is.
                if id.starts_with("00000000-0000-0000-0000-") {
                    id
                } else {
                    self.placeholder(Kind::Id, &id)
                }
            })
            .into_owned();
        address
            .replace_all(&out, |found: &regex::Captures| {
                let found = found[0].to_string();
                if found.ends_with("example.invalid") {
                    found
                } else {
                    self.placeholder(Kind::User, &found)
                }
            })
            .into_owned()
    }

    fn value(&mut self, field: Option<&str>, value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, value) in map {
                    let value = match value {
                        Value::String(code) if error_code(field, key, value) => {
                            Value::String(self.text(code))
                        }
                        _ => self.value(Some(key), value),
                    };
                    out.insert(key.clone(), value);
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| self.value(field, item)).collect())
            }
            Value::String(text) => Value::String(match field.and_then(kind_of) {
                Some(kind) if !text.is_empty() && text != "/" => self.placeholder(kind, text),
                _ => self.text(text),
            }),
            other => other.clone(),
        }
    }

    fn headers(&mut self, headers: &[(String, String)]) -> Value {
        let mut out = Map::new();
        for (name, value) in headers {
            let value = if SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                self.counts.tokens += 1;
                match value.split_once(' ') {
                    Some((scheme, _)) => format!("{scheme} <token>"),
                    None => "<token>".to_string(),
                }
            } else {
                self.text(value)
            };
            out.insert(name.clone(), Value::String(value));
        }
        Value::Object(out)
    }

    fn exchange(&mut self, exchange: &Exchange) -> Value {
        let url = self.text(&exchange.url);
        let request_headers = self.headers(&exchange.request_headers);
        let request = exchange.request.as_ref().map(|body| self.value(None, body));
        let response_headers = self.headers(&exchange.response_headers);
        let response = exchange
            .response
            .as_ref()
            .map(|body| self.value(None, body));
        json!({
            "method": exchange.method,
            "url": url,
            "request": { "headers": request_headers, "body": request },
            "response": {
                "status": exchange.status,
                "headers": response_headers,
                "body": response,
            },
        })
    }
}

/// `haystack` with each `needle` that is a whole word (not part of a longer
/// name such as `DirectoryRole` for `Directory`) replaced by `with`.
fn replace_words(haystack: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() || !haystack.contains(needle) {
        return haystack.to_string();
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.find(needle) {
        let before = rest[..at].chars().next_back().or(out.chars().next_back());
        let after = rest[at + needle.len()..].chars().next();
        let edges = needle.chars().next().zip(needle.chars().next_back());
        let joined = edges.is_some_and(|(first, last)| {
            (word(Some(first)) && word(before)) || (word(Some(last)) && word(after))
        });
        out.push_str(&rest[..at]);
        out.push_str(if joined { needle } else { with });
        rest = &rest[at + needle.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(url: &str, request: Option<Value>, response: Value) -> Exchange {
        Exchange {
            method: "POST".into(),
            url: url.into(),
            request_headers: vec![
                (
                    "authorization".into(),
                    "Bearer eyJhbGciOi.eyJzdWIiOi.c2ln".into(),
                ),
                ("accept".into(), "application/json".into()),
            ],
            request,
            status: 201,
            response_headers: vec![(
                "request-id".into(),
                "7c1a0d2e-1111-4222-8333-944455556666".into(),
            )],
            response: Some(response),
        }
    }

    #[test]
    fn only_whole_words_are_replaced() {
        assert_eq!(
            replace_words("Directory DirectoryRole (Directory)", "Directory", "<n>"),
            "<n> DirectoryRole (<n>)"
        );
        assert_eq!(replace_words("a-b-c", "-b-", "X"), "aXc");
    }

    #[test]
    fn one_value_one_placeholder_everywhere_and_nothing_left() {
        let recording = Recording::default();
        let record = recording.recorder();
        let me = "a11ce000-0000-4000-8000-000000000001";
        record(exchange(
            "https://graph.microsoft.com/v1.0/me",
            None,
            json!({ "id": me, "userPrincipalName": "alice@contoso.example", "displayName": "Alice Smith" }),
        ));
        record(exchange(
            &format!(
                "https://graph.microsoft.com/v1.0/x?$filter=principalId%20eq%20'{me}'%20and%20upn%20eq%20'alice%40contoso.example'"
            ),
            Some(
                json!({ "principalId": me, "justification": "Alice Smith needs it",
                         "code": "0.AXoA-authorization-code",
                         "ticketInfo": { "ticketNumber": "CHG-1" }, "accessId": "member",
                         "directoryScopeId": "/" }),
            ),
            json!({ "id": "lAPpYvVpN0KRkAEh-1-e", "principalId": me,
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#x/lAPpYvVpN0KRkAEh-1-e",
                    "error": { "code": "RoleAssignmentRequestPolicyValidationFailed",
                               "message": "Alice Smith (alice@contoso.example) has eyJabcd.eyJefgh.sig",
                               "details": [{ "code": "JustificationRule" }] } }),
        ));
        assert_eq!(recording.len(), 2);
        let (document, counts) = recording.scrubbed();
        let text = document.to_string();
        for secret in [
            me,
            "alice@contoso.example",
            "alice%40contoso.example",
            "contoso",
            "Alice",
            "CHG-1",
            "lAPpYvVpN0KRkAEh",
            "eyJ",
            "7c1a0d2e",
            "authorization-code",
        ] {
            assert!(!text.contains(secret), "{secret} survived: {text}");
        }
        let exchanges = document["exchanges"].as_array().unwrap();
        let id = exchanges[0]["response"]["body"]["id"].as_str().unwrap();
        assert_eq!(exchanges[1]["request"]["body"]["principalId"], id);
        assert!(exchanges[1]["url"].as_str().unwrap().contains(id));
        assert_eq!(
            exchanges[0]["request"]["headers"]["authorization"],
            "Bearer <token>"
        );
        // Graph's error codes are kept: they say what went wrong.
        let error = &exchanges[1]["response"]["body"]["error"];
        assert_eq!(error["code"], "RoleAssignmentRequestPolicyValidationFailed");
        assert_eq!(error["details"][0]["code"], "JustificationRule");
        // Enumerations and the root scope are not anyone's.
        assert_eq!(exchanges[1]["request"]["body"]["accessId"], "member");
        assert_eq!(exchanges[1]["request"]["body"]["directoryScopeId"], "/");
        assert_eq!(counts.users, 1);
        assert_eq!(counts.names, 1);
        assert!(counts.ids >= 3, "{counts:?}");
        assert!(
            counts.summary().contains("display name"),
            "{}",
            counts.summary()
        );
    }
}
