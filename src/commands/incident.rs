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
    /// `expired`, `revoked`, `denied`, `cancelled`, `timed_out`, or `active`.
    pub outcome: String,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub incident: String,
    pub generated_at: DateTime<Utc>,
    pub access: Vec<Access>,
    /// The audit log's own entries for the incident, unchanged and in order.
    pub events: Vec<AuditEvent>,
}

fn time(details: &serde_json::Value, key: &str) -> Option<DateTime<Utc>> {
    details.get(key)?.as_str()?.parse().ok()
}

pub fn timeline(incident: &str, events: Vec<AuditEvent>, now: DateTime<Utc>) -> Timeline {
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
            _ => {}
        }
    }
    let access = order
        .into_iter()
        .filter_map(|id| access.remove(&id))
        .collect();
    Timeline {
        incident: incident.to_string(),
        generated_at: now,
        access,
        events,
    }
}

/// Text safe inside a Markdown table cell: one line, no pipes, no controls.
fn cell(text: &str) -> String {
    crate::text::sanitize::line(text)
        .replace('|', "\\|")
        .replace('`', "'")
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
        let how = match &a.end_reason {
            Some(reason) => format!("{} ({})", a.outcome, reason),
            None => a.outcome.clone(),
        };
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
            e.kind,
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
    let timeline = timeline(incident, events, backend.clock().now());
    match format {
        ExportFormat::Markdown => print!("{}", markdown(&timeline)),
        ExportFormat::Json => println!("{}", super::json::to_string(&timeline)?),
    }
    Ok(())
}
