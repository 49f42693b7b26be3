//! Private files: reading them (regular files only, bounded), writing them atomically (0600 temp file, fsync,
//! rename, fsync of the folder) and sweeping the temp files a killed writer left.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::FILE_MODE;
use super::trust::{Finding, check_file, check_file_md, secure_file};
use crate::error::{Error, Result};

/// The largest private file we read (a token cache, a CCR config): anything bigger is refused.
pub const MAX_PRIVATE_FILE: u64 = 1 << 20;

/// What [`read_private`] found.
#[derive(Debug)]
pub enum Private {
    /// No such file.
    Missing,
    /// The file's bytes.
    Data(Vec<u8>),
    /// The file (or a folder above it) cannot be trusted: not read.
    Untrusted(Finding),
}

/// Open an existing regular file without following a symlink and without blocking (a FIFO answers at once).
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// The bytes of a regular file (at most [`MAX_PRIVATE_FILE`]), `Ok(None)` when it does not exist. A symlink,
/// FIFO, device or folder at `path` is [`Private::Untrusted`].
pub(super) fn read_regular(path: &Path) -> Result<Private> {
    let file = match open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Private::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Private::Untrusted(Finding::new(
                path,
                "a symlink where none was expected",
            )));
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let md = file.metadata().map_err(|e| Error::io("read", path, e))?;
    let mut found = Vec::new();
    check_file_md(path, &md, &mut found);
    if let Some(f) = found.into_iter().find(|f| f.tighten_to.is_none()) {
        return Ok(Private::Untrusted(f));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PRIVATE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() as u64 > MAX_PRIVATE_FILE {
        return Err(Error::io(
            "read",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {MAX_PRIVATE_FILE} bytes"),
            ),
        ));
    }
    Ok(Private::Data(bytes))
}

/// Read a private file after [`check_file`]: nothing is read from a file or folder that is not trusted (only
/// too loose is fine for reading: the next write tightens it).
pub fn read_private(path: &Path) -> Result<Private> {
    let (target, findings) = check_file(path);
    if let Some(f) = findings.into_iter().find(|f| f.tighten_to.is_none()) {
        return Ok(Private::Untrusted(f));
    }
    read_regular(&target)
}

/// Atomically replace `path` with `contents`, private (0600) from the first byte, once [`check_file`] trusts
/// it (a file of another owner in a trusted folder is replaced, never read).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let target = secure_file(path, true)?;
    replace_private(&target, contents)
}

/// The atomic replace itself, of an already checked target.
pub(super) fn replace_private(target: &Path, contents: &[u8]) -> Result<()> {
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
        .suffix(TMP_SUFFIX)
        .rand_bytes(TMP_RAND_LEN)
        .permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create a temporary file in", &dir, e))?;
    tmp.write_all(contents).map_err(|e| Error::io("write", target, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io("sync", target, e))?;
    // On failure `persist` hands the temporary file back inside the error; dropping it removes it.
    tmp.persist(target).map_err(|e| Error::io("replace", target, e.error))?;
    // The rename is done: the new file is in place whatever happens next. Syncing the folder only makes it
    // durable across a power loss, so a failure is logged, never reported as a failed write.
    if let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
        log::warn!("{} was written, but syncing its folder failed: {e}", target.display());
    }
    Ok(())
}

/// Suffix of our temporary files: `.<name>.<TMP_RAND_LEN letters or digits>.tmp`.
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// Length of the random part of a temporary file's name.
pub(super) const TMP_RAND_LEN: usize = 6;

/// Whether `file_name` is exactly a temporary file [`write_private`] makes for `target_name`:
/// `.<target_name>.` + [`TMP_RAND_LEN`] ASCII letters or digits + `.tmp` (a user's `.config.json.bak.tmp` is not).
pub fn is_our_temp_file(file_name: &std::ffi::OsStr, target_name: &std::ffi::OsStr) -> bool {
    let (n, t) = (file_name.as_encoded_bytes(), target_name.as_encoded_bytes());
    let Some(rest) = n.strip_prefix(b".").and_then(|r| r.strip_prefix(t)) else {
        return false;
    };
    let Some(mid) = rest
        .strip_prefix(b".")
        .and_then(|r| r.strip_suffix(TMP_SUFFIX.as_bytes()))
    else {
        return false;
    };
    mid.len() == TMP_RAND_LEN && mid.iter().all(u8::is_ascii_alphanumeric)
}

/// Remove temporary files a killed writer left next to `target` (see [`is_our_temp_file`]). Only safe while
/// holding `target`'s lock: then no other writer of `target` can be midway.
pub fn sweep_leftovers(target: &Path) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if is_our_temp_file(&entry.file_name(), name) && entry.file_type().is_ok_and(|t| t.is_file()) {
            log::debug!(
                "removing {}, left behind by an interrupted write",
                entry.path().display()
            );
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
