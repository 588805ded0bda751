-- The database and the broker's login, run once by a PostgreSQL superuser:
--   psql -v password="'$(openssl rand -hex 24)'" -f deploy/postgres.sql
-- On PostgreSQL 15 the database's owner owns its public schema, and no one
-- else may create in it. `hoistd migrate` (or the first instance to start)
-- creates the schema.
CREATE ROLE hoistd LOGIN PASSWORD :password;
CREATE DATABASE hoistd OWNER hoistd;
