//! Private, atomic file writes.
//!
//! Every file is written to a temporary file in the same folder, created with mode 0600 from its first byte
//! (never chmod-after), then fsynced, renamed over the target and the folder fsynced. Any failure removes the
//! temporary file, so the previous file stays byte-identical and nothing is left behind.
//!
//! We use `tempfile` (0600 temp files, rename that hands the file back on failure) and do the two fsyncs
//! ourselves. atomic-write-file 0.3.1 was tried first: it leaves its temporary file behind when the final
//! rename fails (it marks itself finished before renaming), which our tests caught.
//! Folders we create are 0700. A target that is a symlink is written through: the link's final target is
//! replaced atomically and the link is kept.
//!
//! Read-modify-write updates ([`update_file`]) hold a cross-process lock on a sidecar file `<target>.lock`
//! (`flock(2)` through std's `File::lock`), so concurrent writers in any number of processes never lose an
//! update; readers need no lock, since the rename means they see the old or the new file, never a mix. The
//! kernel drops the lock when its holder dies, even by SIGKILL.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Mode of every file we write.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every folder we create.
pub const DIR_MODE: u32 = 0o700;

/// Create `dir` and any missing parents with mode 0700 (existing folders are left as they are).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))
}

/// Where a write to `path` really lands: the final target when `path` is a symlink, else `path`.
pub fn write_target(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).unwrap_or_else(|_| {
            // A dangling link: follow it one level (relative to the link's folder).
            std::fs::read_link(path)
                .map(|t| path.parent().map_or(t.clone(), |p| p.join(&t)))
                .unwrap_or_else(|_| path.to_path_buf())
        }),
        _ => path.to_path_buf(),
    }
}

/// Atomically replace `path` with `contents`, private (0600) from the first byte.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let target = write_target(path);
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| format!(".{}.", n.to_string_lossy()))
        .unwrap_or_default();
    // Dropping `tmp` on any early return removes the temporary file.
    let mut tmp = tempfile::Builder::new()
        .prefix(&name)
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create a temporary file in", &dir, e))?;
    tmp.write_all(contents).map_err(|e| Error::io("write", &target, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io("sync", &target, e))?;
    // On failure `persist` hands the temporary file back inside the error; dropping it removes it.
    tmp.persist(&target)
        .map_err(|e| Error::io("replace", &target, e.error))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", &dir, e))
}

/// An exclusive cross-process lock on `<target>.lock`, released when dropped (or when the process dies).
/// The longest we wait for another process's lock: more than a mint's whole retry budget (300 s), which is
/// the longest a healthy holder keeps it.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(360);

/// How long a call whose retry budget is `budget` waits for a lock: no longer than it would wait for the
/// server (the budget), and never more than [`LOCK_TIMEOUT`]. Pass it to [`FileLock::acquire_within`].
pub fn lock_wait(budget: Duration) -> Duration {
    budget.min(LOCK_TIMEOUT)
}

#[derive(Debug)]
pub struct FileLock {
    file: std::fs::File,
    path: PathBuf,
}

impl FileLock {
    /// Wait (at most [`LOCK_TIMEOUT`]) until the lock that guards writes to `target` (after following symlinks)
    /// is ours. The lock file is created 0600 next to the target, whose folder must exist.
    pub fn acquire(target: &Path) -> Result<FileLock> {
        Self::acquire_within(target, LOCK_TIMEOUT)
    }

    /// [`FileLock::acquire`] with another time limit; running out of it is [`Error::Timeout`] naming the lock.
    pub fn acquire_within(target: &Path, timeout: Duration) -> Result<FileLock> {
        let path = lock_path(target);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| Error::io("open lock file", &path, e))?;
        // Poll rather than block in flock(2): a holder that hangs must not hang us without a limit.
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FileLock { file, path }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Timeout {
                        message: format!(
                            "waited {:.0} s for the lock {} (another process holds it)",
                            timeout.as_secs_f64(),
                            path.display()
                        ),
                        last: None,
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
            }
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first just makes it explicit.
        let _ = self.file.unlock();
    }
}

/// The sidecar lock file that guards writes to `path`: `<final target>.lock`, so a symlink and its target
/// share one lock.
pub fn lock_path(path: &Path) -> PathBuf {
    let target = write_target(path);
    let mut name = target
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".lock");
    target.with_file_name(name)
}

/// Permission bits of an existing file (after following symlinks), `None` when it does not exist.
pub fn file_mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

/// Whether `mode` lets anyone but the owner read or write.
pub fn is_loose(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// Remove temporary files a killed writer left next to `target` (`.<name>.XXXXXX.tmp`). Only safe while
/// holding `target`'s lock: then no other writer of `target` can be midway.
pub fn sweep_leftovers(target: &Path) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let n = entry.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(&prefix) && n.ends_with(".tmp") && n.len() > prefix.len() + 4 {
            log::debug!(
                "removing {}, left behind by an interrupted write",
                entry.path().display()
            );
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Read-modify-write `path` under its lock. `edit` gets the current bytes (`None` when the file does not exist)
/// and returns the new bytes, or `None` to leave the file as it is. The new file is written with
/// [`write_private`]; an existing file looser than 0600 is tightened either way, with a warning. The folder
/// must exist. Returns whether the file was rewritten.
pub fn update_file(path: &Path, edit: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>>) -> Result<bool> {
    let target = write_target(path);
    let _lock = FileLock::acquire(&target)?;
    sweep_leftovers(&target);
    let current = match std::fs::read(&target) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("read", &target, e)),
    };
    let loose = file_mode(&target).filter(|m| is_loose(*m));
    let new = edit(current.as_deref())?;
    let wrote = new.is_some();
    match new {
        Some(bytes) => write_private(&target, &bytes)?,
        None if loose.is_some() => std::fs::set_permissions(&target, std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| Error::io("change the mode of", &target, e))?,
        None => {}
    }
    if let Some(m) = loose {
        log::warn!(
            "{} was readable or writable by others (mode {m:04o}); it is now 0600",
            path.display()
        );
    }
    Ok(wrote)
}

/// Replace `path` with `contents` like [`write_private`], under `path`'s lock (see [`update_file`]).
pub fn write_locked(path: &Path, contents: &[u8]) -> Result<()> {
    update_file(path, |_| Ok(Some(contents.to_vec()))).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_are_private_and_replace_looser_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).unwrap();
        assert_eq!(mode(&sub), DIR_MODE);
        assert_eq!(mode(&dir.path().join("a")), DIR_MODE);
        let f = sub.join("f.json");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"new").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        assert_eq!(mode(&f), FILE_MODE);
        let leftovers: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("f.json")]);
    }

    #[test]
    fn symlinks_are_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_private(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/folder/f");
        let err = write_private(&missing, b"x").unwrap_err();
        assert!(err.to_string().contains("no/such/folder"), "{err}");
    }

    #[test]
    fn updates_are_serialised_by_the_lock_and_tighten_modes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.txt");
        std::fs::write(&f, "0").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let f = f.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        update_file(&f, |cur| {
                            let n: u32 = std::str::from_utf8(cur.unwrap()).unwrap().parse().unwrap();
                            Ok(Some((n + 1).to_string().into_bytes()))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "200");
        assert_eq!(mode(&f), FILE_MODE);
        assert_eq!(mode(&lock_path(&f)), FILE_MODE);
    }

    #[test]
    fn an_unchanged_loose_file_is_tightened_and_leftovers_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        std::fs::write(&f, "{}").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        let leftover = dir.path().join(".c.json.AbC123.tmp");
        std::fs::write(&leftover, "partial").unwrap();
        assert!(!update_file(&f, |_| Ok(None)).unwrap());
        assert_eq!(mode(&f), FILE_MODE);
        assert!(!leftover.exists());
        assert_eq!(std::fs::read(&f).unwrap(), b"{}");
    }

    #[test]
    fn a_held_lock_times_out_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("config.json");
        let held = FileLock::acquire(&target).unwrap();
        let started = Instant::now();
        let err = FileLock::acquire_within(&target, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains("config.json.lock"), "{err}");
        drop(held);
        FileLock::acquire_within(&target, Duration::from_millis(200)).unwrap();
    }

    #[test]
    fn a_symlink_and_its_target_share_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        std::fs::write(&real, "x").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            lock_path(&link),
            dir.path().canonicalize().unwrap().join("real.json.lock")
        );
    }
}
