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
//! **Trust** (like OpenSSH's `StrictModes`). Before a private file is read or written, [`check_file`] walks
//! every folder from `/` down to it, following symlinks: each must belong to the caller's uid or root and must
//! not be writable by group or others (a sticky folder such as `/tmp` is fine above, never as the file's own
//! folder). A symlink (every link of a chain, one hop at a time) is followed only when the caller or root owns
//! it; its target's folders pass the same walk. The file itself must be a regular file of the caller or root.
//! Our own folder or file that is only too loose is tightened (0700 / 0600) with a warning; anything else is
//! refused with an [`Error::Io`] naming the path and why. Files are opened with `O_NOFOLLOW | O_NONBLOCK`, so a planted FIFO never blocks a read.
//!
//! Read-modify-write updates ([`update_file`]) hold a cross-process lock on a sidecar file `<target>.lock`
//! (`flock(2)` through std's `File::lock`), so concurrent writers in any number of processes never lose an
//! update; readers need no lock, since the rename means they see the old or the new file, never a mix. The
//! kernel drops the lock when its holder dies, even by SIGKILL.

mod lock;
mod private;
#[cfg(test)]
mod tests;
mod trust;

pub use lock::{FileLock, LOCK_TIMEOUT, lock_path, lock_wait, update_file, write_locked};
pub use private::{MAX_PRIVATE_FILE, Private, is_our_temp_file, read_private, sweep_leftovers, write_private};
pub use trust::{Finding, caller_uid, check_dir, check_file, enforce, is_loose, refusal, secure_dir, secure_file};

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

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
