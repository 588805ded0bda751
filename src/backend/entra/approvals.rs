//! The approver's side: requests waiting for my decision, and deciding one.
//! Directory role approvals are decided on Graph beta (v1.0 has no way to),
//! in the approval's `steps`; PIM for Groups approvals on v1.0, whose
//! approval calls them `stages`. Entra approves in stages; hoist decides the
//! stage assigned to me that is in progress.

use hoist_api::{AccessRequest, Decision, ErrorCode};

use super::graph::{GraphError, Version, query_value};
use super::ids::{ObjectRef, Surface};
use super::model::{Approval, ScheduleRequest, StepDecision};
use super::{EntraClient, base, expand, mapping, requests_path, tag};
use crate::backend::BackendError;

/// Where a surface's approvals live, and what their stages are called there.
fn approvals_path(surface: Surface) -> (Version, String, &'static str) {
    match surface {
        Surface::Directory => (
            Version::Beta,
            format!("{}/roleAssignmentApprovals", base(surface)),
            "steps",
        ),
        Surface::Group => (
            Version::V1,
            format!("{}/assignmentApprovals", base(surface)),
            "stages",
        ),
    }
}

fn decided_first() -> BackendError {
    BackendError::Refused {
        status: 409,
        code: ErrorCode::AlreadyReviewed,
        message: "another approver decided this request first".into(),
    }
}

pub async fn queue(client: &EntraClient) -> Result<Vec<AccessRequest>, BackendError> {
    let pending = |surface: Surface| {
        let query = format!(
            "$filter={}&$expand={},principal",
            query_value("status eq 'PendingApproval'"),
            expand(surface)
        );
        let collection = match surface {
            Surface::Directory => "roleAssignmentScheduleRequests",
            Surface::Group => "assignmentScheduleRequests",
        };
        async move {
            client
                .mine::<ScheduleRequest>(surface, collection, "approver", &query)
                .await
        }
    };
    let (directory, groups) =
        futures::try_join!(pending(Surface::Directory), pending(Surface::Group))?;
    let now = client.graph.clock().now();
    let mut queue: Vec<AccessRequest> = tag(Surface::Directory, directory)
        .chain(tag(Surface::Group, groups))
        .filter_map(|(surface, r)| {
            let requester = mapping::requester_of(&r);
            let terms =
                mapping::request_ref(surface, &r).and_then(|role| client.cached_terms(&role));
            mapping::request(
                surface,
                &r,
                &mapping::Context {
                    now,
                    requester: &requester,
                    grants: &[],
                    deactivated: &[],
                    terms: terms.as_ref(),
                    mine: false,
                },
            )
        })
        .filter(|r| r.state == hoist_api::RequestState::Pending)
        .collect();
    // Soonest to lapse first, as hoistd orders its queue; undated last.
    queue.sort_by_key(|r| (r.lapses_at.is_none(), r.lapses_at, r.created_at));
    Ok(queue)
}

pub async fn decide(
    client: &EntraClient,
    id: &str,
    decision: Decision,
    comment: Option<String>,
) -> Result<AccessRequest, BackendError> {
    let object = ObjectRef::parse(id).ok_or_else(|| super::bad_id("request", id))?;
    let request: ScheduleRequest = client
        .graph
        .get(
            Version::V1,
            &format!(
                "{}/{}?$expand={}",
                requests_path(object.surface),
                object.id,
                expand(object.surface)
            ),
        )
        .await
        .map_err(client.failed(&format!("reading request {id}")))?;
    if request.status != "PendingApproval" {
        return Err(decided_first());
    }
    let approval_id = request
        .approval_id
        .clone()
        .ok_or_else(|| BackendError::Refused {
            status: 400,
            code: ErrorCode::InvalidState,
            message: format!("{id} names no approval to decide"),
        })?;
    let approval_id = plain_id("approval", &approval_id)?;
    let (version, path, stages) = approvals_path(object.surface);
    let approval: Approval = client
        .graph
        .get(version, &format!("{path}/{approval_id}?$expand={stages}"))
        .await
        .map_err(client.failed(&format!("reading the approval of {id}")))?;
    let mine = approval.steps.iter().find(|step| {
        step.assigned_to_me == Some(true)
            && step.status.as_deref() == Some("InProgress")
            && step
                .review_result
                .as_deref()
                .is_none_or(|r| r == "NotReviewed")
    });
    let Some(step) = mine else {
        if approval
            .steps
            .iter()
            .any(|s| s.assigned_to_me == Some(true))
        {
            return Err(decided_first());
        }
        return Err(BackendError::Refused {
            status: 403,
            code: ErrorCode::Forbidden,
            message: format!("{id} is not waiting for your decision"),
        });
    };
    let body = StepDecision {
        review_result: match decision {
            Decision::Approve => "Approve",
            Decision::Deny => "Deny",
        },
        justification: comment,
    };
    let (approval_id, step_id) = (
        plain_id("approval", &approval.id)?,
        plain_id("approval step", &step.id)?,
    );
    match client
        .graph
        .patch(
            version,
            &format!("{path}/{approval_id}/{stages}/{step_id}"),
            &body,
        )
        .await
    {
        Ok(()) => {}
        Err(GraphError::Status { status: 409, .. }) => return Err(decided_first()),
        Err(err) => return Err(client.failed(&format!("deciding {id}"))(err)),
    }
    backend_request(client, id).await
}

async fn backend_request(client: &EntraClient, id: &str) -> Result<AccessRequest, BackendError> {
    crate::backend::Backend::request(client, id).await
}

/// An id Graph sent, to be put in a URL path: only what its ids are made
/// of (letters, digits, `-`, `_`), so no answer can steer a call elsewhere.
fn plain_id<'a>(what: &str, id: &'a str) -> Result<&'a str, BackendError> {
    if !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Ok(id);
    }
    Err(BackendError::Protocol(format!(
        "Microsoft Graph named an {what} by an id that is not one: {}",
        crate::text::sanitize::line(id)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_graph_go_into_paths_only_when_plain() {
        assert_eq!(plain_id("approval", "a1b2-C3_d4").unwrap(), "a1b2-C3_d4");
        for bad in ["", "../me", "a/b", "a?x=1", "a#b", "a%2Fb", "é"] {
            assert!(plain_id("approval", bad).is_err(), "{bad}");
        }
    }
}
