//! `GET /v1/events`: Server-Sent Events carrying each caller the changes that
//! concern them, as they are committed.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use hoist_api::{ApiError, LiveEvent};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Caller};
use crate::broker::{self, Change};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// A `text/event-stream` of [`LiveEvent`]s: first `hello`, then `request` and
/// `grant` events for the caller's own requests and grants and for requests on
/// roles they approve, and `resync` if the stream fell behind (fetch
/// everything again). Comments are sent as keep-alives.
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = [])),
    responses(
        (status = 200, description = "An endless stream of events", content_type = "text/event-stream", body = LiveEvent),
        (status = 401, description = "Missing or unknown token", body = ApiError),
    ))]
async fn events(
    State(state): State<AppState>,
    Caller(user): Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let broker = state.broker.clone();
    let hello = LiveEvent::Hello {
        user: user.clone(),
        time: broker::now(),
    };
    let changes = BroadcastStream::new(broker.subscribe()).filter_map(move |item| {
        let event = match item {
            Ok(change) if broker.concerns(&user, &change) => Some(match change {
                Change::Request(request) => LiveEvent::Request { request },
                Change::Grant(grant) => LiveEvent::Grant { grant },
            }),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(_)) => Some(LiveEvent::Resync {
                time: broker::now(),
            }),
        };
        std::future::ready(event)
    });
    let mut shutdown = state.shutdown.clone();
    let stream = stream::once(std::future::ready(hello))
        .chain(changes)
        .take_until(async move {
            let _ = shutdown.wait_for(|stopped| *stopped).await;
        })
        .map(|event| {
            Ok(Event::default()
                .event(event.name())
                .json_data(&event)
                .unwrap_or_else(|_| Event::default().comment("unserialisable event")))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
