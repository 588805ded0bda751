//! `hoist roles`, `requests`, `grants`, `audit`, `status`: what there is.

use hoist_api::{AccessRequest, AuditEvent, Decision, RequestState};

use super::table::Table;
use super::{Format, print};
use crate::backend::Backend;
use crate::text::{clock, format_duration, local_timestamp as local};

pub async fn roles(backend: &dyn Backend, format: Format) -> anyhow::Result<()> {
    let roles = backend.roles().await?;
    print(format, &roles, || {
        let mut table = Table::new(&[
            "ROLE",
            "NAME",
            "DEFAULT",
            "MAX",
            "APPROVALS",
            "BREAK-GLASS",
            "TICKET",
        ]);
        for role in &roles {
            let approvals = if role.approval.approvals == 0 {
                "none".to_string()
            } else {
                format!(
                    "{} of {}",
                    role.approval.approvals,
                    role.approval.approver_groups.join(",")
                )
            };
            table.row(vec![
                role.id.clone(),
                role.name.clone(),
                format_duration(role.default_duration_secs),
                format_duration(role.max_duration_secs),
                approvals,
                if role.break_glass {
                    "yes".into()
                } else {
                    "no".into()
                },
                if role.ticket.required {
                    "required".into()
                } else {
                    "-".into()
                },
            ]);
        }
        table
    })
}

fn reviews(request: &AccessRequest) -> String {
    request
        .reviews
        .iter()
        .map(|r| {
            format!(
                "{}{}",
                r.reviewer,
                if r.decision == Decision::Approve {
                    "+"
                } else {
                    "-"
                }
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn requests_table(requests: &[AccessRequest]) -> Table {
    let mut table = Table::new(&["ID", "ROLE", "STATE", "FILED", "FOR", "REVIEWS", "NOTE"]);
    for r in requests {
        let note = match r.state {
            RequestState::Pending => r
                .lapses_at
                .map(|at| format!("lapses {}", local(at)))
                .unwrap_or_default(),
            // The grant an approval made: what `hoist revoke` takes.
            _ => [
                r.grant_id.as_ref().map(|id| format!("grant {id}")),
                r.reason.clone(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
        };
        table.row(vec![
            r.id.clone(),
            r.role.clone(),
            r.state.to_string(),
            local(r.created_at),
            format_duration(r.duration_secs),
            reviews(r),
            note,
        ]);
    }
    table
}

pub async fn requests(
    backend: &dyn Backend,
    reviewable: bool,
    format: Format,
) -> anyhow::Result<()> {
    let requests = if reviewable {
        backend.review_queue().await?
    } else {
        backend.requests(200).await?
    };
    print(format, &requests, || requests_table(&requests))
}

pub async fn grants(
    backend: &dyn Backend,
    all: bool,
    workloads: bool,
    format: Format,
) -> anyhow::Result<()> {
    if workloads {
        return workload_grants(backend, format).await;
    }
    let grants = backend.grants(all).await?;
    crate::prompt::remember(backend.broker(), &grants, backend.clock().offset());
    let now = backend.clock().now();
    // Where each grant's access is, only when some grant reaches a target.
    let with_access = grants.iter().any(|g| g.access.is_some());
    print(format, &grants, || {
        let mut columns = vec!["ID", "ROLE", "STATE", "LEFT", "ENDS", "REFERENCE"];
        if with_access {
            columns.push("ACCESS");
        }
        let mut table = Table::new(&columns);
        for g in &grants {
            let left = if g.state == hoist_api::GrantState::Active {
                clock(g.expires_at - now)
            } else {
                "-".into()
            };
            let mut row = vec![
                g.id.clone(),
                g.role.clone(),
                g.state.as_str().to_string(),
                left,
                local(g.ended_at.unwrap_or(g.expires_at)),
                g.ticket.clone().or(g.incident.clone()).unwrap_or_default(),
            ];
            if with_access {
                row.push(
                    g.access
                        .as_ref()
                        .map(|a| crate::app::access::describe(g, a, now).0)
                        .unwrap_or_default(),
                );
            }
            table.row(row);
        }
        table
    })
}

/// Active grants held by workloads, with who holds them.
async fn workload_grants(backend: &dyn Backend, format: Format) -> anyhow::Result<()> {
    let grants = backend.workload_grants().await?;
    let now = backend.clock().now();
    print(format, &grants, || {
        let mut table = Table::new(&["ID", "ROLE", "HOLDER", "LEFT", "ENDS"]);
        for g in &grants {
            table.row(vec![
                g.id.clone(),
                g.role.clone(),
                g.holder.clone(),
                clock(g.expires_at - now),
                local(g.expires_at),
            ]);
        }
        table
    })
}

/// Whose audit events to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ActorKind {
    Person,
    Workload,
}

pub async fn audit(
    backend: &dyn Backend,
    after: i64,
    limit: usize,
    actor_kind: Option<ActorKind>,
    format: Format,
) -> anyhow::Result<()> {
    let events = match actor_kind {
        None => backend.audit(after, limit).await?,
        // The broker does not filter by actor: pages are read until
        // `limit` events match or the log ends, so that a page of the
        // filtered view is `limit` of what matches, and `--after` its last
        // `seq` goes on from there.
        Some(kind) => {
            let wanted = |e: &AuditEvent| e.concerns_workload() == (kind == ActorKind::Workload);
            let mut events = Vec::new();
            let mut cursor = after;
            while events.len() < limit {
                let page = backend.audit(cursor, limit).await?;
                // A page that does not go past the last (a broker
                // answering out of order) ends the reading, as the log's
                // end does: asking again would get it again.
                let Some(last) = page.last().filter(|last| last.seq > cursor) else {
                    break;
                };
                cursor = last.seq;
                events.extend(page.into_iter().filter(wanted));
            }
            events.truncate(limit);
            events
        }
    };
    print(format, &events, || {
        let mut table = Table::new(&["SEQ", "WHEN", "KIND", "ACTOR", "SUBJECT", "ROLE", "REASON"]);
        for e in &events {
            table.row(vec![
                e.seq.to_string(),
                local(e.at),
                e.kind.to_string(),
                e.actor.clone(),
                e.subject.clone().unwrap_or_default(),
                e.role.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
            ]);
        }
        table
    })
}

pub async fn status(backend: &dyn Backend, id: &str, format: Format) -> anyhow::Result<()> {
    let request = backend.request(id).await?;
    print(format, &request, || {
        requests_table(std::slice::from_ref(&request))
    })
}
