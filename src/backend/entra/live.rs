//! Changes as they happen, for a broker with no event stream: Graph is
//! asked again every poll interval, and what differs from the last answer
//! goes out as hoist's live events (a request, a grant, a review waiting).
//! A failed poll ends the stream; the caller reconnects and reloads, as it
//! does when hoistd's stream drops.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use hoist_api::{AccessRequest, Grant, GrantState, LiveEvent};

use super::EntraClient;
use crate::backend::{Backend, BackendError, EventStream};

/// What the last poll saw.
#[derive(Default)]
struct Seen {
    requests: HashMap<String, AccessRequest>,
    grants: HashMap<String, Grant>,
    queue: HashMap<String, AccessRequest>,
}

struct Follow {
    client: EntraClient,
    poll: Duration,
    seen: Seen,
    ready: VecDeque<Result<LiveEvent, BackendError>>,
    ended: bool,
}

async fn look(client: &EntraClient) -> Result<Seen, BackendError> {
    // One picture for both the requests and the grants: each is several
    // listings, and Graph throttles per caller.
    let (user, picture, queue) =
        futures::try_join!(client.user(), client.picture(), client.review_queue())?;
    let mut requests = client.access_requests(&picture, &EntraClient::user_name(user));
    requests.truncate(500);
    let grants = picture.grants.clone();
    Ok(Seen {
        requests: requests.into_iter().map(|r| (r.id.clone(), r)).collect(),
        grants: grants.into_iter().map(|g| (g.id.clone(), g)).collect(),
        queue: queue.into_iter().map(|r| (r.id.clone(), r)).collect(),
    })
}

/// What changed between two looks, as events.
fn changes(before: &Seen, after: &Seen, now: chrono::DateTime<chrono::Utc>) -> Vec<LiveEvent> {
    let mut events = Vec::new();
    for (id, request) in after.requests.iter().chain(&after.queue) {
        let old = before.requests.get(id).or_else(|| before.queue.get(id));
        if old != Some(request) {
            events.push(LiveEvent::Request {
                request: request.clone(),
            });
        }
    }
    // A review that left my queue was decided (by me or another approver):
    // read again, it says how it ended; until then, it is simply gone.
    for (id, request) in &before.queue {
        if !after.queue.contains_key(id) && !after.requests.contains_key(id) {
            let mut gone = request.clone();
            gone.state = hoist_api::RequestState::Cancelled;
            gone.reason = Some("no longer waiting for your decision".into());
            events.push(LiveEvent::Request { request: gone });
        }
    }
    for (id, grant) in &after.grants {
        if before.grants.get(id) != Some(grant) {
            events.push(LiveEvent::Grant {
                grant: grant.clone(),
            });
        }
    }
    for (id, grant) in &before.grants {
        if !after.grants.contains_key(id) {
            let mut ended = grant.clone();
            ended.ended_at = Some(now.min(grant.expires_at));
            if now >= grant.expires_at {
                ended.state = GrantState::Expired;
            } else {
                ended.state = GrantState::Revoked;
                ended.revoke_reason = Some("ended in Entra before its expiry".into());
            }
            events.push(LiveEvent::Grant { grant: ended });
        }
    }
    events
}

pub async fn follow(client: EntraClient, poll: Duration) -> Result<EventStream, BackendError> {
    let user = client.me().await?.user;
    let seen = look(&client).await?;
    let hello = LiveEvent::Hello {
        user,
        time: client.clock().now(),
        // Graph's copies carry no order: the last one read wins.
        ordered: false,
    };
    let follow = Follow {
        client,
        poll,
        seen,
        ready: VecDeque::from([Ok(hello)]),
        ended: false,
    };
    let stream = futures::stream::unfold(follow, |mut follow| async move {
        loop {
            if let Some(next) = follow.ready.pop_front() {
                return Some((next, follow));
            }
            if follow.ended {
                return None;
            }
            tokio::time::sleep(follow.poll).await;
            match look(&follow.client).await {
                Ok(now_seen) => {
                    let now = follow.client.clock().now();
                    follow
                        .ready
                        .extend(changes(&follow.seen, &now_seen, now).into_iter().map(Ok));
                    follow.seen = now_seen;
                }
                Err(err) => {
                    follow.ended = true;
                    follow.ready.push_back(Err(err));
                }
            }
        }
    });
    Ok(Box::pin(stream))
}
