-- hoistd schema (PostgreSQL), version 11: as SQLite's version 15, the
-- claims a workload's token was verified with, kept with its exchange.
ALTER TABLE workload_exchanges ADD COLUMN claims TEXT;
CREATE INDEX workload_exchanges_request ON workload_exchanges (request_id);
