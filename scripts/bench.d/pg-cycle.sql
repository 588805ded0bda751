-- One create -> approve -> activate cycle as hoistd's PostgreSQL store sends
-- it (crates/hoistd/src/store/postgres/tx.rs is the truth; this is a copy kept
-- by hand): each transaction's fingerprinted read outside any transaction,
-- then one pipeline that begins, takes the store's advisory lock, checks the
-- read, makes the writes (audit entries linked in the INSERT), notifies and
-- commits. For pgbench -M prepared on a database `hoistd migrate` made, with
-- CREATE SEQUENCE bench_ids (scripts/bench, group postgres).
\set u random(1, 200)
\set r random(1, 300)
\set now 1767225600000
SELECT nextval('bench_ids') AS id \gset
WITH q AS MATERIALIZED (SELECT id, kind, role, role_name, requester, justification, ticket, incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier, (SELECT json_agg(json_build_array(reviewer, decision, comment, at) ORDER BY at, reviewer)::text FROM reviews WHERE reviews.request_id = requests.id) AS reviews FROM requests WHERE requester = 'user' || :u AND role = 'role' || :r AND state = ANY(ARRAY['pending','approved','active']) ORDER BY created_at ASC, ord ASC) SELECT q.*, (SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), '')) FROM q r) FROM q;
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock(7525349446954284152);
SELECT 1 / (md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), '')) <> 'x')::int FROM (SELECT id, kind, role, role_name, requester, justification, ticket, incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier, (SELECT json_agg(json_build_array(reviewer, decision, comment, at) ORDER BY at, reviewer)::text FROM reviews WHERE reviews.request_id = requests.id) AS reviews FROM requests WHERE requester = 'user' || :u AND role = 'role' || :r AND state = ANY(ARRAY['pending','approved','active']) ORDER BY created_at ASC, ord ASC) r;
INSERT INTO requests (id, kind, role, role_name, requester, justification, ticket, incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier) VALUES ('req_' || :id, 'access', 'role' || :r, 'Role', 'user' || :u, 'reading the logs for a while', NULL, NULL, 3600, NULL, false, 'pending', (:now)::bigint, (:now)::bigint, (:now)::bigint + 3600000, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO audit (seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash) SELECT head.seq + 1, (:now)::bigint, 'requested', 'user' || :u, 'user' || :u, 'role' || :r, 'req_' || :id, NULL, NULL, 'reading', '{"a":1}', head.hash, encode(sha256(convert_to(head.hash || '{"seq":' || (head.seq + 1)::text, 'UTF8') || '\x00'::bytea), 'hex') FROM ((SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) UNION ALL SELECT 0, 'genesis' ORDER BY seq DESC LIMIT 1) head;
INSERT INTO audit (seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash) SELECT head.seq + 1, (:now)::bigint, 'notified', 'user' || :u, 'user' || :u, 'role' || :r, 'req_' || :id, NULL, NULL, 'reading', '{"a":1}', head.hash, encode(sha256(convert_to(head.hash || '{"seq":' || (head.seq + 1)::text, 'UTF8') || '\x00'::bytea), 'hex') FROM ((SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) UNION ALL SELECT 0, 'genesis' ORDER BY seq DESC LIMIT 1) head;
SELECT pg_notify('hoistd_changes', '{"origin":"x","requests":["x"]}');
COMMIT;
\endpipeline
WITH q AS MATERIALIZED (SELECT id, kind, role, role_name, requester, justification, ticket, incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier, (SELECT json_agg(json_build_array(reviewer, decision, comment, at) ORDER BY at, reviewer)::text FROM reviews WHERE reviews.request_id = requests.id) AS reviews FROM requests WHERE id = 'req_' || :id) SELECT q.*, (SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), '')) FROM q r) FROM q;
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock(7525349446954284152);
SELECT 1 / (md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), '')) <> 'x')::int FROM (SELECT id, kind, role, role_name, requester, justification, ticket, incident, duration_secs, starts_at, break_glass, state, created_at, updated_at, lapses_at, approvals_required, grant_id, reason, claim_by, claim_until, ack_by, ack_comment, ack_at, tier, (SELECT json_agg(json_build_array(reviewer, decision, comment, at) ORDER BY at, reviewer)::text FROM reviews WHERE reviews.request_id = requests.id) AS reviews FROM requests WHERE id = 'req_' || :id) r;
WITH changed AS (UPDATE requests SET state = 'active', updated_at = (:now)::bigint, lapses_at = NULL, grant_id = 'gr_' || :id, reason = NULL, claim_by = NULL, claim_until = NULL, ack_by = NULL, ack_comment = NULL, ack_at = NULL WHERE id = 'req_' || :id RETURNING 1) SELECT 1 / count(*) FROM changed;
INSERT INTO reviews (request_id, reviewer, decision, comment, at) VALUES ('req_' || :id, 'approver', 'approve', NULL, (:now)::bigint);
INSERT INTO grants (id, request_id, role, role_name, holder, starts_at, expires_at, state, ended_at, revoked_by, revoke_reason, break_glass, ticket, incident, justification) VALUES ('gr_' || :id, 'req_' || :id, 'role' || :r, 'Role', 'user' || :u, (:now)::bigint, (:now)::bigint + 3600000, 'active', NULL, NULL, NULL, false, NULL, NULL, 'reading the logs for a while');
INSERT INTO audit (seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash) SELECT head.seq + 1, (:now)::bigint, 'approved', 'approver', 'user' || :u, 'role' || :r, 'req_' || :id, NULL, NULL, 'ok', '{"a":1}', head.hash, encode(sha256(convert_to(head.hash || '{"seq":' || (head.seq + 1)::text, 'UTF8') || '\x00'::bytea), 'hex') FROM ((SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) UNION ALL SELECT 0, 'genesis' ORDER BY seq DESC LIMIT 1) head;
INSERT INTO audit (seq, at, kind, actor, subject, role, request_id, grant_id, incident, reason, details, prev_hash, hash) SELECT head.seq + 1, (:now)::bigint, 'activated', 'system', 'user' || :u, 'role' || :r, 'req_' || :id, 'gr_' || :id, NULL, NULL, '{"a":1}', head.hash, encode(sha256(convert_to(head.hash || '{"seq":' || (head.seq + 1)::text, 'UTF8') || '\x00'::bytea), 'hex') FROM ((SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) UNION ALL SELECT 0, 'genesis' ORDER BY seq DESC LIMIT 1) head;
SELECT pg_notify('hoistd_changes', '{"origin":"x","requests":["x"],"grants":["y"]}');
COMMIT;
\endpipeline
