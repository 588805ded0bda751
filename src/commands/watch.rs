//! `hoist reviews`: the requests that wait for my decision, one line each,
//! and with `--watch` each new one as it lands in my queue, for a tmux pane
//! or a notifier script reading standard output.

use std::collections::BTreeSet;

use futures::StreamExt;
use hoist_api::{AccessRequest, LiveEvent, Me, RequestState};

use super::Format;
use crate::backend::Backend;
use crate::text::sanitize;

/// Whether the request waits for my decision: pending, on a role I
/// approve, not mine, and not reviewed by me yet.
fn needs_me(me: &Me, request: &AccessRequest) -> bool {
    request.state == RequestState::Pending
        && request.requester != me.user
        && me.approver_for.contains(&request.role)
        && !request.reviews.iter().any(|r| r.reviewer == me.user)
}

/// One review as a line: id, tier, requester, role, ticket and the
/// justification's first line, tab-separated for `cut` and `awk`, each
/// field cleaned of anything a terminal would act on.
fn line(request: &AccessRequest) -> String {
    let field = |text: &str| sanitize::line(text).replace('\t', " ");
    let tier = request
        .tier
        .map(|t| format!("T{t}"))
        .unwrap_or_else(|| "-".into());
    let justification = request.justification.lines().next().unwrap_or_default();
    [
        field(&request.id),
        tier,
        field(&request.requester),
        field(&request.role),
        field(request.ticket.as_deref().unwrap_or("-")),
        field(justification),
    ]
    .join("\t")
}

fn emit(format: Format, request: &AccessRequest) -> anyhow::Result<()> {
    // Written at once: a pane or a pipe sees each review as it comes, not
    // when a buffer fills.
    match format {
        Format::Json | Format::Yaml => super::out(&format!("{}\n", super::json::to_line(request)?)),
        Format::Table => super::out(&format!("{}\n", line(request))),
    }
}

/// Prints each review that needs me (JSON lines with `--json`); with
/// `watch`, keeps printing new ones until the stream ends or fails.
pub async fn reviews(backend: &dyn Backend, watch: bool, format: Format) -> anyhow::Result<()> {
    // Subscribed before the queue is read, so nothing filed in between is missed.
    let mut events = if watch {
        Some(backend.events().await?)
    } else {
        None
    };
    let me = backend.me().await?;
    let mut printed = BTreeSet::new();
    let mut show = |request: &AccessRequest| -> anyhow::Result<()> {
        if needs_me(&me, request) && printed.insert(request.id.clone()) {
            emit(format, request)?;
        }
        Ok(())
    };
    for request in backend.review_queue().await? {
        show(&request)?;
    }
    let Some(events) = events.as_mut() else {
        return Ok(());
    };
    while let Some(event) = events.next().await {
        match event? {
            LiveEvent::Request { request } => show(&request)?,
            // Events may have been missed: whatever is new in the queue now.
            LiveEvent::Resync { .. } => {
                for request in backend.review_queue().await? {
                    show(&request)?;
                }
            }
            _ => {}
        }
    }
    anyhow::bail!("the broker's event stream ended")
}
