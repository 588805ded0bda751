-- One create -> approve -> activate cycle as hoistd's PostgreSQL store sends
-- it (crates/hoistd/src/store/postgres/tx.rs is the truth; this is a copy kept
-- by hand). Filing: its read outside any transaction, fingerprinted; then one
-- pipeline that begins, takes the store's advisory lock, checks the read,
-- inserts the request, appends its audit entry and notifies (one statement),
-- and commits. Approving: the request and the requester's active grants of
-- its role, read in one pipeline; then one pipeline that begins, takes the
-- lock, checks both reads (one statement), writes the request, the review and
-- the grant, appends three audit entries linked in one statement with the
-- notice, and commits. Each locked transaction commits without waiting for
-- the disk (set with the lock) and is followed, in the same pipeline, by one
-- that writes an empty logical message and waits for the flush. For pgbench
-- -M prepared on a database `hoistd migrate` made, with CREATE SEQUENCE
-- bench_ids (scripts/bench, group postgres).
\set u random(1, 200)
\set r random(1, 300)
\set now 1767225600000
SELECT nextval('bench_ids') AS id \gset
WITH q AS MATERIALIZED (SELECT id, kind, role, role_name, requester, justification, ticket, incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier, (SELECT json_agg(json_build_array(reviewer, decision, comment, at) ORDER BY at, reviewer)::text FROM reviews WHERE reviews.request_id = requests.id) AS reviews FROM requests WHERE requester = 'user' || :u AND role = 'role' || :r AND state = ANY(ARRAY['pending','approved','active']) ORDER BY created_at ASC, ord ASC) SELECT q.*, (SELECT encode(sha256(convert_to(coalesce(string_agg(r::text, ',' ORDER BY r::text), ''), 'UTF8')), 'hex') FROM q r) FROM q;
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock(7525349446954284152), set_config('synchronous_commit', 'off', true), set_config('idle_in_transaction_session_timeout', '5s', true);
SELECT 1 / ((SELECT encode(sha256(convert_to(coalesce(string_agg(r::text, ',' ORDER BY r::text), ''), 'UTF8')), 'hex') FROM (SELECT id, kind, role, role_name, requester, justification, ticket, incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier, (SELECT json_agg(json_build_array(reviewer, decision, comment, at) ORDER BY at, reviewer)::text FROM reviews WHERE reviews.request_id = requests.id) AS reviews FROM requests WHERE requester = 'user' || :u AND role = 'role' || :r AND state = ANY(ARRAY['pending','approved','active']) ORDER BY created_at ASC, ord ASC) r) <> 'x')::int;
INSERT INTO requests (id, kind, role, role_name, requester, justification, ticket, incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier) VALUES ('req_' || :id, 'access', 'role' || :r, 'Role', 'user' || :u, 'reading the logs for a while', NULL, NULL, 3600, NULL, false, 'pending', (:now)::bigint, (:now)::bigint, (:now)::bigint + 3600000, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
WITH head AS ((SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) UNION ALL SELECT 0, 'genesis' ORDER BY seq DESC LIMIT 1), a0 AS (INSERT INTO audit (seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash) SELECT seq + 1, (:now)::bigint, 'requested', 'user' || :u, 'user' || :u, 'role' || :r, 'req_' || :id, NULL, NULL, NULL, '{"a":1}', hash, encode(sha256(convert_to(hash || '{"seq":' || (seq + 1)::text, 'UTF8') || '\x00'::bytea), 'hex') FROM head RETURNING seq, hash) SELECT pg_notify('hoistd_changes', '{"origin":"x","requests":["x"]}');
COMMIT;
BEGIN;
SELECT pg_logical_emit_message(true, 'hoistd', '');
COMMIT;
\endpipeline
\startpipeline
WITH q AS MATERIALIZED (SELECT id, kind, role, role_name, requester, justification, ticket, incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier, (SELECT json_agg(json_build_array(reviewer, decision, comment, at) ORDER BY at, reviewer)::text FROM reviews WHERE reviews.request_id = requests.id) AS reviews FROM requests WHERE id = 'req_' || :id) SELECT q.*, (SELECT encode(sha256(convert_to(coalesce(string_agg(r::text, ',' ORDER BY r::text), ''), 'UTF8')), 'hex') FROM q r) FROM q;
WITH q AS MATERIALIZED (SELECT id, request_id, role, role_name, holder, starts_at, expires_at, state, ended_at, revoked_by, revoke_reason, break_glass, ticket, incident, justification, target, kind, access_state, access_reason, attempts, next_attempt_at, access_updated, CASE WHEN live_until_updated = access_updated THEN live_until END FROM grants LEFT JOIN grant_access ON grant_access.grant_id = grants.id WHERE holder = (SELECT requester FROM requests WHERE id = 'req_' || :id) AND role = (SELECT role FROM requests WHERE id = 'req_' || :id) AND state = 'active' ORDER BY starts_at DESC, id DESC) SELECT q.*, (SELECT encode(sha256(convert_to(coalesce(string_agg(r::text, ',' ORDER BY r::text), ''), 'UTF8')), 'hex') FROM q r) FROM q;
\endpipeline
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock(7525349446954284152), set_config('synchronous_commit', 'off', true), set_config('idle_in_transaction_session_timeout', '5s', true);
SELECT 1 / ((SELECT encode(sha256(convert_to(coalesce(string_agg(r::text, ',' ORDER BY r::text), ''), 'UTF8')), 'hex') FROM (SELECT id, kind, role, role_name, requester, justification, ticket, incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier, (SELECT json_agg(json_build_array(reviewer, decision, comment, at) ORDER BY at, reviewer)::text FROM reviews WHERE reviews.request_id = requests.id) AS reviews FROM requests WHERE id = 'req_' || :id) r) <> 'x' AND (SELECT encode(sha256(convert_to(coalesce(string_agg(r::text, ',' ORDER BY r::text), ''), 'UTF8')), 'hex') FROM (SELECT id, request_id, role, role_name, holder, starts_at, expires_at, state, ended_at, revoked_by, revoke_reason, break_glass, ticket, incident, justification, target, kind, access_state, access_reason, attempts, next_attempt_at, access_updated, CASE WHEN live_until_updated = access_updated THEN live_until END FROM grants LEFT JOIN grant_access ON grant_access.grant_id = grants.id WHERE holder = (SELECT requester FROM requests WHERE id = 'req_' || :id) AND role = (SELECT role FROM requests WHERE id = 'req_' || :id) AND state = 'active' ORDER BY starts_at DESC, id DESC) r) <> 'x')::int;
WITH changed AS (UPDATE requests SET state = 'active', updated_at = (:now)::bigint, lapses_at = NULL, grant_id = 'gr_' || :id, reason = NULL, claim_by = NULL, claim_until = NULL, ack_by = NULL, ack_comment = NULL, ack_at = NULL, approvals_required = 1 WHERE id = 'req_' || :id RETURNING 1) SELECT 1 / count(*) FROM changed;
INSERT INTO reviews (request_id, reviewer, decision, comment, at) VALUES ('req_' || :id, 'approver', 'approve', NULL, (:now)::bigint);
INSERT INTO grants (id, request_id, role, role_name, holder, starts_at, expires_at, state, ended_at, revoked_by, revoke_reason, break_glass, ticket, incident, justification) VALUES ('gr_' || :id, 'req_' || :id, 'role' || :r, 'Role', 'user' || :u, (:now)::bigint, (:now)::bigint + 3600000, 'active', NULL, NULL, NULL, false, NULL, NULL, 'reading the logs for a while');
WITH head AS ((SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) UNION ALL SELECT 0, 'genesis' ORDER BY seq DESC LIMIT 1), a0 AS (INSERT INTO audit (seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash) SELECT seq + 1, (:now)::bigint, 'reviewed', 'approver', 'user' || :u, 'role' || :r, 'req_' || :id, NULL, NULL, NULL, '{"a":1}', hash, encode(sha256(convert_to(hash || '{"seq":' || (seq + 1)::text, 'UTF8') || '\x00'::bytea), 'hex') FROM head RETURNING seq, hash), a1 AS (INSERT INTO audit (seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash) SELECT seq + 1, (:now)::bigint, 'approved', 'approver', 'user' || :u, 'role' || :r, 'req_' || :id, NULL, NULL, NULL, '{"a":1}', hash, encode(sha256(convert_to(hash || '{"seq":' || (seq + 1)::text, 'UTF8') || '\x00'::bytea), 'hex') FROM a0 RETURNING seq, hash), a2 AS (INSERT INTO audit (seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash) SELECT seq + 1, (:now)::bigint, 'activated', 'system', 'user' || :u, 'role' || :r, 'req_' || :id, 'gr_' || :id, NULL, NULL, '{"a":1}', hash, encode(sha256(convert_to(hash || '{"seq":' || (seq + 1)::text, 'UTF8') || '\x00'::bytea), 'hex') FROM a1 RETURNING seq, hash) SELECT pg_notify('hoistd_changes', '{"origin":"x","requests":["x"],"grants":["y"]}');
COMMIT;
BEGIN;
SELECT pg_logical_emit_message(true, 'hoistd', '');
COMMIT;
\endpipeline
