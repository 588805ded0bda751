//! The request form: its fields, and every rule the broker will check, checked
//! here first so the message sits next to the field before anything is sent.

use hoist_api::{CreateRequest, MAX_JUSTIFICATION_CHARS, MAX_REFERENCE_CHARS, Role};
use regex::Regex;

use crate::text::{format_duration, parse_duration};

/// Durations offered on the duration field, cut to the role's maximum.
const PRESETS: [u64; 8] = [
    15 * 60,
    30 * 60,
    3600,
    2 * 3600,
    4 * 3600,
    8 * 3600,
    12 * 3600,
    24 * 3600,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Justification,
    Ticket,
    Incident,
    Duration,
    BreakGlass,
}

impl Field {
    pub fn label(self) -> &'static str {
        match self {
            Field::Justification => "Justification",
            Field::Ticket => "Ticket",
            Field::Incident => "Incident",
            Field::Duration => "Duration",
            Field::BreakGlass => "Break-glass",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestForm {
    pub role: Role,
    /// The other roles of a bundle, filed with the same justification.
    pub extra: Vec<Role>,
    /// One idempotency key per role of `extra`.
    pub extra_keys: Vec<String>,
    pub field: Field,
    pub justification: String,
    pub ticket: String,
    pub incident: String,
    pub duration: String,
    pub break_glass: bool,
    /// The caller's open requests (role, request id) for roles of the
    /// form, when it was opened over them to break glass: break-glass then
    /// stays on, since the broker refuses a second ordinary request for a
    /// role.
    pub requested: Vec<(String, String)>,
    /// A bundle's roles with a request of the caller's still waiting,
    /// out of the form while break-glass is off (only breaking glass files
    /// them again), each with its request's id and its idempotency key:
    /// break-glass brings them in.
    pub set_aside: Vec<(Role, String, String)>,
    /// Kept for the life of the form: a resubmission after a network error
    /// carries the same key, so the broker never files twice.
    pub idempotency_key: String,
    pub submitting: bool,
    /// Sent at least once: answers that come after another role's failure
    /// are still counted as filed.
    pub sent: bool,
    /// The broker's refusal of the last submission.
    pub error: Option<String>,
    /// The person signed in again for this form (a role's step-up): a
    /// second refusal for that is shown, not met with a third sign-in.
    pub signed_in_again: bool,
    /// The roles the broker answered as filed: the form closes once every
    /// role of it is, so that a bundle's role refused after another was
    /// filed keeps its form, and its reason, on screen.
    pub filed: std::collections::BTreeSet<String>,
}

/// What is wrong with each field, if anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    pub justification: Option<String>,
    pub ticket: Option<String>,
    pub incident: Option<String>,
    pub duration: Option<String>,
}

impl Problems {
    pub fn is_empty(&self) -> bool {
        *self == Problems::default()
    }

    pub fn for_field(&self, field: Field) -> Option<&str> {
        match field {
            Field::Justification => self.justification.as_deref(),
            Field::Ticket => self.ticket.as_deref(),
            Field::Incident => self.incident.as_deref(),
            Field::Duration => self.duration.as_deref(),
            Field::BreakGlass => None,
        }
    }
}

impl RequestForm {
    pub fn new(role: Role, idempotency_key: String) -> RequestForm {
        RequestForm {
            duration: format_duration(role.default_duration_secs),
            role,
            extra: Vec::new(),
            extra_keys: Vec::new(),
            field: Field::Justification,
            justification: String::new(),
            ticket: String::new(),
            incident: String::new(),
            break_glass: false,
            requested: Vec::new(),
            set_aside: Vec::new(),
            idempotency_key,
            submitting: false,
            sent: false,
            error: None,
            signed_in_again: false,
            filed: Default::default(),
        }
    }

    /// A form filing several roles at once with one justification and one
    /// incident; the duration is each role's default unless one is typed.
    pub fn bundle(mut roles: Vec<Role>) -> Option<RequestForm> {
        if roles.is_empty() {
            return None;
        }
        let first = roles.remove(0);
        let mut form = RequestForm::new(first, uuid::Uuid::new_v4().to_string());
        form.extra_keys = roles
            .iter()
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        form.extra = roles;
        if !form.extra.is_empty() {
            form.duration = String::new();
        }
        Some(form)
    }

    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        std::iter::once(&self.role).chain(&self.extra)
    }

    /// Whether the caller may break glass on every role of the form.
    pub fn may_break_glass(&self) -> bool {
        self.roles().all(|r| r.break_glass)
    }

    /// Sends the form: answers are awaited, and its filings are fixed.
    pub fn begin_sending(&mut self) {
        self.submitting = true;
        self.sent = true;
    }

    /// Takes `role` out of the form (the caller holds it now, say); `false`
    /// when it was the form's only role.
    pub fn remove_role(&mut self, role: &str) -> bool {
        self.requested.retain(|(id, _)| id != role);
        self.set_aside.retain(|(r, _, _)| r.id != role);
        if self.role.id == role {
            if self.extra.is_empty() {
                return false;
            }
            self.role = self.extra.remove(0);
            self.idempotency_key = self.extra_keys.remove(0);
        } else if let Some(at) = self.extra.iter().position(|r| r.id == role) {
            self.extra.remove(at);
            self.extra_keys.remove(at);
        }
        true
    }

    /// The fields in order; break-glass only where the caller may use it.
    pub fn fields(&self) -> Vec<Field> {
        let mut fields = vec![
            Field::Justification,
            Field::Ticket,
            Field::Incident,
            Field::Duration,
        ];
        if self.may_break_glass() {
            fields.push(Field::BreakGlass);
        }
        fields
    }

    pub fn move_field(&mut self, forward: bool) {
        let fields = self.fields();
        let at = fields.iter().position(|f| *f == self.field).unwrap_or(0);
        let next = if forward {
            (at + 1) % fields.len()
        } else {
            (at + fields.len() - 1) % fields.len()
        };
        self.field = fields[next];
    }

    /// Break-glass on or off, where the caller may break glass. A
    /// bundle's roles with a waiting request come in with it and go out
    /// without it; a form with nothing else keeps it on, saying why.
    pub fn toggle_break_glass(&mut self) {
        if !self.may_break_glass() {
            return;
        }
        if !self.filed.is_empty() {
            self.error = Some(
                "some of this form is filed already, so break-glass stays as it was; Esc, \
                 then open the form again to change it"
                    .into(),
            );
            return;
        }
        self.error = None;
        if !self.break_glass {
            for (role, id, key) in std::mem::take(&mut self.set_aside) {
                self.requested.push((role.id.clone(), id));
                self.extra.push(role);
                self.extra_keys.push(key);
            }
            self.break_glass = true;
            return;
        }
        let waiting = |role: &Role, requested: &[(String, String)]| {
            requested.iter().any(|(id, _)| *id == role.id)
        };
        if self.requested.is_empty() {
            self.break_glass = false;
            return;
        }
        if !waiting(&self.role, &self.requested) {
            // Free roles stay; the waiting ones step out until it is on again.
            let extra = std::mem::take(&mut self.extra);
            let keys = std::mem::take(&mut self.extra_keys);
            for (role, key) in extra.into_iter().zip(keys) {
                match self.requested.iter().position(|(id, _)| *id == role.id) {
                    Some(at) => {
                        let (_, request) = self.requested.remove(at);
                        self.set_aside.push((role, request, key));
                    }
                    None => {
                        self.extra.push(role);
                        self.extra_keys.push(key);
                    }
                }
            }
            self.break_glass = false;
            return;
        }
        let each: Vec<String> = self
            .requested
            .iter()
            .map(|(role, id)| format!("{role} ({id})"))
            .collect();
        self.error = Some(format!(
            "already requested: {}; only breaking glass files {} again",
            each.join(", "),
            if each.len() == 1 { "it" } else { "them" }
        ));
    }

    fn text_mut(&mut self) -> Option<&mut String> {
        match self.field {
            Field::Justification => Some(&mut self.justification),
            Field::Ticket => Some(&mut self.ticket),
            Field::Incident => Some(&mut self.incident),
            Field::Duration => Some(&mut self.duration),
            Field::BreakGlass => None,
        }
    }

    pub fn input(&mut self, c: char) {
        if self.field == Field::BreakGlass {
            if c == ' ' {
                self.toggle_break_glass();
            }
            return;
        }
        let single_line = self.field != Field::Justification;
        if let Some(text) = self.text_mut()
            && !(c.is_control() || single_line && c.is_whitespace())
        {
            text.push(c);
        }
        self.error = None;
    }

    pub fn newline(&mut self) {
        if self.field == Field::Justification {
            self.justification.push('\n');
        } else {
            self.move_field(true);
        }
    }

    pub fn backspace(&mut self) {
        if let Some(text) = self.text_mut() {
            text.pop();
        }
        self.error = None;
    }

    /// Steps the duration through the presets that fit the role.
    pub fn cycle_duration(&mut self, up: bool) {
        let max = self.role.max_duration_secs;
        let mut presets: Vec<u64> = PRESETS.iter().copied().filter(|p| *p <= max).collect();
        for extra in [self.role.default_duration_secs, max] {
            if !presets.contains(&extra) {
                presets.push(extra);
            }
        }
        presets.sort_unstable();
        let current = parse_duration(&self.duration).unwrap_or(self.role.default_duration_secs);
        let next = if up {
            presets
                .iter()
                .copied()
                .find(|p| *p > current)
                .unwrap_or(max)
        } else {
            presets
                .iter()
                .rev()
                .copied()
                .find(|p| *p < current)
                .unwrap_or(presets[0])
        };
        self.duration = format_duration(next);
    }

    /// The broker's rules for this role, checked locally.
    pub fn problems(&self) -> Problems {
        let mut problems = Problems::default();
        // A bundle must satisfy every role: the strictest rule of each kind wins.
        let min_justification = self.roles().map(|r| r.min_justification).max().unwrap_or(0);
        let max_duration = self.roles().map(|r| r.max_duration_secs).min().unwrap_or(0);
        let ticket_required = self.roles().any(|r| r.ticket.required);
        let justification = self.justification.trim();
        // The broker's rule: hidden characters are refused by name, and only
        // visible ones count towards the minimum.
        let chars = justification.chars().count();
        let visible = hoist_api::text::visible_len(justification);
        if let Some(hidden) = hoist_api::text::find_invisible(justification) {
            problems.justification = Some(format!("holds {hidden}, which shows nothing"));
        } else if visible < min_justification as usize || visible == 0 {
            problems.justification = Some(format!(
                "{visible} of at least {} characters",
                min_justification.max(1)
            ));
        } else if chars > MAX_JUSTIFICATION_CHARS {
            problems.justification = Some(format!(
                "{chars} characters; at most {MAX_JUSTIFICATION_CHARS}"
            ));
        }
        let ticket = self.ticket.trim();
        let incident = self.incident.trim();
        for (text, slot) in [
            (ticket, &mut problems.ticket),
            (incident, &mut problems.incident),
        ] {
            if text.chars().count() > MAX_REFERENCE_CHARS {
                *slot = Some(format!("at most {MAX_REFERENCE_CHARS} characters"));
            } else if let Some(hidden) = hoist_api::text::find_invisible(text) {
                *slot = Some(format!("holds {hidden}, which shows nothing"));
            }
        }
        if self.break_glass && ticket.is_empty() && incident.is_empty() {
            problems.incident = Some("break-glass needs a ticket or incident".into());
        } else if ticket_required && ticket.is_empty() && (!self.break_glass || incident.is_empty())
        {
            problems.ticket = Some("required".into());
        }
        if !ticket.is_empty() {
            for pattern in self.roles().filter_map(|r| r.ticket.pattern.as_ref()) {
                // The broker sends its anchored pattern; an unusable one is the broker's to judge.
                if Regex::new(pattern).is_ok_and(|re| !re.is_match(ticket)) {
                    problems.ticket = Some(format!("must match {pattern}"));
                }
            }
        }
        // An empty duration means each role's own default (a bundle's,
        // or what is left of one).
        let each_default = self.duration.trim().is_empty();
        if !each_default {
            match parse_duration(&self.duration) {
                None => problems.duration = Some("a duration such as 30m, 1h or 90s".into()),
                Some(0) => problems.duration = Some("must be longer than zero".into()),
                Some(secs) if secs > max_duration => {
                    problems.duration = Some(format!("at most {}", format_duration(max_duration)));
                }
                Some(_) => {}
            }
        }
        problems
    }

    /// One body per role, each with its own idempotency key.
    pub fn bodies(&self) -> Vec<(CreateRequest, String)> {
        let keys =
            std::iter::once(self.idempotency_key.clone()).chain(self.extra_keys.iter().cloned());
        self.roles()
            .zip(keys)
            .map(|(role, key)| {
                let mut body = self.body();
                body.role = role.id.clone();
                if self.duration.trim().is_empty() {
                    body.duration_secs = None;
                }
                (body, key)
            })
            .collect()
    }

    pub fn body(&self) -> CreateRequest {
        let optional = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        CreateRequest {
            role: self.role.id.clone(),
            justification: self.justification.trim().to_string(),
            ticket: optional(&self.ticket),
            incident: optional(&self.incident),
            duration_secs: parse_duration(&self.duration),
            starts_at: None,
            break_glass: self.break_glass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fixtures;
    use hoist_api::TicketRule;

    /// A role that may break glass and wants a ticket of its own kind.
    fn role() -> Role {
        Role {
            break_glass: true,
            ticket: TicketRule {
                required: true,
                pattern: Some("^(?:INC-[0-9]+)$".into()),
            },
            min_justification: 10,
            ..fixtures::role("db")
        }
    }

    #[test]
    fn every_rule_is_checked_next_to_its_field() {
        let mut form = RequestForm::new(role(), "k".into());
        let problems = form.problems();
        assert!(problems.justification.unwrap().contains("at least 10"));
        // Ten zero-width spaces are not ten characters, as at the broker.
        form.justification = "\u{200B}".repeat(10);
        let problem = form.problems().justification.unwrap();
        assert!(problem.contains("U+200B ZERO WIDTH SPACE"), "{problem}");
        form.incident = "INC-1\u{202E}".into();
        assert!(form.problems().incident.unwrap().contains("U+202E"));
        form.incident.clear();
        assert_eq!(problems.ticket.as_deref(), Some("required"));
        form.justification = "restart the primary".into();
        form.ticket = "JIRA-1".into();
        form.duration = "3h".into();
        let problems = form.problems();
        assert!(problems.ticket.unwrap().contains("INC-"));
        assert_eq!(problems.duration.as_deref(), Some("at most 2h"));
        form.ticket = "INC-9".into();
        form.duration = "45".into();
        assert!(form.problems().is_empty());
        assert_eq!(form.body().duration_secs, Some(2700));
    }

    #[test]
    fn break_glass_takes_an_incident_instead_of_a_ticket() {
        let mut form = RequestForm::new(role(), "k".into());
        form.justification = "primary down, failing over".into();
        form.break_glass = true;
        assert!(form.problems().incident.is_some());
        form.incident = "INC-1".into();
        assert!(form.problems().is_empty(), "{:?}", form.problems());
    }

    #[test]
    fn presets_stay_within_the_maximum() {
        let mut form = RequestForm::new(role(), "k".into());
        assert_eq!(form.duration, "30m");
        form.cycle_duration(true);
        assert_eq!(form.duration, "1h");
        for _ in 0..10 {
            form.cycle_duration(true);
        }
        assert_eq!(form.duration, "2h");
        for _ in 0..10 {
            form.cycle_duration(false);
        }
        assert_eq!(form.duration, "15m");
    }
}
