-- hoistd schema, version 2: indexes for the queries every operation runs.
--
-- The reaper runs after every change: it asks what fell due and when the
-- next thing will. Without these, both questions scanned every request ever
-- filed, so each operation got slower as history grew (measured in
-- BENCHMARKS.md: create -> approve cycles).

-- Pending requests by the time they lapse (due_requests, next_due).
CREATE INDEX requests_pending_lapse ON requests (lapses_at) WHERE state = 'pending';
-- Approved requests by the time they are due to start (due_requests, next_due).
CREATE INDEX requests_approved_start ON requests (coalesce(starts_at, 0)) WHERE state = 'approved';
-- Filing checks the requester's open requests for the role; by requester
-- alone that read their whole history.
CREATE INDEX requests_requester_role ON requests (requester, role);

