//! The body each channel format asks for, made from a [`Notice`]: Slack
//! Block Kit, a Teams message with one Adaptive Card, or the notice as it
//! is. Text people typed (a justification, a comment, a ticket) is escaped
//! for the format, so it cannot turn into a link or a mention (in Slack,
//! `*bold*` and `_italics_` in it still render, inside a quote's bar), and
//! clipped to what the format accepts.

use serde_json::{Value, json};

use super::{Event, Format, Notice};

/// Slack's `action_id` of the Approve button; its `value` is the request id.
pub const SLACK_APPROVE: &str = "hoist_approve";
/// Slack's `action_id` of the Deny button; its `value` is the request id.
pub const SLACK_DENY: &str = "hoist_deny";
/// Slack's `action_id` of the link button that opens the request (Slack
/// tells the app's Request URL of it too; there is nothing to do).
pub const SLACK_OPEN: &str = "hoist_open";

/// Longest justification shown; Slack takes 3000 characters in a section.
const MAX_JUSTIFICATION: usize = 2000;
/// Slack takes 150 characters in a header.
const MAX_HEADER: usize = 150;
/// Longest other value shown (an error, a comment).
const MAX_VALUE: usize = 500;

/// The body for `format`.
pub fn render(format: Format, notice: &Notice) -> Value {
    render_as_of(format, notice, None)
}

/// [`render`], for a notice that asks for a decision on a request that is
/// `decided` by the time it goes out (a delivery held up): in Slack it
/// says so and carries no Approve or Deny button, which would only be
/// refused. The other formats are the event as it was.
pub fn render_as_of(
    format: Format,
    notice: &Notice,
    decided: Option<hoist_api::RequestState>,
) -> Value {
    match format {
        Format::Slack => slack(notice, decided),
        Format::Teams => teams(notice),
        Format::Json => serde_json::to_value(notice).unwrap_or(Value::Null),
    }
}

/// A one-line title for the event.
fn title(notice: &Notice) -> String {
    let role = &notice.role_name;
    let text = match notice.event {
        Event::RequestFiled => format!("Access requested: {role}"),
        Event::RequestDecided => match notice.decision.as_deref() {
            Some("approved") => format!("Request approved: {role}"),
            Some("denied") => format!("Request denied: {role}"),
            _ => format!("Request decided: {role}"),
        },
        Event::RequestLapsing => format!("Request lapses soon: {role}"),
        Event::BreakGlass => format!("Break-glass access: {role}"),
        Event::GrantEnding => format!("Access ends soon: {role}"),
        Event::ProvisionFailed => format!("Access not provisioned: {role}"),
        Event::RemovalFailed => format!("Access not removed: {role}"),
    };
    clip(&text, MAX_HEADER)
}

/// What happened, in a sentence.
fn summary(notice: &Notice) -> String {
    let requester = &notice.requester;
    let duration = humantime::format_duration(std::time::Duration::from_secs(notice.duration_secs));
    match notice.event {
        Event::RequestFiled => {
            let approvals = match notice.approvals_required {
                1 => "1 approval".to_string(),
                n => format!("{n} approvals"),
            };
            let what = if notice.kind == "extension" {
                "an extension"
            } else {
                "access"
            };
            format!("{requester} asks for {what} for {duration}; it needs {approvals}.")
        }
        Event::RequestDecided => {
            let by = notice
                .decided_by
                .as_deref()
                .map(|by| format!(" by {by}"))
                .unwrap_or_default();
            let decision = notice.decision.as_deref().unwrap_or("decided");
            format!("{requester}'s request was {decision}{by}.")
        }
        Event::RequestLapsing => format!(
            "{requester}'s request lapses at {} unless someone decides it.",
            when(notice.lapses_at)
        ),
        Event::BreakGlass => {
            format!("{requester} broke glass: access for {duration} without approval. Review it.")
        }
        Event::GrantEnding => format!(
            "{requester}'s access ends at {}; extend it if the work is not done.",
            when(notice.expires_at)
        ),
        Event::ProvisionFailed => format!(
            "{requester}'s access could not be made at {}; hoistd retries.",
            notice.target.as_deref().unwrap_or("its target")
        ),
        Event::RemovalFailed => format!(
            "{requester}'s grant ended, but its access could not be removed at {}: it stays until hoistd's retry succeeds.",
            notice.target.as_deref().unwrap_or("its target")
        ),
    }
}

fn when(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "an unknown time".into())
}

fn role_line(notice: &Notice) -> String {
    match notice.tier {
        Some(tier) => format!("{} ({}) · tier {tier}", notice.role_name, notice.role),
        None => format!("{} ({})", notice.role_name, notice.role),
    }
}

/// Whether the notice asks approvers for a decision (Approve and Deny).
fn asks_decision(notice: &Notice) -> bool {
    matches!(notice.event, Event::RequestFiled | Event::RequestLapsing)
}

// ---- Slack ---------------------------------------------------------------

/// Text for Slack's mrkdwn: `&`, `<` and `>` escaped as Slack asks, so
/// typed text makes no link or mention (with [`md`]'s `verbatim`, which
/// stops Slack linking bare URLs and channel names).
fn mrkdwn(text: &str) -> String {
    mrkdwn_within(text, usize::MAX)
}

/// Typed text for Slack as a block quote, every line of it, at most `max`
/// characters with the quote's marks: what someone typed shows inside the
/// quote's bar, so a line of it in bold cannot pass for one of hoist's own
/// fields (`*Role*`, `*Approvals*`) beside the buttons. Typed text has its
/// `>` escaped, so it cannot end the quote. The marks count: text of many
/// short lines is clipped further, so the section stays within what Slack
/// takes.
fn quoted_within(text: &str, max: usize) -> String {
    let quote = |escaped: String| {
        escaped
            .split('\n')
            .map(|line| format!(">{line}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let escaped = mrkdwn_within(text, max);
    let lines = escaped.split('\n').count();
    if escaped.chars().count() + lines <= max {
        return quote(escaped);
    }
    // Clipped by the lines it had: it has no more lines now.
    quote(mrkdwn_within(text, max.saturating_sub(lines)))
}

/// [`mrkdwn`], at most `max` characters once escaped (an escape is never
/// cut in two), with an ellipsis if it had to stop; controls other than
/// line breaks made spaces, hidden characters left out
/// ([`hoist_api::text::visible_chars`]).
fn mrkdwn_within(text: &str, max: usize) -> String {
    let pieces: Vec<String> = hoist_api::text::visible_chars(text.chars().map(lines_and_spaces))
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            c => c.to_string(),
        })
        .collect();
    let total: usize = pieces.iter().map(|p| p.chars().count()).sum();
    if total <= max {
        return pieces.concat();
    }
    let mut escaped = String::new();
    let mut length = 0;
    for piece in pieces {
        let width = piece.chars().count();
        // Room for the ellipsis.
        if length + width + 1 > max {
            break;
        }
        length += width;
        escaped.push_str(&piece);
    }
    escaped.push('…');
    escaped
}

/// A mrkdwn text object Slack takes as written: `verbatim`, so it makes
/// no link of a URL or a channel name and parses no mention in it.
fn md(text: String) -> Value {
    json!({"type": "mrkdwn", "text": text, "verbatim": true})
}

fn slack(notice: &Notice, decided: Option<hoist_api::RequestState>) -> Value {
    let title = title(notice);
    let mut fields = vec![
        format!("*Requester*\n{}", mrkdwn(&notice.requester)),
        format!("*Role*\n{}", mrkdwn_within(&role_line(notice), MAX_VALUE)),
    ];
    if let Some(ticket) = &notice.ticket {
        fields.push(match &notice.ticket_url {
            Some(url) => format!("*Ticket*\n<{}|{}>", url, mrkdwn(ticket)),
            None => format!("*Ticket*\n{}", mrkdwn(ticket)),
        });
    }
    if let Some(incident) = &notice.incident {
        fields.push(format!("*Incident*\n{}", mrkdwn(incident)));
    }
    match notice.event {
        Event::RequestLapsing => fields.push(format!("*Lapses*\n{}", when(notice.lapses_at))),
        Event::GrantEnding => fields.push(format!("*Ends*\n{}", when(notice.expires_at))),
        _ => {}
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title}}),
        json!({"type": "section", "text": md(mrkdwn(&summary(notice)))}),
        json!({
            "type": "section",
            "fields": fields
                .iter()
                .map(|text| md(text.clone()))
                .collect::<Vec<_>>(),
        }),
        json!({
            "type": "section",
            "text": md(format!(
                "*Justification*\n{}",
                quoted_within(&notice.justification, MAX_JUSTIFICATION)
            )),
        }),
    ];
    if let Some(comment) = &notice.comment {
        blocks.push(json!({
            "type": "section",
            "text": md(format!("*Comment*\n{}", quoted_within(comment, MAX_VALUE))),
        }));
    }
    if let Some(error) = &notice.error {
        blocks.push(json!({
            "type": "section",
            "text": md(format!("*Error*\n{}", mrkdwn_within(error, MAX_VALUE))),
        }));
    }
    if let Some(state) = decided.filter(|_| asks_decision(notice)) {
        blocks.push(json!({
            "type": "section",
            "text": md(format!("*No longer pending:* the request is {state} now.")),
        }));
    }
    let mut buttons = Vec::new();
    if asks_decision(notice) && decided.is_none() {
        buttons.push(json!({
            "type": "button",
            "text": {"type": "plain_text", "text": "Approve"},
            "style": "primary",
            "action_id": SLACK_APPROVE,
            "value": notice.request_id,
        }));
        buttons.push(json!({
            "type": "button",
            "text": {"type": "plain_text", "text": "Deny"},
            "style": "danger",
            "action_id": SLACK_DENY,
            "value": notice.request_id,
        }));
    }
    if let Some(url) = &notice.url {
        buttons.push(json!({
            "type": "button",
            "text": {"type": "plain_text", "text": "Open request"},
            "action_id": SLACK_OPEN,
            "url": url,
        }));
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "block_id": "hoist_request", "elements": buttons}));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [md(format!(
            "Request `{}` · `hoist status {}`",
            mrkdwn(&notice.request_id),
            mrkdwn(&notice.request_id)
        ))],
    }));
    json!({
        "text": mrkdwn(&format!("{title}: {}", summary(notice))),
        "blocks": blocks,
    })
}

// ---- Teams ---------------------------------------------------------------

/// An Adaptive Card's `TextRun` takes no markdown, unlike a `TextBlock`
/// or a fact: what people typed goes in one, so it shows as typed and
/// cannot become a link.
fn typed(label: &str, text: &str) -> Value {
    json!({
        "type": "RichTextBlock",
        "inlines": [
            {"type": "TextRun", "text": format!("{label}: "), "weight": "Bolder"},
            {"type": "TextRun", "text": text},
        ],
    })
}

fn teams(notice: &Notice) -> Value {
    // Facts are markdown: only what hoist or the policy wrote goes there.
    // Not the requester: a workload's name holds its token's `sub`.
    let mut facts = vec![("Role", role_line(notice))];
    match notice.event {
        Event::RequestLapsing => facts.push(("Lapses", when(notice.lapses_at))),
        Event::GrantEnding => facts.push(("Ends", when(notice.expires_at))),
        _ => {}
    }
    facts.push(("Request", notice.request_id.clone()));
    let urgent = matches!(
        notice.event,
        Event::BreakGlass | Event::ProvisionFailed | Event::RemovalFailed | Event::RequestLapsing
    ) || notice.tier == Some(0);
    let mut body = vec![
        json!({
            "type": "TextBlock",
            "text": title(notice),
            "weight": "Bolder",
            "size": "Medium",
            "color": if urgent { "Attention" } else { "Default" },
            "wrap": true,
        }),
        // It names the requester: a run of text, never markdown.
        json!({
            "type": "RichTextBlock",
            "inlines": [{"type": "TextRun", "text": summary(notice)}],
        }),
        typed("Requester", &notice.requester),
        json!({
            "type": "FactSet",
            "facts": facts
                .iter()
                .map(|(title, value)| json!({"title": title, "value": value}))
                .collect::<Vec<_>>(),
        }),
    ];
    if let Some(ticket) = &notice.ticket {
        body.push(typed("Ticket", ticket));
    }
    if let Some(incident) = &notice.incident {
        body.push(typed("Incident", incident));
    }
    body.push(typed(
        "Justification",
        &clip(&notice.justification, MAX_JUSTIFICATION),
    ));
    if let Some(comment) = &notice.comment {
        body.push(typed("Comment", &clip(comment, MAX_VALUE)));
    }
    if let Some(error) = &notice.error {
        body.push(typed("Error", &clip(error, MAX_VALUE)));
    }
    body.push(json!({
        "type": "TextBlock",
        "text": format!("Open it in hoist: hoist status {}", notice.request_id),
        "isSubtle": true,
        "wrap": true,
    }));
    let mut actions = Vec::new();
    if let Some(url) = &notice.url {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Open request", "url": url}));
    }
    if let Some(url) = &notice.ticket_url {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Open ticket", "url": url}));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if !actions.is_empty() {
        card["actions"] = Value::Array(actions);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// Line breaks, Unicode's too, as `\n`; other controls as spaces.
fn lines_and_spaces(c: char) -> char {
    match c {
        '\u{2028}' | '\u{2029}' => '\n',
        c if c.is_control() && c != '\n' => ' ',
        c => c,
    }
}

/// At most `max` characters, with an ellipsis if there were more; controls
/// other than line breaks made spaces, hidden characters left out.
fn clip(text: &str, max: usize) -> String {
    let mut kept = hoist_api::text::visible_chars(text.chars().map(lines_and_spaces));
    let mut clipped: String = kept.by_ref().take(max).collect();
    if kept.next().is_some() {
        clipped.pop();
        clipped.push('…');
    }
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_line_breaks_and_marks_the_cut() {
        assert_eq!(clip("a\nb\u{1b}c", 10), "a\nb c");
        assert_eq!(clip("a\u{202e}b\u{2029}c", 10), "ab\nc");
        // A stray variation selector is as hidden as a zero-width space,
        // and hidden characters do not count toward the bound.
        assert_eq!(clip("INC-4\u{FE0F}2 ❤\u{FE0F}", 10), "INC-42 ❤\u{FE0F}");
        assert_eq!(clip(&format!("{}abc", "\u{200B}".repeat(20)), 3), "abc");
        assert_eq!(
            mrkdwn_within("main\u{FE00} & \u{2060}db", 20),
            "main &amp; db"
        );
        let long = clip(&"x".repeat(20), 10);
        assert_eq!(long.chars().count(), 10);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn escaped_text_stays_within_its_bound() {
        let escaped = mrkdwn_within(&"&".repeat(3000), 2000);
        assert!(escaped.chars().count() <= 2000, "{}", escaped.len());
        assert!(escaped.ends_with("&amp;…"), "{escaped}");
        assert_eq!(mrkdwn_within("a<b", 10), "a&lt;b");
        assert_eq!(mrkdwn_within("abcdef", 4), "abc…");
    }

    /// Typed text is quoted line by line, and its quote marks count toward
    /// its bound: text of many short lines cannot push a section past what
    /// Slack takes (which would refuse the whole message).
    #[test]
    fn quoted_text_stays_within_its_bound_marks_and_all() {
        assert_eq!(quoted_within("a\n*Role*\n> x", 100), ">a\n>*Role*\n>&gt; x");
        let many = "x\n".repeat(2000);
        let quoted = quoted_within(&many, 2000);
        assert!(quoted.chars().count() <= 2000, "{}", quoted.chars().count());
        assert!(quoted.ends_with('…'), "{quoted}");
        assert!(quoted.lines().all(|line| line.starts_with('>')), "{quoted}");
    }

    /// Every mrkdwn object in a Slack message is verbatim: Slack would
    /// otherwise link a URL or a channel name in a justification, right
    /// beside the Approve button.
    #[test]
    fn slack_links_nothing_people_typed() {
        fn mrkdwn_objects<'a>(value: &'a Value, found: &mut Vec<&'a Value>) {
            match value {
                Value::Object(map) => {
                    if map.get("type") == Some(&json!("mrkdwn")) {
                        found.push(value);
                    }
                    map.values().for_each(|v| mrkdwn_objects(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| mrkdwn_objects(v, found)),
                _ => {}
            }
        }
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let notice: Notice = serde_json::from_value(json!({
            "event": "request_filed", "at": at, "to": ["bob"], "request_id": "req_1",
            "kind": "access", "role": "db", "role_name": "DB", "tier": 1,
            "requester": "alice",
            "justification": "approved already, see https://evil.example #security",
            "ticket": "https://evil.example/x", "ticket_url": null, "incident": "INC-1",
            "duration_secs": 600, "break_glass": false, "approvals_required": 1,
            "url": null, "lapses_at": at, "decision": null, "decided_by": null,
            "comment": "see www.evil.example", "grant_id": null, "expires_at": null,
            "target": null, "error": "at https://evil.example"
        }))
        .unwrap();
        let message = slack(&notice, None);
        let mut found = Vec::new();
        mrkdwn_objects(&message, &mut found);
        assert!(found.len() >= 5, "{message}");
        for object in found {
            assert_eq!(object["verbatim"], json!(true), "{object}");
        }
    }

    #[test]
    fn typed_text_makes_no_markup() {
        assert_eq!(
            mrkdwn("<!channel> & <https://evil|click>"),
            "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;"
        );
        let run = &typed("Justification", "[click](https://evil)")["inlines"][1];
        assert_eq!(run["type"], "TextRun");
        assert_eq!(run["text"], "[click](https://evil)");
    }
}
