//! Files written whole or not at all: the one way the config, the opt-in
//! session files, the prompt cache and SSH certificates reach the disk.
//! Private directories are created 0700 and private files 0600 from the
//! moment they exist (whatever the umask); a public file (a certificate,
//! which is no secret) is 0644. A write goes to a temporary file in the
//! same directory, is flushed to disk and renamed over the old file, so a
//! crash leaves the old contents or the new, never half of either.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700. An existing
/// directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// An exclusive lock on `path` (a file created 0600 in a private
/// directory), held until the file is dropped, across processes; waits for
/// it at most `wait`. `Ok(None)` when another holds it all that time.
///
/// Its holder may remove the file: a lock taken on a file no longer at
/// `path` is let go and taken again on the one there now, so two processes
/// never both hold `path`.
pub fn lock(path: &Path, wait: std::time::Duration) -> io::Result<Option<File>> {
    create_private_dir(parent(path))?;
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let until = std::time::Instant::now() + wait;
    let mut file = options.open(path)?;
    loop {
        match file.try_lock() {
            Ok(()) if still_at(&file, path)? => return Ok(Some(file)),
            // Removed by the one that held it: the file there now.
            Ok(()) if std::time::Instant::now() < until => file = options.open(path)?,
            Ok(()) => return Ok(None),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(err)) => return Err(err),
        }
    }
}

/// Whether `file` is the file at `path` now (not one removed since it was
/// opened).
#[cfg(unix)]
fn still_at(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    Ok(match std::fs::metadata(path) {
        Ok(there) => (there.dev(), there.ino()) == (open.dev(), open.ino()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => false,
        Err(err) => return Err(err),
    })
}

#[cfg(not(unix))]
fn still_at(_file: &File, _path: &Path) -> io::Result<bool> {
    Ok(true)
}

/// Creates a new file that only its owner can read or write; fails if
/// something is already at `path`.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Replaces `path` with `contents`, creating its directory privately if
/// needed. On error the temporary file is removed and `path` is untouched.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    create_private_dir(parent(path))?;
    replace(path, contents, create_private_file)
}

/// Replaces `path`, in a directory that must exist, with `contents` that
/// anyone may read (mode 0644): for what is no secret, such as an SSH
/// certificate beside its key. Whole or not at all, as [`write_private`].
pub fn write_public(path: &Path, contents: &[u8]) -> io::Result<()> {
    replace(path, contents, |temporary| {
        let file = create_private_file(temporary)?;
        // Opened 0600, widened only now: exact whatever the umask.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        Ok(file)
    })
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Writes a temporary file made by `create` beside `path` and renames it
/// over `path`; on error the temporary file is removed.
fn replace(
    path: &Path,
    contents: &[u8],
    create: impl Fn(&Path) -> io::Result<File>,
) -> io::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .make_in(dir, create)?;
    file.as_file_mut().write_all(contents)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|err| err.error)?;
    sync_dir(dir)
}

/// Makes a rename or removal in `dir` survive a crash.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The permission bits of `path`.
    #[cfg(unix)]
    pub(crate) fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// What `dir` holds, by name, sorted.
    pub(crate) fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let path = dir.join("state.json");
        write_private(&path, b"first").unwrap();
        write_private(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(names(&dir), ["state.json"]);
        #[cfg(unix)]
        {
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&tmp.path().join("a")), 0o700);
        }
    }

    #[cfg(unix)]
    #[test]
    fn private_from_creation_and_never_over_something_there() {
        let tmp = tempfile::tempdir().unwrap();
        // Private before a single byte is written, not chmod-ed after.
        let fresh = tmp.path().join("fresh");
        let file = create_private_file(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
        assert_eq!(file.metadata().unwrap().len(), 0);
        // And never over something already there.
        assert!(create_private_file(&fresh).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_public_write_is_0644_and_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("id_ed25519-cert.pub");
        write_public(&path, b"first").unwrap();
        write_public(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(mode(&path), 0o644);
        assert_eq!(names(tmp.path()), ["id_ed25519-cert.pub"]);
        // Its directory is not made: a certificate goes beside its key.
        assert!(write_public(&tmp.path().join("none/x-cert.pub"), b"x").is_err());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.json");
        write_private(&path, b"old").unwrap();
        // A parent that is a file cannot hold the new one.
        let blocked = tmp.path().join("state.json/inner");
        assert!(write_private(&blocked, b"new").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(tmp.path()), ["state.json"]);
    }
}
