//! One SQLite transaction: the [`Tx`] operations as SQL.
//!
//! Long because it is the whole [`Tx`] in SQL, one method per operation,
//! kept together so the transaction rules in `store/mod.rs` can be checked
//! against one file.

use std::ops::ControlFlow;
use std::sync::MutexGuard;

use chrono::{DateTime, Utc};
use hoist_api::{AccessRequest, AuditEvent, Decision, Grant, RequestKind, Review};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::Durability;
use super::rows::*;
use crate::store::{
    AuditHead, AuditQuery, Delivery, Effect, Exchange, GrantQuery, Notification,
    NotificationDelivery, PASSED, Remembered, RequestQuery, Result, StoreError, StoredAudit, Tx,
    access_column,
};

pub(super) struct SqliteTx<'a> {
    conn: MutexGuard<'a, Connection>,
    finished: bool,
    /// `total_changes` at the start: a transaction that changed nothing has
    /// nothing to sync.
    changes_before: u64,
    durability: &'a Durability,
    /// The moment its writes must commit before ([`Tx::commit_before`]).
    before: Option<DateTime<Utc>>,
}

impl<'a> SqliteTx<'a> {
    /// Takes the write lock before the first read (rule 1): a deferred
    /// transaction could read, then fail to upgrade its lock.
    pub(super) fn begin(
        conn: MutexGuard<'a, Connection>,
        durability: &'a Durability,
    ) -> Result<Self> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let changes_before = conn.total_changes();
        Ok(SqliteTx {
            conn,
            finished: false,
            changes_before,
            durability,
            before: None,
        })
    }
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// An update that matched no row was of something never stored (rule 5).
fn updated(rows: usize, what: &str, id: &str) -> Result<()> {
    if rows == 0 {
        return Err(StoreError::NotFound(format!("{what} {id}")));
    }
    Ok(())
}

impl SqliteTx<'_> {
    /// A grant's access, as part of the grant (rule 7): written when present.
    fn write_access(&mut self, g: &Grant) -> Result<()> {
        let Some(access) = &g.access else {
            return Ok(());
        };
        self.conn
            .prepare_cached(
                "INSERT INTO grant_access (grant_id, target, kind, access_state, access_reason, \
                 attempts, next_attempt_at, access_updated, live_until, live_until_updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?8) \
                 ON CONFLICT (grant_id) DO UPDATE SET target = ?2, kind = ?3, access_state = ?4, \
                 access_reason = ?5, attempts = ?6, next_attempt_at = ?7, access_updated = ?8, \
                 live_until = ?9, live_until_updated = ?8",
            )?
            .execute(params![
                g.id,
                access.target,
                access.kind,
                access.state.as_str(),
                access.reason,
                access.attempts,
                access.next_attempt_at.map(ms),
                ms(access.updated_at),
                access.live_until.map(ms),
            ])?;
        Ok(())
    }

    fn load_reviews(&self, request: &mut AccessRequest) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT reviewer, decision, comment, at FROM reviews WHERE request_id = ?1 ORDER BY at, reviewer",
        )?;
        let rows = stmt.query_map([&request.id], |row| {
            let decision: String = row.get(1)?;
            Ok(Review {
                reviewer: row.get(0)?,
                decision: match decision.as_str() {
                    "approve" => Decision::Approve,
                    "deny" => Decision::Deny,
                    other => return Err(corrupt("decision", other)),
                },
                comment: row.get(2)?,
                at: time(row.get(3)?)?,
            })
        })?;
        request.reviews = rows.collect::<Result<_, _>>()?;
        Ok(())
    }

    fn query_requests(&self, sql: &str, values: &[Value]) -> Result<Vec<AccessRequest>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut requests = stmt
            .query_map(params_from_iter(values), request_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        for request in &mut requests {
            self.load_reviews(request)?;
        }
        Ok(requests)
    }

    fn query_grants(&self, sql: &str, values: &[Value]) -> Result<Vec<Grant>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let grants = stmt
            .query_map(params_from_iter(values), grant_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(grants)
    }
}

impl Tx for SqliteTx<'_> {
    fn request(&self, id: &str) -> Result<Option<AccessRequest>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1");
        Ok(self
            .query_requests(&sql, &[Value::Text(id.to_string())])?
            .pop())
    }

    fn requests(&self, query: &RequestQuery) -> Result<Vec<AccessRequest>> {
        let mut filter = Filter::default();
        filter.eq("requester", query.requester.as_ref());
        filter.within("role", query.roles.iter().cloned());
        filter.within_states("state", query.states.iter().map(|s| s.as_str()));
        filter.eq("incident", query.incident.as_ref());
        filter.eq("grant_id", query.grant_id.as_ref());
        if query.unacknowledged_break_glass {
            filter.raw("break_glass = 1 AND ack_at IS NULL");
        }
        let order = if query.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests {} ORDER BY created_at {order}, rowid {order}{}",
            filter.sql(),
            limit(query.limit)
        );
        self.query_requests(&sql, &filter.values)
    }

    fn insert_request(&mut self, r: &AccessRequest) -> Result<()> {
        let kind = match r.kind {
            RequestKind::Access => "access",
            RequestKind::Extension => "extension",
        };
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO requests ({REQUEST_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)"
            ))?
            .execute(params![
                r.id,
                kind,
                r.role,
                r.role_name,
                r.requester,
                r.justification,
                r.ticket,
                r.incident,
                r.duration_secs,
                r.starts_at.map(ms),
                r.break_glass,
                r.state.as_str(),
                ms(r.created_at),
                ms(r.updated_at),
                r.lapses_at.map(ms),
                r.approvals_required,
                r.grant_id,
                r.reason,
                r.claim.as_ref().map(|c| &c.by),
                r.claim.as_ref().map(|c| ms(c.until)),
                r.acknowledgement.as_ref().map(|a| &a.by),
                r.acknowledgement.as_ref().and_then(|a| a.comment.as_ref()),
                r.acknowledgement.as_ref().map(|a| ms(a.at)),
                r.tier,
                r.signed_in_at.map(ms),
            ])?;
        Ok(())
    }

    fn update_request(&mut self, r: &AccessRequest) -> Result<()> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE requests SET state = ?2, updated_at = ?3, lapses_at = ?4, grant_id = ?5, \
                 reason = ?6, claim_by = ?7, claim_until = ?8, ack_by = ?9, ack_comment = ?10, \
                 ack_at = ?11, approvals_required = ?12 WHERE id = ?1",
            )?
            .execute(params![
                r.id,
                r.state.as_str(),
                ms(r.updated_at),
                r.lapses_at.map(ms),
                r.grant_id,
                r.reason,
                r.claim.as_ref().map(|c| &c.by),
                r.claim.as_ref().map(|c| ms(c.until)),
                r.acknowledgement.as_ref().map(|a| &a.by),
                r.acknowledgement.as_ref().and_then(|a| a.comment.as_ref()),
                r.acknowledgement.as_ref().map(|a| ms(a.at)),
                r.approvals_required,
            ])?;
        updated(changed, "request", &r.id)
    }

    fn insert_review(&mut self, request_id: &str, review: &Review) -> Result<()> {
        let decision = match review.decision {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        };
        self.conn
            .prepare_cached(
                "INSERT INTO reviews (request_id, reviewer, decision, comment, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![request_id, review.reviewer, decision, review.comment, ms(review.at)])?;
        Ok(())
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>> {
        let sql = format!("SELECT {GRANT_SELECT} FROM {GRANT_SOURCE} WHERE id = ?1");
        Ok(self
            .query_grants(&sql, &[Value::Text(id.to_string())])?
            .pop())
    }

    fn grants(&self, query: &GrantQuery) -> Result<Vec<Grant>> {
        let mut filter = Filter::default();
        filter.eq("holder", query.holder.as_ref());
        filter.eq("role", query.role.as_ref());
        filter.within_states("state", query.states.iter().map(|s| s.as_str()));
        filter.eq("incident", query.incident.as_ref());
        filter.eq("target", query.target.as_ref());
        filter.within_states(
            "access_state",
            query.access_states.iter().map(|s| s.as_str()),
        );
        if let Some(after) = query.ends_after {
            filter.values.push(Value::Integer(ms(after)));
            filter.raw(&format!("grants.expires_at > ?{}", filter.values.len()));
        }
        let sql = format!(
            "SELECT {GRANT_SELECT} FROM {GRANT_SOURCE} {} ORDER BY starts_at DESC, id DESC{}",
            filter.sql(),
            limit(query.limit)
        );
        self.query_grants(&sql, &filter.values)
    }

    fn insert_grant(&mut self, g: &Grant) -> Result<()> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO grants ({GRANT_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))?
            .execute(params![
                g.id,
                g.request_id,
                g.role,
                g.role_name,
                g.holder,
                ms(g.starts_at),
                ms(g.expires_at),
                g.state.as_str(),
                g.ended_at.map(ms),
                g.revoked_by,
                g.revoke_reason,
                g.break_glass,
                g.ticket,
                g.incident,
                g.justification,
            ])?;
        self.write_access(g)
    }

    fn update_grant(&mut self, g: &Grant) -> Result<()> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE grants SET expires_at = ?2, state = ?3, ended_at = ?4, revoked_by = ?5, \
                 revoke_reason = ?6 WHERE id = ?1",
            )?
            .execute(params![
                g.id,
                ms(g.expires_at),
                g.state.as_str(),
                g.ended_at.map(ms),
                g.revoked_by,
                g.revoke_reason,
            ])?;
        updated(changed, "grant", &g.id)?;
        self.write_access(g)
    }

    fn due_requests(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<AccessRequest>> {
        // Two indexed reads: with `OR` SQLite scanned the whole table.
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = 'pending' AND lapses_at <= ?1 \
             UNION ALL \
             SELECT {REQUEST_COLUMNS} FROM requests WHERE state = 'approved' \
             AND coalesce(starts_at, 0) <= ?1 ORDER BY created_at LIMIT ?2"
        );
        self.query_requests(
            &sql,
            &[
                Value::Integer(ms(now)),
                Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )
    }

    fn due_grants(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Grant>> {
        let sql = format!(
            "SELECT {GRANT_SELECT} FROM {GRANT_SOURCE} WHERE state = 'active' AND expires_at <= ?1 \
             ORDER BY expires_at LIMIT ?2"
        );
        self.query_grants(
            &sql,
            &[
                Value::Integer(ms(now)),
                Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )
    }

    fn due_ids(&self, now: DateTime<Utc>, limit: usize) -> Result<(Vec<String>, Vec<String>)> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids = |sql: &str| -> Result<Vec<String>> {
            let mut statement = self.conn.prepare_cached(sql)?;
            let rows = statement.query_map(params![ms(now), limit], |row| row.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        Ok((
            ids(
                "SELECT id, created_at FROM requests WHERE state = 'pending' AND lapses_at <= ?1 \
                 UNION ALL \
                 SELECT id, created_at FROM requests WHERE state = 'approved' \
                 AND coalesce(starts_at, 0) <= ?1 ORDER BY created_at LIMIT ?2",
            )?,
            ids(
                "SELECT id FROM grants WHERE state = 'active' AND expires_at <= ?1 \
                 ORDER BY expires_at LIMIT ?2",
            )?,
        ))
    }

    fn uncollected(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Exchange>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {EXCHANGE_COLUMNS} FROM workload_exchanges \
             WHERE redeemed_at IS NULL AND collect_by IS NOT NULL AND collect_by <= ?1 \
             ORDER BY collect_by, task_key LIMIT ?2"
        ))?;
        let rows = statement.query_map(
            params![ms(now), i64::try_from(limit).unwrap_or(i64::MAX)],
            exchange_from_row,
        )?;
        let mut found = Vec::new();
        for row in rows {
            let (mut exchange, claims) = row?;
            exchange.claims = parse_claims(claims)?;
            found.push(exchange);
        }
        Ok(found)
    }

    fn uncollected_keys(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<String>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT task_key FROM workload_exchanges \
             WHERE redeemed_at IS NULL AND collect_by IS NOT NULL AND collect_by <= ?1 \
             ORDER BY collect_by, task_key LIMIT ?2",
        )?;
        let keys = statement
            .query_map(
                params![ms(now), i64::try_from(limit).unwrap_or(i64::MAX)],
                |row| row.get(0),
            )?
            .collect::<Result<_, _>>()?;
        Ok(keys)
    }

    fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT min(t) FROM ( \
                 SELECT min(expires_at) AS t FROM grants WHERE state = 'active' \
                 UNION ALL SELECT min(lapses_at) FROM requests WHERE state = 'pending' \
                 UNION ALL SELECT min(coalesce(starts_at, 0)) FROM requests WHERE state = 'approved' \
                 UNION ALL SELECT min(collect_by) FROM workload_exchanges \
                 WHERE redeemed_at IS NULL AND collect_by IS NOT NULL)",
            )?
            .query_row([], |row| row.get(0))?;
        Ok(opt_time(next)?)
    }

    fn idempotency_key(&self, requester: &str, key: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT body_hash, request_id FROM idempotency_keys WHERE requester = ?1 AND key = ?2",
            )?
            .query_row([requester, key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    fn insert_idempotency_key(
        &mut self,
        requester: &str,
        key: &str,
        body_hash: &str,
        request_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO idempotency_keys (requester, key, body_hash, request_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![requester, key, body_hash, request_id, ms(at)])?;
        Ok(())
    }

    fn purge_idempotency_keys(&mut self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        purge_oldest(&self.conn, "idempotency_keys", "created_at", before, limit)
    }

    fn audit_head(&self) -> Result<Option<AuditHead>> {
        audit_head(&self.conn)
    }

    fn insert_audit(&mut self, entry: &AuditEvent) -> Result<()> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?
            .execute(params![
                entry.seq,
                ms(entry.at),
                entry.kind.as_str(),
                entry.actor,
                entry.subject,
                entry.role,
                entry.request_id,
                entry.grant_id,
                entry.incident,
                entry.reason,
                entry.details.to_string(),
                entry.prev_hash,
                entry.hash,
            ])?;
        Ok(())
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut filter = Filter::default();
        filter.values.push(Value::Integer(query.after_seq));
        filter.clauses.push("seq > ?1".to_string());
        if let Some(user) = &query.involving {
            filter.values.push(Value::Text(user.clone()));
            let n = filter.values.len();
            filter
                .clauses
                .push(format!("(subject = ?{n} OR actor = ?{n})"));
        }
        filter.eq("incident", query.incident.as_ref());
        filter.eq("request_id", query.request_id.as_ref());
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit {} ORDER BY seq{}{}",
            filter.sql(),
            if query.newest { " DESC" } else { "" },
            limit(query.limit)
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut events = stmt
            .query_map(params_from_iter(&filter.values), audit_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        if query.newest {
            events.reverse();
        }
        Ok(events)
    }

    fn scan_audit(&self, visit: &mut dyn FnMut(&StoredAudit<'_>) -> ControlFlow<()>) -> Result<()> {
        scan_audit(&self.conn, visit)
    }

    fn identity_user(&self, issuer: &str, subject: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT user FROM identities WHERE issuer = ?1 AND subject = ?2")?
            .query_row([issuer, subject], |row| row.get(0))
            .optional()?)
    }

    fn user_identity(&self, user: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT issuer, subject FROM identities WHERE user = ?1")?
            .query_row([user], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    fn insert_identity(
        &mut self,
        issuer: &str,
        subject: &str,
        user: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO identities (issuer, subject, user, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![issuer, subject, user, ms(at)])?;
        Ok(())
    }

    fn remembered(&self, user: &str) -> Result<Option<Remembered>> {
        type Columns = (
            String,
            Option<String>,
            Option<String>,
            Option<DateTime<Utc>>,
        );
        let found: Option<Columns> = self
            .conn
            .prepare_cached(
                "SELECT issuer, display_name, groups, seen_at FROM identities WHERE user = ?1",
            )?
            .query_row([user], |row| {
                let seen_at: Option<i64> = row.get(3)?;
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    seen_at.map(time).transpose()?,
                ))
            })
            .optional()?;
        let Some((issuer, display_name, groups, as_of)) = found else {
            return Ok(None);
        };
        Remembered::from_columns(user, issuer, display_name, groups, as_of)
    }

    fn remembered_in(&self, groups: &[String]) -> Result<Vec<(String, Remembered)>> {
        type Columns = (String, String, String, String, Option<i64>);
        let wanted =
            serde_json::to_string(groups).map_err(|err| StoreError::Other(err.to_string()))?;
        let rows: Vec<Columns> = self
            .conn
            .prepare_cached(
                "SELECT user, issuer, display_name, groups, seen_at FROM identities \
                 WHERE groups IS NOT NULL AND display_name IS NOT NULL AND EXISTS \
                 (SELECT 1 FROM json_each(identities.groups) AS said \
                  WHERE said.value IN (SELECT value FROM json_each(?1))) \
                 ORDER BY user",
            )?
            .query_map([wanted], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut found = Vec::with_capacity(rows.len());
        for (user, issuer, display_name, groups, seen_at) in rows {
            let as_of = seen_at.map(time).transpose()?;
            if let Some(kept) =
                Remembered::from_columns(&user, issuer, Some(display_name), Some(groups), as_of)?
            {
                found.push((user, kept));
            }
        }
        Ok(found)
    }

    fn remember(&mut self, user: &str, seen: &Remembered) -> Result<()> {
        let groups = seen.groups_column()?;
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE identities SET display_name = ?2, groups = ?3, seen_at = ?4 WHERE user = ?1",
            )?
            .execute(params![user, seen.display_name, groups, seen.as_of.map(ms)])?;
        updated(changed, "identity of", user)
    }

    fn notification_cursor(&self) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT seq FROM notification_cursor WHERE id = 1")?
            .query_row([], |row| row.get(0))
            .optional()?
            .unwrap_or(0))
    }

    fn set_notification_cursor(&mut self, seq: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO notification_cursor (id, seq) VALUES (1, ?1) \
                 ON CONFLICT (id) DO UPDATE SET seq = ?1",
            )?
            .execute([seq])?;
        Ok(())
    }

    fn insert_notification(&mut self, n: &Notification) -> Result<()> {
        // A refused row is a statement's failure in SQLite, not the
        // transaction's (rule 12).
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO notifications ({NOTIFICATION_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?
            .execute(params![
                n.id,
                n.dedup_key,
                n.channel,
                n.event,
                n.notice,
                n.attempts,
                ms(n.next_attempt_at),
                n.last_error,
                ms(n.created_at),
                n.done_at.map(ms),
                n.delivered,
            ])?;
        Ok(())
    }

    fn notification(&self, id: &str) -> Result<Option<Notification>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = ?1"
            ))?
            .query_row([id], notification_from_row)
            .optional()?)
    }

    fn update_notification(&mut self, n: &Notification) -> Result<()> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE notifications SET attempts = ?2, next_attempt_at = ?3, last_error = ?4, \
                 done_at = ?5, delivered = ?6 WHERE id = ?1",
            )?
            .execute(params![
                n.id,
                n.attempts,
                ms(n.next_attempt_at),
                n.last_error,
                n.done_at.map(ms),
                n.delivered,
            ])?;
        updated(changed, "notification", &n.id)
    }

    fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Notification>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE done_at IS NULL \
             AND next_attempt_at <= ?1 AND channel NOT IN (SELECT value FROM json_each(?3)) \
             ORDER BY next_attempt_at, created_at, rowid LIMIT ?2"
        ))?;
        let skip = serde_json::Value::from(skip.to_vec()).to_string();
        let due = stmt
            .query_map(params![ms(now), limit as i64, skip], notification_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(due)
    }

    fn due_notification_ids(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM notifications WHERE done_at IS NULL \
             AND next_attempt_at <= ?1 AND channel NOT IN (SELECT value FROM json_each(?3)) \
             ORDER BY next_attempt_at, created_at, rowid LIMIT ?2",
        )?;
        let skip = serde_json::Value::from(skip.to_vec()).to_string();
        let ids = stmt
            .query_map(params![ms(now), limit as i64, skip], |row| row.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    fn next_notification_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = self
            .conn
            .prepare_cached("SELECT min(next_attempt_at) FROM notifications WHERE done_at IS NULL")?
            .query_row([], |row| row.get(0))?;
        Ok(opt_time(next)?)
    }

    fn notifications_given_up(&self) -> Result<u64> {
        let given_up: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM notifications WHERE done_at IS NOT NULL AND delivered = 0",
            )?
            .query_row([], |row| row.get(0))?;
        Ok(u64::try_from(given_up).unwrap_or_default())
    }

    fn insert_notification_delivery(&mut self, d: &NotificationDelivery) -> Result<()> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO notification_deliveries ({NOTIFICATION_DELIVERY_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                d.notification_id,
                d.attempt,
                d.channel,
                d.event,
                d.status,
                d.duration_ms as i64,
                d.error,
                ms(d.at),
            ])?;
        Ok(())
    }

    fn notification_deliveries(&self, limit: usize) -> Result<Vec<NotificationDelivery>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {NOTIFICATION_DELIVERY_COLUMNS} FROM notification_deliveries \
             ORDER BY at DESC, rowid DESC LIMIT ?1"
        ))?;
        let deliveries = stmt
            .query_map([limit as i64], notification_delivery_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(deliveries)
    }

    fn purge_notification_deliveries(
        &mut self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64> {
        purge_oldest(&self.conn, "notification_deliveries", "at", before, limit)
    }

    fn exchange(&self, task_key: &str) -> Result<Option<Exchange>> {
        let found = self
            .conn
            .prepare_cached(&format!(
                "SELECT {EXCHANGE_COLUMNS} FROM workload_exchanges WHERE task_key = ?1"
            ))?
            .query_row([task_key], exchange_from_row)
            .optional()?;
        found
            .map(|(mut exchange, claims)| {
                exchange.claims = parse_claims(claims)?;
                Ok(exchange)
            })
            .transpose()
    }

    fn workload_claims(&self, request_id: &str) -> Result<Option<serde_json::Value>> {
        let claims: Option<Option<String>> = self
            .conn
            .prepare_cached("SELECT claims FROM workload_exchanges WHERE request_id = ?1")?
            .query_row([request_id], |row| row.get(0))
            .optional()?;
        parse_claims(claims.flatten())
    }

    fn insert_exchange(&mut self, e: &Exchange) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO workload_exchanges \
                 (task_key, principal, request_id, expires_at, created_at, redeemed_at, claims, \
                 collect_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                e.task_key,
                e.principal,
                e.request_id,
                ms(e.expires_at),
                ms(e.created_at),
                e.redeemed_at.map(ms),
                e.claims.as_ref().map(|c| c.to_string()),
                e.collect_by.map(ms),
            ])?;
        Ok(())
    }

    fn update_exchange(&mut self, e: &Exchange) -> Result<()> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE workload_exchanges SET redeemed_at = ?2, expires_at = ?3, \
                 collect_by = ?4 WHERE task_key = ?1",
            )?
            .execute(params![
                e.task_key,
                e.redeemed_at.map(ms),
                ms(e.expires_at),
                e.collect_by.map(ms)
            ])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("exchange {}", e.task_key)));
        }
        Ok(())
    }

    fn purge_exchanges(&mut self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        purge_oldest(
            &self.conn,
            "workload_exchanges",
            "expires_at",
            before,
            limit,
        )
    }

    fn insert_effect(&mut self, e: &Effect) -> Result<()> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO target_effects ({EFFECT_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?
            .execute(params![
                e.id,
                e.grant_id,
                e.target,
                e.action.as_str(),
                e.attempts,
                ms(e.next_attempt_at),
                e.last_error,
                ms(e.created_at),
                e.done_at.map(ms),
                access_column(e.access.as_ref()),
                e.system,
            ])?;
        Ok(())
    }

    fn update_effect(&mut self, e: &Effect) -> Result<()> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE target_effects SET attempts = ?2, next_attempt_at = ?3, last_error = ?4, \
                 done_at = ?5 WHERE id = ?1",
            )?
            .execute(params![
                e.id,
                e.attempts,
                ms(e.next_attempt_at),
                e.last_error,
                e.done_at.map(ms),
            ])?;
        updated(changed, "effect", &e.id)
    }

    fn grant_effects(&self, grant_id: &str) -> Result<Vec<Effect>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EFFECT_COLUMNS} FROM target_effects WHERE grant_id = ?1 ORDER BY created_at, rowid"
        ))?;
        let effects = stmt
            .query_map([grant_id], effect_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(effects)
    }

    fn due_effects(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Effect>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EFFECT_COLUMNS} FROM target_effects WHERE done_at IS NULL \
             AND next_attempt_at <= ?1 AND target NOT IN (SELECT value FROM json_each(?3)) \
             ORDER BY next_attempt_at, created_at, rowid LIMIT ?2"
        ))?;
        let skip = serde_json::Value::from(skip.to_vec()).to_string();
        let effects = stmt
            .query_map(params![ms(now), limit as i64, skip], effect_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(effects)
    }

    fn effect(&self, id: &str) -> Result<Option<Effect>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EFFECT_COLUMNS} FROM target_effects WHERE id = ?1"
        ))?;
        Ok(stmt.query_row([id], effect_from_row).optional()?)
    }

    fn due_effect_ids(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, grant_id FROM target_effects WHERE done_at IS NULL \
             AND next_attempt_at <= ?1 AND target NOT IN (SELECT value FROM json_each(?3)) \
             ORDER BY next_attempt_at, created_at, rowid LIMIT ?2",
        )?;
        let skip = serde_json::Value::from(skip.to_vec()).to_string();
        let ids = stmt
            .query_map(params![ms(now), limit as i64, skip], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    fn next_effect_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT min(next_attempt_at) FROM target_effects WHERE done_at IS NULL",
            )?
            .query_row([], |row| row.get(0))?;
        Ok(opt_time(next)?)
    }

    fn insert_delivery(&mut self, d: &Delivery) -> Result<()> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                d.id,
                d.target,
                d.action,
                d.grant_id,
                d.status,
                d.duration_ms as i64,
                d.error,
                ms(d.at),
            ])?;
        Ok(())
    }

    fn deliveries(&self, limit: usize) -> Result<Vec<Delivery>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries ORDER BY at DESC, rowid DESC LIMIT ?1"
        ))?;
        let deliveries = stmt
            .query_map([limit as i64], delivery_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(deliveries)
    }

    fn purge_deliveries(&mut self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        purge_oldest(&self.conn, "webhook_deliveries", "at", before, limit)
    }

    fn insert_handle(
        &mut self,
        target: &str,
        grant_id: &str,
        handle: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO target_handles (target, grant_id, handle, at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![target, grant_id, handle, ms(at)])?;
        Ok(())
    }

    fn handles(&self, target: &str, grant_id: Option<&str>) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT grant_id, handle FROM target_handles \
             WHERE target = ?1 AND (?2 IS NULL OR grant_id = ?2) ORDER BY grant_id, handle",
        )?;
        let handles = stmt
            .query_map(params![target, grant_id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(handles)
    }

    fn delete_handle(&mut self, target: &str, grant_id: &str, handle: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "DELETE FROM target_handles WHERE target = ?1 AND grant_id = ?2 AND handle = ?3",
            )?
            .execute(params![target, grant_id, handle])?;
        Ok(())
    }

    fn insert_drift_removal(
        &mut self,
        target: &str,
        name: &str,
        grant_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO drift_removals (target, name, grant_id, found_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )?
            .execute(params![target, name, grant_id, ms(at)])?;
        Ok(())
    }

    fn drift_removals(&self, target: &str) -> Result<Vec<(String, Option<String>)>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT name, grant_id FROM drift_removals WHERE target = ?1 ORDER BY name",
        )?;
        let found = statement
            .query_map([target], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(found)
    }

    fn delete_drift_removal(&mut self, target: &str, name: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM drift_removals WHERE target = ?1 AND name = ?2")?
            .execute(params![target, name])?;
        Ok(())
    }

    fn signing_key(&self) -> Result<Option<(String, Vec<u8>)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT kid, pkcs8 FROM signing_keys ORDER BY created_at DESC LIMIT 1")?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    fn insert_signing_key(&mut self, kid: &str, pkcs8: &[u8], at: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![kid, pkcs8, ms(at)])?;
        Ok(())
    }

    fn broker_key(&self, purpose: &str) -> Result<Option<(String, Vec<u8>)>> {
        broker_key(&self.conn, purpose)
    }

    fn broker_keys_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT purpose, pkcs8 FROM broker_keys \
             WHERE substr(purpose, 1, length(?1)) = ?1 ORDER BY purpose",
        )?;
        let keys = statement
            .query_map([prefix], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(keys)
    }

    fn insert_broker_key(
        &mut self,
        purpose: &str,
        kid: &str,
        pkcs8: &[u8],
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO broker_keys (purpose, kid, pkcs8, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![purpose, kid, pkcs8, ms(at)])?;
        Ok(())
    }

    fn note_ssh_authority(&mut self, public_key: &str, at: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO ssh_authorities (public_key, first_at, last_at) VALUES (?1, ?2, ?2) \
                 ON CONFLICT (public_key) DO UPDATE SET last_at = max(last_at, ?2)",
            )?
            .execute(params![public_key, ms(at)])?;
        Ok(())
    }

    fn ssh_authorities(&self) -> Result<Vec<String>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT public_key FROM ssh_authorities ORDER BY last_at DESC, public_key",
        )?;
        let keys = statement
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(keys)
    }

    fn ssh_authority_target(&self, public_key: &str) -> Result<Option<String>> {
        ssh_authority_target(&self.conn, public_key)
    }

    fn bind_ssh_authority(
        &mut self,
        public_key: &str,
        target: &str,
        at: DateTime<Utc>,
    ) -> Result<String> {
        let bound = self
            .conn
            .prepare_cached(
                "INSERT INTO ssh_authorities (public_key, first_at, last_at, target) \
                 VALUES (?1, ?2, ?2, ?3) \
                 ON CONFLICT (public_key) DO UPDATE SET target = coalesce(target, ?3) \
                 RETURNING target",
            )?
            .query_row(params![public_key, ms(at), target], |row| row.get(0))?;
        Ok(bound)
    }

    fn insert_slack_replay(&mut self, signature: &str, kept_until: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO slack_replays (signature, kept_until) VALUES (?1, ?2)")?
            .execute(params![signature, ms(kept_until)])?;
        Ok(())
    }

    fn purge_slack_replays(&mut self, now: DateTime<Utc>) -> Result<u64> {
        let purged = self
            .conn
            .prepare_cached("DELETE FROM slack_replays WHERE kept_until <= ?1")?
            .execute([ms(now)])?;
        Ok(purged as u64)
    }

    fn commit_before(&mut self, at: DateTime<Utc>) {
        self.before = Some(self.before.map_or(at, |before| before.min(at)));
    }

    /// Commits, lets the next transaction in, then syncs the log to disk
    /// before returning: the caller answers only once the commit is
    /// durable, and the sync holds up no other transaction.
    fn commit(mut self: Box<Self>) -> Result<()> {
        let wrote = self.conn.total_changes() != self.changes_before;
        // Under the write lock, held since BEGIN: nothing commits between
        // this look at the clock and the COMMIT.
        if wrote && self.before.is_some_and(|at| crate::clock::now() >= at) {
            return Err(StoreError::Contended(PASSED.into()));
        }
        self.conn.execute_batch("COMMIT")?;
        self.finished = true;
        let durability = self.durability;
        drop(self);
        if wrote {
            durability.sync_commit()?;
        }
        Ok(())
    }
}

/// Deletes at most `limit` rows of `table` whose `age` column is before
/// `before`, the oldest first; how many. Both names are the store's own.
fn purge_oldest(
    conn: &Connection,
    table: &'static str,
    age: &'static str,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<u64> {
    let purged = conn
        .prepare_cached(&format!(
            "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {age} < ?1 \
             ORDER BY {age}, rowid LIMIT ?2)"
        ))?
        .execute(params![ms(before), limit as i64])?;
    Ok(purged as u64)
}

/// The key kept for `purpose`, read on `conn` (a write transaction's or a
/// snapshot's).
pub(super) fn broker_key(conn: &Connection, purpose: &str) -> Result<Option<(String, Vec<u8>)>> {
    Ok(conn
        .prepare_cached("SELECT kid, pkcs8 FROM broker_keys WHERE purpose = ?1")?
        .query_row([purpose], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

/// The ssh target an SSH CA is bound to, read on `conn`.
pub(super) fn ssh_authority_target(conn: &Connection, public_key: &str) -> Result<Option<String>> {
    let target: Option<Option<String>> = conn
        .prepare_cached("SELECT target FROM ssh_authorities WHERE public_key = ?1")?
        .query_row(params![public_key], |row| row.get(0))
        .optional()?;
    Ok(target.flatten())
}

/// The newest audit entry, read on `conn` (a write transaction's or a
/// snapshot's).
pub(super) fn audit_head(conn: &Connection) -> Result<Option<AuditHead>> {
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| {
            Ok(AuditHead {
                seq: row.get(0)?,
                hash: row.get(1)?,
            })
        })
        .optional()?)
}

/// The whole log in sequence order, as stored, one borrowed row at a time.
pub(super) fn scan_audit(
    conn: &Connection,
    visit: &mut dyn FnMut(&StoredAudit<'_>) -> ControlFlow<()>,
) -> Result<()> {
    let mut stmt = conn.prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        // The columns are not declared STRICT: an edit can store a value
        // of another type, which names its entry as any alteration does.
        let entry = stored_audit(row, seq).map_err(|err| StoreError::AlteredAudit {
            seq,
            reason: format!(
                "holds a value not of its column's type ({err}): the entry was altered"
            ),
        })?;
        if visit(&entry).is_break() {
            break;
        }
    }
    Ok(())
}

fn stored_audit<'r>(row: &'r rusqlite::Row<'_>, seq: i64) -> rusqlite::Result<StoredAudit<'r>> {
    Ok(StoredAudit {
        seq,
        at_ms: row.get(1)?,
        kind: text(row, 2)?,
        actor: text(row, 3)?,
        subject: maybe(row, 4)?,
        role: maybe(row, 5)?,
        request_id: maybe(row, 6)?,
        grant_id: maybe(row, 7)?,
        incident: maybe(row, 8)?,
        reason: maybe(row, 9)?,
        details: text(row, 10)?,
        prev_hash: text(row, 11)?,
        hash: text(row, 12)?,
    })
}

impl SqliteTx<'_> {}

/// An exchange's claims column, as stored (JSON).
fn parse_claims(text: Option<String>) -> Result<Option<serde_json::Value>> {
    text.map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|err| StoreError::Corrupt(format!("exchange claims: {err}")))
}

/// An exchange's columns, as [`exchange_from_row`] reads them.
const EXCHANGE_COLUMNS: &str =
    "task_key, principal, request_id, expires_at, created_at, redeemed_at, claims, collect_by";

/// An exchange, with its claims still as stored text.
fn exchange_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Exchange, Option<String>)> {
    Ok((
        Exchange {
            task_key: row.get(0)?,
            principal: row.get(1)?,
            request_id: row.get(2)?,
            expires_at: time(row.get(3)?)?,
            created_at: time(row.get(4)?)?,
            redeemed_at: opt_time(row.get(5)?)?,
            claims: None,
            collect_by: opt_time(row.get(7)?)?,
        },
        row.get::<_, Option<String>>(6)?,
    ))
}
