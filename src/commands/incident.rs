//! `hoist incident export REF`: the postmortem's appendix. Who requested
//! which role and why, who approved, when each grant was active, when and
//! how it ended: built from the broker's audit log alone, event for event.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::ValueEnum;
use hoist_api::{AuditEvent, AuditKind};
use serde::Serialize;

use crate::backend::Backend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Markdown,
    Json,
}

/// One request's story, folded from its audit events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Access {
    pub request_id: String,
    pub role: String,
    pub holder: String,
    pub requested_at: Option<DateTime<Utc>>,
    pub justification: Option<String>,
    pub break_glass: bool,
    pub approved_by: Vec<String>,
    pub grant_id: Option<String>,
    pub active_from: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `expired`, `revoked`, `denied`, `cancelled`, `timed_out`, `active`,
    /// `extended` (an extension's, once made) or `pending`.
    pub outcome: String,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
    /// Kinds of the request's events that this hoist does not know (a
    /// newer broker wrote them): they may change its story, which is then
    /// told without them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_events: Vec<String>,
    /// For an extension: the grant it extends (its own row is the
    /// request that made the grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// For an extension made: the grant's end it set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_to: Option<DateTime<Utc>>,
    /// Someone else's request, told from only the events the reader took
    /// part in (see [`Timeline::limited_to`]): steps may be missing, and
    /// its outcome may have changed since.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub seen_in_part: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub incident: String,
    pub generated_at: DateTime<Utc>,
    pub access: Vec<Access>,
    /// Who read it, when the broker gave only the events they took part in
    /// (as actor or subject; they are not an auditor): requests they had
    /// no part in are missing, and others' are told in part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limited_to: Option<String>,
    /// The audit log's own entries for the incident, unchanged and in order.
    pub events: Vec<AuditEvent>,
}

fn time(details: &serde_json::Value, key: &str) -> Option<DateTime<Utc>> {
    details.get(key)?.as_str()?.parse().ok()
}

/// Folds the incident's `events` into one row per request. `limited_to`
/// names the reader when the broker gave only the events they took part in.
pub fn timeline(
    incident: &str,
    events: Vec<AuditEvent>,
    limited_to: Option<&str>,
    now: DateTime<Utc>,
) -> Timeline {
    let mut access: BTreeMap<String, Access> = BTreeMap::new();
    let mut order = Vec::new();
    for event in &events {
        let Some(id) = event.request_id.clone() else {
            continue;
        };
        let entry = access.entry(id.clone()).or_insert_with(|| {
            order.push(id.clone());
            Access {
                request_id: id.clone(),
                outcome: "pending".into(),
                ..Access::default()
            }
        });
        entry.role = event.role.clone().unwrap_or_default();
        entry.holder = event.subject.clone().unwrap_or_default();
        match event.kind {
            AuditKind::Requested if entry.requested_at.is_none() => {
                entry.requested_at = Some(event.at);
                entry.justification = event.reason.clone();
                if event.details.get("kind").and_then(|k| k.as_str()) == Some("extension") {
                    entry.extends = event.grant_id.clone();
                }
            }
            AuditKind::Extended => {
                entry.extends = event.grant_id.clone();
                entry.extended_to = time(&event.details, "expires_at");
                entry.outcome = "extended".into();
            }
            AuditKind::BreakGlass => entry.break_glass = true,
            AuditKind::Reviewed
                if event.details.get("decision").and_then(|d| d.as_str()) == Some("approve") =>
            {
                entry.approved_by.push(event.actor.clone());
            }
            AuditKind::Activated => {
                entry.grant_id = event.grant_id.clone();
                entry.active_from = time(&event.details, "starts_at").or(Some(event.at));
                entry.outcome = "active".into();
            }
            AuditKind::Revoked | AuditKind::Expired => {
                entry.ended_at = time(&event.details, "ended_at").or(Some(event.at));
                entry.outcome = event.kind.as_str().into();
                entry.ended_by = Some(event.actor.clone());
                entry.end_reason = event.reason.clone();
            }
            AuditKind::Denied | AuditKind::Cancelled | AuditKind::TimedOut => {
                entry.ended_at = Some(event.at);
                entry.outcome = event.kind.as_str().into();
                entry.ended_by = Some(event.actor.clone());
                entry.end_reason = event.reason.clone();
            }
            AuditKind::Other(_) => entry.unknown_events.push(event.kind.as_str().to_string()),
            _ => {}
        }
    }
    let access = order
        .into_iter()
        .filter_map(|id| access.remove(&id))
        .map(|mut a| {
            a.seen_in_part = limited_to.is_some_and(|reader| reader != a.holder);
            a
        })
        .collect();
    Timeline {
        incident: incident.to_string(),
        generated_at: now,
        access,
        limited_to: limited_to.map(str::to_string),
        events,
    }
}

/// Broker text as it must appear in the document: exactly what it says and
/// nothing more. It is sanitised (controls and invisible characters become
/// visible escapes), then every character Markdown or HTML would act on is
/// escaped, and line breaks become `<br>`, so a justification can neither
/// end its table cell nor add markup, a link or a script to the postmortem.
fn cell(text: &str) -> String {
    crate::text::sanitize::lines(text)
        .iter()
        .map(|line| inline(line))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// One line of text with Markdown's inline syntax and HTML escaped: `<`,
/// `>` and `&` as entities (no tag, autolink or entity survives); the
/// characters that start code, emphasis, links, strikethrough, maths and
/// headings, the table's pipe, and the backslash itself, backslash-escaped;
/// and what GitHub-flavoured Markdown links or notifies by itself
/// (`https://`, `www.`, `@team`): the `:` of `://`, the `.` after `www` and
/// the `@` escaped too.
fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (at, c) in text.char_indices() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '$' | '#' | '@' => {
                out.push('\\');
                out.push(c);
            }
            ':' if text[at..].starts_with("://") => out.push_str("\\:"),
            '.' if out.to_ascii_lowercase().ends_with("www") => out.push_str("\\."),
            c => out.push(c),
        }
    }
    out
}

fn utc(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "-".into(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

pub fn markdown(timeline: &Timeline) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Access timeline: {}\n\n",
        cell(&timeline.incident)
    ));
    let (first, last) = (
        timeline.events.first().map(|e| e.seq),
        timeline.events.last().map(|e| e.seq),
    );
    out.push_str(&format!(
        "Generated {} from the hoist audit log ({} entries{}). Times are UTC.\n\n",
        utc(Some(timeline.generated_at)),
        timeline.events.len(),
        match (first, last) {
            (Some(a), Some(b)) =>
                format!(", sequence {a} to {b}; `hoistd audit verify` checks the chain"),
            _ => String::new(),
        }
    ));
    if let Some(reader) = &timeline.limited_to {
        out.push_str(&format!(
            "**Partial:** {} is not an auditor, so the broker gave only the events they took \
             part in (as actor or subject). Requests they had no part in are missing, and \
             others' rows may lack steps (another's approval, an expiry) and show an outcome \
             that has changed since. An auditor's export is complete.\n\n",
            cell(reader)
        ));
    }
    out.push_str("## Who held what\n\n");
    out.push_str(
        "| Role | Holder | Requested | Why | Approved by | Active from | Ended | How | By |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for a in &timeline.access {
        let approved = if a.break_glass {
            "break-glass (no approval)".to_string()
        } else if a.approved_by.is_empty() {
            "-".to_string()
        } else {
            a.approved_by.join(", ")
        };
        let mut how = match &a.end_reason {
            Some(reason) => format!("{} ({})", a.outcome, reason),
            None => a.outcome.clone(),
        };
        if let Some(grant) = &a.extends {
            how = match a.extended_to {
                Some(to) => format!("extended {grant} to {}", utc(Some(to))),
                None => format!("extension of {grant}: {how}"),
            };
        }
        if a.seen_in_part {
            how.push_str("; as far as your own events show");
        }
        if !a.unknown_events.is_empty() {
            how.push_str(&format!(
                "; not counted: {}, events this version of hoist does not know",
                a.unknown_events.join(", ")
            ));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(&a.role),
            cell(&a.holder),
            utc(a.requested_at),
            cell(a.justification.as_deref().unwrap_or("-")),
            cell(&approved),
            utc(a.active_from),
            utc(a.ended_at),
            cell(&how),
            cell(a.ended_by.as_deref().unwrap_or("-")),
        ));
    }
    out.push_str("\n## Every event\n\n| # | Time | Event | Who | Role | For | Detail |\n|---|---|---|---|---|---|---|\n");
    for e in &timeline.events {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            e.seq,
            utc(Some(e.at)),
            cell(e.kind.as_str()),
            cell(&e.actor),
            cell(e.role.as_deref().unwrap_or("-")),
            cell(e.subject.as_deref().unwrap_or("-")),
            cell(e.reason.as_deref().unwrap_or("")),
        ));
    }
    out
}

pub async fn export(
    backend: &dyn Backend,
    incident: &str,
    format: ExportFormat,
) -> anyhow::Result<()> {
    let events = backend.incident_audit(incident).await?;
    if events.is_empty() {
        anyhow::bail!("no audit events you may read for incident `{incident}`");
    }
    // The broker gives others the events they took part in, an auditor all.
    let me = backend.me().await?;
    let limited_to = (!me.auditor).then_some(me.user.as_str());
    let timeline = timeline(incident, events, limited_to, backend.clock().now());
    match format {
        ExportFormat::Markdown => super::out(&markdown(&timeline))?,
        ExportFormat::Json => super::out(&format!("{}\n", super::json::to_string(&timeline)?))?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Typed text makes no link or mention where the export is rendered.
    #[test]
    fn inline_text_makes_no_autolink_or_mention() {
        let shown = super::inline("see https://evil.example or www.evil.example, ask @sre");
        assert_eq!(
            shown,
            "see https\\://evil.example or www\\.evil.example, ask \\@sre"
        );
    }

    use super::*;

    /// Everything a hostile justification, comment or name could try.
    const HOSTILE: &str = "<script>alert(1)</script> [x](javascript:alert(1)) `code` | pipe |\n\
         second line <img src=x onerror=alert(1)> **bold** _em_ ~~gone~~ $x$ &lt; \\| \
         # head \u{202E}rev \u{200B}zw \x1b[2J";

    fn event(seq: i64, kind: AuditKind, reason: Option<&str>) -> AuditEvent {
        AuditEvent {
            seq,
            at: "2026-06-01T10:00:00Z".parse().unwrap(),
            kind,
            actor: format!("bob{HOSTILE}"),
            subject: Some(format!("alice{HOSTILE}")),
            role: Some(format!("db{HOSTILE}")),
            request_id: Some("req_1".into()),
            grant_id: Some("gr_1".into()),
            incident: Some("INC-1".into()),
            reason: reason.map(str::to_string),
            details: serde_json::json!({ "decision": "approve" }),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The cells of a table row, split on the pipes Markdown sees (an
    /// escaped pipe is text).
    fn cells(row: &str) -> Vec<String> {
        let mut cells = vec![String::new()];
        let mut chars = row.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let last = cells.last_mut().unwrap();
                    last.push(c);
                    last.extend(chars.next());
                }
                '|' => cells.push(String::new()),
                c => cells.last_mut().unwrap().push(c),
            }
        }
        cells
    }

    /// An event of a kind from a newer broker may change a request's
    /// story: the postmortem says it was not counted, rather than tell the
    /// story as if it were complete.
    #[test]
    fn events_of_a_kind_this_hoist_does_not_know_are_named_as_not_counted() {
        let events = vec![
            event(1, AuditKind::Requested, None),
            event(2, AuditKind::Activated, None),
            event(3, AuditKind::parse("access_paused"), None),
        ];
        let now = "2026-06-01T12:00:00Z".parse().unwrap();
        let timeline = timeline("INC-1", events, None, now);
        assert_eq!(timeline.access[0].outcome, "active");
        assert_eq!(timeline.access[0].unknown_events, ["access_paused"]);
        let document = markdown(&timeline);
        assert!(
            document.contains(
                "active; not counted: access\\_paused, events this version of hoist does not know"
            ),
            "{document}"
        );
    }

    /// An extension is its own request: once made, its row says which
    /// grant it extended and to when, not "pending" for ever.
    #[test]
    fn an_extension_made_says_what_it_extended_and_to_when() {
        let mut requested = event(4, AuditKind::Requested, Some("need longer"));
        requested.request_id = Some("req_2".into());
        requested.details = serde_json::json!({ "kind": "extension", "duration_secs": 3600 });
        let mut extended = event(5, AuditKind::Extended, None);
        extended.request_id = Some("req_2".into());
        extended.details = serde_json::json!({
            "previous_expires_at": "2026-06-01T11:00:00Z",
            "expires_at": "2026-06-01T12:00:00Z",
        });
        let events = vec![
            event(1, AuditKind::Requested, None),
            event(2, AuditKind::Activated, None),
            requested,
            event(4, AuditKind::Reviewed, None),
            extended,
        ];
        let now = "2026-06-01T11:30:00Z".parse().unwrap();
        let timeline = timeline("INC-1", events, None, now);
        let extension = &timeline.access[1];
        assert_eq!(extension.request_id, "req_2");
        assert_eq!(extension.extends.as_deref(), Some("gr_1"));
        assert_eq!(extension.outcome, "extended");
        assert_eq!(
            extension.extended_to,
            Some("2026-06-01T12:00:00Z".parse().unwrap())
        );
        let document = markdown(&timeline);
        assert!(
            document.contains("| extended gr\\_1 to 2026-06-01T12:00:00Z |"),
            "{document}"
        );
        assert!(!document.contains("pending"), "{document}");
    }

    /// A reader who is not an auditor gets only the events they took part
    /// in: the export says so, and marks others' rows as told in part.
    #[test]
    fn an_export_from_the_events_one_took_part_in_says_it_is_partial() {
        let events = vec![
            event(1, AuditKind::Requested, None),
            event(2, AuditKind::Activated, None),
        ];
        let now = "2026-06-01T12:00:00Z".parse().unwrap();
        let holder = format!("alice{HOSTILE}");
        let theirs = timeline("INC-1", events.clone(), Some(&holder), now);
        assert!(!theirs.access[0].seen_in_part);
        let approvers = timeline("INC-1", events.clone(), Some("bob"), now);
        assert!(approvers.access[0].seen_in_part);
        let document = markdown(&approvers);
        assert!(
            document.contains("**Partial:** bob is not an auditor"),
            "{document}"
        );
        assert!(
            document.contains("active; as far as your own events show"),
            "{document}"
        );
        let auditors = markdown(&timeline("INC-1", events, None, now));
        assert!(!auditors.contains("Partial"), "{auditors}");
        assert!(!auditors.contains("as far as"), "{auditors}");
    }

    #[test]
    fn broker_text_cannot_add_markup_links_scripts_or_cells() {
        let events = vec![
            event(1, AuditKind::Requested, Some(HOSTILE)),
            event(2, AuditKind::Reviewed, Some(HOSTILE)),
            event(3, AuditKind::Activated, None),
            event(4, AuditKind::Revoked, Some(HOSTILE)),
            // A kind from a newer broker is the broker's text too.
            event(5, AuditKind::parse(HOSTILE), None),
        ];
        let now = "2026-06-01T12:00:00Z".parse().unwrap();
        let document = markdown(&timeline(&format!("INC-1{HOSTILE}"), events, None, now));

        // Every row of both tables is one line with its own number of cells.
        let rows: Vec<&str> = document.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), 2 + 1 + 2 + 5, "{document}");
        for row in &rows {
            let columns = if rows[..3].contains(row) { 9 } else { 7 };
            assert_eq!(cells(row).len(), columns + 2, "{row}");
        }
        // No tag, link, code span, emphasis or entity of the broker's: each
        // character that could start one is escaped.
        let text = document
            .lines()
            .filter(|l| l.starts_with('|') || l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("<br>", "");
        assert!(!text.contains('<') && !text.contains('>'), "{document}");
        assert!(
            text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{document}"
        );
        assert!(text.contains("&amp;lt;"), "{document}");
        for (at, c) in text.char_indices() {
            if matches!(c, '`' | '[' | ']' | '*' | '_' | '~' | '$') {
                assert!(text[..at].ends_with('\\'), "unescaped {c} in {document}");
            }
        }
        assert!(text.contains(r"\[x\](javascript:alert(1))"), "{document}");
        assert!(
            document.contains(r"\`code\` \| pipe \|<br>second line"),
            "{document}"
        );
        // Hidden characters are shown, not kept.
        assert!(
            text.contains("⟨U+202E⟩rev ⟨U+200B⟩zw ⟨U+001B⟩\\[2J"),
            "{document}"
        );
        assert!(
            !text.contains('\u{202E}') && !text.contains('\x1b'),
            "{document}"
        );
        // The heading is one line too.
        assert!(document.starts_with("# Access timeline: INC-1&lt;script&gt;"));
        assert_eq!(document.lines().next().unwrap().matches("<br>").count(), 1);
    }
}
