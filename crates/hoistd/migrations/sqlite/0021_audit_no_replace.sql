-- A REPLACE (INSERT OR REPLACE, REPLACE INTO) deletes the entry it clashes
-- with without firing audit_no_delete: SQLite fires delete triggers for it
-- only with recursive_triggers on. An insert at a number already taken is
-- refused before it gets that far.
CREATE TRIGGER audit_no_replace BEFORE INSERT ON audit
WHEN EXISTS (SELECT 1 FROM audit WHERE seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
