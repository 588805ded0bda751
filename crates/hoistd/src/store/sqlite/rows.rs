//! Rows to wire types and back: columns, times in milliseconds, and the
//! `WHERE` clauses built from a query's filters.

use chrono::{DateTime, Utc};
use hoist_api::{
    AccessRequest, AccessState, Acknowledgement, AuditEvent, AuditKind, Claim, Grant, GrantState,
    RequestKind, RequestState, TargetAccess,
};
use rusqlite::Row;
use rusqlite::types::Value;

use crate::store::{Delivery, Effect, EffectAction, Notification, NotificationDelivery};

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn time(ms: i64) -> Result<DateTime<Utc>, rusqlite::Error> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            format!("timestamp {ms} out of range").into(),
        )
    })
}

pub(super) fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, rusqlite::Error> {
    ms.map(time).transpose()
}

pub(super) fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} `{value}`").into(),
    )
}

pub(super) const REQUEST_COLUMNS: &str = "id, kind, role, role_name, requester, justification, ticket, \
    incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, \
    approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier, \
    signed_in_at";

pub(super) fn request_from_row(row: &Row) -> Result<AccessRequest, rusqlite::Error> {
    let kind: String = row.get(1)?;
    let state: String = row.get(11)?;
    let claim_by: Option<String> = row.get(18)?;
    let claim_until = opt_time(row.get(19)?)?;
    let ack_by: Option<String> = row.get(20)?;
    let ack_at = opt_time(row.get(22)?)?;
    Ok(AccessRequest {
        id: row.get(0)?,
        kind: match kind.as_str() {
            "access" => RequestKind::Access,
            "extension" => RequestKind::Extension,
            other => return Err(corrupt("request kind", other)),
        },
        role: row.get(2)?,
        role_name: row.get(3)?,
        requester: row.get(4)?,
        justification: row.get(5)?,
        ticket: row.get(6)?,
        incident: row.get(7)?,
        duration_secs: row.get(8)?,
        starts_at: opt_time(row.get(9)?)?,
        break_glass: row.get(10)?,
        state: RequestState::parse(&state).ok_or_else(|| corrupt("request state", &state))?,
        created_at: time(row.get(12)?)?,
        updated_at: time(row.get(13)?)?,
        lapses_at: opt_time(row.get(14)?)?,
        approvals_required: row.get(15)?,
        reviews: Vec::new(),
        claim: claim_by
            .zip(claim_until)
            .map(|(by, until)| Claim { by, until }),
        grant_id: row.get(16)?,
        reason: row.get(17)?,
        acknowledgement: match (ack_by, ack_at) {
            (Some(by), Some(at)) => Some(Acknowledgement {
                by,
                comment: row.get(21)?,
                at,
            }),
            _ => None,
        },
        tier: row.get(23)?,
        approvers: Vec::new(),
        signed_in_at: opt_time(row.get(24)?)?,
    })
}

pub(super) const GRANT_COLUMNS: &str = "id, request_id, role, role_name, holder, starts_at, expires_at, \
    state, ended_at, revoked_by, revoke_reason, break_glass, ticket, incident, justification";

/// A grant with its access at a target, if it has one: select these from
/// [`GRANT_SOURCE`].
pub(super) const GRANT_SELECT: &str = "id, request_id, role, role_name, holder, starts_at, expires_at, \
    state, ended_at, revoked_by, revoke_reason, break_glass, ticket, incident, justification, \
    target, kind, access_state, access_reason, attempts, next_attempt_at, access_updated, \
    CASE WHEN live_until_updated = access_updated THEN live_until END";

pub(super) const GRANT_SOURCE: &str =
    "grants LEFT JOIN grant_access ON grant_access.grant_id = grants.id";

fn access_from_row(row: &Row) -> Result<Option<TargetAccess>, rusqlite::Error> {
    let Some(target) = row.get::<_, Option<String>>(15)? else {
        return Ok(None);
    };
    let state: String = row.get(17)?;
    Ok(Some(TargetAccess {
        target,
        kind: row.get(16)?,
        state: AccessState::parse(&state).ok_or_else(|| corrupt("access state", &state))?,
        reason: row.get(18)?,
        attempts: row.get(19)?,
        next_attempt_at: opt_time(row.get(20)?)?,
        updated_at: time(row.get(21)?)?,
        live_until: opt_time(row.get(22)?)?,
    }))
}

pub(super) fn grant_from_row(row: &Row) -> Result<Grant, rusqlite::Error> {
    let state: String = row.get(7)?;
    Ok(Grant {
        id: row.get(0)?,
        request_id: row.get(1)?,
        role: row.get(2)?,
        role_name: row.get(3)?,
        holder: row.get(4)?,
        starts_at: time(row.get(5)?)?,
        expires_at: time(row.get(6)?)?,
        state: GrantState::parse(&state).ok_or_else(|| corrupt("grant state", &state))?,
        ended_at: opt_time(row.get(8)?)?,
        revoked_by: row.get(9)?,
        revoke_reason: row.get(10)?,
        break_glass: row.get(11)?,
        ticket: row.get(12)?,
        incident: row.get(13)?,
        justification: row.get(14)?,
        access: access_from_row(row)?,
    })
}

pub(super) const EFFECT_COLUMNS: &str = "id, grant_id, target, action, attempts, next_attempt_at, last_error, created_at, done_at, \
    access, system";

pub(super) fn effect_from_row(row: &Row) -> Result<Effect, rusqlite::Error> {
    let action: String = row.get(3)?;
    Ok(Effect {
        id: row.get(0)?,
        grant_id: row.get(1)?,
        target: row.get(2)?,
        action: EffectAction::parse(&action).ok_or_else(|| corrupt("effect action", &action))?,
        attempts: row.get(4)?,
        next_attempt_at: time(row.get(5)?)?,
        last_error: row.get(6)?,
        created_at: time(row.get(7)?)?,
        done_at: opt_time(row.get(8)?)?,
        access: crate::store::access_from_column(row.get(9)?).map_err(|err| {
            rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, err.into())
        })?,
        system: row.get(10)?,
    })
}

pub(super) const DELIVERY_COLUMNS: &str =
    "id, target, action, grant_id, status, duration_ms, error, at";

pub(super) fn delivery_from_row(row: &Row) -> Result<Delivery, rusqlite::Error> {
    Ok(Delivery {
        id: row.get(0)?,
        target: row.get(1)?,
        action: row.get(2)?,
        grant_id: row.get(3)?,
        status: row.get(4)?,
        duration_ms: row.get(5)?,
        error: row.get(6)?,
        at: time(row.get(7)?)?,
    })
}

pub(super) const NOTIFICATION_COLUMNS: &str = "id, dedup_key, channel, event, notice, attempts, \
    next_attempt_at, last_error, created_at, done_at, delivered";

pub(super) fn notification_from_row(row: &Row) -> Result<Notification, rusqlite::Error> {
    Ok(Notification {
        id: row.get(0)?,
        dedup_key: row.get(1)?,
        channel: row.get(2)?,
        event: row.get(3)?,
        notice: row.get(4)?,
        attempts: row.get(5)?,
        next_attempt_at: time(row.get(6)?)?,
        last_error: row.get(7)?,
        created_at: time(row.get(8)?)?,
        done_at: opt_time(row.get(9)?)?,
        delivered: row.get(10)?,
    })
}

pub(super) const NOTIFICATION_DELIVERY_COLUMNS: &str =
    "notification_id, attempt, channel, event, status, duration_ms, error, at";

pub(super) fn notification_delivery_from_row(
    row: &Row,
) -> Result<NotificationDelivery, rusqlite::Error> {
    Ok(NotificationDelivery {
        notification_id: row.get(0)?,
        attempt: row.get(1)?,
        channel: row.get(2)?,
        event: row.get(3)?,
        status: row.get(4)?,
        duration_ms: row.get(5)?,
        error: row.get(6)?,
        at: time(row.get(7)?)?,
    })
}

pub(super) const AUDIT_COLUMNS: &str = "seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash";

/// A text column, borrowed from the row.
pub(super) fn text<'r>(row: &'r Row, column: usize) -> Result<&'r str, rusqlite::Error> {
    Ok(row.get_ref(column)?.as_str()?)
}

pub(super) fn maybe<'r>(row: &'r Row, column: usize) -> Result<Option<&'r str>, rusqlite::Error> {
    Ok(row.get_ref(column)?.as_str_or_null()?)
}

pub(super) fn audit_from_row(row: &Row) -> Result<AuditEvent, rusqlite::Error> {
    let kind = text(row, 2)?;
    let details = row.get_ref(10)?.as_bytes()?;
    Ok(AuditEvent {
        seq: row.get(0)?,
        at: time(row.get(1)?)?,
        kind: AuditKind::parse(kind),
        actor: row.get(3)?,
        subject: row.get(4)?,
        role: row.get(5)?,
        request_id: row.get(6)?,
        grant_id: row.get(7)?,
        incident: row.get(8)?,
        reason: row.get(9)?,
        details: serde_json::from_slice(details).map_err(|err| {
            rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, err.into())
        })?,
        prev_hash: row.get(11)?,
        hash: row.get(12)?,
    })
}

/// Builds `WHERE ...` from optional filters, keeping values as bound parameters.
#[derive(Default)]
pub(super) struct Filter {
    pub(super) clauses: Vec<String>,
    pub(super) values: Vec<Value>,
}

impl Filter {
    pub(super) fn eq(&mut self, column: &str, value: Option<&String>) {
        if let Some(value) = value {
            self.values.push(Value::Text(value.clone()));
            self.clauses
                .push(format!("{column} = ?{}", self.values.len()));
        }
    }

    pub(super) fn within(&mut self, column: &str, values: impl IntoIterator<Item = String>) {
        let mut marks = Vec::new();
        for value in values {
            self.values.push(Value::Text(value));
            marks.push(format!("?{}", self.values.len()));
        }
        if !marks.is_empty() {
            self.clauses
                .push(format!("{column} IN ({})", marks.join(", ")));
        }
    }

    /// `column IN ('a', 'b')` with the values written into the SQL. Only for
    /// the fixed vocabulary of states: SQLite matches literals against the
    /// partial indexes when it plans the statement, whereas a bound value
    /// there makes it plan the statement again every time it is bound.
    pub(super) fn within_states(
        &mut self,
        column: &str,
        states: impl IntoIterator<Item = &'static str>,
    ) {
        let literals: Vec<String> = states.into_iter().map(|s| format!("'{s}'")).collect();
        if !literals.is_empty() {
            self.clauses
                .push(format!("{column} IN ({})", literals.join(", ")));
        }
    }

    pub(super) fn raw(&mut self, clause: &str) {
        self.clauses.push(clause.to_string());
    }

    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

pub(super) fn limit(limit: Option<usize>) -> String {
    limit.map_or(String::new(), |n| format!(" LIMIT {n}"))
}
