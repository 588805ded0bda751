//! The store conformance suite against the PostgreSQL store, one test a
//! check, each on a fresh database of a real server started for it; then
//! what only a server database does: migrations shared by instances,
//! readiness, and a password kept out of what is shown.

use hoistd::store::{
    Announcement, KEPT_STATEMENTS, Lease, Location, Migrations, PostgresStore, RequestQuery, Store,
    StoreError,
};
use hoistd::testing::Postgres;

fn server() -> Postgres {
    Postgres::start_now().unwrap_or_else(|err| panic!("{err}"))
}

/// A server with TLS on (its certificate signed by [`Postgres::ca_file`]).
fn server_with_tls() -> Postgres {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(Postgres::start_with_tls())
        .unwrap_or_else(|err| panic!("{err}"))
}

/// A server, a fresh database's URL on it, and a store opened there with
/// its schema applied.
fn fresh_store() -> (Postgres, String, PostgresStore) {
    let pg = server();
    let url = pg.create_database("hoistd").unwrap();
    let store = PostgresStore::open(&url, Migrations::Apply).unwrap();
    (pg, url, store)
}

/// `ALTER SYSTEM SET <setting>` on the server at `url`, then a reload of
/// its configuration (sessions take it at their next command).
fn alter_system(url: &str, setting: &str) {
    let output = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", url, "-c"])
        .arg(format!("ALTER SYSTEM SET {setting}"))
        .args(["-c", "SELECT pg_reload_conf()"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

fn with_fresh_postgres(check: fn(&dyn Store)) {
    let (_pg, _, store) = fresh_store();
    check(&store);
}

hoistd::store_conformance!(with_fresh_postgres);

#[test]
fn optimistic_commits_check_their_reads() {
    with_fresh_postgres(hoistd::store::conformance::optimistic_commits_check_their_reads);
}

/// A schema named for the role, made after hoistd's tables were, puts
/// itself first on the default search path (`"$user", public`): starting
/// is refused, naming both, rather than migrate an empty database there.
#[test]
fn a_schema_put_ahead_of_hoistds_tables_is_refused_not_migrated() {
    let (_pg, url, store) = fresh_store();
    drop(store);
    let output = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url])
        .args(["-c", "CREATE SCHEMA AUTHORIZATION CURRENT_USER"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let refused = PostgresStore::open(&url, Migrations::Apply)
        .map(|_| ())
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains("hoistd's tables are in schema `public`")
            && message.contains("search path"),
        "{message}"
    );
    let output = std::process::Command::new("psql")
        .args(["-X", "-qtA", "-d", &url, "-c"])
        .arg("SELECT count(*) FROM pg_tables WHERE schemaname = current_user")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "0",
        "tables were made there"
    );
}

/// Several instances starting at once on an empty database: the migration
/// lock lets one apply the schema and the others find it done.
#[test]
fn instances_starting_together_migrate_once() {
    let pg = server();
    let url = pg.create_database("hoistd").unwrap();
    four_start_together_and_migrate_once(&url);
}

/// Four instances opening the database at `url` at once, applying its
/// migrations: each is ready, at the version this hoistd brings.
fn four_start_together_and_migrate_once(url: &str) {
    let opened: Vec<_> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PostgresStore::open(url, Migrations::Apply)))
            .collect();
        starts
            .into_iter()
            .map(|start| start.join().unwrap())
            .collect()
    });
    for store in opened {
        let store = store.unwrap();
        store.ready().unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            PostgresStore::known_version()
        );
    }
}

/// A database left unmigrated is not ready and says so; once migrated, it is.
#[test]
fn ready_reports_pending_migrations_and_an_unreachable_server() {
    let pg = server();
    let url = pg.create_database("hoistd").unwrap();
    let store = PostgresStore::open(&url, Migrations::Leave).unwrap();
    match store.ready() {
        Err(StoreError::MigrationsPending { found: 0, known }) => {
            assert_eq!(known, PostgresStore::known_version())
        }
        other => panic!("expected pending migrations, got {other:?}"),
    }
    store.migrate().unwrap();
    store.ready().unwrap();
    pg.stop();
    match store.ready() {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected an unavailable database, got {other:?}"),
    }
    pg.restart().unwrap();
    // The pool throws the broken connections away and connects afresh.
    let mut answered = store.ready();
    for _ in 0..50 {
        if answered.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        answered = store.ready();
    }
    answered.unwrap();
}

/// A server turned read-only (as a demoted primary is) refuses writes as
/// unavailable, with nothing written; once writable again, the store writes
/// without being reopened.
#[test]
fn a_read_only_server_is_unavailable_until_it_is_writable_again() {
    let (_pg, url, store) = fresh_store();
    let set_read_only =
        |on: bool| alter_system(&url, &format!("default_transaction_read_only = {on}"));
    set_read_only(true);
    // The reload reaches each pooled session at its next command: try
    // until a write is refused, rolling back any that got through.
    let mut refused = None;
    for _ in 0..50 {
        let mut tx = store.transaction().unwrap();
        match tx.insert_signing_key("k1", b"key", chrono::Utc::now()) {
            Ok(()) => drop(tx),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        matches!(refused, Some(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    set_read_only(false);
    let mut written = false;
    for _ in 0..50 {
        let mut tx = store.transaction().unwrap();
        if tx
            .insert_signing_key("k1", b"key", chrono::Utc::now())
            .is_ok()
            && tx.commit().is_ok()
        {
            written = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(written, "still refused once the server is writable again");
    assert!(
        store
            .transaction()
            .unwrap()
            .signing_key()
            .unwrap()
            .is_some()
    );
}

/// The URL is read as a location, and shown without its password.
#[test]
fn a_postgres_location_hides_its_password() {
    let location =
        Location::parse("postgres://hoistd:s3cr3t-pw@db.example:5432/hoist?sslmode=disable")
            .unwrap();
    assert!(matches!(location, Location::Postgres(_)));
    let shown = location.to_string();
    assert!(!shown.contains("s3cr3t-pw"), "{shown}");
    assert!(shown.contains("db.example"), "{shown}");
    let keyed = Location::parse("postgresql://hoistd@db.example/hoist?password=s3cr3t-pw").unwrap();
    assert!(!keyed.to_string().contains("s3cr3t-pw"), "{keyed}");
    // The driver takes everything before the first `@` as the user and
    // password, so a password with an unencoded `#`, `?` or `/` connects;
    // it is hidden all the same, and so is a parameter spelled encoded.
    for url in [
        "postgres://hoistd:#s3cr3t-pw@db.example/hoist",
        "postgres://hoistd:1?s3cr3t-pw@db.example/hoist",
        "postgres://hoistd:12/s3cr3t-pw@db.example:5432/hoist?sslmode=disable",
        "postgres://hoistd@db.example/hoist?sslmode=disable&pass%77ord=s3cr3t-pw",
    ] {
        let config: tokio_postgres::Config = url.parse().unwrap();
        let password = config.get_password().unwrap();
        assert!(password.ends_with(b"s3cr3t-pw"), "{url}");
        let shown = Location::parse(url).unwrap().to_string();
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("db.example"), "{shown}");
    }
    // An `@` after the host (an Azure-style user name in the query) is not
    // where the password ends: it is hidden wherever it stands.
    for url in [
        "postgres://db.example/hoist?user=hoistd@db&password=s3cr3t-pw",
        "postgres://db.example/hoist?user=hoistd@db&sslmode=disable&PASSWORD=s3cr3t-pw",
    ] {
        let shown = match Location::parse(url) {
            Ok(location) => location.to_string(),
            Err(err) => err.to_string(),
        };
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("db.example"), "{shown}");
    }
    // An `@` left unencoded in the user name or password: refused, with
    // nothing of the password in the message.
    for url in [
        "postgres://alice@contoso.com:s3cr3t-pw@db.example:5432/hoist",
        "postgres://hoistd:s3cr3t@pw@db.example/hoist",
        "postgres://hoistd:s3cr3t@pw@db.example/hoist?sslmode=disable&user=x@y",
        "postgres://alice@contoso.com:s3cr?3t@db.example/hoist",
        "postgres://hoistd:pw@s3cr3t?x@db.example/hoist",
        "postgres://alice@contoso.com:p&s3cr=1@db.example/hoist",
        "postgres://hoistd:s3@cr/et@db.example/hoist",
        "postgres://alice@contoso:2024/s3cr@db.example/hoist",
    ] {
        let said = Location::parse(url).unwrap_err().to_string();
        for part in ["s3cr", "pw@", "cr/et", "2024"] {
            assert!(!said.contains(part), "{said}");
        }
        assert!(said.contains("more than one `@`"), "{said}");
    }
    let refused = Location::parse("postgres://hoistd:s3cr3t-pw@db.example:notaport/hoist")
        .unwrap_err()
        .to_string();
    assert!(!refused.contains("s3cr3t-pw"), "{refused}");
}

/// TLS to the database: with `sslmode=require` the store speaks TLS and
/// checks the server's certificate against the CA it is given; a server
/// whose certificate it cannot check, or that speaks no TLS, is refused
/// rather than used in plain text.
#[test]
fn tls_to_the_database_checks_the_servers_certificate() {
    let pg = server_with_tls();
    let url = format!("{}?sslmode=require", pg.create_database("hoistd").unwrap());

    let store = PostgresStore::open_with_ca(&url, Migrations::Apply, Some(&pg.ca_file())).unwrap();
    store.ready().unwrap();
    let tx = store.transaction().unwrap();
    assert!(tx.signing_key().unwrap().is_none());
    drop(tx);

    // Another CA (the system's roots) cannot vouch for the test server.
    let refused = PostgresStore::open_with_ca(&url, Migrations::Apply, None)
        .expect_err("a certificate no trusted CA signed is refused");
    assert!(
        matches!(refused, StoreError::Unavailable(_) | StoreError::Other(_)),
        "{refused}"
    );

    // A server without TLS is not used in plain text when TLS is required.
    let plain = server();
    let url = format!(
        "{}?sslmode=require",
        plain.create_database("hoistd").unwrap()
    );
    assert!(PostgresStore::open_with_ca(&url, Migrations::Apply, Some(&pg.ca_file())).is_err());
}

/// Over a Unix socket there is no TLS, whatever `sslmode` says, as with
/// libpq: the server does not offer it there, so `require` (say, set for
/// every connection of a deployment) still connects, and `prefer` does not
/// ask. The same holds for the connection that listens for other
/// instances' changes: it says so (a resync) once it listens.
#[test]
fn a_unix_socket_connects_without_tls_whatever_the_sslmode() {
    let pg = server_with_tls();
    pg.create_database("hoistd").unwrap();
    for mode in ["require", "prefer", "disable"] {
        let url = format!(
            "postgres://postgres:{}@/hoistd?host={}&port={}&sslmode={mode}",
            pg.admin_password(),
            pg.socket_dir().display(),
            pg.port()
        );
        let store = PostgresStore::open_with_ca(&url, Migrations::Apply, Some(&pg.ca_file()))
            .unwrap_or_else(|err| panic!("sslmode={mode} over a Unix socket: {err}"));
        let mut tx = store.transaction().unwrap();
        tx.set_notification_cursor(3).unwrap();
        tx.commit().unwrap();
        assert_eq!(store.read().unwrap().notification_cursor().unwrap(), 3);
        let mut heard = store.listen().expect("PostgreSQL listens");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let first = loop {
            match heard.try_recv() {
                Ok(announcement) => break announcement,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(err) => panic!("sslmode={mode}: the listener never listened: {err}"),
            }
        };
        assert!(matches!(first, Announcement::Missed), "sslmode={mode}");
    }
}

/// A read ([`Store::read`]) waits for no writer: while a transaction holds
/// the turn every writer takes (rule 1), a read on another connection
/// still answers, with what was committed before.
#[test]
fn a_read_waits_for_no_writer() {
    let (_pg, _, store) = fresh_store();
    let writer = store.transaction().unwrap();
    // Its first statement takes the lock.
    assert_eq!(writer.audit_head().unwrap(), None);
    let (answer, answered) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let read = store.read().unwrap();
            let _ = answer.send(read.request("req_none").map(|found| found.is_none()));
        });
        let read = answered.recv_timeout(std::time::Duration::from_secs(10));
        // Let a blocked reader go before failing, so the scope can end.
        drop(writer);
        assert!(
            matches!(read, Ok(Ok(true))),
            "a read waited for the writer: {read:?}"
        );
    });
}

/// A fenced transaction checks its lease with its commit, holding the
/// lease row for share only for that round trip: while a leader's job is
/// open, its own renewal answers at once (a job longer than the renewal's
/// 2 s lock wait would otherwise make the leader step down), and so does
/// another instance taking over a lapsed lease; the job, deposed, then
/// writes nothing.
#[test]
fn a_fenced_transaction_holds_the_lease_row_only_for_its_commit() {
    let (_pg, _, store) = fresh_store();
    // Long enough for a connection to come within it on a busy machine
    // (an ask whose connection comes after its term is no ask).
    let short = std::time::Duration::from_secs(1);
    let epoch = store.lead("first", short, false).unwrap().unwrap();
    let lease = Lease {
        holder: "first".into(),
        epoch,
    };
    let job = |cursor| {
        let mut fenced = store.transaction().unwrap();
        fenced.fence(&lease).unwrap();
        fenced.notification_cursor().unwrap();
        fenced.set_notification_cursor(cursor).unwrap();
        fenced.notification_cursor().unwrap();
        fenced
    };
    let timed = |what: &dyn Fn() -> Option<i64>| {
        let started = std::time::Instant::now();
        (what(), started.elapsed())
    };

    let fenced = job(7);
    let (renewed, took) = timed(&|| store.lead("first", short, true).unwrap());
    assert_eq!(renewed, Some(epoch));
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    fenced.commit().unwrap();
    assert_eq!(store.read().unwrap().notification_cursor().unwrap(), 7);

    let fenced = job(9);
    std::thread::sleep(short + short);
    let (taken, took) = timed(&|| {
        store
            .lead("second", std::time::Duration::from_secs(60), false)
            .unwrap()
    });
    assert!(taken.is_some_and(|taken| taken > epoch), "{taken:?}");
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    let deposed = fenced.commit();
    assert!(
        matches!(deposed, Err(StoreError::Contended(_))),
        "{deposed:?}"
    );
    assert_eq!(store.read().unwrap().notification_cursor().unwrap(), 7);
}

/// A lease ends a term after it was asked for, not after its statement
/// ran: an ask kept waiting for the lease's connection (here by another
/// ask on it, held up by a lock on the lease row) holds the lease no
/// longer than it asked, so one its instance gave up on cannot keep the
/// others from taking over.
#[test]
fn a_late_lease_ends_a_term_after_it_was_asked_for() {
    let (_pg, url, store) = fresh_store();
    let term = std::time::Duration::from_secs(3);
    store.lead("first", term, false).unwrap().unwrap();
    let locker = psql_in_background(
        &url,
        "BEGIN; SELECT 1 FROM leadership FOR UPDATE; SELECT pg_sleep(1.5); COMMIT",
    );
    let psql = |sql: &str| {
        let output = std::process::Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-d", &url, "-c", sql])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let mut locked = false;
    for _ in 0..100 {
        locked = psql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE query LIKE '%pg_sleep(1.5)%' AND state = 'active' AND pid <> pg_backend_pid()",
        ) == "1";
        if locked {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(locked, "the lease row was never locked");
    let (before, asked) = std::thread::scope(|scope| {
        let before = scope.spawn(|| store.lead("first", term, true).unwrap().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(200));
        let asked = std::time::Instant::now();
        store.lead("first", term, true).unwrap().unwrap();
        (before.join().unwrap(), asked)
    });
    let waited = asked.elapsed();
    assert!(before > 0);
    let left: f64 =
        psql("SELECT extract(epoch FROM expires_at - clock_timestamp()) * 1000 FROM leadership")
            .parse()
            .unwrap();
    let mut locker = locker;
    let _ = locker.wait();
    assert!(
        waited > std::time::Duration::from_millis(500),
        "not held up: {waited:?}"
    );
    let most = (term - waited).as_millis() as f64 + 250.0;
    assert!(
        left <= most,
        "{left} ms left after waiting {waited:?}; at most {most} ms"
    );
}

/// The lease is renewed on a connection of its own: with every connection
/// of the pool taken by calls, a renewal still answers at once rather than
/// wait its turn for one (and, past the pool's wait, fail), which would
/// take leadership away from an instance that is only busy.
#[test]
fn a_lease_is_renewed_while_every_pooled_connection_is_busy() {
    let (_pg, _, store) = fresh_store();
    let term = std::time::Duration::from_secs(5);
    let epoch = store.lead("busy", term, false).unwrap().unwrap();
    let mut held = Vec::new();
    loop {
        if store.connections().in_use == store.connections().max {
            break;
        }
        held.push(store.read().unwrap());
        assert!(held.len() <= 64, "the pool never filled");
    }
    assert_eq!(store.lead("busy", term, true).unwrap(), Some(epoch));
    store.resign("busy").unwrap();
    drop(held);
    assert!(store.lead("other", term, false).unwrap().unwrap() > epoch);
}

/// Readiness is checked on a connection of its own: with every connection
/// of the pool taken by calls, the database still counts as answering, so
/// a burst of work never takes every instance out of a load balancer.
#[test]
fn readiness_answers_while_every_pooled_connection_is_busy() {
    let (_pg, _, store) = fresh_store();
    let mut held = Vec::new();
    while store.connections().in_use < store.connections().max {
        held.push(store.read().unwrap());
        assert!(held.len() <= 64, "the pool never filled");
    }
    store.ready().unwrap();
    drop(held);
}

/// A lease renewed without a break keeps its epoch; the same holder taking
/// it again after it stopped leading by its own clock starts a new term,
/// with a higher epoch, so a target call its halted jobs left under way
/// carries a lower epoch than its new jobs' calls.
#[test]
fn a_holder_that_leads_again_after_a_break_has_a_higher_epoch() {
    let (_pg, _, store) = fresh_store();
    let term = std::time::Duration::from_secs(5);
    let first = store.lead("a", term, false).unwrap().unwrap();
    assert_eq!(store.lead("a", term, true).unwrap(), Some(first));
    let second = store.lead("a", term, false).unwrap().unwrap();
    assert!(second > first);
    assert_eq!(store.lead("a", term, true).unwrap(), Some(second));
    assert_eq!(store.lead("b", term, false).unwrap(), None);
}

/// Each lease ask reads the server's clock in the same round trip, for
/// `hoistd_clock_offset_seconds`: on this machine, this process's clock to
/// within half a round trip short enough to count (250 ms), whether the
/// ask took the lease or not (a unit wrong by a thousand would be decades
/// off).
#[test]
fn a_lease_ask_reads_the_servers_clock() {
    let (_pg, _, store) = fresh_store();
    assert_eq!(store.clock_offset(), None, "nothing asked yet");
    let term = std::time::Duration::from_secs(5);
    for holder in ["a", "b"] {
        let near = (0..20).find_map(|_| {
            store.lead(holder, term, false).unwrap();
            store.clock_offset()
        });
        let offset = near.expect("a lease ask answered within 250 ms");
        assert!(
            offset.abs() <= chrono::TimeDelta::milliseconds(125),
            "{offset}"
        );
    }
}

/// A database restored from a backup holds an older lease row: the next
/// term's epoch is still higher than any before it, so a target that keeps
/// the highest it has seen takes the new leader's calls.
#[test]
fn a_lease_row_restored_from_a_backup_still_starts_a_higher_epoch() {
    let (_pg, url, store) = fresh_store();
    let term = std::time::Duration::from_secs(5);
    let before = store.lead("a", term, false).unwrap().unwrap();
    // As a backup taken at the very first term, long lapsed, left it.
    let output = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", &url, "-c"])
        .arg(
            "UPDATE leadership SET epoch = 1, holder = 'restored', \
             expires_at = clock_timestamp() - interval '1 day'",
        )
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let after = store.lead("b", term, false).unwrap().unwrap();
    assert!(after > before, "epoch {after} after {before}");
}

/// The store's write lock (`BEGIN_LOCKED` in store/postgres/mod.rs).
const WRITE_LOCK: i64 = 7525349446954284152;

/// `psql -c sql` on the database at `url`, running in the background.
fn psql_in_background(url: &str, sql: &str) -> std::process::Child {
    std::process::Command::new("psql")
        .args(["-X", "-q", "-d", url, "-c", sql])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Ends the session [`psql_in_background`] started (its `pg_sleep(14)`),
/// at the server: stopping the client alone leaves it running there.
fn end_sleeper(url: &str, mut child: std::process::Child) {
    let output = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", url, "-c"])
        .arg(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE '%pg_sleep(14)%' AND pid <> pg_backend_pid()",
        )
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let _ = child.wait();
}

/// Waits until some session holds a lock `psql -c` would find with `sql`.
fn until_held(url: &str, sql: &str) {
    for _ in 0..200 {
        let output = std::process::Command::new("psql")
            .args(["-X", "-q", "-At", "-d", url, "-c", sql])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&output.stdout).trim() == "t" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no session took the lock: {sql}");
}

/// A transaction queued for the lock longer than the server's lock timeout
/// (10 s) is given up by the server (55P03), with nothing written, before
/// the store stops waiting for its answers (15 s) and closes the
/// connection: the server, which does not watch the socket while it waits
/// for a lock, never goes on to run what the store gave up on. The holder
/// here is busy all along (one long statement), as a slow writer is.
#[test]
fn the_server_gives_up_a_lock_wait_before_the_store_does() {
    let (_pg, url, store) = fresh_store();
    let holder = psql_in_background(
        &url,
        &format!("SELECT pg_advisory_xact_lock({WRITE_LOCK}), pg_sleep(14)"),
    );
    until_held(
        &url,
        "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND pid <> pg_backend_pid()",
    );
    let outcome = (|| {
        let mut tx = store.transaction()?;
        tx.set_notification_cursor(9)?;
        tx.commit()
    })();
    end_sleeper(&url, holder);
    match outcome {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("55P03"), "{message}")
        }
        other => panic!("expected the server's lock timeout: {other:?}"),
    }
    assert_eq!(store.read().unwrap().notification_cursor().unwrap(), 0);
}

/// A holder of the write lock that stops sending between two round trips
/// (its instance paused, frozen or cut off) is ended by the server after
/// 5 s idle: the writer queued behind it goes on well within its own 10 s
/// lock wait, and the stopped holder's transaction is rolled back, its
/// commit refused.
#[test]
fn a_lock_holder_that_stops_sending_is_ended_and_the_next_writer_goes_on() {
    let (_pg, _, store) = fresh_store();
    let mut holder = store.transaction().unwrap();
    // Its first statement takes the lock; then it sends nothing.
    assert_eq!(holder.audit_head().unwrap(), None);
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let mut tx = store.transaction()?;
            tx.set_notification_cursor(9)?;
            tx.commit()
        });
        let outcome = waiting.join().unwrap();
        assert!(outcome.is_ok(), "the queued writer failed: {outcome:?}");
    });
    let stopped = holder
        .set_notification_cursor(5)
        .and_then(|()| holder.commit());
    assert!(
        matches!(stopped, Err(StoreError::Unavailable(_))),
        "{stopped:?}"
    );
    assert_eq!(store.read().unwrap().notification_cursor().unwrap(), 9);
}

/// Asking for the lease while another session holds its row answers with
/// the server's lock timeout (2 s), within the leader's renewal wait (4 s),
/// rather than stay queued at the server after hoistd gave up asking.
#[test]
fn a_lease_ask_behind_a_held_row_fails_within_the_renewal_wait() {
    let (_pg, url, store) = fresh_store();
    let term = std::time::Duration::from_secs(5);
    let epoch = store.lead("first", term, false).unwrap().unwrap();
    let holder = psql_in_background(
        &url,
        "BEGIN; SELECT 1 FROM leadership FOR UPDATE; SELECT pg_sleep(14); COMMIT",
    );
    until_held(
        &url,
        "SELECT count(*) > 0 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = 'leadership' AND l.mode = 'RowShareLock' AND l.granted \
         AND l.pid <> pg_backend_pid()",
    );
    let asked = store.lead("first", term, true);
    end_sleeper(&url, holder);
    match asked {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("55P03"), "{message}")
        }
        other => panic!("expected the server's lock timeout: {other:?}"),
    }
    assert_eq!(store.lead("first", term, true).unwrap(), Some(epoch));
}

/// A writing transaction lets the lock go before its commit reaches the
/// disk, and waits for the disk before it returns: a server that crashes
/// the moment the commits have returned still has every one of them.
#[test]
fn a_commit_that_returned_survives_a_crash_of_the_server() {
    let (pg, url, store) = fresh_store();
    fifty_commits_survive_a_crash(&pg, &url, store);
}

/// 50 commits through `store`, the server at `url` crashed as the last
/// returns, and restarted: every one of them is there.
fn fifty_commits_survive_a_crash(pg: &Postgres, url: &str, store: PostgresStore) {
    for cursor in 1..=50 {
        let mut tx = store.transaction().unwrap();
        tx.set_notification_cursor(cursor).unwrap();
        tx.commit().unwrap();
    }
    pg.stop();
    drop(store);
    pg.restart().unwrap();
    let store = PostgresStore::open(url, Migrations::Leave).unwrap();
    assert_eq!(store.read().unwrap().notification_cursor().unwrap(), 50);
}

/// The same with the server's `synchronous_commit` off and its log writer
/// waiting 10 s between flushes: the store still waits for the flush of
/// what it tells its caller is committed.
#[test]
fn a_commit_that_returned_survives_a_crash_with_synchronous_commit_off() {
    let (pg, url, store) = fresh_store();
    alter_system(&url, "synchronous_commit = off");
    alter_system(&url, "wal_writer_delay = '10s'");
    // Sessions take the settings at their next command: a new store.
    drop(store);
    let store = PostgresStore::open(&url, Migrations::Leave).unwrap();
    fifty_commits_survive_a_crash(&pg, &url, store);
}

/// A server whose transactions are serializable by default: the store's
/// writers still read what the lock's last holder committed (each starts
/// read committed), so instances starting together migrate once, racing
/// appends link to the head, racing reviews decide once, and optimistic
/// commits check their reads against what is committed.
#[test]
fn a_server_defaulting_to_serializable_changes_nothing() {
    let pg = server();
    let url = pg.create_database("hoistd").unwrap();
    alter_system(&url, "default_transaction_isolation = 'serializable'");
    four_start_together_and_migrate_once(&url);
    type Check = (&'static str, fn(&dyn Store));
    let checks: [Check; 4] = [
        (
            "appends",
            hoistd::store::conformance::racing_appends_link_to_the_head,
        ),
        (
            "reviews",
            hoistd::store::conformance::racing_reviews_let_exactly_one_decide,
        ),
        (
            "optimistic",
            hoistd::store::conformance::racing_optimistic_reviews_decide_once,
        ),
        (
            "reads",
            hoistd::store::conformance::optimistic_commits_check_their_reads,
        ),
    ];
    for (name, check) in checks {
        let url = pg.create_database(name).unwrap();
        check(&PostgresStore::open(&url, Migrations::Apply).unwrap());
    }
}

/// An entry written in beside the last one of a page the scan reads
/// (2,000 rows), by someone with the rights to drop the log's key: verify
/// finds it, where paging by number alone reads past it.
#[test]
fn verify_finds_an_entry_written_in_beside_the_last_of_a_page() {
    let (_pg, url, store) = fresh_store();
    let mut tx = store.transaction().unwrap();
    for n in 0..2_001 {
        let event = hoistd::audit::NewAuditEvent::new(
            hoist_api::AuditKind::Requested,
            format!("user{n}"),
            chrono::Utc::now(),
        );
        hoistd::audit::append(tx.as_mut(), event).unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(
        hoistd::audit::verify(&store).unwrap(),
        hoistd::audit::Verdict::Intact { entries: 2_001 }
    );
    let output = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url])
        .args(["-c", "ALTER TABLE audit DROP CONSTRAINT audit_pkey"])
        .args(["-c", "CREATE INDEX ON audit (seq)"])
        .args([
            "-c",
            "INSERT INTO audit SELECT * FROM audit WHERE seq = 2000",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    match hoistd::audit::verify(&store).unwrap() {
        hoistd::audit::Verdict::Broken { seq, reason } => {
            assert_eq!(seq, 2_000, "{reason}");
            assert!(reason.contains("same number"), "{reason}");
        }
        intact => panic!("an entry written in was not found: {intact:?}"),
    }
}

/// The barrier a checkpoint waits on before it signs the head returns only
/// once the log is flushed as the server's settings ask: with a
/// synchronous standby that never answers, it waits; once there is none,
/// it returns.
#[test]
fn the_barrier_waits_for_the_flush_commits_wait_for() {
    let (_pg, url, store) = fresh_store();
    let standbys =
        |names: &str| alter_system(&url, &format!("synchronous_standby_names = '{names}'"));
    store.barrier().unwrap();
    standbys("ghost");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let store = std::sync::Arc::new(store);
    let waiting = {
        let store = std::sync::Arc::clone(&store);
        std::thread::spawn(move || store.barrier())
    };
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        !waiting.is_finished(),
        "the barrier returned with its commit not yet replicated"
    );
    standbys("");
    waiting.join().unwrap().unwrap();
}

/// A connection keeps a bounded number of statements prepared, and the
/// server holds no more for it than it keeps: listings asking for ever new
/// limits (each a statement of its own) grow neither side.
#[test]
fn a_connection_keeps_a_bounded_number_of_statements_prepared() {
    let (_pg, _, store) = fresh_store();
    for limit in 1..=KEPT_STATEMENTS.get() + 100 {
        let query = RequestQuery {
            limit: Some(limit),
            ..RequestQuery::default()
        };
        assert!(store.read().unwrap().requests(&query).unwrap().is_empty());
    }
    let (kept, on_server) = store.kept_statements().unwrap();
    assert_eq!(
        kept,
        KEPT_STATEMENTS.get(),
        "the connection keeps as many as it may"
    );
    assert_eq!(
        on_server, kept as i64,
        "the server holds prepared what the connection keeps, and no more"
    );
}

/// A write through a read ([`Store::read`]) is refused as the caller's
/// mistake it is, not as a database turned read-only (which would say to
/// try again), and writes nothing.
#[test]
fn a_write_through_a_read_is_refused_as_a_mistake() {
    let (_pg, _, store) = fresh_store();
    let mut read = store.read().unwrap();
    let written = match read.set_notification_cursor(7) {
        Ok(()) => read.commit(),
        Err(err) => Err(err),
    };
    match written {
        Err(StoreError::Other(message)) => {
            assert!(message.contains("Store::read"), "{message}")
        }
        other => panic!("a write through a read was not refused as a mistake: {other:?}"),
    }
    assert_eq!(store.read().unwrap().notification_cursor().unwrap(), 0);
}

/// A TCP proxy to the server. [`Proxy::freeze`] black-holes the
/// connections open then: they stay open and carry nothing, as a
/// failed-over primary's or a frozen server's do. New ones go through.
/// [`Proxy::cut_at_commit`] ends the next connection that sends a writing
/// transaction's commit once the server has answered all of it, and
/// swallows that answer. [`Proxy::freeze_at`] black-holes every connection
/// from the moment it sends these bytes (which the server never gets).
struct Proxy {
    port: u16,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    hold_armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    freeze_mark: std::sync::Arc<std::sync::Mutex<Option<&'static [u8]>>>,
}

/// What only the commit of a writing transaction sends (`COMMIT_LOCKED`).
const COMMIT_MARK: &[u8] = b"pg_logical_emit_message";
/// The server's `ReadyForQuery` out of any transaction: the end of its
/// answer to that commit.
const READY_IDLE: &[u8] = b"Z\0\0\0\x05I";

/// Whether `mark` is in `chunk`, or across `tail` (the end of the chunk
/// before) and it; `tail` is then kept up to date.
fn spots(tail: &mut Vec<u8>, chunk: &[u8], mark: &[u8]) -> bool {
    tail.extend_from_slice(chunk);
    let found = tail.windows(mark.len()).any(|w| w == mark);
    let keep = tail.len().min(mark.len() - 1);
    tail.drain(..tail.len() - keep);
    found
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let generation = Arc::new(AtomicU64::new(0));
        let armed = Arc::new(AtomicBool::new(false));
        let hold_armed = Arc::new(AtomicBool::new(false));
        let freeze_mark = Arc::new(std::sync::Mutex::new(None));
        let (current, arming, hold_arming, marked) = (
            Arc::clone(&generation),
            Arc::clone(&armed),
            Arc::clone(&hold_armed),
            Arc::clone(&freeze_mark),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let born = current.load(Ordering::SeqCst);
                let server = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let cut = Arc::new(Cut {
                    armed: Arc::clone(&arming),
                    cutting: AtomicBool::new(false),
                    hold_armed: Arc::clone(&hold_arming),
                    holding: AtomicBool::new(false),
                    freeze_mark: Arc::clone(&marked),
                    frozen: AtomicBool::new(false),
                    ends: [client.try_clone().unwrap(), server.try_clone().unwrap()],
                });
                for (from, to, towards_server) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let (current, cut) = (Arc::clone(&current), Arc::clone(&cut));
                    std::thread::spawn(move || {
                        pump(from, to, born, &current, &cut, towards_server)
                    });
                }
            }
        });
        Proxy {
            port,
            generation,
            armed,
            hold_armed,
            freeze_mark,
        }
    }

    fn freeze_at(&self, mark: &'static [u8]) {
        *self.freeze_mark.lock().unwrap() = Some(mark);
    }

    fn freeze(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn cut_at_commit(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next commit goes to the server, and no answer comes back on
    /// its connection from then on, which stays open.
    fn hold_at_commit(&self) {
        self.hold_armed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One connection's part in [`Proxy::cut_at_commit`].
struct Cut {
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Its commit went to the server: its answer is swallowed, and the
    /// connection ended once it is complete.
    cutting: std::sync::atomic::AtomicBool,
    /// [`Proxy::hold_at_commit`], armed, and whether this connection's
    /// commit went to the server (its answers are then swallowed).
    hold_armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    holding: std::sync::atomic::AtomicBool,
    /// [`Proxy::freeze_at`]'s bytes, and whether this connection sent them.
    freeze_mark: std::sync::Arc<std::sync::Mutex<Option<&'static [u8]>>>,
    frozen: std::sync::atomic::AtomicBool,
    /// The client's socket and the server's.
    ends: [std::net::TcpStream; 2],
}

/// Copies `from` to `to` until either closes; once frozen, swallows.
/// Towards the server, an armed cut's commit starts cutting; towards the
/// client, while cutting, answers are swallowed until the commit's answer
/// has ended, and then both ends are shut.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    born: u64,
    generation: &std::sync::atomic::AtomicU64,
    cut: &Cut,
    towards_server: bool,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let mut buf = vec![0u8; 65536];
    let mut tail = Vec::new();
    let mut hold_tail = Vec::new();
    let mut freeze_tail = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if towards_server {
            if spots(&mut tail, chunk, COMMIT_MARK) && cut.armed.swap(false, Ordering::SeqCst) {
                cut.cutting.store(true, Ordering::SeqCst);
            }
            if spots(&mut hold_tail, chunk, COMMIT_MARK)
                && cut.hold_armed.swap(false, Ordering::SeqCst)
            {
                cut.holding.store(true, Ordering::SeqCst);
            }
            let mark = *cut.freeze_mark.lock().unwrap();
            if mark.is_some_and(|mark| spots(&mut freeze_tail, chunk, mark)) {
                cut.frozen.store(true, Ordering::SeqCst);
            }
        } else if cut.holding.load(Ordering::SeqCst) {
            continue;
        } else if cut.cutting.load(Ordering::SeqCst) {
            if spots(&mut tail, chunk, READY_IDLE) {
                for end in &cut.ends {
                    let _ = end.shutdown(std::net::Shutdown::Both);
                }
                return;
            }
            continue;
        }
        let frozen = generation.load(Ordering::SeqCst) != born || cut.frozen.load(Ordering::SeqCst);
        if !frozen && to.write_all(chunk).is_err() {
            return;
        }
    }
}

/// A connection lost once a writing transaction's commit went out, before
/// its answer came: the store says the outcome is unknown (here it was
/// committed), never that nothing was written; the broker's own event
/// streams are told to read everything again, since they would otherwise
/// never hear of it; and the next transaction goes on, on a fresh
/// connection.
#[test]
fn a_commit_whose_answer_is_lost_is_said_to_be_uncertain() {
    use hoistd::broker::Change;
    use hoistd::testing::{policy_text, request};
    use std::sync::Arc;

    let pg = server();
    let url = pg.create_database("hoistd").unwrap();
    let proxy = Proxy::start(pg.port());
    let proxied = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port));
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&proxied, Migrations::Apply).unwrap());
    let policy = hoistd::Policy::parse("test policy", &policy_text("")).unwrap();
    let broker = hoistd::Broker::new(Arc::clone(&store), policy).unwrap();
    let mut changes = broker.subscribe();

    proxy.cut_at_commit();
    let filed = broker.create_request("alice", &request("logs", "reading the logs"), None);
    assert!(
        matches!(
            filed,
            Err(hoistd::error::Error::Store(StoreError::Uncertain(_)))
        ),
        "{filed:?}"
    );
    let direct = PostgresStore::open(&url, Migrations::Apply).unwrap();
    let stored = direct
        .read()
        .unwrap()
        .requests(&RequestQuery {
            requester: Some("alice".into()),
            ..RequestQuery::default()
        })
        .unwrap();
    assert_eq!(stored.len(), 1, "the commit was made: {stored:?}");
    assert!(
        matches!(changes.try_recv(), Ok(Change::Resync)),
        "the instance's streams resync"
    );

    let (next, _) = broker
        .create_request("bob", &request("logs", "reading the logs"), None)
        .unwrap();
    assert_eq!(next.requester, "bob");
}

/// A workload's exchange whose commit (filing its task, and redeeming it
/// with the credential) loses its answer: the job hears 503, to try
/// again, and its task is opened again, so that the same token's next
/// exchange collects the credential rather than meet a replay.
#[test]
fn a_workload_exchange_whose_commit_is_lost_can_be_collected_again() {
    use hoist_api::{JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, TokenExchangeInput, WorkloadErrorCode};
    use hoistd::broker::Exchanged;
    use std::sync::Arc;

    let pg = server();
    let url = pg.create_database("hoistd").unwrap();
    let proxy = Proxy::start(pg.port());
    let proxied = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let provider = runtime.block_on(crate::oidc::Provider::start());
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&proxied, Migrations::Apply).unwrap());
    let policy = hoistd::Policy::parse(
        "test policy",
        &crate::workloads::policy(&provider.issuer, ""),
    )
    .unwrap();
    let broker = Arc::new(hoistd::Broker::new(Arc::clone(&store), policy).unwrap());
    let token = runtime.block_on(crate::workloads::ci_token(&provider));
    let input = TokenExchangeInput {
        grant_type: TOKEN_EXCHANGE_GRANT.into(),
        subject_token: token,
        subject_token_type: JWT_TOKEN_TYPE.into(),
        resource: Some("urn:hoist:role:deploy".into()),
        scope: None,
        requested_ttl: None,
        requested_token_type: None,
    };

    proxy.cut_at_commit();
    let first = runtime.block_on(broker.exchange(input.clone()));
    let refusal = first.err().expect("the commit's answer was lost");
    assert_eq!(
        refusal.code,
        WorkloadErrorCode::Unavailable,
        "{}",
        refusal.message
    );
    assert!(refusal.retry_after.is_some());
    let again = runtime.block_on(broker.exchange(input));
    match again {
        Ok(Exchanged::Issued(issued)) => assert!(!issued.access_token.is_empty()),
        Ok(Exchanged::Pending(pending)) => panic!("still pending: {pending:?}"),
        Err(refusal) => panic!("{:?}: {}", refusal.code, refusal.message),
    }
}

/// A pooled connection that stops answering (its server gone without a
/// word) fails the call within the store's bound, rather than holding it
/// for as long as the kernel keeps the socket; the next call gets a
/// connection that works.
/// A commit that went to the server but whose answer never comes (the
/// connection open, the server silent): once the store stops waiting, it
/// says the outcome is unknown (here it was committed), never that nothing
/// was written.
#[test]
fn a_commit_whose_answer_never_comes_is_said_to_be_uncertain() {
    use hoistd::testing::{policy_text, request};
    use std::sync::Arc;

    let pg = server();
    let url = pg.create_database("hoistd").unwrap();
    let proxy = Proxy::start(pg.port());
    let proxied = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port));
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&proxied, Migrations::Apply).unwrap());
    let policy = hoistd::Policy::parse("test policy", &policy_text("")).unwrap();
    let broker = hoistd::Broker::new(Arc::clone(&store), policy).unwrap();

    proxy.hold_at_commit();
    let filed = broker.create_request("alice", &request("logs", "reading the logs"), None);
    assert!(
        matches!(
            filed,
            Err(hoistd::error::Error::Store(StoreError::Uncertain(_)))
        ),
        "{filed:?}"
    );
    let direct = PostgresStore::open(&url, Migrations::Apply).unwrap();
    let requests = direct
        .read()
        .unwrap()
        .requests(&hoistd::store::RequestQuery::default())
        .unwrap();
    assert_eq!(requests.len(), 1, "it was committed: {requests:?}");
}

#[test]
fn a_connection_that_stops_answering_fails_its_call_and_is_replaced() {
    let pg = server();
    let url = pg.create_database("hoistd").unwrap();
    let proxy = Proxy::start(pg.port());
    let proxied = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port));
    let store = std::sync::Arc::new(PostgresStore::open(&proxied, Migrations::Apply).unwrap());
    store.ready().unwrap();
    proxy.freeze();
    let (said, heard) = std::sync::mpsc::channel();
    let asking = std::sync::Arc::clone(&store);
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let answer = asking.ready();
        let _ = said.send((answer, started.elapsed()));
    });
    let (answer, took) = heard
        .recv_timeout(std::time::Duration::from_secs(40))
        .expect("a call on a dead connection never ended");
    assert!(
        matches!(answer, Err(StoreError::Unavailable(ref why)) if why.contains("did not answer")),
        "{answer:?}"
    );
    assert!(took >= std::time::Duration::from_secs(10), "{took:?}");
    store.ready().expect("a fresh connection answers");
}

/// An ask for the lease on a connection that stops answering (a dead
/// socket after a failover) gives up when its term would be over, not
/// after the store's usual wait for an answer, and the next ask connects
/// afresh: the instance can lead again as soon as the database answers.
#[test]
fn a_lease_ask_on_a_dead_connection_gives_up_within_its_term() {
    let pg = server();
    let url = pg.create_database("hoistd").unwrap();
    let proxy = Proxy::start(pg.port());
    let proxied = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port));
    let store = std::sync::Arc::new(PostgresStore::open(&proxied, Migrations::Apply).unwrap());
    let term = std::time::Duration::from_secs(3);
    assert!(store.lead("a", term, false).unwrap().is_some());
    proxy.freeze();
    let (said, heard) = std::sync::mpsc::channel();
    let asking = std::sync::Arc::clone(&store);
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let answer = asking.lead("a", term, true);
        let _ = said.send((answer, started.elapsed()));
    });
    let (answer, took) = heard
        .recv_timeout(std::time::Duration::from_secs(40))
        .expect("an ask on a dead connection never ended");
    assert!(
        matches!(answer, Err(StoreError::Unavailable(ref why) | StoreError::Uncertain(ref why))
            if why.contains("did not answer")),
        "{answer:?}"
    );
    // The store's own wait for an answer is 15 s.
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(
        store.lead("a", term, true).unwrap().is_some(),
        "a fresh connection renews the lease"
    );
}

/// A reading of the server's clock that hangs after the lease was taken
/// gives up well within the ask's deadline (the leader's next renewal is
/// due a second later): the ask answers with the lease, rather than make
/// its instance stop leading though the lease was renewed.
#[test]
fn a_lease_ask_whose_clock_reading_hangs_still_answers_in_time() {
    let pg = server();
    let url = pg.create_database("hoistd").unwrap();
    let proxy = Proxy::start(pg.port());
    let proxied = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port));
    let store = PostgresStore::open(&proxied, Migrations::Apply).unwrap();
    store.measure_clock().unwrap();
    proxy.freeze_at(b"* 1000000)::bigint");
    let started = std::time::Instant::now();
    let epoch = store
        .lead("a", std::time::Duration::from_secs(5), false)
        .unwrap();
    let took = started.elapsed();
    assert!(epoch.is_some(), "the lease was taken");
    // The ask's deadline (leadership::TERM less its margin).
    assert!(took < std::time::Duration::from_secs(4), "{took:?}");
    let direct = PostgresStore::open(&url, Migrations::Apply).unwrap();
    assert_eq!(
        direct
            .lead("b", std::time::Duration::from_secs(5), false)
            .unwrap(),
        None,
        "and held"
    );
    // The next ask, on a fresh connection, goes through.
    *proxy.freeze_mark.lock().unwrap() = None;
    assert_eq!(
        store
            .lead("a", std::time::Duration::from_secs(5), true)
            .unwrap(),
        epoch
    );
}

/// A grant committed on PostgreSQL while a policy reload runs is in that
/// reload's sweep: an optimistic transaction takes the store's lock only
/// with its commit, so a reload could swap the policy and sweep between its
/// check of the policy and its commit, and the grant, decided under the old
/// policy, would stand under the new one. Here the filing is held just
/// after its check while the policy drops alice; the reload waits for it,
/// and its sweep revokes the grant.
#[test]
fn a_grant_committed_while_a_reload_sweeps_is_swept() {
    let (_pg, _url, store) = fresh_store();
    let text = hoistd::testing::policy_text("");
    let policy = hoistd::Policy::parse("p.toml", &text).unwrap();
    let broker =
        std::sync::Arc::new(hoistd::Broker::new(std::sync::Arc::new(store), policy).unwrap());
    broker.hold_commits(true);
    let filing = {
        let broker = std::sync::Arc::clone(&broker);
        std::thread::spawn(move || {
            broker.create_request(
                "alice",
                &hoistd::testing::request("logs", "tail the logs for INC-7"),
                None,
            )
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while broker.commits_held() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the filing never got to its commit"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let without_alice = text.replace(
        r#"eng = ["alice", "bob", "carol", "dave", "frank"]"#,
        r#"eng = ["bob", "carol", "dave", "frank"]"#,
    );
    assert_ne!(without_alice, text);
    let reloading = {
        let broker = std::sync::Arc::clone(&broker);
        let policy = hoistd::Policy::parse("p.toml", &without_alice).unwrap();
        std::thread::spawn(move || broker.reload(policy))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    broker.hold_commits(false);
    let (filed, _) = filing.join().unwrap().unwrap();
    let revoked = reloading.join().unwrap().unwrap();
    assert_eq!(revoked, 1, "the reload's sweep saw the grant");
    let grant = broker
        .store()
        .read()
        .unwrap()
        .grant(filed.grant_id.as_deref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(grant.state, hoist_api::GrantState::Revoked);
}

/// Waits up to 20 s for an announcement `wanted` accepts, skipping others.
fn heard_within(
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<Announcement>,
    wanted: impl Fn(&Announcement) -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        match heard.try_recv() {
            Ok(announcement) if wanted(&announcement) => return true,
            Ok(_) => {}
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    false
}

/// A primary fenced off by turning it read-only, not stopped: with
/// `target_session_attrs=read-write` over two hosts, writers move to the
/// new primary, and so does the connection that listens for their
/// changes, saying so (a resync): it would otherwise hear nothing again.
#[test]
fn the_listener_follows_writers_to_a_new_primary() {
    let (first, second) = (server(), server());
    let (url_a, url_b) = (
        first.create_database("hoistd").unwrap(),
        second.create_database("hoistd").unwrap(),
    );
    for url in [&url_a, &url_b] {
        drop(PostgresStore::open(url, Migrations::Apply).unwrap());
    }
    // One password for both hosts of one URL.
    let password = first.admin_password();
    let same = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", &url_b, "-c"])
        .arg(format!("ALTER ROLE postgres PASSWORD '{password}'"))
        .output()
        .unwrap();
    assert!(same.status.success(), "{same:?}");
    let url_b = url_b.replace(second.admin_password(), password);
    alter_system(&url_b, "default_transaction_read_only = on");
    let both = format!(
        "postgres://postgres:{password}@{}:{},{}:{}/hoistd?target_session_attrs=read-write",
        first.host(),
        first.port(),
        second.host(),
        second.port()
    );
    let listening = PostgresStore::open(&both, Migrations::Leave).unwrap();
    let mut heard = listening.listen().expect("PostgreSQL listens");
    assert!(heard_within(&mut heard, |a| matches!(
        a,
        Announcement::Missed
    )));
    let writer = PostgresStore::open(&both, Migrations::Leave).unwrap();

    // The second host becomes the primary, the first turns read-only.
    alter_system(&url_a, "default_transaction_read_only = on");
    alter_system(&url_b, "default_transaction_read_only = off");
    assert!(
        heard_within(&mut heard, |a| matches!(a, Announcement::Missed)),
        "the listener moved, and says what it may have missed"
    );
    let mut written = false;
    for attempt in 0..50 {
        let mut tx = writer.transaction().unwrap();
        let request =
            hoistd::store::conformance::bare_request(&format!("req_{attempt}"), "alice", "db", 1);
        if tx.insert_request(&request).is_ok()
            && tx.announce(&[&request.id], &[], None, false).is_ok()
            && tx.commit().is_ok()
        {
            written = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(written, "the writer never reached the new primary");
    assert!(
        heard_within(
            &mut heard,
            |a| matches!(a, Announcement::Changed { requests, .. }
            if !requests.is_empty())
        ),
        "a change at the new primary is heard"
    );
}

/// The same behind one host name, with no `target_session_attrs`: the
/// listener leaves a server turned read-only, and listens again, saying
/// so, once the name leads to a writable one (here, the same made
/// writable again).
#[test]
fn the_listener_leaves_a_server_turned_read_only_behind_one_name() {
    let (_pg, url, store) = fresh_store();
    let mut heard = store.listen().expect("PostgreSQL listens");
    assert!(heard_within(&mut heard, |a| matches!(
        a,
        Announcement::Missed
    )));
    alter_system(&url, "default_transaction_read_only = on");
    // Left within a look or two; nothing is heard while it takes no writes.
    std::thread::sleep(std::time::Duration::from_secs(5));
    alter_system(&url, "default_transaction_read_only = off");
    assert!(
        heard_within(&mut heard, |a| matches!(a, Announcement::Missed)),
        "the listener came back, and says what it may have missed"
    );
}

/// A writing transaction left idle past the 5 s the server allows it (an
/// instance paused while it held the writers' lock) is ended by the
/// server: its commit is refused as the database's, passing (try again),
/// neither a fault of hoistd's nor one that may have committed, and
/// nothing was written.
#[test]
fn a_transaction_the_server_ended_for_idling_is_unavailable_and_wrote_nothing() {
    let (_pg, _, store) = fresh_store();
    let mut tx = store.transaction().unwrap();
    // A read of the audit chain's head takes the writers' lock, held
    // until the commit.
    assert_eq!(tx.audit_head().unwrap(), None);
    std::thread::sleep(std::time::Duration::from_secs(6));
    tx.set_notification_cursor(7).unwrap();
    let answer = tx.commit();
    assert!(
        matches!(answer, Err(StoreError::Unavailable(_))),
        "{answer:?}"
    );
    assert_ne!(store.read().unwrap().notification_cursor().unwrap(), 7);
}

/// A commit the server refused because a row it read changed meanwhile
/// (`Contended`) gives its connection back to the pool, which answers the
/// next transaction: connecting afresh would cost that one a connection,
/// and its statements prepared again, under the writers' lock.
#[test]
fn a_refused_commit_keeps_its_connection() {
    let (_pg, _, store) = fresh_store();
    let mut pending = hoistd::store::conformance::bare_request("req", "alice", "db", 1);
    pending.state = hoist_api::RequestState::Pending;
    pending.lapses_at = Some(chrono::Utc::now() + chrono::TimeDelta::hours(1));
    let mut tx = store.transaction().unwrap();
    tx.insert_request(&pending).unwrap();
    tx.commit().unwrap();

    let mut tx = store.optimistic().unwrap();
    let mut read = tx.request("req").unwrap().unwrap();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut other = store.transaction().unwrap();
                assert_eq!(other.audit_head().unwrap(), None);
                let mut denied = pending.clone();
                denied.state = hoist_api::RequestState::Denied;
                denied.lapses_at = None;
                other.update_request(&denied).unwrap();
                other.commit().unwrap();
            })
            .join()
            .unwrap();
    });
    let open = store.connections().open;
    assert_eq!(open, 2, "the two transactions' connections");
    read.state = hoist_api::RequestState::Approved;
    read.lapses_at = None;
    tx.update_request(&read).unwrap();
    let refused = tx.commit();
    assert!(
        matches!(refused, Err(StoreError::Contended(_))),
        "{refused:?}"
    );
    assert_eq!(store.connections().open, open, "kept");
    let tx = store.transaction().unwrap();
    assert_eq!(
        tx.request("req").unwrap().unwrap().state,
        hoist_api::RequestState::Denied,
        "nothing was written, and the kept connection answers"
    );
}
