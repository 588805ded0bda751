//! The live event stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AccessRequest, Grant};

/// `GET /v1/events`: the `data` of one Server-Sent Event. The SSE `event`
/// field carries the same tag as `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// First event of every stream: who is listening, and the broker clock.
    Hello {
        user: String,
        time: DateTime<Utc>,
        /// Whether the broker orders the copies of a request or grant it
        /// sends (`AccessRequest::is_older_than`, `Grant::is_older_than`),
        /// so that a reader may pass over one older than a copy it has.
        /// Absent (false) from brokers that do not.
        #[serde(default)]
        ordered: bool,
    },
    /// A request the caller filed, or may review, changed.
    Request { request: AccessRequest },
    /// A grant the caller holds changed.
    Grant { grant: Grant },
    /// The stream fell behind and dropped events: fetch everything again.
    Resync { time: DateTime<Utc> },
    /// An event of a type this build does not know, from a newer broker:
    /// a reader passes over it. Read, never sent.
    #[serde(other, skip_serializing)]
    Unknown,
}

impl LiveEvent {
    /// The SSE `event` name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Request { .. } => "request",
            Self::Grant { .. } => "grant",
            Self::Resync { .. } => "resync",
            Self::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{grant, round_trip, t};

    #[test]
    fn events_round_trip() {
        round_trip(LiveEvent::Grant { grant: grant() });
    }

    /// A client older than its broker reads past a new type of event.
    #[test]
    fn an_event_of_a_type_from_a_newer_broker_reads_as_unknown() {
        let event: LiveEvent =
            serde_json::from_str(r#"{"type":"grant_paused","grant":{"id":"gr_1"}}"#).unwrap();
        assert_eq!(event, LiveEvent::Unknown);
    }

    #[test]
    fn live_events_are_tagged() {
        let json = serde_json::to_value(LiveEvent::Resync {
            time: t("2026-01-01T00:00:00Z"),
        })
        .unwrap();
        assert_eq!(json["type"], "resync");
    }
}
