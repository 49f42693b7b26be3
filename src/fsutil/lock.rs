//! Cross-process locks on `<target>.lock` and the locked read-modify-write update.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::private::{Private, read_regular, replace_private, sweep_leftovers};
use super::trust::{check_file_md, secure_file};
use super::{FILE_MODE, write_target};
use crate::error::{Error, Result};

/// The longest we wait for another process's lock: more than a mint's whole retry budget (300 s), which is
/// the longest a healthy holder keeps it.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(360);

/// How long a call whose retry budget is `budget` waits for a lock: no longer than it would wait for the
/// server (the budget), and never more than [`LOCK_TIMEOUT`]. Pass it to [`FileLock::acquire_within`].
pub fn lock_wait(budget: Duration) -> Duration {
    budget.min(LOCK_TIMEOUT)
}

/// An exclusive cross-process lock on `<target>.lock`, released when dropped (or when the process dies).
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
        let file = open_lock_file(&path)?;
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

/// Open (creating it 0600) the lock file at `path`, never through a symlink and never blocking. A lock file
/// that is not a regular file of the caller or root (planted while its folder was loose) is removed and
/// created afresh, with a warning: another user's lock must not hold us up.
fn open_lock_file(path: &Path) -> Result<std::fs::File> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
    };
    for _ in 0..3 {
        let problem = match open() {
            Ok(file) => {
                let md = file.metadata().map_err(|e| Error::io("open lock file", path, e))?;
                let mut found = Vec::new();
                check_file_md(path, &md, &mut found);
                match found.into_iter().find(|f| f.tighten_to.is_none()) {
                    None => return Ok(file),
                    Some(f) => {
                        // Remove only the file we looked at (not one another process put there meanwhile).
                        let same =
                            std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == md.ino() && m.dev() == md.dev());
                        if !same {
                            continue;
                        }
                        f.problem
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => "a symlink".to_string(),
            Err(e) => return Err(Error::io("open lock file", path, e)),
        };
        log::warn!("{} was {problem}; replacing it", path.display());
        match std::fs::remove_file(path).or_else(|_| std::fs::remove_dir(path)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove the untrusted lock file", path, e)),
        }
    }
    Err(Error::io(
        "open lock file",
        path,
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "it keeps being replaced by an untrusted file",
        ),
    ))
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

/// Read-modify-write `path` under its lock. `edit` gets the current bytes (`None` when the file does not exist)
/// and returns the new bytes, or `None` to leave the file as it is. The path must pass [`super::check_file`] first
/// (a file of another owner is refused, never read); an existing file looser than 0600 is tightened either
/// way, with a warning. The folder must exist. The new file is written like [`super::write_private`]. Returns
/// whether the file was rewritten.
pub fn update_file(path: &Path, edit: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>>) -> Result<bool> {
    let target = secure_file(path, false)?;
    let _lock = FileLock::acquire(&target)?;
    sweep_leftovers(&target);
    let current = match read_regular(&target)? {
        Private::Missing => None,
        Private::Data(bytes) => Some(bytes),
        Private::Untrusted(f) => return Err(f.to_error()),
    };
    match edit(current.as_deref())? {
        Some(bytes) => {
            replace_private(&target, &bytes)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Replace `path` with `contents` like [`super::write_private`], under `path`'s lock (see [`update_file`]).
pub fn write_locked(path: &Path, contents: &[u8]) -> Result<()> {
    update_file(path, |_| Ok(Some(contents.to_vec()))).map(|_| ())
}
