//! The store conformance suite against the SQLite store, one test a check.

use hoistd::store::{SqliteStore, Store};

fn with_fresh_sqlite(check: fn(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    check(&SqliteStore::open(&dir.path().join("hoistd.db")).unwrap());
}

hoistd::store_conformance!(with_fresh_sqlite);
