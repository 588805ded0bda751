-- hoistd schema (PostgreSQL), version 9: as SQLite's version 13, what is
-- kept only for a while is found by age. The leader forgets idempotency
-- keys a day after they were used, and workload exchanges a day after
-- their token expired (`Broker::purge`).
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX workload_exchanges_expires ON workload_exchanges (expires_at);
