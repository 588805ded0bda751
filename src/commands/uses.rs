//! Which `hoist exec`s on this machine run a command with a grant, so that
//! the grant is revoked when the last of them ends, not under the others.
//!
//! The exec that asked for a grant owes its revoke; another exec of the same
//! role reuses the grant. Each holds a shared lock on the grant's `.uses`
//! file while its command runs (the kernel lets it go if the process dies).
//! Ending, an exec takes the grant's `.lock` (its state, and a mutex over
//! every step here), lets its own use go and tries for the `.uses` file
//! alone: if it gets it, nobody else uses the grant, and whoever owes the
//! revoke revokes; if not, an exec that owes it leaves it to the last of the
//! others (state `last`). The one revoking keeps `.uses` to itself until it
//! is done (state `revoking`), so an exec starting meanwhile does not take
//! a grant that is about to end; a `revoking` whose revoker died is stale,
//! and taken as a revoke still owed (`last`), as is one that failed.
//!
//! The files live in the cache directory under `uses/`, named by a digest
//! of the broker and the grant id (never the broker's text itself), and are
//! removed with the last use. Without them (no cache directory, a file that
//! cannot be made) exec does as it would alone: the exec that asked for the
//! grant revokes it when its command ends.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Longest wait for another exec's step under the grant's `.lock` (each is
/// a few file operations).
const LOCK_WAIT: Duration = Duration::from_secs(5);

const LAST: &[u8] = b"last";
const REVOKING: &[u8] = b"revoking";

/// This process's use of a grant while its command runs.
pub(super) struct Use {
    files: Files,
    /// A shared lock on `.uses`, held while this use lasts.
    uses: File,
    /// This process asked for the grant: it owes its revoke.
    asked: bool,
}

/// What an ending use leaves to do.
pub(super) enum Ending {
    /// Nobody else uses the grant and its revoke is owed: revoke it, then
    /// call [`Revoking::done`].
    Revoke(Revoking),
    /// Others still use it; the revoke is left to the last of them.
    LeftToOthers,
    /// Nothing is owed: the grant was not asked for by any exec here.
    Nothing,
}

/// The grant's `.uses`, held alone while it is revoked.
pub(super) struct Revoking {
    files: Files,
    _uses: File,
}

/// The grant is being revoked by the last exec that used it.
#[derive(Debug)]
pub(super) struct BeingRevoked;

struct Files {
    lock: PathBuf,
    uses: PathBuf,
}

impl Files {
    fn of(cache: &Path, broker: &str, grant_id: &str) -> Files {
        let digest = Sha256::digest(format!("{broker}\n{grant_id}").as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let dir = cache.join("uses");
        Files {
            lock: dir.join(format!("{name}.lock")),
            uses: dir.join(format!("{name}.uses")),
        }
    }

    /// The grant's `.lock`, held; `None` if it cannot be had.
    fn lock(&self) -> Option<File> {
        crate::fs::lock(&self.lock, LOCK_WAIT).ok().flatten()
    }

    fn open_uses(&self) -> std::io::Result<File> {
        let mut options = OpenOptions::new();
        // Readable too: over NFS a shared lock needs a file open for reading.
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&self.uses)
    }

    /// Removes both files; called with `.lock` held, which makes anyone
    /// waiting for it take the lock again on a new file.
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.uses);
        let _ = std::fs::remove_file(&self.lock);
    }
}

impl Use {
    /// Records that this process runs a command with `grant_id` from
    /// `broker` (`asked`: it asked for the grant). `Ok(None)` when the use
    /// cannot be recorded here; [`BeingRevoked`] when the last exec that
    /// used the grant is revoking it now.
    fn begin(broker: &str, grant_id: &str, asked: bool) -> Result<Option<Use>, BeingRevoked> {
        let Some(cache) = crate::prompt::cache_dir() else {
            return Ok(None);
        };
        Use::begin_in(&cache, broker, grant_id, asked)
    }

    fn begin_in(
        cache: &Path,
        broker: &str,
        grant_id: &str,
        asked: bool,
    ) -> Result<Option<Use>, BeingRevoked> {
        let files = Files::of(cache, broker, grant_id);
        let Some(mut lock) = files.lock() else {
            return Ok(None);
        };
        let Ok(uses) = files.open_uses() else {
            return Ok(None);
        };
        match uses.try_lock_shared() {
            Ok(()) => {}
            // Held alone: its revoker is at work.
            Err(TryLockError::WouldBlock) => return Err(BeingRevoked),
            Err(TryLockError::Error(_)) => return Ok(None),
        }
        if state(&mut lock).as_deref() == Some(REVOKING) {
            // Its revoker died before it was done, perhaps before sending
            // the revoke: still owed, by the last use (a revoke of a grant
            // that ended does nothing).
            set_state(&mut lock, LAST);
        }
        Ok(Some(Use { files, uses, asked }))
    }

    /// Ends this use: whether this process revokes the grant now.
    fn end(self) -> Ending {
        let Use { files, uses, asked } = self;
        let Some(mut lock) = files.lock() else {
            // Nothing can be known of the others: whoever asked revokes, as
            // it would alone.
            return if asked {
                Ending::Revoke(Revoking { files, _uses: uses })
            } else {
                Ending::Nothing
            };
        };
        let owed = asked || state(&mut lock).as_deref() == Some(LAST);
        let _ = uses.unlock();
        match uses.try_lock() {
            Ok(()) if owed => {
                set_state(&mut lock, REVOKING);
                Ending::Revoke(Revoking { files, _uses: uses })
            }
            Ok(()) => {
                files.remove();
                Ending::Nothing
            }
            Err(_) if owed => {
                set_state(&mut lock, LAST);
                Ending::LeftToOthers
            }
            Err(_) => Ending::Nothing,
        }
    }
}

/// [`Use::begin`] on the blocking pool: it may wait up to [`LOCK_WAIT`]
/// for another exec to let go of the grant's lock, which must not hold up
/// the signals and timers of this one.
pub(super) async fn begin(
    broker: &str,
    grant_id: &str,
    asked: bool,
) -> Result<Option<Use>, BeingRevoked> {
    let (broker, grant_id) = (broker.to_string(), grant_id.to_string());
    tokio::task::spawn_blocking(move || Use::begin(&broker, &grant_id, asked))
        .await
        .unwrap_or(Ok(None))
}

/// [`Use::end`] on the blocking pool; `None` if its task failed (a
/// panic), which leaves the revoke to whoever asked for the grant.
pub(super) async fn end(this: Use) -> Option<Ending> {
    tokio::task::spawn_blocking(move || this.end()).await.ok()
}

/// [`Revoking::done`] on the blocking pool.
pub(super) async fn done(revoking: Revoking, revoked: bool) {
    let _ = tokio::task::spawn_blocking(move || revoking.done(revoked)).await;
}

/// Returns once no exec here is revoking `grant_id` from `broker` (at
/// once if none is, or uses cannot be counted here).
pub(super) async fn revoked(broker: &str, grant_id: &str) {
    if let Some(cache) = crate::prompt::cache_dir() {
        revoked_in(&cache, broker, grant_id).await;
    }
}

async fn revoked_in(cache: &Path, broker: &str, grant_id: &str) {
    let files = Files::of(cache, broker, grant_id);
    loop {
        let Ok(uses) = OpenOptions::new().read(true).open(&files.uses) else {
            // Gone with the last use: the revoke is done.
            return;
        };
        if !matches!(uses.try_lock_shared(), Err(TryLockError::WouldBlock)) {
            return;
        }
        drop(uses);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Revoking {
    /// The revoke is over: with the grant `revoked`, the files go;
    /// otherwise the revoke stays owed, by whichever exec here uses the
    /// grant next and ends last.
    fn done(self, revoked: bool) {
        if let Some(mut lock) = self.files.lock() {
            if revoked {
                self.files.remove();
            } else {
                set_state(&mut lock, LAST);
            }
        }
    }
}

/// What the held `.lock` file says.
fn state(lock: &mut File) -> Option<Vec<u8>> {
    let mut text = Vec::new();
    lock.rewind().ok()?;
    lock.read_to_end(&mut text).ok()?;
    Some(text)
}

/// Makes the held `.lock` file say `text` (best effort: a state lost makes
/// an exec that owed a revoke leave it undone, as one killed would).
fn set_state(lock: &mut File, text: &[u8]) {
    let _ = lock
        .set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROKER: &str = "https://hoist.example";

    fn begin(cache: &Path, grant: &str, asked: bool) -> Use {
        Use::begin_in(cache, BROKER, grant, asked).unwrap().unwrap()
    }

    #[test]
    fn the_exec_that_asked_revokes_when_nobody_else_uses_the_grant() {
        let cache = tempfile::tempdir().unwrap();
        let only = begin(cache.path(), "gr_1", true);
        let Ending::Revoke(revoking) = only.end() else {
            panic!("the exec that asked and used it alone revokes it");
        };
        revoking.done(true);
        assert!(
            crate::fs::tests::names(&cache.path().join("uses")).is_empty(),
            "the files go with the last use"
        );
    }

    #[test]
    fn the_revoke_is_left_to_the_last_exec_using_the_grant() {
        let cache = tempfile::tempdir().unwrap();
        let asked = begin(cache.path(), "gr_1", true);
        let second = begin(cache.path(), "gr_1", false);
        let third = begin(cache.path(), "gr_1", false);
        assert!(matches!(asked.end(), Ending::LeftToOthers));
        // The revoke is owed still, and passes on.
        assert!(matches!(second.end(), Ending::LeftToOthers));
        let Ending::Revoke(revoking) = third.end() else {
            panic!("the last one inherits the revoke");
        };
        // Meanwhile, another exec does not take the grant that is ending,
        // and waits for the revoke to be done.
        assert!(Use::begin_in(cache.path(), BROKER, "gr_1", false).is_err());
        let files = Files::of(cache.path(), BROKER, "gr_1");
        assert!(OpenOptions::new().read(true).open(&files.uses).is_ok());
        revoking.done(true);
        assert!(!files.uses.exists(), "the wait for it ends");
        assert!(crate::fs::tests::names(&cache.path().join("uses")).is_empty());
    }

    #[test]
    fn a_revoke_that_failed_stays_owed() {
        let cache = tempfile::tempdir().unwrap();
        let Ending::Revoke(revoking) = begin(cache.path(), "gr_1", true).end() else {
            panic!("alone, it revokes");
        };
        revoking.done(false);
        let next = begin(cache.path(), "gr_1", false);
        assert!(
            matches!(next.end(), Ending::Revoke(_)),
            "the next exec using the grant owes its revoke"
        );
    }

    #[tokio::test]
    async fn a_wait_for_a_revoke_here_ends_when_it_is_done() {
        let cache = tempfile::tempdir().unwrap();
        revoked_in(cache.path(), BROKER, "gr_1").await;
        let Ending::Revoke(revoking) = begin(cache.path(), "gr_1", true).end() else {
            panic!("alone, it revokes");
        };
        let path = cache.path().to_path_buf();
        let waiting = tokio::spawn(async move { revoked_in(&path, BROKER, "gr_1").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the revoke is still under way");
        revoking.done(true);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends with the revoke")
            .unwrap();
    }

    #[test]
    fn uses_of_a_grant_nobody_here_asked_for_revoke_nothing() {
        let cache = tempfile::tempdir().unwrap();
        let first = begin(cache.path(), "gr_1", false);
        let second = begin(cache.path(), "gr_1", false);
        assert!(matches!(first.end(), Ending::Nothing));
        assert!(matches!(second.end(), Ending::Nothing));
        assert!(crate::fs::tests::names(&cache.path().join("uses")).is_empty());
    }

    #[test]
    fn grants_and_brokers_are_apart() {
        let cache = tempfile::tempdir().unwrap();
        let one = begin(cache.path(), "gr_1", true);
        let other_grant = begin(cache.path(), "gr_2", true);
        let elsewhere = Use::begin_in(cache.path(), "https://other.example", "gr_1", false)
            .unwrap()
            .unwrap();
        assert!(matches!(one.end(), Ending::Revoke(_)));
        assert!(matches!(other_grant.end(), Ending::Revoke(_)));
        assert!(matches!(elsewhere.end(), Ending::Nothing));
    }

    #[test]
    fn a_revoker_that_died_leaves_no_grant_stuck() {
        let cache = tempfile::tempdir().unwrap();
        let asked = begin(cache.path(), "gr_1", true);
        let Ending::Revoke(revoking) = asked.end() else {
            panic!("alone, it revokes");
        };
        // Dropped without `done`: as if the process died mid-revoke,
        // perhaps before the revoke was sent.
        drop(revoking);
        let next = begin(cache.path(), "gr_1", false);
        assert!(
            matches!(next.end(), Ending::Revoke(_)),
            "a stale `revoking` is a revoke still owed"
        );
    }
}
