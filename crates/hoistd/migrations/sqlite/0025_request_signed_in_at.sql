-- hoistd schema, version 25: when a request's requester last signed in
-- at their identity provider, as the token it was filed with said (ms
-- since 1970): what a role's step-up as it stands at each decision is
-- weighed against. NULL for a static token, a workload, a token that did
-- not say, and every request filed before this version.
ALTER TABLE requests ADD COLUMN signed_in_at INTEGER;
