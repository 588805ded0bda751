-- hoistd schema, version 15: the claims a workload's token was verified
-- with, kept with its exchange (JSON), so that a policy reload re-checks
-- every claim its rule now pins against the grant the token got, not only
-- the subject its principal names. Exchanges from before have none, and
-- are re-checked by their subject alone.
ALTER TABLE workload_exchanges ADD COLUMN claims TEXT;
CREATE INDEX workload_exchanges_request ON workload_exchanges (request_id);
